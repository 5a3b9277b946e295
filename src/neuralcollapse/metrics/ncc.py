"""NC4, the second pass: how often the classifier disagrees with the nearest class mean.

The class means are only final after the first pass, so NC4 cannot be accumulated with
the other statistics. :class:`NCCMismatchCounter` freezes the means and counts, over any
number of batches, processes or ranks, the samples where ``argmax_k logits`` differs from
``argmin_k ||h - mu_k||`` (Papyan et al. 2020, NC4).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from neuralcollapse.metrics._checks import _check_tensor, check_batch

# Order of the entries of the counter's int64 state vector.
_MISMATCH, _NCC_CORRECT, _CLASSIFIER_CORRECT, _TOTAL = range(4)


@dataclasses.dataclass(frozen=True)
class NCCResult:
    """What an :class:`NCCMismatchCounter` has counted (fractions in [0, 1])."""

    nc4_ncc_mismatch: float
    ncc_accuracy: float
    classifier_accuracy: float
    num_samples: int


class NCCMismatchCounter:
    """Counts disagreements between a classifier and the nearest-class-mean rule.

    Usually made by :meth:`CollapseStats.ncc_mismatch_counter`; the result is attached to
    a report with ``stats.compute(classifier, ncc=counter)`` or read with :meth:`result`.

    Args:
        class_means: ``(K, d)`` class means; rows of classes without samples are NaN and
            can never be the nearest mean.
        device: where counting happens (default: the device of ``class_means``).
    """

    def __init__(self, class_means: Tensor, *, device: torch.device | str | None = None) -> None:
        means = _check_tensor("class_means", class_means)
        if means.ndim != 2 or means.shape[0] < 2:
            raise ValueError(
                f"class_means must have shape (num_classes >= 2, dim), got {tuple(means.shape)}"
            )
        self.device = torch.device(device) if device is not None else means.device
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
        self._counts = torch.zeros(4, dtype=torch.int64, device=self.device)

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
        check_batch(features, labels, self.num_classes, self.dim)
        logits = _check_tensor("logits", logits)
        if logits.ndim != 2 or tuple(logits.shape) != (features.shape[0], self.num_classes):
            raise ValueError(
                f"logits must have shape ({features.shape[0]}, {self.num_classes}) = "
                f"(batch, num_classes), got {tuple(logits.shape)}"
            )
        if features.shape[0] == 0:
            return
        if not bool(torch.isfinite(logits).all()):
            raise ValueError("logits contain NaN or inf; NC4 needs finite classifier outputs")
        y = labels.to(self.device, torch.int64)
        ncc = self.nearest_class_mean(features)
        clf = logits.detach().to(self.device).argmax(dim=1)
        batch = torch.stack(
            [(ncc != clf).sum(), (ncc == y).sum(), (clf == y).sum(), y.new_tensor(y.numel())]
        )
        self._counts += batch

    def merge(self, other: NCCMismatchCounter) -> NCCMismatchCounter:
        """Add the counts of ``other`` (built from the same means); returns self."""
        if not isinstance(other, NCCMismatchCounter) or not other.matches(self._means):
            raise ValueError(
                "can only merge an NCCMismatchCounter built from the same class means; "
                "create every counter from the same (merged or all-reduced) CollapseStats"
            )
        self._counts += other._counts.to(self.device)
        return self

    def all_reduce(self, group: Any = None) -> NCCMismatchCounter:
        """Sum the counts over the ranks of ``group`` (torch.distributed); returns self."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                "all_reduce() needs an initialised torch.distributed process group; "
                "call torch.distributed.init_process_group(...) first"
            )
        dist.all_reduce(self._counts, op=dist.ReduceOp.SUM, group=group)
        return self

    def state_dict(self) -> dict[str, Tensor]:
        return {"class_means": self._means.clone(), "counts": self._counts.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if "class_means" not in state or "counts" not in state:
            raise ValueError("state dict must come from NCCMismatchCounter.state_dict()")
        if not self.matches(state["class_means"]):
            raise ValueError(
                "the saved counter was built from other class means; "
                "build this counter from the same CollapseStats"
            )
        self._counts = state["counts"].to(self.device, torch.int64).clone()

    def result(self) -> NCCResult:
        """NC4 and the two accuracies of the samples counted so far."""
        mismatch, ncc_ok, clf_ok, total = (int(v) for v in self._counts.tolist())
        if total == 0:
            raise ValueError(
                "the NCC counter has seen no samples; update() it with (features, labels, "
                "logits) batches before reading NC4"
            )
        return NCCResult(mismatch / total, ncc_ok / total, clf_ok / total, total)
