"""Classification accuracy for long-tailed problems: overall, balanced, per class, by shot.

:class:`AccuracyCounter` accumulates per-class correct and total counts batch by batch (sums,
so counters merge across batches and processes); :meth:`AccuracyCounter.summary` turns them
into the numbers long-tailed papers report.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["AccuracyCounter"]


class AccuracyCounter:
    """Per-class correct / total counts of top-1 predictions.

    Args:
        num_classes: K.
        device: where the (K,) int64 counts live.
    """

    def __init__(self, num_classes: int, device: torch.device | str | None = None) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.num_classes = num_classes
        self.correct = torch.zeros(num_classes, dtype=torch.int64, device=device)
        self.total = torch.zeros(num_classes, dtype=torch.int64, device=device)

    def update(self, predictions: Tensor, labels: Tensor) -> None:
        """Count one batch: ``predictions`` (B,) class indices or (B, K) logits; ``labels`` (B,)."""
        if predictions.ndim == 2:
            if predictions.shape[1] != self.num_classes:
                raise ValueError(
                    f"logits have {predictions.shape[1]} classes, expected {self.num_classes}"
                )
            predictions = predictions.argmax(dim=1)
        if predictions.shape != labels.shape or labels.ndim != 1:
            raise ValueError(
                f"predictions {tuple(predictions.shape)} and labels {tuple(labels.shape)} must "
                "both be (B,)"
            )
        labels = labels.to(self.total.device, torch.int64)
        hits = (predictions.to(labels.device) == labels).to(torch.int64)
        self.total += torch.bincount(labels, minlength=self.num_classes)[: self.num_classes]
        self.correct += torch.bincount(labels, weights=hits, minlength=self.num_classes)[
            : self.num_classes
        ].to(torch.int64)

    def merge(self, other: AccuracyCounter) -> AccuracyCounter:
        """Add another counter's counts into this one (returns self)."""
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge counters of different class counts")
        self.correct += other.correct.to(self.correct.device)
        self.total += other.total.to(self.total.device)
        return self

    def all_reduce(self, group: Any = None) -> AccuracyCounter:
        """Sum the counts over all processes of ``group`` (torch.distributed)."""
        import torch.distributed as dist

        dist.all_reduce(self.correct, group=group)
        dist.all_reduce(self.total, group=group)
        return self

    def per_class(self) -> Tensor:
        """(K,) float64 accuracy per class; NaN for classes with no samples."""
        total = self.total.to(torch.float64)
        return torch.where(total > 0, self.correct / total.clamp_min(1), torch.nan)

    def summary(self, groups: dict[str, Tensor] | None = None) -> dict[str, Any]:
        """``top1`` (fraction of all samples), ``balanced`` (mean per-class accuracy over the
        classes with samples), ``per_class`` (list, None where absent), and for each named
        group of class indices the mean per-class accuracy of its classes (None if the group
        has no evaluated class). All accuracies are fractions in [0, 1]."""
        per_class = self.per_class().cpu()
        present = ~torch.isnan(per_class)
        total = int(self.total.sum())
        result: dict[str, Any] = {
            "top1": float(self.correct.sum()) / total if total else math.nan,
            "balanced": float(per_class[present].mean()) if bool(present.any()) else math.nan,
            "num_samples": total,
            "per_class": [None if math.isnan(a) else a for a in per_class.tolist()],
        }
        for name, classes in (groups or {}).items():
            values = per_class[classes.cpu()]
            values = values[~torch.isnan(values)]
            result[name] = float(values.mean()) if values.numel() else None
        return result
