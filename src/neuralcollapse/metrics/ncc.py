"""NC4, the second pass: how often the classifier disagrees with the nearest class mean.

The class means are only final after the first pass, so NC4 cannot be accumulated with
the other statistics. :class:`NCCMismatchCounter` freezes the means and counts, over any
number of batches, processes or ranks, the samples where ``argmax_k logits`` differs from
``argmin_k ||h - mu_k||`` (Papyan et al. 2020, NC4). It follows the accumulator contract
of :mod:`neuralcollapse.metrics.base`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
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
from neuralcollapse.metrics._products import UpperProducts, chunk_rows
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
        within: also accumulate the within-class scatter of the batches projected on the
            class-mean directions, ``C sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T C^T``
            (``K' x K'``, ``C`` the present means minus their mean, rounded to float32
            once), from the same product as the scores: NC1 of a
            ``CollapseStats(scatter=False)`` comes from it (:meth:`projected_scatter`).
            Every label must then be of a class with a mean.
        within_space: ``"means"`` (default): project on the ``K'`` mean directions C as
            above; ``"features"``: keep the whole ``d x d`` within-class scatter (C is
            the identity), for means too ill-conditioned to be a basis in float32.
        within_dtype: the dtype of that projection: ``torch.float32`` (default: rows
            centred by their float32 class mean, the products those of the float32
            scores) or ``torch.float64`` (rows centred by the exact means and projected
            on the exact ``C`` in float64: a product of its own, for float64 features).

    State: ``counts`` (4,) int64: mismatches, NCC hits, classifier hits, samples; with
    ``within``: ``class_counts`` (K,) int64, ``within_scatter`` (K', K') float64 (the
    scatter of the products ``p_i = C (h_i - s_{y_i})`` of rows centred by their float32
    class mean ``s``) and ``within_sums`` (K, K') float64 (their sums per class).

    Accuracy of the projected scatter: the products ``p_i`` come from the float32 scoring
    product (the bound of the NC4 scores), their scatter is multiplied in float32 over
    chunks of at most max(128, min(4096, 2K')) rows and added in float64, like
    :class:`~neuralcollapse.metrics.CollapseStats`'s (in float64 for K' <= 64); the
    shift from ``s`` to the exact means is an exact float64 identity
    (:meth:`projected_scatter`). The per-class sums
    run in float32 over a batch: they enter only through that shift, whose size is the
    float32 rounding of a mean.
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
        within: bool = False,
        within_space: str = "means",
        within_dtype: torch.dtype = torch.float32,
    ) -> None:
        if not isinstance(within, bool):
            raise ValueError(f"within must be True or False, got {within!r}")
        if within_space not in ("means", "features"):
            raise ValueError(f'within_space must be "means" or "features", got {within_space!r}')
        if within_dtype not in (torch.float32, torch.float64):
            raise ValueError(
                f"within_dtype must be torch.float32 or torch.float64, got {within_dtype!r}"
            )
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
            self._means if within else None,
            within_dtype,
            within_space == "means",
        )
        self.add_state("counts", torch.zeros(4, dtype=torch.int64), reduce="sum")
        self._counts: Tensor
        self.within = within
        self.within_dtype = within_dtype
        self.within_space = within_space
        if within:
            k = self.num_classes
            kp = self._present.numel() if within_space == "means" else self.dim
            self._has_mean = present
            self.add_state("class_counts", torch.zeros(k, dtype=torch.int64), reduce="sum")
            f64 = {"dtype": torch.float64}
            self.add_state("within_scatter", torch.zeros(kp, kp, **f64), reduce="sum")
            self.add_state("within_sums", torch.zeros(k, kp, **f64), reduce="sum")
            self._class_counts: Tensor
            self._within_scatter: Tensor
            self._within_sums: Tensor
            self._products = UpperProducts(kp, self.device)
            # update() adds to the blocks of within_scatter on and above the diagonal
            # only; while this is True the blocks below are stale (see _mirror).
            self._lower_stale = False

    def _config(self) -> dict[str, Any]:
        return {
            "class_means": self._means,
            "within": self.within,
            "within_dtype": str(self.within_dtype).removeprefix("torch."),
            "within_space": self.within_space,
        }

    def __repr__(self) -> str:
        return (
            f"NCCMismatchCounter(num_classes={self.num_classes}, dim={self.dim}, "
            f"within={self.within}, num_samples={int(self._counts[_TOTAL])})"
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
        if self.within and not bool(self._has_mean[y].all()):
            absent = sorted({int(k) for k in y[~self._has_mean[y]].tolist()})
            raise ValueError(
                f"labels of classes {absent} have no class mean, so their within-class "
                "scatter is undefined (within=True); feed the second pass the samples of the "
                "first"
            )
        ncc, clf = self._fast.predict(
            features.detach().to(self.device),
            logits is None,
            labels=y if self.within else None,
            projected=self._add_projected if self.within else None,
        )
        if clf is None:
            clf = logits.detach().to(self.device).argmax(dim=1)
        batch = torch.stack(
            [(ncc != clf).sum(), (ncc == y).sum(), (clf == y).sum(), y.new_tensor(y.numel())]
        )
        self._counts += batch

    def _add_projected(self, products: Tensor, labels: Tensor) -> None:
        """Add the ``(B, K')`` products ``C (h - s_y)`` of one batch (see ``within``).

        At most ``_FLOAT64_WIDTH`` columns are multiplied in float64: there the products
        cost little beside the scores, and the float32 rounding of sums over the rows,
        which NC1 weighs by the inverse squared spread of the means, is gone."""
        if products.shape[1] <= _FLOAT64_WIDTH:
            products = products.double()
        chunk = chunk_rows(products.dtype, products.shape[1])
        for start in range(0, products.shape[0], chunk):
            self._products.add(products[start : start + chunk], self._within_scatter)
        self._lower_stale = True
        if products.dtype == torch.float64:
            self._within_sums.index_add_(0, labels, products)
        else:  # a reused float32 buffer, cleared per batch
            sums = self._fast._buffer("class_sums", *self._within_sums.shape, products.dtype)
            self._within_sums.add_(sums.zero_().index_add_(0, labels, products))
        self._class_counts += torch.bincount(labels, minlength=self.num_classes)

    def _mirror(self) -> None:
        """Make within_scatter whole (only its upper blocks were added to)."""
        if self.within and self._lower_stale:
            self._products.mirror(self._within_scatter)
            self._lower_stale = False

    def projected_scatter(self) -> tuple[Tensor, Tensor | None, Tensor]:
        """The within-class scatter about the exact class means, projected: ``(K', K')``
        float64 ``C sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T C^T``, with the ``(K', d)``
        basis ``C`` it was projected on (the present means minus their float32 mean, in
        ``within_dtype``: rounded to float32 by default), and ``(K,)`` int64 samples per
        class. Needs ``within``.
        With ``within_space="features"``: the ``(d, d)`` scatter itself, and None for C.

        With ``p_i = C (h_i - s_k)`` for a sample of class k and ``delta_k = C (s_k -
        mu_k)``: ``sum_i (p_i + delta)(p_i + delta)^T = sum_i p_i p_i^T + A^T D + D^T A``,
        D the rows delta_k, A the rows ``sum_{i in k} p_i + n_k delta_k / 2``.
        """
        if not self.within:
            raise ValueError(
                "this counter was built without within=True, so it holds no projected scatter"
            )
        self._mirror()
        assert self._fast.class_shifts is not None
        basis = self._fast.basis
        if self.within_dtype == torch.float64:  # centred by the exact means: no shift
            return self._within_scatter.clone(), basis, self._class_counts.clone()
        rows = slice(None) if self._present.numel() == self.num_classes else self._present
        deltas = torch.sub(self._fast.class_shifts[rows], self._means[rows])  # float64
        if basis is not None:
            # s - mu is the float32 rounding of each mean, so this whole correction is of
            # that size: one float32 product of it errs by u times a u-sized term.
            deltas = (deltas.float() @ basis.T).double()
        counts = self._class_counts[rows].to(torch.float64)
        half = self._within_sums[rows] + 0.5 * counts.unsqueeze(1) * deltas
        cross = half.T @ deltas
        return self._within_scatter + cross + cross.T, basis, self._class_counts.clone()

    def reset(self) -> None:
        super().reset()
        self._lower_stale = False

    def _merge(self, other: Accumulator) -> None:
        assert isinstance(other, NCCMismatchCounter)
        other._mirror()
        super()._merge(other)

    def _all_reduce(self, group: Any) -> None:
        self._mirror()  # every rank sends a whole matrix
        super()._all_reduce(group)

    def state_dict(self) -> dict[str, Any]:
        self._mirror()
        return super().state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._lower_stale = False

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


# Widths of the projected scatter up to which its products are taken in float64.
_FLOAT64_WIDTH = 64
# Unit roundoff of float32: every float32 operation errs by at most this relative amount.
_U32 = 2.0**-24


class _FastScores:
    """Exact argmaxes of the nearest-class-mean scores and of linear logits from one
    float32 product.

    For float32 (or narrower) features both scores come from one GEMM of the rows
    ``x - s`` with the stacked ``[C; W]`` rows (``C`` the means minus their float32
    origin ``o``), plus a constant per class, or per (row's class, class) with
    ``class_means``. The shift ``s`` of a row is the float32 class mean of its label
    with ``class_means`` (the rows are then small, and their products ``(x - s) C^T`` are
    what the projected within-class scatter needs), else ``o`` when the features share an
    offset larger than the means' spread (the products stay small), else zero (no
    centring pass). The constant of shift ``s`` is ``(s - o) . v + c_v`` (``c_v`` the
    float64 constant of shift ``o``, rounded once), its product taken in float32 too.

    A row's float32 score differs from the exact one by at most ``a ||x - s|| max_k
    ||v_k||`` plus the error of its constant, ``a ||s - o|| max_k ||v_k||`` and three
    roundings of the constant (``a = (d + 3) u / (1 - (d + 3) u) + 3 u``, u the float32
    unit roundoff: the roundings of the centred row, of each class vector, of the
    product's accumulation and of the final sum), so where no rival score comes within
    twice that of the row's top score, the float32 argmax is the exact one. The few rows
    closer than that are scored again in float64, the way the float64 path scores every
    row: the result equals the all-float64 computation's, at the cost of one float32
    product.
    """

    def __init__(
        self,
        centred: Tensor,
        half_sq_norms: Tensor,
        origin: Tensor,
        present: Tensor,
        classifier: Tensor | None,
        bias: Tensor | None,
        class_means: Tensor | None = None,
        projection_dtype: torch.dtype = torch.float32,
        project_on_means: bool = True,
    ) -> None:
        self.centred, self.half_sq_norms, self.origin = centred, half_sq_norms, origin
        self.present = present
        self.classifier, self.bias = classifier, bias
        self.num_means = centred.shape[0]
        rows = self.num_means + (0 if classifier is None else classifier.shape[0])
        self.stacked32 = torch.empty(rows, centred.shape[1], device=centred.device)
        self.stacked32[: self.num_means].copy_(centred)
        self.norms = [float(torch.linalg.vector_norm(centred, dim=1).max())]
        if classifier is not None:
            self.stacked32[self.num_means :].copy_(classifier)
            self.norms.append(float(torch.linalg.vector_norm(classifier, dim=1).max()))
        self._scratch: dict[str, Tensor] = {}  # reused float32 buffers
        # the constants of the shift o, in float64: exact scores = (x - o) . v + constant
        constants = [-half_sq_norms]
        if classifier is not None:
            constants.append(classifier @ origin + (0.0 if bias is None else bias))
        origin_constant = torch.cat(constants)
        self.centre = float(origin.norm()) > self.norms[0]
        self.shifts32 = origin.float().unsqueeze(0) if self.centre else None
        constant = origin_constant
        if not self.centre:  # shift zero: exact scores = x . v + constant
            constants[0] = centred @ (-origin) - half_sq_norms
            if classifier is not None:
                constants[1] = torch.zeros_like(constants[1]) if bias is None else bias
            constant = torch.cat(constants)
        self.table32 = constant.float().unsqueeze(0)
        self.table_error = self._rounding_error(constant.unsqueeze(0))
        # the projection of within=True: rows centred by their class mean s (float32
        # means, or the exact float64 ones) times the basis C in that dtype; classes
        # without a mean are centred on o (NCCMismatchCounter refuses their labels)
        self.class_shifts = self.basis = self.class_table32 = self.class_table_error = None
        if class_means is not None:
            shifts = torch.where(torch.isnan(class_means), origin, class_means)
            self.class_shifts = shifts.to(projection_dtype)
            if project_on_means:  # else the identity: the rows themselves
                self.basis = centred if projection_dtype == torch.float64 else self.stacked32
                self.basis = self.basis[: self.num_means]
            if projection_dtype == torch.float32:
                self.class_table32, self.class_table_error = self._constant_table(
                    origin_constant, self.class_shifts
                )

    def _blocks(self) -> list[slice]:
        blocks = [slice(0, self.num_means)]
        if self.classifier is not None:
            blocks.append(slice(self.num_means, self.stacked32.shape[0]))
        return blocks

    def _rounding_error(self, exact: Tensor) -> Tensor:
        """``(S, blocks)`` float32 bound on three roundings of each block of the ``(S,
        width)`` constant rows of size ``exact``."""
        return torch.stack(
            [3 * _U32 * exact[:, block].abs().amax(dim=1) for block in self._blocks()], dim=1
        ).float()

    def _constant_table(self, origin_constant: Tensor, shifts32: Tensor) -> tuple[Tensor, Tensor]:
        """The ``(S, width)`` float32 constants ``(s - o) . v + c_v`` of the ``(S, d)``
        float32 shifts, and ``(S, blocks)`` bounds on their error."""
        offsets = shifts32 - self.origin.float()
        table = torch.addmm(origin_constant.float(), offsets, self.stacked32.T)
        offset_norms = torch.linalg.vector_norm(offsets, dim=1)
        accumulation = _accumulation(shifts32.shape[1])
        product_error = torch.stack([accumulation * offset_norms * n for n in self.norms], dim=1)
        bound = table.abs() + origin_constant.float().abs()
        return table, product_error + self._rounding_error(bound)

    def _buffer(self, name: str, rows: int, width: int, dtype: torch.dtype) -> Tensor:
        """A reused contiguous ``(rows, width)`` scratch (a fresh multi-megabyte tensor per
        batch costs its page faults each time)."""
        buffer = self._scratch.get(name)
        if buffer is None or buffer.dtype != dtype or buffer.numel() < rows * width:
            buffer = torch.empty(rows * width, dtype=dtype, device=self.stacked32.device)
            self._scratch[name] = buffer
        return buffer[: rows * width].view(rows, width)

    def _exact_ncc(self, x: Tensor) -> Tensor:
        scores = (x.to(torch.float64) - self.origin) @ self.centred.T - self.half_sq_norms
        return scores.argmax(dim=1)

    def _exact_logits(self, x: Tensor) -> Tensor:
        logits = x.to(torch.float64) @ self.classifier.T
        return (logits if self.bias is None else logits + self.bias).argmax(dim=1)

    def predict(
        self,
        x: Tensor,
        classifier: bool,
        labels: Tensor | None = None,
        projected: Callable[[Tensor, Tensor], None] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``(B,)`` nearest-class-mean indices (into all K classes) and, when
        ``classifier``, ``(B,)`` argmax of ``x @ W.T + b``; ``x`` is ``(B, d)``.

        With ``projected`` (which needs ``labels`` and ``class_means``), the rows are
        centred by the mean of their class (``s``, in the projection's dtype) and
        ``projected(P, labels)`` receives ``P = (x - s) C^T``, ``(B, K')``, or ``x - s``
        itself, ``(B, d)``, when there is no basis C (the d x d scatter)."""
        fast = x.dtype != torch.float64 and _float32_products_are_ieee(x.device)
        by_class = projected is not None and fast and self.class_table32 is not None
        if not fast or projected is not None and not by_class:
            check_all_finite(x)
        if projected is not None and not by_class:  # the projection in float64
            assert labels is not None and self.class_shifts is not None
            rows = x.to(torch.float64) - self.class_shifts.double()[labels]
            projected(rows if self.basis is None else rows @ self.basis.double().T, labels)
        if not fast:
            clf = self._exact_logits(x) if classifier else None
            return self.present[self._exact_ncc(x)], clf
        shifts = self.class_shifts if by_class else self.shifts32
        table = self.class_table32 if by_class else self.table32
        table_error = self.class_table_error if by_class else self.table_error
        rows, width = x.shape[0], self.stacked32.shape[0] if classifier else self.num_means
        xs = self._centred(x, shifts, labels if by_class else None)
        row_norms = torch.linalg.vector_norm(xs, dim=1)
        if not bool(torch.isfinite(row_norms.sum())):
            check_all_finite(x)  # names the bad rows
            check_all_finite(xs)  # finite rows whose centring overflowed float32
        scores = self._buffer("scores", rows, width, torch.float32)
        if by_class:
            assert labels is not None and projected is not None and table is not None
            torch.mm(xs, self.stacked32[:width].T, out=scores)
            projected(xs if self.basis is None else scores[:, : self.num_means], labels)
            constants = self._buffer("constants", rows, width, torch.float32)
            scores.add_(torch.index_select(table[:, :width], 0, labels, out=constants))
            table_error = table_error[labels]
        else:
            torch.addmm(table[0, :width], xs, self.stacked32[:width].T, out=scores)
        accumulation = _accumulation(x.shape[1])
        # Twice the worst error of one float32 score, 10% added for the bound's own
        # rounding.
        tolerances = [
            2.2 * (accumulation * row_norms * norm + table_error[:, block])
            for block, norm in enumerate(self.norms[: 2 if classifier else 1])
        ]
        ncc = _checked_argmax(scores[:, : self.num_means], tolerances[0], x, self._exact_ncc)
        clf = None
        if classifier:
            clf = _checked_argmax(scores[:, self.num_means :], tolerances[1], x, self._exact_logits)
        return self.present[ncc], clf

    def _centred(self, x: Tensor, shifts: Tensor | None, labels: Tensor | None) -> Tensor:
        """``x`` as float32 minus its shift (the row of ``shifts`` at its label, or the
        one row of ``shifts``), in a reused buffer; ``x`` itself as float32 when there is
        no shift."""
        if shifts is None:
            return x.float()
        out = self._buffer("centred", x.shape[0], x.shape[1], torch.float32)
        if labels is None:
            return torch.sub(x, shifts, out=out)
        torch.index_select(shifts, 0, labels, out=out)
        return torch.sub(x, out, out=out)


def _accumulation(dim: int) -> float:
    """The relative error factor ``a`` of a float32 dot product of length ``dim`` with
    one rounding of each operand and of the result (see :class:`_FastScores`)."""
    return (dim + 3) * _U32 / (1 - (dim + 3) * _U32) + 3 * _U32


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
