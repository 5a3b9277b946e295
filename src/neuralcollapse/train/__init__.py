"""Training: config (dataclasses <-> YAML), data pipeline, model building, the loop, checkpoints.

::

    from neuralcollapse.train import Trainer, run_config
    config = run_config("digits_lt", ["train.epochs=5"])
    summary = Trainer(config, "runs/demo", echo=print).fit()  # report.html included

``run_config`` is the way in that the ``train`` command takes too (a recipe name or file
plus overrides, or ``resume=RUN_DIR``); ``fit`` writes everything the config asks for.

The names below are loaded on first use (PEP 562), so that importing one light submodule
(``neuralcollapse.train.config``, as ``reproduce --help`` does) does not import the trainer
and torch with it.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the submodule that defines it
_EXPORTS = {
    "ConfigError": "neuralcollapse.errors",
    "load_checkpoint": "neuralcollapse.train.checkpoint",
    "save_checkpoint": "neuralcollapse.train.checkpoint",
    "Config": "neuralcollapse.train.config",
    "load_config": "neuralcollapse.train.config",
    "to_yaml": "neuralcollapse.train.config",
    "available_recipes": "neuralcollapse.train.recipes",
    "resolve_config_path": "neuralcollapse.train.recipes",
    "run_config": "neuralcollapse.train.launch",
    "Trainer": "neuralcollapse.train.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
