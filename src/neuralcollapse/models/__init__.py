"""Backbones for the fixed-frame heads: ``nc.models.build(name, **options)``.

Every model returns (B, feature_dim) features and exposes ``feature_dim``; classifier heads
live in ``nc.heads``. Names: ``resnet32`` (CIFAR, d = 64 * width), ``resnet18``, ``resnet50``
(``stem="cifar"|"imagenet"``, ``feature_dim=None|int``), ``wide_resnet`` (WRN-depth-width,
default WRN-28-8, d = 512), ``densenet_bc`` (CIFAR DenseNet-BC, default [Y22]'s
DenseNet-BC-150-12, d = 510), ``mlp`` and ``small_cnn`` (8x8 digits), and ``timm:<name>``
for any timm model (optional extra). ``load_weights(backbone, path)`` fills a backbone from a
local state-dict file (pretrained weights; nothing is downloaded).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch

from .base import Backbone, count_parameters
from .densenet import DenseNetBC, densenet_bc
from .limits import check_parameter_count, planned_parameters
from .pretrained import WeightsReport, load_weights
from .resnet import ResNet, resnet18, resnet50
from .resnet_cifar import CifarResNet, resnet32
from .small import MLP, SmallCNN
from .timm_backbone import TimmBackbone
from .wide_resnet import WideResNet, wide_resnet

__all__ = [
    "MLP",
    "Backbone",
    "CifarResNet",
    "DenseNetBC",
    "ResNet",
    "SmallCNN",
    "TimmBackbone",
    "WeightsReport",
    "WideResNet",
    "available",
    "build",
    "count_parameters",
    "densenet_bc",
    "load_weights",
    "resnet18",
    "resnet32",
    "resnet50",
    "wide_resnet",
]

_FACTORIES: dict[str, Callable[..., Backbone]] = {
    "resnet32": resnet32,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mlp": MLP,
    "small_cnn": SmallCNN,
    "wide_resnet": wide_resnet,
    "densenet_bc": densenet_bc,
}
_TIMM_PREFIX = "timm:"


def available() -> tuple[str, ...]:
    """Names accepted by :func:`build` (plus ``"timm:<name>"`` for timm models)."""
    return tuple(_FACTORIES)


def build(name: str, *, seed: int | None = None, **options: Any) -> Backbone:
    """Build a backbone by name.

    Args:
        name: one of :func:`available`, or ``"timm:<timm model name>"``.
        seed: if given, initial weights are drawn under ``torch.manual_seed(seed)`` inside
            ``torch.random.fork_rng``, so they are reproducible and the caller's global RNG
            state is left untouched; if None, initialisation uses the global RNG as any
            ``torch.nn`` module does.
        **options: the model's own options, e.g. ``width=2`` for ``resnet32`` or
            ``stem="imagenet", feature_dim=10`` for ``resnet18``.

    Returns:
        A :class:`Backbone` mapping inputs to (B, feature_dim) features.
    """
    factory = _factory(name)
    if not name.startswith(_TIMM_PREFIX):
        _check_options(name, factory, options)
        # sizes come from configs and checkpoints: refuse a huge model before allocating it
        # (a build on the meta device allocates nothing; its caller checks the count)
        if torch.empty(0).device.type != "meta":
            planned = planned_parameters(functools.partial(factory, **options))
            check_parameter_count(planned, f"model {name!r} with options {options}")
    if seed is None:
        return factory(**options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(**options)


def _factory(name: str) -> Callable[..., Backbone]:
    if not isinstance(name, str):
        raise ValueError(f"model name must be a string, got {name!r}")
    if name.startswith(_TIMM_PREFIX):
        timm_name = name[len(_TIMM_PREFIX) :]
        if not timm_name:
            raise ValueError("give a timm model after the prefix, e.g. 'timm:resnet18'")
        return functools.partial(TimmBackbone, timm_name)
    if name not in _FACTORIES:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(_FACTORIES)}, or 'timm:<name>'"
        )
    return _FACTORIES[name]


def _check_options(name: str, factory: Callable[..., Backbone], options: dict[str, Any]) -> None:
    params = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(
            f"model {name!r} has no option(s) {unknown}; its options are {sorted(params)}"
        )
