"""Hierarchy-aware evaluation: how severe the mistakes are, not only how many.

D is the (K, K) matrix of LCA distances of the class tree (0 on the diagonal;
``Hierarchy.lca_heights(convention)``, docs/theory.md §7). For N samples with true class
y_i, let r_i(1), r_i(2), ... be the classes ranked by score and d_i(j) = D[y_i, r_i(j)]
(0 where the prediction is correct); W is the set of samples whose top-1 is wrong. The
metrics, under the names of making-better-mistakes [Bertinetto 2020] (whose evaluation
code [L23] and CRM [Karthik 2021] reuse):

* ``top1_error`` = |W| / N.
* ``mistake_severity`` = (1/|W|) sum_{i in W} d_i(1): the mean LCA distance of the wrong
  top-1 predictions (their "average mistake severity").
* ``hier_dist@k`` = (1/N) sum_i (1/k) sum_{j<=k} d_i(j): over ALL samples, the mean
  distance of the top-k predictions, correct ones counting 0 (their "average hierarchical
  distance@k", ``ilsvrc_dist_avg/k``). At k = 1 it is top1_error * mistake_severity.
* ``mistakes@k`` = (1/|W|) sum_{i in W} (1/k) sum_{j<=k} d_i(j): the same mean over the
  samples whose top-1 is wrong only (their ``ilsvrc_dist_mistakes/avg k``); at k = 1 it
  is the mistake severity.
* ``best_hier_dist@k`` = (1/N) sum_i min_{j<=k} d_i(j): the distance of the best of the
  top k (their "best hierarchical distance@k", ``ilsvrc_dist_top/k``); 0 when the true
  class is among the top k.

Ranking and ties: by default (``ties="lower_index"``) classes are ranked by a stable
descending sort of the scores, so equal scores rank the lower class index first (as
``torch.argmax`` picks the first maximum for top-1, and as CRM's code breaks ties).
making-better-mistakes' code takes ``torch.topk``, whose order of tied scores is
unspecified (it differs between devices and versions); ``ties="topk"`` ranks exactly as
``torch.topk`` does on the given device. With real-valued float32 logits ties are rare
and the numbers agree; on low-precision (float16 / bfloat16) logits ties are common and
hier-dist@k can differ between the two.

making-better-mistakes selects the mistaken samples by d_i(1) != 0 rather than by
r_i(1) != y_i; the two agree whenever distinct classes have distance > 0 (always for a
tree). Their code averages per-batch means over equal-sized batches (it drops the last
incomplete batch); here everything is an exact mean over every sample given, accumulated
as sums in :class:`HierarchicalCounter`, which merges across batches and processes (the
accumulator contract of :mod:`neuralcollapse.metrics.base`). :func:`crm_predict` is the
post-hoc CRM decoding of [Karthik 2021].
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from neuralcollapse._internal.checks import check_labels
from neuralcollapse.hierarchy import DEFAULT_CONVENTION, distance_matrix
from neuralcollapse.metrics.base import Accumulator

if TYPE_CHECKING:
    from neuralcollapse.hierarchy import ClassDistances, Hierarchy

    TreeLike = Hierarchy | ClassDistances | Tensor

__all__ = [
    "HierarchicalCounter",
    "best_hierarchical_distance_at_k",
    "crm_predict",
    "hierarchical_distance_at_k",
    "mistake_severity",
    "mistakes_at_k",
    "rank_classes",
    "top1_error",
]


TIES = ("lower_index", "topk")


def rank_classes(scores: Tensor, k: int, *, ties: str = "lower_index") -> Tensor:
    """(N, k) class indices of the k highest scores, best first.

    Args:
        scores: (N, K) logits or probabilities.
        k: 1..K.
        ties: ``"lower_index"``: tied scores rank the lower class index first (a stable
            descending sort); ``"topk"``: ``torch.topk``'s order (making-better-mistakes'
            code), unspecified among ties.
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    if not isinstance(scores, Tensor) or scores.ndim != 2:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"expected (N, K) logits or probabilities, got {shape}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be an integer in 1..{scores.shape[1]}, got {k!r}")
    if ties == "topk":
        return torch.topk(scores, k, dim=1).indices
    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]


