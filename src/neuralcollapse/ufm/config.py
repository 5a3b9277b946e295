"""The unconstrained-feature-model configuration: a typed dataclass, from YAML or overrides.

Loading uses the package's one config machinery (:mod:`neuralcollapse.config`): every
value is checked against its field's type and allowed range, unknown keys are named with
a close match, and ``key=value`` overrides are parsed as YAML 1.2.

Names follow the training config where the concept is the same: ``head_kind`` (training's
``head.kind``), ``head_scale`` (``head.scale``) and ``head_gamma`` (``head.gamma``). The old
names ``classifier``, ``frame_scale`` and ``gamma`` raise a :class:`ConfigError` saying so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from neuralcollapse._internal.geometry import etf_min_dim
from neuralcollapse.config import apply_overrides, bounded, from_dict, read_yaml_mapping
from neuralcollapse.errors import ConfigError

__all__ = [
    "FEATURE_CONSTRAINTS",
    "FEATURE_MODELS",
    "HEAD_KINDS",
    "LOSSES",
    "OPTIMIZERS",
    "RENAMED_KEYS",
    "UFMConfig",
    "check_ufm_config",
    "load_ufm_config",
    "ufm_config_from_dict",
]

HEAD_KINDS = ("learnable", "etf", "haframe", "spread")
LOSSES = ("ce", "dr", "mse", "cosine_frame")
OPTIMIZERS = ("gd", "sgd", "adam", "lbfgs")
# Learning-rate sweeps (nc.ufm.lr_sweep): how the features are produced, and how their norm
# is held. "ball" is ||h||^2 <= E_H as docs/theory.md §5 states [Y22]'s constraint,
# "sphere" is ||h||^2 = E_H, "none" leaves the norm free (weight decay only).
FEATURE_MODELS = ("free", "shared")
FEATURE_CONSTRAINTS = ("ball", "sphere", "none")
# Losses defined on the features and a fixed frame (nc.losses): no logits, so no bias and
# no learnable classifier.
FRAME_ONLY_LOSSES = ("dr", "cosine_frame")
# Old key -> new key: an old key in a file or override is an error naming the new one.
RENAMED_KEYS = {"classifier": "head_kind", "frame_scale": "head_scale", "gamma": "head_gamma"}


@dataclass
class UFMConfig:
    """One unconstrained-feature-model run (docs/theory.md §5).

    The model is min over W (K, d), H (N, d), b (K,) of
    ``(1/N) sum_i L(h_i @ W.T + b, y_i) + lambda_W/2 ||W||^2 + lambda_H/2 ||H||^2
    + lambda_b/2 ||b||^2``; a fixed head (``etf``, ``haframe``, ``spread``) is not
    optimised and gets no decay.

    Class counts: ``counts`` (explicit, length K) wins; otherwise
    ``nc.data.class_counts(n_per_class, num_classes, imbalance_ratio, profile)``
    (balanced when the ratio is 1).
    """

    num_classes: int = bounded(10, ge=2)  # K
    dim: int = bounded(16, ge=1)  # d
    n_per_class: int = bounded(20, ge=1)  # n_max: samples of the largest class
    imbalance_ratio: float = bounded(1.0, ge=1)  # n_max / n_min
    profile: Literal["exp", "step"] = "step"
    counts: list[int] | None = bounded(None, ge=1)  # explicit per-class counts (length K)
    head_kind: Literal["learnable", "etf", "haframe", "spread"] = "learnable"
    hierarchy: str | None = None  # haframe: class tree file (edges CSV, nested JSON, paths CSV)
    head_gamma: float = bounded(2.0, gt=0)  # haframe: spread of the target similarity
    spread_steps: int = bounded(1000, ge=1)  # spread: frame optimisation steps
    head_scale: float = bounded(1.0, gt=0)  # fixed heads: row norm of the frame
    loss: Literal["ce", "dr", "mse", "cosine_frame"] = "ce"
    alpha: float = bounded(0.4, ge=0, le=1)  # cosine_frame: weight of the cosine regression
    feature_budget: float = bounded(1.0, gt=0)  # dr: E_H of the paper form
    lambda_W: float = bounded(5e-3, ge=0)
    lambda_H: float = bounded(5e-3, ge=0)
    lambda_b: float = bounded(5e-3, ge=0)
    bias: bool | None = None  # None: on for a learnable W with ce/mse, else off
    optimizer: Literal["gd", "sgd", "adam", "lbfgs"] = "gd"
    lr: float = bounded(0.5, gt=0)
    momentum: float = bounded(0.9, ge=0, lt=1)  # sgd only ("gd" is plain gradient descent)
    steps: int = bounded(2000, ge=1)
    log_every: int = bounded(100, ge=1)  # collapse report every this many steps (and at end)
    init_std: float = bounded(0.1, gt=0)  # std of the Gaussian start of H (and learnable W)
    seed: int = bounded(0, ge=0, le=2**32 - 1)  # the range every seeded generator accepts
    device: str = "cpu"
    num_threads: int | None = bounded(None, ge=1)  # CPU threads; None: auto (see simulate)
    dtype: Literal["float32", "float64"] = "float32"

    @property
    def fixed_head(self) -> bool:
        """Whether the head is a fixed frame (not optimised)."""
        return self.head_kind != "learnable"

    @property
    def use_bias(self) -> bool:
        """Whether b is a variable: ``bias`` resolved (see the field's comment)."""
        if self.bias is not None:
            return self.bias
        return not self.fixed_head and self.loss in ("ce", "mse")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return dataclasses.asdict(self)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _build(values: dict[str, Any] | None) -> UFMConfig:
    return from_dict(UFMConfig, values or {}, renamed=RENAMED_KEYS)


def check_ufm_config(config: UFMConfig) -> UFMConfig:
    """Types, ranges and combinations of ``config``, each error naming its key.

    Also accepts configs built in Python (whose types the dataclass does not enforce):
    the values are re-checked through the same typed loader as YAML. Returns the checked
    copy.
    """
    if not isinstance(config, UFMConfig):
        raise ConfigError(f"expected a UFMConfig, got {type(config).__name__}")
    c = _build(dataclasses.asdict(config))
    if c.counts is not None:
        _require(
            len(c.counts) == c.num_classes,
            f"counts has {len(c.counts)} entries but num_classes={c.num_classes}",
        )
    _require(
        c.fixed_head or c.loss not in FRAME_ONLY_LOSSES,
        f"loss={c.loss!r} needs a fixed head, but head_kind='learnable': use "
        "head_kind in {'etf', 'spread', 'haframe'} or loss in {'ce', 'mse'}",
    )
    _require(
        not (c.bias and c.loss in FRAME_ONLY_LOSSES),
        f"loss={c.loss!r} has no logits to add a bias to: set bias=false",
    )
    _require(
        c.head_kind != "etf" or c.dim >= etf_min_dim(c.num_classes),
        f"head_kind='etf' needs dim >= num_classes - 1 = {etf_min_dim(c.num_classes)}, got dim="
        f"{c.dim}; raise dim or use head_kind='spread'",
    )
    _require(
        c.head_kind != "spread" or c.dim >= 2,
        f"head_kind='spread' needs dim >= 2, got dim={c.dim}",
    )
    return c


def ufm_config_from_dict(values: dict[str, Any] | None) -> UFMConfig:
    """A checked :class:`UFMConfig` from a flat dict (missing keys take their defaults)."""
    return check_ufm_config(_build(values))


def load_ufm_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> UFMConfig:
    """Read a YAML file of UFMConfig keys (or start from ``base``), apply ``key=value``
    overrides, and check everything.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: invalid YAML, an unknown or renamed key, a wrong type, a value out of
            range or a bad combination.
    """
    values: dict[str, Any] = dict(base or {})
    if path is not None:
        values.update(read_yaml_mapping(path))
    return ufm_config_from_dict(apply_overrides(values, overrides or []))
