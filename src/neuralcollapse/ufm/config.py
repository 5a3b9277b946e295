"""The unconstrained-feature-model configuration: a typed dataclass, from YAML or overrides.

Loading reuses the training config machinery (:mod:`neuralcollapse.train.config`): every
value is checked against its field's type and allowed values, unknown keys are named with
a close match, and ``key=value`` overrides are parsed as YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from neuralcollapse.train.config import ConfigError, _build, apply_overrides, read_yaml_mapping

__all__ = [
    "CLASSIFIERS",
    "LOSSES",
    "OPTIMIZERS",
    "UFMConfig",
    "check_ufm_config",
    "load_ufm_config",
    "ufm_config_from_dict",
]

CLASSIFIERS = ("learnable", "etf", "haframe", "spread")
LOSSES = ("ce", "dr", "mse", "cosine_frame")
OPTIMIZERS = ("gd", "sgd", "adam", "lbfgs")
# Losses defined on the features and a fixed frame (nc.losses): no logits, so no bias and
# no learnable classifier.
FRAME_ONLY_LOSSES = ("dr", "cosine_frame")


@dataclass
class UFMConfig:
    """One unconstrained-feature-model run (PAPERS §5).

    The model is min over W (K, d), H (N, d), b (K,) of
    ``(1/N) sum_i L(h_i @ W.T + b, y_i) + lambda_W/2 ||W||^2 + lambda_H/2 ||H||^2
    + lambda_b/2 ||b||^2``; a fixed classifier (``etf``, ``haframe``, ``spread``) is not
    optimised and gets no decay.

    Class counts: ``counts`` (explicit, length K) wins; otherwise
    ``nc.data.class_counts(n_per_class, num_classes, imbalance_ratio, profile)``
    (balanced when the ratio is 1).
    """

    num_classes: int = 10  # K
    dim: int = 16  # d
    n_per_class: int = 20  # n_max: samples of the largest class
    imbalance_ratio: float = 1.0  # n_max / n_min
    profile: Literal["exp", "step"] = "step"
    counts: list[int] | None = None  # explicit per-class counts (length K)
    classifier: Literal["learnable", "etf", "haframe", "spread"] = "learnable"
    hierarchy: str | None = None  # haframe: class tree as a child,parent edges CSV
    gamma: float = 2.0  # haframe: spread of the target similarity
    spread_steps: int = 1000  # spread: frame optimisation steps
    frame_scale: float = 1.0  # fixed classifiers: row norm of the frame
    loss: Literal["ce", "dr", "mse", "cosine_frame"] = "ce"
    alpha: float = 0.4  # cosine_frame: weight of the cosine regression
    feature_budget: float = 1.0  # dr: E_H of the paper form
    lambda_W: float = 5e-3
    lambda_H: float = 5e-3
    lambda_b: float = 5e-3
    bias: bool | None = None  # None: on for a learnable W with ce/mse, else off
    optimizer: Literal["gd", "sgd", "adam", "lbfgs"] = "gd"
    lr: float = 0.5
    momentum: float = 0.9  # sgd only ("gd" is plain gradient descent)
    steps: int = 2000
    log_every: int = 100  # collapse report every this many steps (and at the end)
    init_std: float = 0.1  # std of the Gaussian start of H (and of a learnable W)
    seed: int = 0
    device: str = "cpu"
    num_threads: int | None = None  # CPU threads during the run; None: auto (see simulate)
    dtype: Literal["float32", "float64"] = "float32"

    @property
    def fixed_classifier(self) -> bool:
        return self.classifier != "learnable"

    @property
    def use_bias(self) -> bool:
        """Whether b is a variable: ``bias`` resolved (see the field's comment)."""
        if self.bias is not None:
            return self.bias
        return not self.fixed_classifier and self.loss in ("ce", "mse")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def check_ufm_config(config: UFMConfig) -> UFMConfig:
    """Types, ranges and combinations of ``config``, each error naming its key.

    Also accepts configs built in Python (whose types the dataclass does not enforce):
    the values are re-checked through the same typed loader as YAML.
    """
    if not isinstance(config, UFMConfig):
        raise ConfigError(f"expected a UFMConfig, got {type(config).__name__}")
    c = _build(UFMConfig, dataclasses.asdict(config), "")
    _require(c.num_classes >= 2, f"num_classes must be >= 2, got {c.num_classes}")
    _require(c.dim >= 1, f"dim must be >= 1, got {c.dim}")
    _require(c.n_per_class >= 1, f"n_per_class must be >= 1, got {c.n_per_class}")
    _require(c.imbalance_ratio >= 1, f"imbalance_ratio must be >= 1, got {c.imbalance_ratio}")
    if c.counts is not None:
        _require(
            len(c.counts) == c.num_classes,
            f"counts has {len(c.counts)} entries but num_classes={c.num_classes}",
        )
        _require(all(n >= 1 for n in c.counts), f"counts must all be >= 1, got {c.counts}")
    _require(
        c.fixed_classifier or c.loss not in FRAME_ONLY_LOSSES,
        f"loss={c.loss!r} needs a fixed classifier, but classifier='learnable': use "
        "classifier in {'etf', 'spread', 'haframe'} or loss in {'ce', 'mse'}",
    )
    _require(
        not (c.bias and c.loss in FRAME_ONLY_LOSSES),
        f"loss={c.loss!r} has no logits to add a bias to: set bias=false",
    )
    _require(
        c.classifier != "etf" or c.dim >= c.num_classes - 1,
        f"classifier='etf' needs dim >= num_classes - 1 = {c.num_classes - 1}, got dim="
        f"{c.dim}; raise dim or use classifier='spread'",
    )
    for key in ("lambda_W", "lambda_H", "lambda_b"):
        _require(getattr(c, key) >= 0, f"{key} must be >= 0, got {getattr(c, key)}")
    _require(c.lr > 0, f"lr must be > 0, got {c.lr}")
    _require(0 <= c.momentum < 1, f"momentum must be in [0, 1), got {c.momentum}")
    _require(c.steps >= 1, f"steps must be >= 1, got {c.steps}")
    _require(c.log_every >= 1, f"log_every must be >= 1, got {c.log_every}")
    _require(c.init_std > 0, f"init_std must be > 0, got {c.init_std}")
    _require(c.gamma > 0, f"gamma must be > 0, got {c.gamma}")
    _require(c.frame_scale > 0, f"frame_scale must be > 0, got {c.frame_scale}")
    _require(0 <= c.alpha <= 1, f"alpha must be in [0, 1], got {c.alpha}")
    _require(c.feature_budget > 0, f"feature_budget must be > 0, got {c.feature_budget}")
    _require(
        c.num_threads is None or c.num_threads >= 1,
        f"num_threads must be >= 1 or null, got {c.num_threads}",
    )
    _require(c.spread_steps >= 1, f"spread_steps must be >= 1, got {c.spread_steps}")
    return c


def ufm_config_from_dict(values: dict[str, Any] | None) -> UFMConfig:
    """A checked :class:`UFMConfig` from a flat dict (missing keys take their defaults)."""
    return check_ufm_config(_build(UFMConfig, values or {}, ""))


def load_ufm_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> UFMConfig:
    """Read a YAML file of UFMConfig keys (or start from ``base``), apply ``key=value``
    overrides, and check everything.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: invalid YAML, an unknown key, a wrong type or a bad combination.
    """
    values: dict[str, Any] = dict(base or {})
    if path is not None:
        values.update(read_yaml_mapping(path))
    return ufm_config_from_dict(apply_overrides(values, overrides or []))