def top1_error(logits_or_preds: Tensor, labels: Tensor) -> float:
    """Fraction of samples whose top-1 prediction differs from the label.

    ``logits_or_preds``: (N, K) scores (top-1 = first maximum) or (N,) predicted classes.
    """
    preds = logits_or_preds.argmax(1) if logits_or_preds.ndim == 2 else logits_or_preds
    return float((preds != labels).double().mean())


def _one(scores: Tensor, labels: Tensor, lca: TreeLike, k: int, key: str, convention: str) -> float:
    counter = HierarchicalCounter(lca, ks=(k,), convention=convention)
    counter.update(scores, labels)
    return counter.compute()[key]


def mistake_severity(
    logits_or_preds: Tensor,
    labels: Tensor,
    lca: TreeLike,
    *,
    convention: str = DEFAULT_CONVENTION,
) -> float:
    """Mean LCA distance between the top-1 prediction and the truth over the samples
    whose top-1 is wrong [Bertinetto 2020].

    ``logits_or_preds``: (N, K) scores or (N,) predicted classes; ``lca``: a Hierarchy,
    ClassDistances or (K, K) distances (``convention`` applies to a Hierarchy). NaN
    when there is no mistake (the severity of no mistakes is undefined, not 0).
    """
    return _one(logits_or_preds, labels, lca, 1, "mistake_severity", convention)


def hierarchical_distance_at_k(
    logits: Tensor, labels: Tensor, lca: TreeLike, k: int, *, convention: str = DEFAULT_CONVENTION
) -> float:
    """hier-dist@k [Bertinetto 2020]: (1/N) sum_i (1/k) sum_{j<=k} D[y_i, r_i(j)], over
    all samples, correct predictions counting 0."""
    return _one(logits, labels, lca, k, f"hier_dist@{k}", convention)


def mistakes_at_k(
    logits: Tensor, labels: Tensor, lca: TreeLike, k: int, *, convention: str = DEFAULT_CONVENTION
) -> float:
    """making-better-mistakes' mistakes@k: the mean of (1/k) sum_{j<=k} D[y_i, r_i(j)]
    over the samples whose top-1 is wrong (NaN if there are none)."""
    return _one(logits, labels, lca, k, f"mistakes@{k}", convention)


def best_hierarchical_distance_at_k(
    logits: Tensor, labels: Tensor, lca: TreeLike, k: int, *, convention: str = DEFAULT_CONVENTION
) -> float:
    """Best-of-top-k [Bertinetto 2020]: (1/N) sum_i min_{j<=k} D[y_i, r_i(j)]."""
    return _one(logits, labels, lca, k, f"best_hier_dist@{k}", convention)


def crm_predict(probs: Tensor, lca: TreeLike, *, convention: str = DEFAULT_CONVENTION) -> Tensor:
    """Conditional risk minimisation [Karthik 2021]: the class with the least expected
    LCA cost.

    ``probs`` (N, K) class probabilities (e.g. a softmax); returns (N,) argmin_k sum_j
    p_j D[k, j] (ties: the lower class index). Post hoc: no retraining. For top-k metrics
    pass ``-probs @ D.T`` as scores.
    """
    lca = distance_matrix(lca, convention=convention)
    if probs.ndim != 2 or probs.shape[1] != lca.shape[0]:
        raise ValueError(
            f"lca is {tuple(lca.shape)} but the probabilities are {tuple(probs.shape)}"
        )
    risk = probs.to(torch.float64) @ lca.to(probs.device, torch.float64).T
    return risk.argmin(dim=1)


