"""NC4, the second pass: how often the classifier disagrees with the nearest class mean.

The class means are only final after the first pass, so NC4 cannot be accumulated with
the other statistics. :class:`NCCMismatchCounter` freezes the means and counts, over any
number of batches, processes or ranks, the samples where ``argmax_k logits`` differs from
``argmin_k ||h - mu_k||`` (Papyan et al. 2020, NC4). It follows the accumulator contract
of :mod:`neuralcollapse.metrics.base`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from neuralcollapse.metrics._checks import (
    check_all_finite,
    check_batch,
    check_bias,
    check_classifier,
    check_features,
    check_tensor,
)
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
        classifier: optional ``(K, d)`` rows W (and ``bias`` (K,)): batches given without
            logits are scored with ``h @ W.T + b``, in the same product as the distances.

    State: ``counts`` (4,) int64: mismatches, NCC hits, classifier hits, samples.
    """

    _compatibility_hint = (
        "build every counter from the same class means: the same (merged or all-reduced) "
        "CollapseStats, after its last update()"
    )

    def __init__(
        self,
        class_means: Tensor,
        *,
        device: torch.device | str | None = None,
        classifier: Tensor | None = None,
        bias: Tensor | None = None,
    ) -> None:
        means = check_tensor("class_means", class_means)
        if means.ndim != 2 or means.shape[0] < 2:
            raise ValueError(
                f"class_means must have shape (num_classes >= 2, dim), got {tuple(means.shape)}"
            )
        super().__init__(device if device is not None else means.device)
        self._means = means.detach().to(self.device, torch.float64).clone()
        # The tensor the means came from, and its version: matches() of that same,
        # unmodified tensor needs no element-wise comparison.
        self._source = (class_means, class_means._version)
        present = ~torch.isnan(self._means).any(dim=1)
        if int(present.sum()) < 2:
            raise ValueError("class_means must have at least two non-NaN rows (present classes)")
        self.num_classes, self.dim = self._means.shape
        self._present = torch.nonzero(present).flatten()
        present_means = (
            self._means if self._present.numel() == self.num_classes else self._means[present]
        )
        # Distances are translation invariant; measuring them from the mean of the means
        # keeps the products small when the features share a large offset. The origin is a
        # float32 number, so float32 features are centred on it with one rounding.
        self._origin = present_means.mean(dim=0).float().double()
        self._centred = present_means - self._origin
        self._half_sq_norms = 0.5 * torch.linalg.vecdot(self._centred, self._centred)
        self._classifier = self._bias = None
        if classifier is not None:
            w = check_classifier(classifier, self.num_classes, self.dim)
            self._classifier = w.to(self.device, torch.float64)
            if bias is not None:
                self._bias = (
                    check_bias(bias, self.num_classes).detach().to(self.device, torch.float64)
                )
        self._fast = _FastScores(
            self._centred,
            self._half_sq_norms,
            self._origin,
            self._present,
            self._classifier,
            self._bias,
        )
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
        source, version = self._source
        if class_means is source and class_means._version == version:
            return True
        other = class_means.to(self.device, torch.float64)
        return other.shape == self._means.shape and bool(
            torch.equal(torch.isnan(other), torch.isnan(self._means))
            and torch.equal(other.nan_to_num(0.0), self._means.nan_to_num(0.0))
        )

    def nearest_class_mean(self, features: Tensor) -> Tensor:
        """``(B,)`` int64 index of the nearest class mean of each ``(B, d)`` feature row."""
        features = check_features(features, self.dim).detach().to(self.device)
        return self._fast.predict(features, classifier=False)[0]

    def update(self, features: Tensor, labels: Tensor, logits: Tensor | None = None) -> None:
        """Count one batch.

        Args:
            features: ``(B, d)`` features, the same kind as those the means came from.
            labels: ``(B,)`` true classes (for the two accuracies).
            logits: ``(B, K)`` classifier outputs, ``h @ W.T + b`` for a linear head; None
                when the counter was built with a ``classifier`` (its logits are then
                computed here, together with the distances).
        """
        features, labels = check_batch(features, labels, self.num_classes, self.dim, finite=False)
        if logits is None and self._classifier is None:
            raise ValueError(
                "update() needs logits, or a counter built with classifier=W "
                "(stats.ncc_mismatch_counter(classifier=W))"
            )
        if logits is not None:
            logits = check_tensor("logits", logits)
            if logits.ndim != 2 or tuple(logits.shape) != (features.shape[0], self.num_classes):
                raise ValueError(
                    f"logits must have shape ({features.shape[0]}, {self.num_classes}) = "
                    f"(batch, num_classes), got {tuple(logits.shape)}"
                )
        if features.shape[0] == 0:
            return
        if logits is not None and not bool(torch.isfinite(logits.sum(dim=1)).all()):
            raise ValueError("logits contain NaN or inf; NC4 needs finite classifier outputs")
        y = labels.to(self.device)
        ncc, clf = self._fast.predict(features.detach().to(self.device), logits is None)
        if clf is None:
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


# Unit roundoff of float32: every float32 operation errs by at most this relative amount.
_U32 = 2.0**-24


