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
import logging
from typing import TYPE_CHECKING

from neuralcollapse._version import __version__

# The library logs through logging.getLogger("neuralcollapse") and its children (one per
# module, getLogger(__name__)); it never configures logging itself. The command line
# attaches a handler; an application configures "neuralcollapse" as it likes.
logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    # Static analysers (mypy, pyright, IDEs) see every submodule and re-export here; at
    # run time they load on first use (below), so that `import neuralcollapse` and
    # `neuralcollapse --help` import no torch.
    from neuralcollapse import (
        data,
        export,
        frames,
        heads,
        hierarchy,
        losses,
        metrics,
        models,
        ufm,
    )
    from neuralcollapse.export import load_pretrained
    from neuralcollapse.hierarchy import ClassDistances, Hierarchy

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

# A literal list, so that static analysers read it (tests check it against the tables).
__all__ = [
    "ClassDistances",
    "Hierarchy",
    "__version__",
    "data",
    "export",
    "frames",
    "heads",
    "hierarchy",
    "load_pretrained",
    "losses",
    "metrics",
    "models",
    "ufm",
]


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
