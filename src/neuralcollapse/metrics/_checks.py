"""Input validation specific to the metrics: features, classifiers, biases, global means.

Integers, floats and class labels are checked by :mod:`neuralcollapse._internal.checks`,
the one home of those validators; this module adds what only the metrics need. Every
error is one ValueError naming the offending value and the fix.
"""

from __future__ import annotations

import math
from typing import Literal, cast

import torch
from torch import Tensor

from neuralcollapse._internal.checks import check_labels


class UndefinedMetricError(ValueError):
    """The data leave a metric undefined (not a wrong argument): features of fewer than
    two classes, all class means at one point, statistics too large for float64. An
    evaluation records such metrics as null with this message as the reason."""


GlobalMean = Literal["weighted", "balanced"]
GLOBAL_MEANS = ("weighted", "balanced")
Precision = Literal["auto", "float32", "float64"]
PRECISIONS = ("auto", "float32", "float64")


def check_global_mean(value: object) -> GlobalMean:
    if value not in GLOBAL_MEANS:
        raise ValueError(f"global_mean must be one of {GLOBAL_MEANS}, got {value!r}")
    return cast(GlobalMean, value)


def check_precision(value: object) -> Precision:
    if value not in PRECISIONS:
        raise ValueError(
            f'precision must be one of {PRECISIONS}, got {value!r}; "float64" is the slow '
            'all-float64 path, "auto" picks float32 products for float32 features'
        )
    return cast(Precision, value)


def check_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor, got {type(value).__name__}; "
            "convert it with torch.as_tensor(...)"
        )
    return value


def check_features(features: object, dim: int) -> Tensor:
    """Shape ``(B, dim)``, floating dtype (finiteness is checked separately)."""
    features = check_tensor("features", features)
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


def check_finite_rows(row_values: Tensor) -> None:
    """Raise if any of the ``(B,)`` per-row values (e.g. squared norms) is NaN or inf.

    A NaN or inf anywhere in a feature row makes its squared norm non-finite, so this
    checks the whole batch at the cost of B values. One sum decides in the common case;
    it is also non-finite when the values only overflow together (their float32 sum
    bounds every partial sum of a product of those rows), which is reported as such.
    """
    if row_values.numel() == 0 or bool(torch.isfinite(row_values.sum())):
        return
    finite = torch.isfinite(row_values)
    bad = int((~finite).sum())
    if bad == 0:
        raise ValueError(
            f"features are too large: the squared norms of {row_values.shape[0]} rows overflow "
            f"{row_values.dtype} when summed; rescale the features (or pass "
            'precision="float64") before computing metrics'
        )
    raise ValueError(
        f"features contain NaN or inf (or values too large to square in {row_values.dtype}) "
        f"in {bad} of {row_values.shape[0]} rows; remove or repair those samples (e.g. from "
        "a diverged model) before computing metrics"
    )


def check_all_finite(features: Tensor) -> None:
    """Raise if any entry of the ``(B, d)`` features is NaN or inf."""
    if features.shape[0] > 0:
        row_ok = torch.isfinite(features).all(dim=1)
        check_finite_rows(torch.where(row_ok, 0.0, math.nan))


def all_finite(values: Tensor) -> bool:
    """Whether every entry of a floating tensor is finite. NaN and inf propagate into
    the sum, so one read-only pass decides unless the finite entries overflow together
    (then the entries are checked one by one)."""
    return bool(torch.isfinite(values.sum())) or bool(torch.isfinite(values).all())


def check_batch(
    features: object, labels: object, num_classes: int, dim: int, *, finite: bool = True
) -> tuple[Tensor, Tensor]:
    """``(features, labels)`` of one batch with shapes, dtypes, the label range and (if
    ``finite``) finite features checked; the labels come back as int64."""
    features = check_features(features, dim)
    labels = check_labels(labels, batch=features.shape[0], num_classes=num_classes)
    if finite:
        check_all_finite(features)
    return features, labels


def check_classifier(classifier: object, num_classes: int, dim: int) -> Tensor:
    w = check_tensor("classifier", classifier)
    if w.ndim != 2 or tuple(w.shape) != (num_classes, dim):
        raise ValueError(
            f"classifier must have shape (num_classes, dim) = ({num_classes}, {dim}), got "
            f"{tuple(w.shape)}; frames are rows (logits = h @ W.T): transpose a (d, K) matrix"
        )
    if not w.is_floating_point() or not all_finite(w):
        raise ValueError("classifier must be a finite floating tensor; it has NaN/inf or ints")
    return w.detach()


def check_bias(bias: object, num_classes: int) -> Tensor:
    b = check_tensor("bias", bias)
    if b.ndim != 1 or b.shape[0] != num_classes:
        raise ValueError(
            f"bias must have shape ({num_classes},), got {tuple(b.shape)}; pass one value per class"
        )
    if not b.is_floating_point() or not all_finite(b):
        raise ValueError("bias must be a finite floating tensor; it has NaN/inf or ints")
    return b.detach()


def check_counts(name: str, counts: object, num_classes: int) -> Tensor:
    """``(K,)`` finite non-negative per-class counts (any real dtype) as float64 on CPU."""
    if not isinstance(counts, Tensor):
        try:
            counts = torch.as_tensor(counts)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(
                f"{name} must be a (K,) tensor of per-class counts, got {type(counts).__name__}"
            ) from None
    if counts.ndim != 1 or counts.shape[0] != num_classes:
        raise ValueError(
            f"{name} must have shape ({num_classes},), one count per class, got "
            f"{tuple(counts.shape)}"
        )
    if counts.dtype == torch.bool or counts.is_complex():
        raise ValueError(f"{name} must hold numbers of samples, got dtype {counts.dtype}")
    values = counts.detach().cpu().to(torch.float64)
    if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
        raise ValueError(f"{name} must be finite and non-negative, got {values.tolist()[:10]}")
    return values
