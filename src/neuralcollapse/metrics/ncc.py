"""NC4, the second pass: how often the classifier disagrees with the nearest class mean.

The class means are only final after the first pass, so NC4 cannot be accumulated with
the other statistics. :class:`NCCMismatchCounter` freezes the means and counts, over any
number of batches, processes or ranks, the samples where ``argmax_k logits`` differs from
``argmin_k ||h - mu_k||`` (Papyan et al. 2020, NC4). It follows the accumulator contract
of :mod:`neuralcollapse.metrics.base`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from neuralcollapse.metrics._checks import check_batch, check_tensor
from neuralcollapse.metrics.base import Accumulator

# Order of the entries of the counter's int64 state vector.
_MISMATCH, _NCC_CORRECT, _CLASSIFIER_CORRECT, _TOTAL = range(4)


@dataclasses.dataclass(frozen=True)
class NCCResult:
    """What an :class:`NCCMismatchCounter` has counted (fractions in [0, 1])."""

    nc4_ncc_mismatch: float
    ncc_accuracy: float
    classifier_accuracy: float
    num_samples: int


class NCCMismatchCounter(Accumulator):
    """Counts disagreements between a classifier and the nearest-class-mean rule.

    Usually made by :meth:`CollapseStats.ncc_mismatch_counter`; the result is attached to
    a report with ``stats.compute(classifier, ncc=counter)`` or read with :meth:`compute`.
    Counters merge (and all-reduce) only with counters built from the same class means.

    Args:
        class_means: ``(K, d)`` class means; rows of classes without samples are NaN and
            can never be the nearest mean.
        device: where counting happens (default: the device of ``class_means``).

    State: ``counts`` (4,) int64: mismatches, NCC hits, classifier hits, samples.
    """

    _compatibility_hint = (
        "build every counter from the same class means: the same (merged or all-reduced) "
        "CollapseStats, after its last update()"
    )

    def __init__(self, class_means: Tensor, *, device: torch.device | str | None = None) -> None:
        means = check_tensor("class_means", class_means)
        if means.ndim != 2 or means.shape[0] < 2:
            raise ValueError(
                f"class_means must have shape (num_classes >= 2, dim), got {tuple(means.shape)}"
            )
        super().__init__(device if device is not None else means.device)
        self._means = means.detach().to(self.device, torch.float64).clone()
        present = ~torch.isnan(self._means).any(dim=1)
        if int(present.sum()) < 2:
            raise ValueError("class_means must have at least two non-NaN rows (present classes)")
        self.num_classes, self.dim = self._means.shape
        self._present = torch.nonzero(present).flatten()
        # Distances are translation invariant; measuring them from the mean of the means
        # keeps the float64 products small when the features share a large offset.
        self._origin = self._means[self._present].mean(dim=0)
        self._centred = self._means[self._present] - self._origin
        self._half_sq_norms = 0.5 * self._centred.square().sum(dim=1)
        self.add_state("counts", torch.zeros(4, dtype=torch.int64), reduce="sum")
        self._counts: Tensor

    def _config(self) -> dict[str, Any]:
        return {"class_means": self._means}

    def __repr__(self) -> str:
        return (
            f"NCCMismatchCounter(num_classes={self.num_classes}, dim={self.dim}, "
            f"num_samples={int(self._counts[_TOTAL])})"
        )

    def matches(self, class_means: Tensor) -> bool:
        """Whether this counter was built from exactly these ``(K, d)`` class means."""
        other = class_means.to(self.device, torch.float64)
        return other.shape == self._means.shape and bool(
            torch.equal(torch.isnan(other), torch.isnan(self._means))
            and torch.equal(other.nan_to_num(0.0), self._means.nan_to_num(0.0))
        )

    def nearest_class_mean(self, features: Tensor) -> Tensor:
        """``(B,)`` int64 index of the nearest class mean of each ``(B, d)`` feature row."""
        x = features.to(self.device, torch.float64) - self._origin
        # argmin ||x - m||^2 = argmax (x . m - ||m||^2 / 2)
        scores = x @ self._centred.T - self._half_sq_norms
        return self._present[scores.argmax(dim=1)]

    def update(self, features: Tensor, labels: Tensor, logits: Tensor) -> None:
        """Count one batch.

        Args:
            features: ``(B, d)`` features, the same kind as those the means came from.
            labels: ``(B,)`` true classes (for the two accuracies).
            logits: ``(B, K)`` classifier outputs, ``h @ W.T + b`` for a linear head.
        """
        features, labels = check_batch(features, labels, self.num_classes, self.dim)
        logits = check_tensor("logits", logits)
        if logits.ndim != 2 or tuple(logits.shape) != (features.shape[0], self.num_classes):
            raise ValueError(
                f"logits must have shape ({features.shape[0]}, {self.num_classes}) = "
                f"(batch, num_classes), got {tuple(logits.shape)}"
            )
        if features.shape[0] == 0:
            return
        if not bool(torch.isfinite(logits).all()):
            raise ValueError("logits contain NaN or inf; NC4 needs finite classifier outputs")
        y = labels.to(self.device)
        ncc = self.nearest_class_mean(features)
        clf = logits.detach().to(self.device).argmax(dim=1)
        batch = torch.stack(
            [(ncc != clf).sum(), (ncc == y).sum(), (clf == y).sum(), y.new_tensor(y.numel())]
        )
        self._counts += batch

    def compute(self) -> NCCResult:
        """NC4 and the two accuracies of the samples counted so far.

        Raises:
            ValueError: no sample was counted.
        """
        mismatch, ncc_ok, clf_ok, total = (int(v) for v in self._counts.tolist())
        if total == 0:
            raise ValueError(
                "the NCC counter has seen no samples; update() it with (features, labels, "
                "logits) batches before reading NC4"
            )
        return NCCResult(mismatch / total, ncc_ok / total, clf_ok / total, total)
