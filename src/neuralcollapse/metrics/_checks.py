"""Input validation shared by the metric accumulators: one ValueError per problem, each
naming the offending value and the fix."""

from __future__ import annotations

import math

import torch
from torch import Tensor

GLOBAL_MEANS = ("weighted", "balanced")


def check_positive_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_global_mean(value: object) -> None:
    if value not in GLOBAL_MEANS:
        raise ValueError(f"global_mean must be one of {GLOBAL_MEANS}, got {value!r}")


def _check_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor, got {type(value).__name__}; "
            "convert it with torch.as_tensor(...)"
        )
    return value


def check_features(features: object, dim: int) -> Tensor:
    """Shape ``(B, dim)``, floating dtype (finiteness is checked with the labels)."""
    features = _check_tensor("features", features)
    if features.ndim != 2 or features.shape[1] != dim:
        raise ValueError(
            f"features must have shape (batch, {dim}), got {tuple(features.shape)}; "
            "flatten them to one vector per sample of the declared dim"
        )
    if not features.is_floating_point():
        raise ValueError(
            f"features must be a floating tensor, got dtype {features.dtype}; "
            "convert with features.float()"
        )
    return features


def check_labels(labels: object, batch: int) -> Tensor:
    labels = _check_tensor("labels", labels)
    if labels.ndim != 1 or labels.shape[0] != batch:
        raise ValueError(
            f"labels must have shape ({batch},) to match the features, got "
            f"{tuple(labels.shape)}; pass one integer class index per sample"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must be an integer tensor, got dtype {labels.dtype}; "
            "convert class indices with labels.long()"
        )
    return labels


def check_label_range(labels: Tensor, num_classes: int) -> None:
    """Labels in ``[0, K)``, read back with one device sync."""
    if labels.numel() == 0:
        return
    lo, hi = torch.stack([labels.min(), labels.max()]).cpu().tolist()
    if lo < 0 or hi >= num_classes:
        offending = lo if lo < 0 else hi
        raise ValueError(
            f"label {offending} is outside [0, {num_classes}); labels must be class indices "
            f"below num_classes={num_classes}: raise num_classes or remap the labels"
        )


def check_finite_rows(row_values: Tensor) -> None:
    """Raise if any of the ``(B,)`` per-row values (e.g. squared norms) is NaN or inf.

    A NaN or inf anywhere in a feature row makes its squared norm non-finite, so this
    checks the whole batch at the cost of B values.
    """
    finite = torch.isfinite(row_values)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"features contain NaN or inf (or values too large to square in float64) in "
            f"{bad} of {row_values.shape[0]} rows; remove or repair those samples (e.g. from "
            "a diverged model) before computing metrics"
        )


def check_batch(
    features: object, labels: object, num_classes: int, dim: int, *, finite: bool = True
) -> None:
    """Shapes, dtypes, label range and (if ``finite``) finite features of one batch."""
    features = check_features(features, dim)
    labels = check_labels(labels, features.shape[0])
    check_label_range(labels, num_classes)
    if finite:
        check_all_finite(features)


def check_all_finite(features: Tensor) -> None:
    """Raise if any entry of the ``(B, d)`` features is NaN or inf."""
    if features.shape[0] > 0:
        row_ok = torch.isfinite(features).all(dim=1)
        check_finite_rows(torch.where(row_ok, 0.0, math.nan))


def check_classifier(classifier: object, num_classes: int, dim: int) -> Tensor:
    w = _check_tensor("classifier", classifier)
    if w.ndim != 2 or tuple(w.shape) != (num_classes, dim):
        raise ValueError(
            f"classifier must have shape (num_classes, dim) = ({num_classes}, {dim}), got "
            f"{tuple(w.shape)}; frames are rows (logits = h @ W.T): transpose a (d, K) matrix"
        )
    if not w.is_floating_point() or not bool(torch.isfinite(w).all()):
        raise ValueError("classifier must be a finite floating tensor; it has NaN/inf or ints")
    return w.detach()


def check_bias(bias: object, num_classes: int) -> Tensor:
    b = _check_tensor("bias", bias)
    if b.ndim != 1 or b.shape[0] != num_classes:
        raise ValueError(
            f"bias must have shape ({num_classes},), got {tuple(b.shape)}; pass one value per class"
        )
    if not b.is_floating_point() or not bool(torch.isfinite(b).all()):
        raise ValueError("bias must be a finite floating tensor; it has NaN/inf or ints")
    return b.detach()
