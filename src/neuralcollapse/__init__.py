"""neuralcollapse: fixed-frame classifiers, their losses and exact neural-collapse metrics.

Import as ``import neuralcollapse as nc``; the submodules load on first use::

    W = nc.frames.simplex_etf(10, 64, seed=0)          # (K, d) frame, rows are classes
    head = nc.heads.FixedFrameHead(512, W, neck="bn_l2")
    loss = nc.losses.DotRegressionLoss()

Conventions: a frame W is (K, d) with one row per class and logits are ``h @ W.T``; class
trees are ``nc.Hierarchy`` (one leaf order everywhere). The mathematics, the conventions
and the papers' numbers are in docs/theory.md. The core needs only torch, numpy,
pyyaml and safetensors; plots, trackers, the digits data, image files, the progress bar and
the Lightning/torchmetrics integrations are extras (``pip install 'neuralcollapse[all]'``).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Submodules are imported lazily so that `import neuralcollapse` stays cheap and a
# module's optional dependencies are only needed when that module is used.
_SUBMODULES = (
    "frames",
    "heads",
    "losses",
    "metrics",
    "data",
    "models",
    "hierarchy",
    "ufm",
    "export",
)

# Names re-exported at the top level, with the submodule that defines them.
_CLASSES = {
    "Hierarchy": "hierarchy",
    "ClassDistances": "hierarchy",
    "load_pretrained": "export",
}

__all__ = ["__version__", *_SUBMODULES, *_CLASSES]


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        value: object = importlib.import_module(f"{__name__}.{name}")
    elif name in _CLASSES:
        value = getattr(importlib.import_module(f"{__name__}.{_CLASSES[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBMODULES) | set(_CLASSES))
