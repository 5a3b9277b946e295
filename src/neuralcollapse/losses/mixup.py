"""Mixup targets and the one place the mixup combination is written (:func:`mixup_loss`),
shared by the frame losses and the long-tailed baselines."""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch

from neuralcollapse._internal.checks import check_labels

__all__ = ["REDUCTIONS", "MixupTargets", "check_batch", "check_reduction", "mixup_loss"]

MixupTargets = tuple[torch.Tensor, torch.Tensor, "float | torch.Tensor"]

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return reduction


def check_batch(batch: int, what: str) -> None:
    if batch == 0:
        raise ValueError(
            f"{what} hold an empty batch (B = 0): a loss needs at least one sample; skip "
            "empty batches before calling the loss"
        )


def _labels(labels: object, batch: int, num_classes: int | None, name: str) -> torch.Tensor:
    """(B,) int64 class indices; values range-checked on the CPU only (no device sync)."""
    return check_labels(labels, batch=batch, num_classes=num_classes, name=name, sync=False)


def _check_lam(lam: object, batch: int) -> float | torch.Tensor:
    if isinstance(lam, torch.Tensor):
        if lam.ndim == 0 or tuple(lam.shape) == (batch,):
            return lam
        raise ValueError(
            f"mixup lam must be a scalar or a ({batch},) tensor, got {tuple(lam.shape)}"
        )
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not 0.0 <= lam <= 1.0:
        raise ValueError(f"mixup lam must be a number in [0, 1], got {lam!r}")
    return float(lam)


def mixup_loss(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor | MixupTargets,
    *,
    num_classes: int | None = None,
) -> torch.Tensor:
    """``loss_fn(inputs, targets)``, or for mixup targets ``(y_a, y_b, lam)`` the mix
    ``lam * loss_fn(inputs, y_a) + (1 - lam) * loss_fn(inputs, y_b)``.

    The one place the mixup combination is written: any loss works, reduced (a scalar,
    like ``nn.CrossEntropyLoss()``) or per sample (``reduction="none"``, shape (B,)).

    Args:
        loss_fn: ``loss_fn(inputs, labels)`` with labels (B,) int64; extra arguments (a
            frame) go in through a lambda or ``functools.partial``.
        inputs: (B, ...) what the loss scores (logits or features), B >= 1.
        targets: (B,) class indices, or ``(y_a, y_b, lam)`` with y_a, y_b (B,) class
            indices and lam a float in [0, 1], a 0-d tensor or a (B,) tensor (one weight per
            sample; then ``loss_fn`` must return per-sample (B,) values).
        num_classes: K; when given the labels are range-checked (CPU tensors only).

    Returns:
        What ``loss_fn`` returns: a scalar, or (B,) for a per-sample loss.
    """
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 1:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs)
        raise ValueError(f"inputs must be a (B, ...) tensor, got {shape}")
    batch = inputs.shape[0]
    check_batch(batch, "inputs")
    if not isinstance(targets, (tuple, list)):
        return loss_fn(inputs, _labels(targets, batch, num_classes, "labels"))
    if len(targets) != 3:
        raise ValueError("mixup targets must be a tuple (y_a, y_b, lam)")
    y_a = _labels(targets[0], batch, num_classes, "y_a")
    y_b = _labels(targets[1], batch, num_classes, "y_b")
    lam = _check_lam(targets[2], batch)
    loss_a, loss_b = loss_fn(inputs, y_a), loss_fn(inputs, y_b)
    if isinstance(lam, torch.Tensor):
        if lam.ndim == 1 and tuple(loss_a.shape) != (batch,):
            raise ValueError(
                f"a per-sample lam ({batch},) needs a per-sample loss, but loss_fn returned "
                f"shape {tuple(loss_a.shape)}: use reduction='none' and reduce afterwards"
            )
        lam = lam.to(device=loss_a.device, dtype=loss_a.dtype)
    return lam * loss_a + (1 - lam) * loss_b
