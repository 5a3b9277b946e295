"""Classification accuracy for long-tailed problems: overall, balanced, per class, by shot.

:class:`AccuracyCounter` accumulates per-class correct and total counts batch by batch (sums,
so counters merge across batches and processes; the accumulator contract of
:mod:`neuralcollapse.metrics.base`); :meth:`AccuracyCounter.compute` turns them into the
numbers long-tailed papers report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from neuralcollapse._internal.checks import check_int, check_labels
from neuralcollapse.metrics.base import Accumulator

if TYPE_CHECKING:
    from neuralcollapse.data.longtail import ShotGroups

__all__ = ["AccuracyCounter", "as_class_groups"]

_RESULT_KEYS = ("top1", "balanced", "num_samples", "per_class")


def as_class_groups(groups: Any, num_classes: int) -> dict[str, Tensor]:
    """``groups`` as a dict name -> ``(G,)`` int64 class indices on CPU, checked.

    Args:
        groups: None, a mapping name -> class indices (a tensor or a list of ints), or the
            :class:`~neuralcollapse.data.ShotGroups` that ``nc.data.shot_groups`` and
            ``shot_groups_by_index`` return (any object with ``as_dict()``).
        num_classes: K; every index must lie in ``[0, K)``.

    Raises:
        ValueError: another type, a name that clashes with a result key (``top1``,
            ``balanced``, ``num_samples``, ``per_class``), or indices that are not 1-D
            integers in range.
    """
    if groups is None:
        return {}
    as_dict = getattr(groups, "as_dict", None)
    if callable(as_dict):
        groups = as_dict()
    if not isinstance(groups, Mapping):
        raise ValueError(
            "groups must be a dict name -> tensor of class indices or the ShotGroups of "
            f"nc.data.shot_groups(...), got {type(groups).__name__}"
        )
    result = {}
    for name, classes in groups.items():
        if not isinstance(name, str) or name in _RESULT_KEYS:
            raise ValueError(
                f"group names must be strings other than {_RESULT_KEYS}, got {name!r}; "
                "rename the group"
            )
        if not isinstance(classes, Tensor):
            try:
                classes = torch.as_tensor(classes, dtype=torch.int64)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(
                    f"groups[{name!r}] must be a tensor of class indices, got "
                    f"{type(classes).__name__}"
                ) from None
        result[name] = check_labels(
            classes.detach().cpu(), num_classes=num_classes, name=f"groups[{name!r}]"
        )
    return result


class AccuracyCounter(Accumulator):
    """Per-class correct / total counts of top-1 predictions.

    The accumulator contract (:mod:`neuralcollapse.metrics.base`): ``update(predictions,
    labels)`` per batch, ``compute()`` for the numbers, ``reset()``, ``merge(other)``,
    ``all_reduce()``, ``state_dict()`` / ``load_state_dict()``::

        acc = AccuracyCounter(10, groups=nc.data.shot_groups(train_counts))
        for x, y in loader:
            acc.update(model(x), y)
        acc.compute()   # {"top1", "balanced", "num_samples", "per_class", "many", ...}

    Args:
        num_classes: K, at least 2.
        device: where the (K,) int64 counts live (default CPU).
        groups: optional named groups of classes that :meth:`compute` reports by default:
            the ShotGroups of ``nc.data.shot_groups(...)`` as it is, or a dict name ->
            class indices. Checked now; not part of the state (counters with different
            groups merge).

    State: ``correct`` and ``total``, (K,) int64 each.
    """

    _compatibility_hint = "build both counters with the same num_classes"

    def __init__(
        self,
        num_classes: int,
        device: torch.device | str | None = None,
        *,
        groups: Mapping[str, Tensor] | ShotGroups | None = None,
    ) -> None:
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.groups = as_class_groups(groups, self.num_classes)
        super().__init__(device)
        self.add_state("correct", torch.zeros(num_classes, dtype=torch.int64))
        self.add_state("total", torch.zeros(num_classes, dtype=torch.int64))
        self._correct: Tensor
        self._total: Tensor

    def __repr__(self) -> str:
        return (
            f"AccuracyCounter(num_classes={self.num_classes}, num_samples={int(self._total.sum())})"
        )

    def _config(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes}

    @property
    def correct(self) -> Tensor:
        """``(K,)`` int64 correct top-1 predictions per true class (a copy)."""
        return self._correct.clone()

    @property
    def total(self) -> Tensor:
        """``(K,)`` int64 samples per true class (a copy)."""
        return self._total.clone()

    def update(self, predictions: Tensor, labels: Tensor) -> None:
        """Count one batch.

        Args:
            predictions: ``(B, K)`` logits or scores (the top-1 class is their argmax) or
                ``(B,)`` predicted class indices.
            labels: ``(B,)`` true classes in ``[0, K)``.
        """
        if not isinstance(predictions, Tensor) or predictions.ndim not in (1, 2):
            shape = (
                tuple(predictions.shape)
                if isinstance(predictions, Tensor)
                else type(predictions).__name__
            )
            raise ValueError(
                f"predictions must be (B, {self.num_classes}) logits or (B,) class indices, "
                f"got {shape}"
            )
        if predictions.ndim == 2:
            if predictions.shape[1] != self.num_classes:
                raise ValueError(
                    f"logits have {predictions.shape[1]} classes, expected {self.num_classes}"
                )
            predictions = predictions.argmax(dim=1)
        labels = check_labels(labels, batch=predictions.shape[0], num_classes=self.num_classes)
        labels = labels.to(self.device)
        hits = (predictions.to(self.device) == labels).to(torch.int64)
        self._total += torch.bincount(labels, minlength=self.num_classes)
        self._correct += torch.bincount(labels, weights=hits, minlength=self.num_classes).to(
            torch.int64
        )

    def per_class(self) -> Tensor:
        """(K,) float64 accuracy per class; NaN for classes with no samples."""
        total = self._total.to(torch.float64)
        return torch.where(total > 0, self._correct / total.clamp_min(1), torch.nan)

    def compute(self, groups: Mapping[str, Tensor] | ShotGroups | None = None) -> dict[str, Any]:
        """The accuracies of every sample counted so far (fractions in [0, 1]).

        Args:
            groups: optional named groups of classes: a dict name -> class indices, or the
                :class:`~neuralcollapse.data.ShotGroups` of ``nc.data.shot_groups(...)`` /
                ``shot_groups_by_index(...)`` as it is (no ``.as_dict()`` needed). Default:
                the groups given to the constructor.

        Returns:
            ``top1`` (fraction of all samples, NaN without samples), ``balanced`` (mean
            per-class accuracy over the classes with samples), ``num_samples``,
            ``per_class`` (list of K, None where a class has no sample), and per group
            the mean per-class accuracy of its classes with samples (None if it has none).
        """
        named = self.groups if groups is None else as_class_groups(groups, self.num_classes)
        per_class = self.per_class().cpu()
        present = ~torch.isnan(per_class)
        total = int(self._total.sum())
        result: dict[str, Any] = {
            "top1": int(self._correct.sum()) / total if total else math.nan,
            "balanced": float(per_class[present].mean()) if bool(present.any()) else math.nan,
            "num_samples": total,
            "per_class": [None if math.isnan(a) else a for a in per_class.tolist()],
        }
        for name, classes in named.items():
            values = per_class[classes]
            values = values[~torch.isnan(values)]
            result[name] = float(values.mean()) if values.numel() else None
        return result
