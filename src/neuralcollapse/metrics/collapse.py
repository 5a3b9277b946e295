"""Exact, streaming neural-collapse statistics (NC1-NC3) and the report built from them.

:class:`CollapseStats` reads features once, batch by batch, and keeps float64 sums only:
per class k the count ``n_k``, the sum ``s_k`` of ``h - c_k``, the sum ``q_k`` of
``||h - c_k||^2``, and one ``d x d`` scatter ``S = sum_i (h_i - c_{y_i})(h_i - c_{y_i})^T``.
``c_k`` is a per-class shift, set to the class mean of the first batch that holds class k.
Because ``h - c_k`` is of the size of the within-class spread, float64 keeps its digits
whatever the common offset of the features; a plain sum of ``h h^T`` would cancel them
(an offset of 1e3 with a spread of 1e-4 leaves two of sixteen digits). The within-class
scatter is then ``S - sum_k s_k s_k^T / n_k``.

Two accumulators with different shifts are first re-expressed about a common shift (an
exact algebraic identity, see :meth:`CollapseStats._recentre`) and then summed, so
:meth:`CollapseStats.merge` and :meth:`CollapseStats.all_reduce` are exact.

Definitions follow Papyan, Han & Donoho (PNAS 2020) and Zhu et al. (NeurIPS 2021); every
metric is computed over the classes that have samples (``K'`` of them), see
:class:`CollapseReport`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import torch
from torch import Tensor

from neuralcollapse.metrics._checks import (
    check_all_finite,
    check_batch,
    check_bias,
    check_classifier,
    check_finite_rows,
    check_global_mean,
    check_positive_int,
)
from neuralcollapse.metrics.ncc import NCCMismatchCounter

GlobalMean = Literal["weighted", "balanced"]

_STATE_VERSION = 1
# Rows centred at a time: bounds the float64 workspace (rows x d) and keeps it in cache.
_CHUNK_ROWS = 2048
_STATE_TENSORS = ("counts", "shift", "shifted_sums", "shifted_sq_norms", "scatter")


@dataclasses.dataclass(frozen=True)
class CollapseReport:
    """Neural-collapse metrics of one set of features (all values are Python scalars).

    Every metric uses the ``K'`` present classes (those with at least one sample); absent
    classes are listed in ``absent_classes``. ``M~`` is the ``(K', d)`` matrix of class
    means minus the global mean, ``W`` the ``(K', d)`` classifier rows of the present
    classes. Standard deviations are population ones (ddof = 0). A value that is
    undefined for the data (e.g. a cosine with a zero-norm centred mean) is NaN.

    Attributes:
        num_classes: K, the number of classes the statistics were declared with.
        dim: d, the feature dimension.
        num_samples: N, the number of samples seen.
        class_counts: n_k for every class, length K.
        absent_classes: classes with no sample, left out of every metric.
        global_mean: ``"weighted"`` (sample mean) or ``"balanced"`` (mean of class means).
        nc1: tr(Sigma_W Sigma_B^+) / K' with the pseudo-inverse from the top K'-1
            eigenpairs in float64; >= 0. Papyan's notebook omits the 1/K'.
        nc1_cdnv: class-distance normalised variance (Galanti et al.), the mean over class
            pairs of (Var_k + Var_l) / (2 ||mu_k - mu_l||^2).
        nc1_trace_ratio: tr(Sigma_W) / tr(Sigma_B).
        sigma_b_rank: number of eigenpairs of Sigma_B used in ``nc1``.
        nc2_equinorm_means: std / mean of the row norms of M~.
        nc2_equiangular_means: mean over k != l of |cos(M~_k, M~_l) + 1/(K'-1)|.
        nc2_cosine_std_means: std of cos(M~_k, M~_l) over pairs k < l.
        nc2_etf_distance_means: || G/||G||_F - (I - 11^T/K') / sqrt(K'-1) ||_F, G = M~ M~^T.
        nc2_equinorm_classifier, nc2_equiangular_classifier, nc2_cosine_std_classifier,
        nc2_etf_distance_classifier: the same on the rows of W (not centred).
        nc3_self_duality: || W/||W||_F - M~/||M~||_F ||_F^2 (Papyan).
        nc3_zhu: || W M~^T / ||W M~^T||_F - (I - 11^T/K') / sqrt(K'-1) ||_F (Zhu et al.).
        minority_classes: the smallest-count third of the present classes (at least two),
            ties broken by class index.
        minority_cosine: mean pairwise cosine among the classifier rows of the minority
            classes, or among their centred means without a classifier.
        global_mean_logit_norm: ||W mu_G + b|| over all K rows, the quantity [Z21]'s code
            plots under the name "NC4"; it is not NC4.
        nc4_ncc_mismatch: fraction of samples where argmax_k (w_k . h + b_k) differs from
            the nearest class mean; needs a second pass (:class:`NCCMismatchCounter`).
        ncc_accuracy: accuracy of the nearest-class-mean rule on that pass.
        classifier_accuracy: accuracy of the classifier's logits on that pass.
    """

    num_classes: int
    dim: int
    num_samples: int
    class_counts: tuple[int, ...]
    absent_classes: tuple[int, ...]
    global_mean: str
    nc1: float
    nc1_cdnv: float
    nc1_trace_ratio: float
    sigma_b_rank: int
    nc2_equinorm_means: float
    nc2_equiangular_means: float
    nc2_cosine_std_means: float
    nc2_etf_distance_means: float
    minority_classes: tuple[int, ...]
    minority_cosine: float
    nc2_equinorm_classifier: float | None = None
    nc2_equiangular_classifier: float | None = None
    nc2_cosine_std_classifier: float | None = None
    nc2_etf_distance_classifier: float | None = None
    nc3_self_duality: float | None = None
    nc3_zhu: float | None = None
    global_mean_logit_norm: float | None = None
    nc4_ncc_mismatch: float | None = None
    ncc_accuracy: float | None = None
    classifier_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON types: tuples become lists, NaN and inf become None."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, float) and not math.isfinite(value):
                value = None
            out[field.name] = value
        return out


class CollapseStats:
    """Streaming float64 sufficient statistics of features grouped by class.

    Args:
        num_classes: K, the number of classes (labels lie in ``[0, K)``); at least 2.
        dim: d, the feature dimension.
        device: where the statistics live and are accumulated (default CPU). Batches on
            another device are copied here.
        global_mean: ``"weighted"`` (mean over samples) or ``"balanced"`` (mean of the
            class means); they differ under class imbalance.

    Memory: a ``d x d`` and three ``K x d``-sized float64 tensors.
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        device: torch.device | str | None = None,
        global_mean: GlobalMean = "weighted",
    ) -> None:
        check_positive_int("num_classes", num_classes, minimum=2)
        check_positive_int("dim", dim, minimum=1)
        check_global_mean(global_mean)
        self.num_classes = num_classes
        self.dim = dim
        self.global_mean: GlobalMean = global_mean
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        f64 = {"dtype": torch.float64, "device": self.device}
        self._counts = torch.zeros(num_classes, dtype=torch.int64, device=self.device)
        self._shift = torch.zeros(num_classes, dim, **f64)
        self._sums = torch.zeros(num_classes, dim, **f64)
        self._sq_norms = torch.zeros(num_classes, **f64)
        self._scatter = torch.zeros(dim, dim, **f64)
        self._workspace: Tensor | None = None

    def __repr__(self) -> str:
        return (
            f"CollapseStats(num_classes={self.num_classes}, dim={self.dim}, "
            f"device={str(self.device)!r}, global_mean={self.global_mean!r}, "
            f"num_samples={self.num_samples})"
        )

    @property
    def num_samples(self) -> int:
        """N, the number of samples accumulated so far."""
        return int(self._counts.sum())

    @property
    def class_counts(self) -> Tensor:
        """``(K,)`` int64 number of samples per class (a copy)."""
        return self._counts.clone()

    # ----------------------------------------------------------------------------- update
    def update(self, features: Tensor, labels: Tensor) -> None:
        """Add one batch.

        Args:
            features: ``(B, d)`` floating tensor, any device and float dtype.
            labels: ``(B,)`` integer tensor of classes in ``[0, K)``.

        Raises:
            ValueError: wrong shape or dtype, NaN/inf features, labels out of range.
        """
        check_batch(features, labels, self.num_classes, self.dim, finite=False)
        rows = features.shape[0]
        if rows == 0:
            return
        features = features.detach()
        y = labels.to(self.device, torch.int64)
        batch_counts = torch.bincount(y, minlength=self.num_classes)
        first = (self._counts == 0) & (batch_counts > 0)
        shift = self._shift
        if bool(first.any()):
            shift = self._first_shifts(features, y, batch_counts, first)
        if rows > _CHUNK_ROWS:
            # Later chunks are checked after earlier ones were added, so check them all now.
            check_all_finite(features)
        for start in range(0, rows, _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, rows)
            xc = self._centre(features[start:stop], y[start:stop], shift)
            row_sq = torch.einsum("ij,ij->i", xc, xc)
            # Before any state changes, so a rejected batch leaves the sums intact.
            check_finite_rows(row_sq)
            self._scatter.addmm_(xc.T, xc)
            # index_put_ with accumulate is a parallel scatter-add on CPU; index_add_ is
            # several times slower there.
            self._sums.index_put_((y[start:stop],), xc, accumulate=True)
            self._sq_norms.index_put_((y[start:stop],), row_sq, accumulate=True)
        self._shift = shift
        self._counts += batch_counts

    def _centre(self, features: Tensor, y: Tensor, shift: Tensor) -> Tensor:
        """``features - shift[y]`` in float64, written into a reused workspace.

        Reusing one buffer avoids a fresh multi-megabyte allocation (and its page faults)
        per batch; float32 - float64 promotes, so conversion and centring are one kernel.
        """
        rows = features.shape[0]
        if self._workspace is None or self._workspace.shape[0] < rows:
            self._workspace = torch.empty(rows, self.dim, dtype=torch.float64, device=self.device)
        out = self._workspace[:rows]
        torch.index_select(shift, 0, y, out=out)
        return torch.sub(features.to(self.device), out, out=out)

    def _first_shifts(
        self, features: Tensor, y: Tensor, batch_counts: Tensor, first: Tensor
    ) -> Tensor:
        """Shifts with each class seen for the first time moved to its mean in this batch."""
        x = features.to(self.device, torch.float64)
        sums = torch.zeros_like(self._sums).index_put_((y,), x, accumulate=True)
        means = sums / batch_counts.clamp(min=1).unsqueeze(1)
        return torch.where(first.unsqueeze(1), means, self._shift)

    # -------------------------------------------------------------------- merge / reduce
    def _recentre(self, new_shift: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Sums, squared norms and scatter re-expressed about ``new_shift`` (exact).

        With delta_k = c_k - c'_k and x = h - c_k: sum (x + delta)(x + delta)^T =
        S + s delta^T + delta s^T + n delta delta^T, summed over classes; the last three
        terms are A + A^T with A = (s + n delta / 2)^T delta.
        """
        n = self._counts.to(torch.float64).unsqueeze(1)
        delta = torch.where(n > 0, self._shift - new_shift, torch.zeros_like(new_shift))
        half = self._sums + 0.5 * n * delta
        cross = half.T @ delta
        scatter = self._scatter + cross + cross.T
        sums = self._sums + n * delta
        sq_norms = (
            self._sq_norms
            + 2.0 * (self._sums * delta).sum(dim=1)
            + n.squeeze(1) * delta.square().sum(dim=1)
        )
        return sums, sq_norms, scatter

    def _adopt(self, shift: Tensor, counts: Tensor, parts: tuple[Tensor, Tensor, Tensor]):
        self._shift = shift
        self._counts = counts
        self._sums, self._sq_norms, self._scatter = parts

    def merge(self, other: CollapseStats) -> CollapseStats:
        """Add the samples of ``other`` (same K and d) to this accumulator; returns self.

        ``other`` is left unchanged. The result equals one pass over both sets of
        samples up to float64 round-off.
        """
        if not isinstance(other, CollapseStats):
            raise ValueError(
                f"merge() takes a CollapseStats, got {type(other).__name__}; build one "
                "with CollapseStats(num_classes, dim) and update() it"
            )
        if (other.num_classes, other.dim) != (self.num_classes, self.dim):
            raise ValueError(
                f"cannot merge statistics with num_classes={other.num_classes}, "
                f"dim={other.dim} into num_classes={self.num_classes}, dim={self.dim}: "
                "both must be declared with the same K and d"
            )
        theirs = CollapseStats(self.num_classes, self.dim, device=self.device)
        theirs.load_state_dict(other.state_dict())
        n_a = self._counts.to(torch.float64).unsqueeze(1)
        n_b = theirs._counts.to(torch.float64).unsqueeze(1)
        common = _weighted_shift(n_a * self._shift + n_b * theirs._shift, n_a + n_b)
        mine, their = self._recentre(common), theirs._recentre(common)
        parts = tuple(a + b for a, b in zip(mine, their, strict=True))
        self._adopt(common, self._counts + theirs._counts, parts)
        return self

    def all_reduce(self, group: Any = None) -> CollapseStats:
        """Sum the statistics of every rank of ``group`` in place (torch.distributed).

        Every rank must call it, with the same K and d; afterwards every rank holds the
        statistics of all samples. Only sums are exchanged: first the counts and the
        count-weighted shifts (to agree on a common shift), then the re-centred sums.
        Returns self.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                "all_reduce() needs an initialised torch.distributed process group; "
                "call torch.distributed.init_process_group(...) first, or use merge() "
                "within one process"
            )
        counts = self._counts.to(torch.float64).unsqueeze(1)
        packed = torch.cat([counts, counts * self._shift], dim=1)
        dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=group)
        common = _weighted_shift(packed[:, 1:], packed[:, :1])
        sums, sq_norms, scatter = self._recentre(common)
        packed = torch.cat([sums, sq_norms.unsqueeze(1)], dim=1)
        total_counts = self._counts.clone()
        for tensor in (packed, scatter, total_counts):
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
        sums, sq_norms = packed[:, :-1].contiguous(), packed[:, -1].contiguous()
        self._adopt(common, total_counts, (sums, sq_norms, scatter))
        return self

    # ---------------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: K, d, global_mean and the float64 sums (copies)."""
        return {
            "version": _STATE_VERSION,
            "num_classes": self.num_classes,
            "dim": self.dim,
            "global_mean": self.global_mean,
            "counts": self._counts.clone(),
            "shift": self._shift.clone(),
            "shifted_sums": self._sums.clone(),
            "shifted_sq_norms": self._sq_norms.clone(),
            "scatter": self._scatter.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; K and d must match this object's."""
        missing = [k for k in ("version", "num_classes", "dim", *_STATE_TENSORS) if k not in state]
        if missing:
            raise ValueError(
                f"state dict lacks {missing}; pass the dict returned by CollapseStats.state_dict()"
            )
        if state["version"] != _STATE_VERSION:
            raise ValueError(
                f"state dict version {state['version']} is not supported (expected "
                f"{_STATE_VERSION}); recompute the statistics with this version"
            )
        if (state["num_classes"], state["dim"]) != (self.num_classes, self.dim):
            raise ValueError(
                f"state dict has num_classes={state['num_classes']}, dim={state['dim']} but "
                f"this object has num_classes={self.num_classes}, dim={self.dim}; build "
                "CollapseStats with the saved K and d"
            )
        expected = {
            "counts": (self.num_classes,),
            "shift": (self.num_classes, self.dim),
            "shifted_sums": (self.num_classes, self.dim),
            "shifted_sq_norms": (self.num_classes,),
            "scatter": (self.dim, self.dim),
        }
        for name, shape in expected.items():
            if tuple(state[name].shape) != shape:
                raise ValueError(
                    f"state dict entry {name!r} has shape {tuple(state[name].shape)}, "
                    f"expected {shape}; the state dict is corrupt"
                )
        if "global_mean" in state:
            check_global_mean(state["global_mean"])
            self.global_mean = state["global_mean"]
        f64 = {"dtype": torch.float64, "device": self.device}
        self._counts = state["counts"].to(self.device, torch.int64).clone()
        self._shift = state["shift"].to(**f64).clone()
        self._sums = state["shifted_sums"].to(**f64).clone()
        self._sq_norms = state["shifted_sq_norms"].to(**f64).clone()
        self._scatter = state["scatter"].to(**f64).clone()

    # ------------------------------------------------------------------------- results
    def class_means(self) -> Tensor:
        """``(K, d)`` float64 class means; rows of absent classes are NaN."""
        n = self._counts.to(torch.float64).unsqueeze(1)
        means = self._shift + self._sums / n.clamp(min=1)
        return torch.where(n > 0, means, torch.full_like(means, math.nan))

    def ncc_mismatch_counter(self) -> NCCMismatchCounter:
        """A second-pass counter for NC4 holding the current class means, frozen.

        Feed it ``(features, labels, logits)`` batches, then pass it to
        ``compute(..., ncc=counter)``.
        """
        self._require_two_classes()
        return NCCMismatchCounter(self.class_means(), device=self.device)

    def compute(
        self,
        classifier: Tensor | None = None,
        bias: Tensor | None = None,
        *,
        ncc: NCCMismatchCounter | None = None,
    ) -> CollapseReport:
        """All metrics of the accumulated features.

        Args:
            classifier: optional ``(K, d)`` classifier rows W (logits = h @ W.T + b).
            bias: optional ``(K,)`` bias b; it only enters ``global_mean_logit_norm`` (the
                geometric metrics do not depend on it). Needs ``classifier``.
            ncc: an :class:`NCCMismatchCounter` from :meth:`ncc_mismatch_counter` that has
                consumed a second pass; fills ``nc4_ncc_mismatch`` and the accuracies.

        Raises:
            ValueError: fewer than two classes present, overflowed statistics, a classifier
                or bias of the wrong shape, or a counter built from other statistics.
        """
        present = self._require_two_classes()
        if not bool(torch.isfinite(self._scatter).all()):
            raise ValueError(
                "the accumulated scatter is not finite (features too large for float64); "
                "rescale the features before update()"
            )
        w = None
        if classifier is not None:
            w = check_classifier(classifier, self.num_classes, self.dim).to(
                self.device, torch.float64
            )
        if bias is not None:
            if w is None:
                raise ValueError("bias was given without classifier; pass classifier=W too")
            bias = check_bias(bias, self.num_classes).to(self.device, torch.float64)
        geometry = _Geometry.from_stats(self, present)
        values: dict[str, Any] = {
            "num_classes": self.num_classes,
            "dim": self.dim,
            "num_samples": self.num_samples,
            "class_counts": tuple(int(c) for c in self._counts.tolist()),
            "absent_classes": tuple(
                int(k) for k in torch.nonzero(self._counts == 0).flatten().tolist()
            ),
            "global_mean": self.global_mean,
            **geometry.within_between(),
            **_prefixed(_gram_geometry(geometry.gram), "means"),
        }
        vectors = geometry.centred if w is None else w[present]
        minority = _minority_classes(self._counts, present)
        values["minority_classes"] = tuple(int(k) for k in minority.tolist())
        values["minority_cosine"] = _mean_pairwise_cosine(vectors[_positions(present, minority)])
        if w is not None:
            values.update(_classifier_metrics(w, bias, present, geometry))
        if ncc is not None:
            values.update(self._ncc_values(ncc))
        return CollapseReport(**values)

    # ------------------------------------------------------------------------ helpers
    def _require_two_classes(self) -> Tensor:
        present = torch.nonzero(self._counts > 0).flatten()
        if present.numel() < 2:
            raise ValueError(
                f"neural-collapse metrics need samples of at least two classes, got "
                f"{present.numel()} class(es) with samples among {self.num_samples} samples; "
                "update() with features of two or more classes"
            )
        return present

    def _ncc_values(self, ncc: NCCMismatchCounter) -> dict[str, float]:
        if not isinstance(ncc, NCCMismatchCounter):
            raise ValueError(
                f"ncc must be an NCCMismatchCounter, got {type(ncc).__name__}; "
                "create it with stats.ncc_mismatch_counter()"
            )
        if not ncc.matches(self.class_means()):
            raise ValueError(
                "the NCC counter was built from different class means than these "
                "statistics (were more batches added after ncc_mismatch_counter()?); "
                "create the counter after the last update()"
            )
        result = ncc.result()
        return {
            "nc4_ncc_mismatch": result.nc4_ncc_mismatch,
            "ncc_accuracy": result.ncc_accuracy,
            "classifier_accuracy": result.classifier_accuracy,
        }


def _weighted_shift(weighted: Tensor, counts: Tensor) -> Tensor:
    """Count-weighted mean of shifts, zero for classes without samples."""
    return torch.where(counts > 0, weighted / counts.clamp(min=1), torch.zeros_like(weighted))


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """Present-class quantities that several metrics share (all float64)."""

    stats: CollapseStats
    counts: Tensor  # (K',) n_k
    offsets: Tensor  # (K', d) mu_k - c_k
    centred: Tensor  # (K', d) mu_k - mu_G
    global_mean: Tensor  # (d,)
    gram: Tensor  # (K', K') centred @ centred.T

    @classmethod
    def from_stats(cls, stats: CollapseStats, present: Tensor) -> _Geometry:
        counts = stats._counts[present].to(torch.float64)
        offsets = stats._sums[present] / counts.unsqueeze(1)
        means = stats._shift[present] + offsets
        if stats.global_mean == "weighted":
            mu_g = (counts @ means) / counts.sum()
        else:
            mu_g = means.mean(dim=0)
        centred = means - mu_g
        return cls(stats, counts, offsets, centred, mu_g, centred @ centred.T)

    def within_between(self) -> dict[str, Any]:
        """NC1, its CDNV and trace-ratio variants, and the rank used for Sigma_B^+."""
        n, k = self.counts, self.counts.numel()
        sq_norms = self.stats._sq_norms[self.stats._counts > 0]
        # sum_i ||h_i - mu_k||^2 per class: q_k - n_k ||mu_k - c_k||^2 (>= 0 up to round-off).
        class_ss = (sq_norms - n * self.offsets.square().sum(dim=1)).clamp(min=0.0)
        tr_within = float(class_ss.sum() / n.sum())
        tr_between = float(torch.diagonal(self.gram).sum() / k)
        nc1, rank = self._nc1()
        return {
            "nc1": nc1,
            "nc1_cdnv": _cdnv(class_ss / n, self.gram),
            "nc1_trace_ratio": tr_within / tr_between if tr_between > 0 else math.nan,
            "sigma_b_rank": rank,
        }

    def _nc1(self) -> tuple[float, int]:
        k, d = self.counts.numel(), self.stats.dim
        if k <= d:
            return self._nc1_gram()
        return self._nc1_dxd()

    def _within_scatter_between(self, left: Tensor) -> Tensor:
        """left @ (N Sigma_W) @ left.T without forming Sigma_W (left is (m, d))."""
        proj = left @ self.offsets.T
        scatter_part = (left @ self.stats._scatter) @ left.T
        return scatter_part - (proj * self.counts) @ proj.T

    def _nc1_gram(self) -> tuple[float, int]:
        # Sigma_B = M~^T M~ / K' shares its nonzero eigenvalues lambda_j with the Gram
        # G = M~ M~^T (eigenvectors u_j); its eigenvectors are M~^T u_j / sqrt(lambda_j).
        # So tr(Sigma_W Sigma_B^+) / K' = sum_j u_j^T (M~ Sigma_W M~^T) u_j / lambda_j^2:
        # K' x K' work only, no d x d eigendecomposition.
        lam, vec = _top_eigenpairs(self.gram, self.counts.numel() - 1, self.stats.dim)
        if lam.numel() == 0:
            raise _coincident_means()
        within = self._within_scatter_between(self.centred) / self.counts.sum()
        quad = ((vec.T @ within) * vec.T).sum(dim=1).clamp(min=0.0)
        return float((quad / lam.square()).sum()), int(lam.numel())

    def _nc1_dxd(self) -> tuple[float, int]:
        k = self.counts.numel()
        sigma_b = self.centred.T @ self.centred / k
        lam, vec = _top_eigenpairs(sigma_b, k - 1, k)
        if lam.numel() == 0:
            raise _coincident_means()
        correction = (self.offsets * self.counts.unsqueeze(1)).T @ self.offsets
        sigma_w = (self.stats._scatter - correction) / self.counts.sum()
        quad = ((vec.T @ sigma_w) * vec.T).sum(dim=1).clamp(min=0.0)
        return float((quad / lam).sum() / k), int(lam.numel())


def _coincident_means() -> ValueError:
    return ValueError(
        "all present class means coincide, so the between-class covariance is zero and "
        "NC1 is undefined; check that the features depend on the input and the labels"
    )


def _top_eigenpairs(sym: Tensor, count: int, other_dim: int) -> tuple[Tensor, Tensor]:
    """The ``count`` largest eigenpairs of a PSD matrix, dropping round-off eigenvalues.

    An eigenvalue below ``max(n, other_dim) * eps * lambda_max`` is round-off (the same
    rule as numpy.linalg.pinv); inverting it is what makes float32 NC1 negative.
    """
    lam, vec = torch.linalg.eigh(sym)
    lam, vec = lam.flip(0)[:count], vec.flip(1)[:, :count]
    if lam.numel() == 0 or float(lam[0]) <= 0.0:
        return lam[:0], vec[:, :0]
    tol = max(sym.shape[0], other_dim) * torch.finfo(torch.float64).eps * float(lam[0])
    keep = lam > tol
    return lam[keep], vec[:, keep]


def _cdnv(variances: Tensor, gram: Tensor) -> float:
    sq = torch.diagonal(gram)
    dist2 = (sq.unsqueeze(0) + sq.unsqueeze(1) - 2.0 * gram).clamp(min=0.0)
    i, j = torch.triu_indices(gram.shape[0], gram.shape[0], offset=1, device=gram.device)
    ratio = (variances[i] + variances[j]) / (2.0 * dist2[i, j])
    return float(ratio.mean())


def _gram_geometry(gram: Tensor) -> dict[str, float]:
    """NC2 numbers of the vectors whose Gram matrix is ``gram`` (K' x K')."""
    k = gram.shape[0]
    norms = torch.diagonal(gram).clamp(min=0.0).sqrt()
    cos = gram / (norms.unsqueeze(0) * norms.unsqueeze(1))
    i, j = torch.triu_indices(k, k, offset=1, device=gram.device)
    pair_cos = cos[i, j]
    return {
        "equinorm": float(norms.std(correction=0) / norms.mean()),
        "equiangular": float((pair_cos + 1.0 / (k - 1)).abs().mean()),
        "cosine_std": float(pair_cos.std(correction=0)),
        "etf_distance": _etf_distance(gram),
    }


def _etf_distance(matrix: Tensor) -> float:
    """|| A/||A||_F - (I - 11^T/K) / sqrt(K - 1) ||_F for a K x K matrix A."""
    k = matrix.shape[0]
    eye = torch.eye(k, dtype=matrix.dtype, device=matrix.device)
    target = (eye - 1.0 / k) / math.sqrt(k - 1)
    return float(torch.linalg.matrix_norm(matrix / torch.linalg.matrix_norm(matrix) - target))


def _prefixed(values: dict[str, float], suffix: str) -> dict[str, float]:
    return {f"nc2_{name}_{suffix}": value for name, value in values.items()}


def _classifier_metrics(
    w: Tensor, bias: Tensor | None, present: Tensor, geometry: _Geometry
) -> dict[str, float]:
    wp = w[present]
    m = geometry.centred
    w_unit = wp / torch.linalg.matrix_norm(wp)
    m_unit = m / torch.linalg.matrix_norm(m)
    logits_at_mean = w @ geometry.global_mean + (0.0 if bias is None else bias)
    return {
        **_prefixed(_gram_geometry(wp @ wp.T), "classifier"),
        "nc3_self_duality": float((w_unit - m_unit).square().sum()),
        "nc3_zhu": _etf_distance(wp @ m.T),
        "global_mean_logit_norm": float(torch.linalg.vector_norm(logits_at_mean)),
    }


def _minority_classes(counts: Tensor, present: Tensor) -> Tensor:
    """The smallest-count third (at least two) of the present classes, by index on ties."""
    size = max(2, math.ceil(present.numel() / 3))
    order = torch.sort(counts[present], stable=True).indices
    return present[order[:size]].sort().values


def _positions(present: Tensor, classes: Tensor) -> Tensor:
    """Row positions of ``classes`` within ``present`` (both sorted)."""
    return torch.searchsorted(present, classes)


def _mean_pairwise_cosine(vectors: Tensor) -> float:
    unit = vectors / torch.linalg.vector_norm(vectors, dim=1, keepdim=True)
    cos = unit @ unit.T
    i, j = torch.triu_indices(cos.shape[0], cos.shape[0], offset=1, device=cos.device)
    return float(cos[i, j].mean())
