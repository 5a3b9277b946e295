"""Validators shared by the library: each error names the argument, the value and the fix."""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = ["check_float", "check_int", "check_labels"]


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """``value`` as an int; rejects booleans, floats and values below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_float(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
) -> float:
    """``value`` as a finite float in ``[minimum, maximum]`` (``(minimum, ...`` when
    ``strict_minimum``); integers are accepted, booleans, NaN and infinities are not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if minimum is not None and (value <= minimum if strict_minimum else value < minimum):
        relation = ">" if strict_minimum else ">="
        raise ValueError(f"{name} must be {relation} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_labels(
    labels: object,
    *,
    batch: int | None = None,
    num_classes: int | None = None,
    name: str = "labels",
    sync: bool = True,
) -> Tensor:
    """``labels`` as a 1-D int64 tensor of class indices.

    Args:
        labels: ``(B,)`` integer tensor.
        batch: the B it must have (e.g. the features' rows), or None for any.
        num_classes: when given, every label must lie in ``[0, num_classes)``.
        name: how the message calls the argument.
        sync: check the range on accelerators too (one device-to-host read); with
            ``sync=False`` the range is checked only for CPU tensors, keeping a training
            step free of synchronisation.
    """
    if not isinstance(labels, Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor of class indices, got {type(labels).__name__}; "
            "convert with torch.as_tensor(...)"
        )
    if labels.ndim != 1 or (batch is not None and labels.shape[0] != batch):
        expected = f"({batch},)" if batch is not None else "(B,)"
        raise ValueError(
            f"{name} must have shape {expected}, one class index per sample, got "
            f"{tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(
            f"{name} must hold integer class indices, got dtype {labels.dtype}; "
            "convert with .long()"
        )
    if num_classes is not None and labels.numel() and (sync or labels.device.type == "cpu"):
        low, high = torch.stack([labels.min(), labels.max()]).cpu().tolist()
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise ValueError(
                f"{name} contains {bad}, outside the classes 0..{num_classes - 1}; labels "
                "must be class indices"
            )
    return labels.long()
