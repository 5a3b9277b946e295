"""Training: config (dataclasses <-> YAML), data pipeline, model building, the loop, checkpoints.

::

    from neuralcollapse.train import Trainer, load_config
    config = load_config("configs/digits_lt.yaml", overrides=["train.epochs=5"])
    summary = Trainer(config, "runs/demo", echo=print).fit()
"""

from neuralcollapse.errors import ConfigError
from neuralcollapse.train.checkpoint import load_checkpoint, save_checkpoint
from neuralcollapse.train.config import Config, load_config, to_yaml
from neuralcollapse.train.recipes import available_recipes, resolve_config_path
from neuralcollapse.train.trainer import Trainer

__all__ = [
    "Config",
    "ConfigError",
    "Trainer",
    "available_recipes",
    "load_checkpoint",
    "load_config",
    "resolve_config_path",
    "save_checkpoint",
    "to_yaml",
]
