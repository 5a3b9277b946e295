"""neuralcollapse: fixed-frame classifiers, their losses and exact neural-collapse metrics.

Import as ``import neuralcollapse as nc``; the submodules load on first use::

    W = nc.frames.simplex_etf(10, 64, seed=0)          # (K, d) frame, rows are classes
    head = nc.heads.FixedFrameHead(512, W, neck="bn_l2")
    loss = nc.losses.DotRegressionLoss()
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"

# Submodules are imported lazily so that `import neuralcollapse` stays cheap and a
# module's optional dependencies are only needed when that module is used.
_SUBMODULES = ("frames", "heads", "losses", "metrics", "data", "models", "hierarchy", "ufm")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBMODULES))