class HierarchicalCounter(Accumulator):
    """Streaming sums for every metric of the module docstring.

    Args:
        lca: a Hierarchy, a ClassDistances or (K, K) LCA distances (integers or floats).
        ks: the k values of the @k metrics, each in ``1..K``.
        device: where the sums live (default: the lca tensor's device, else CPU).
        convention: the LCA distance of a Hierarchy, ``"level"`` or ``"height"``
            (docs/theory.md §7).
        ties: how tied scores are ranked: ``"lower_index"`` (default) or ``"topk"``
            (``torch.topk``'s order, as making-better-mistakes; see the module docstring).

    State: ``sums`` (3 + 3 len(ks),) float64: samples, wrong top-1, severity sum, then per
    k the sums of the top-k mean distance over all samples, of the same over the wrong
    top-1 samples, and of the top-k minimum distance.
    """

    state_version = 2  # version 1 summed the wrong predictions among the top k instead
    _compatibility_hint = "build both counters with the same lca and ks"

    def __init__(
        self,
        lca: TreeLike,
        ks: tuple[int, ...] = (1, 5),
        device: torch.device | str | None = None,
        *,
        convention: str = DEFAULT_CONVENTION,
        ties: str = "lower_index",
    ) -> None:
        if ties not in TIES:
            raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
        self.ties = ties
        matrix = distance_matrix(lca, convention=convention)
        super().__init__(device if device is not None else matrix.device)
        self.lca = matrix.detach().to(self.device, torch.float64)
        self.num_classes = self.lca.shape[0]
        if (
            not ks
            or any(isinstance(k, bool) or not isinstance(k, int) for k in ks)
            or any(not 1 <= k <= self.num_classes for k in ks)
        ):
            raise ValueError(f"ks must be in 1..{self.num_classes}, got {ks}")
        self.ks = tuple(sorted(set(ks)))
        self.add_state("sums", torch.zeros(3 + 3 * len(self.ks), dtype=torch.float64))
        self._sums: Tensor

    def __repr__(self) -> str:
        return (
            f"HierarchicalCounter(num_classes={self.num_classes}, ks={self.ks}, "
            f"num_samples={int(self._sums[0])})"
        )

    def _config(self) -> dict[str, Any]:
        return {"lca": self.lca, "ks": self.ks}

    def update(self, scores: Tensor, labels: Tensor) -> None:
        """Count a batch: ``scores`` (B, K) logits/probabilities or (B,) predicted classes
        (then only k = 1 can be tracked); ``labels`` (B,)."""
        device = self.device
        if not isinstance(scores, Tensor) or scores.ndim not in (1, 2):
            shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise ValueError(
                f"scores must be (B, {self.num_classes}) logits or (B,) predicted classes, "
                f"got {shape}"
            )
        if scores.ndim == 1:
            if self.ks != (1,):
                raise ValueError("(B,) predictions carry no ranking: use ks=(1,) or pass logits")
            predictions = check_labels(scores, num_classes=self.num_classes, name="predictions")
            ranked = predictions.unsqueeze(1)
        else:
            if scores.shape[1] != self.num_classes:
                raise ValueError(
                    f"scores have {scores.shape[1]} classes but lca has {self.num_classes}"
                )
            ranked = rank_classes(scores, max(self.ks), ties=self.ties)
        labels = check_labels(labels, batch=ranked.shape[0], num_classes=self.num_classes)
        labels = labels.to(device)
        ranked = ranked.to(device)
        distances = self.lca[labels.unsqueeze(1), ranked]  # (B, kmax): d_i(j)
        wrong = (ranked[:, 0] != labels).double()
        parts = [
            torch.tensor(float(labels.numel()), device=device, dtype=torch.float64),
            wrong.sum(),
            (distances[:, 0] * wrong).sum(),
        ]
        for k in self.ks:
            mean_k = distances[:, :k].mean(dim=1)
            parts += [mean_k.sum(), (mean_k * wrong).sum(), distances[:, :k].amin(dim=1).sum()]
        self._sums += torch.stack(parts)

    def compute(self) -> dict[str, float]:
        """``num_samples``, ``top1_error``, ``mistake_severity`` and per k ``hier_dist@k``,
        ``mistakes@k`` and ``best_hier_dist@k`` of every sample counted so far; NaN where
        undefined (no samples, no mistakes)."""
        values = self._sums.tolist()
        n, wrong, severity = values[:3]

        def ratio(a: float, b: float) -> float:
            return a / b if b else math.nan

        result = {
            "num_samples": int(n),
            "top1_error": ratio(wrong, n),
            "mistake_severity": ratio(severity, wrong),
        }
        for i, k in enumerate(self.ks):
            average, average_wrong, best = values[3 + 3 * i : 6 + 3 * i]
            result[f"hier_dist@{k}"] = ratio(average, n)
            result[f"mistakes@{k}"] = ratio(average_wrong, wrong)
            result[f"best_hier_dist@{k}"] = ratio(best, n)
        return result