class _FastScores:
    """Exact argmaxes of the nearest-class-mean scores and of linear logits from one
    float32 product.

    For float32 (or narrower) features both scores come from one GEMM of the rows
    ``x - s`` with the stacked ``[M~; W]`` rows, plus a float64 constant per class. ``s``
    is the float32 origin of the means when the features share an offset larger than the
    means' spread (then the products stay small), else zero (no centring pass). A row's
    float32 scores differ from the exact ones by at most ``(d + 3) u ||x - s|| max_k
    ||v_k||`` plus a rounding of the constant (u the float32 unit roundoff: one rounding
    of the centred row, one of each class vector, the dot product's accumulation bound),
    so where no rival score comes within twice that of the row's top score, the float32
    argmax is the exact one. The few rows closer than that are scored again in float64,
    the way the float64 path scores every row: the result equals the all-float64
    computation's, at the cost of one float32 product.
    """

    def __init__(
        self,
        centred: Tensor,
        half_sq_norms: Tensor,
        origin: Tensor,
        present: Tensor,
        classifier: Tensor | None,
        bias: Tensor | None,
    ) -> None:
        self.centred, self.half_sq_norms, self.origin = centred, half_sq_norms, origin
        self.present = present
        self.classifier, self.bias = classifier, bias
        self.num_means = centred.shape[0]
        rows = self.num_means + (0 if classifier is None else classifier.shape[0])
        self.stacked32 = torch.empty(rows, centred.shape[1], device=centred.device)
        self.stacked32[: self.num_means].copy_(centred)
        self.mean_norm = float(torch.linalg.vector_norm(centred, dim=1).max())
        self.classifier_norm = 0.0
        if classifier is not None:
            self.stacked32[self.num_means :].copy_(classifier)
            self.classifier_norm = float(torch.linalg.vector_norm(classifier, dim=1).max())
        self._scores = torch.empty(0, device=centred.device)  # reused float32 scratch
        self.centre = float(origin.norm()) > self.mean_norm
        shift = origin if self.centre else torch.zeros_like(origin)
        self.shift32 = shift.float() if self.centre else None
        # exact scores = (x - s) . v + constant, the constants in float64
        ncc_constant = centred @ (shift - origin) - half_sq_norms
        constants = [ncc_constant]
        if classifier is not None:
            constants.append(classifier @ shift + (0.0 if bias is None else bias))
        constant = torch.cat(constants)
        self.constant32 = constant.float()
        self.max_constant = [float(c.abs().max()) for c in constants]

    def _scores_buffer(self, rows: int, width: int) -> Tensor:
        """A reused contiguous ``(rows, width)`` float32 scratch (a fresh multi-megabyte
        tensor per batch costs its page faults each time)."""
        if self._scores.numel() < rows * width:
            self._scores = torch.empty(rows * width, device=self.stacked32.device)
        return self._scores[: rows * width].view(rows, width)

    def _exact_ncc(self, x: Tensor) -> Tensor:
        scores = (x.to(torch.float64) - self.origin) @ self.centred.T - self.half_sq_norms
        return scores.argmax(dim=1)

    def _exact_logits(self, x: Tensor) -> Tensor:
        logits = x.to(torch.float64) @ self.classifier.T
        return (logits if self.bias is None else logits + self.bias).argmax(dim=1)

    def predict(self, x: Tensor, classifier: bool) -> tuple[Tensor, Tensor | None]:
        """``(B,)`` nearest-class-mean indices (into all K classes) and, when
        ``classifier``, ``(B,)`` argmax of ``x @ W.T + b``; ``x`` is ``(B, d)``."""
        if x.dtype == torch.float64 or not _float32_products_are_ieee(x.device):
            check_all_finite(x)
            clf = self._exact_logits(x) if classifier else None
            return self.present[self._exact_ncc(x)], clf
        xs = x.float() - self.shift32 if self.centre else x.float()
        row_norms = torch.linalg.vector_norm(xs, dim=1)
        if not bool(torch.isfinite(row_norms.sum())):
            check_all_finite(x)  # names the bad rows
            check_all_finite(xs)  # finite rows whose centring overflowed float32
        width = self.stacked32.shape[0] if classifier else self.num_means
        scores = self._scores_buffer(xs.shape[0], width)
        torch.addmm(self.constant32[:width], xs, self.stacked32[:width].T, out=scores)
        # Twice the worst error of one float32 score, 10% added for the bound's own
        # rounding: the product's (d + 3) u ||x - s|| ||v|| plus one rounding of the
        # constant and one of the sum.
        dim = x.shape[1]
        accumulation = (dim + 3) * _U32 / (1 - (dim + 3) * _U32) + 3 * _U32
        ncc_tolerance = 2.2 * (
            accumulation * row_norms * self.mean_norm + 3 * _U32 * self.max_constant[0]
        )
        ncc = _checked_argmax(scores[:, : self.num_means], ncc_tolerance, x, self._exact_ncc)
        clf = None
        if classifier:
            tolerance = 2.2 * (
                accumulation * row_norms * self.classifier_norm + 3 * _U32 * self.max_constant[1]
            )
            clf = _checked_argmax(scores[:, self.num_means :], tolerance, x, self._exact_logits)
        return self.present[ncc], clf


def _float32_products_are_ieee(device: torch.device) -> bool:
    """Whether float32 matrix products on ``device`` round as IEEE float32 (the error
    bound assumes it): not when TF32 or bf16 products are allowed."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    return not (device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)


def _checked_argmax(
    scores: Tensor, tolerance: Tensor, x: Tensor, exact: Callable[[Tensor], Tensor]
) -> Tensor:
    """Row argmax of ``scores`` (B, J) where no other entry comes within ``tolerance``
    (B,) of the row's maximum, else ``exact(x[rows])``. ``scores`` is scratch: its
    entries are left changed."""
    top, index = scores.max(dim=1)
    # The runner-up: the maximum with each row's top entry taken out. Two row reductions
    # cost less than a (B, J) mask of rivals (measured: 14 against 24 ms at B=8192, J=1000).
    scores.scatter_(1, index.unsqueeze(1), float("-inf"))
    close = torch.nonzero(scores.amax(dim=1) >= top - tolerance).flatten()
    if close.numel():
        index[close] = exact(x[close])
    return index
