"""Hierarchy-aware evaluation: how severe the mistakes are, not only how many.

With D the (K, K) matrix of lowest-common-ancestor heights of the class tree (0 on the
diagonal; ``Hierarchy.lca_heights()``), for N samples with true class y_i:

* top-1 error: fraction of samples whose top-1 prediction is wrong.
* mistake severity: mean D[y_i, top1_i] over the misclassified samples only.
* hierarchical distance@k: per sample the mean of D[y_i, p] over its top-k predictions p,
  averaged over all samples (a correct top-1 contributes 0 at k = 1) [Bertinetto 2020].
* mistakes@k: mean D[y_i, p] over the wrong predictions p among the top-k, pooled over
  all samples (the severity of the mistakes that appear in the top k).

Everything is computed on every sample given (nothing dropped), vectorised, and
accumulates as sums in :class:`HierarchicalCounter`, which merges across batches and
processes (the accumulator contract of :mod:`neuralcollapse.metrics.base`).
:func:`crm_predict` is the post-hoc CRM decoding of Karthik et al. (2021).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from neuralcollapse._internal.checks import check_labels
from neuralcollapse.metrics.base import Accumulator

__all__ = [
    "HierarchicalCounter",
    "crm_predict",
    "hierarchical_distance_at_k",
    "mistake_severity",
    "mistakes_at_k",
    "top1_error",
]


def _check_lca(lca: Tensor, num_classes: int | None = None) -> Tensor:
    if not isinstance(lca, Tensor) or lca.ndim != 2 or lca.shape[0] != lca.shape[1]:
        shape = tuple(lca.shape) if isinstance(lca, Tensor) else type(lca).__name__
        raise ValueError(f"lca must be a square (K, K) tensor of LCA heights, got {shape}")
    if num_classes is not None and lca.shape[0] != num_classes:
        raise ValueError(
            f"lca is {tuple(lca.shape)} but the predictions have {num_classes} classes"
        )
    return lca


def _ranked(scores: Tensor, k: int) -> Tensor:
    """(N, k) class indices of the k highest scores, best first."""
    if scores.ndim != 2:
        raise ValueError(f"expected (N, K) logits or probabilities, got {tuple(scores.shape)}")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be in 1..{scores.shape[1]}, got {k}")
    return torch.topk(scores, k, dim=1, sorted=True).indices


def top1_error(logits_or_preds: Tensor, labels: Tensor) -> float:
    """Fraction of samples whose top-1 prediction differs from the label."""
    preds = logits_or_preds.argmax(1) if logits_or_preds.ndim == 2 else logits_or_preds
    return float((preds != labels).double().mean())


def mistake_severity(logits_or_preds: Tensor, labels: Tensor, lca: Tensor) -> float:
    """Mean LCA height between prediction and truth over the misclassified samples.

    ``logits_or_preds``: (N, K) scores or (N,) predicted classes. NaN when there is no
    mistake (the severity of no mistakes is undefined, not 0).
    """
    counter = HierarchicalCounter(lca, ks=(1,))
    counter.update(logits_or_preds, labels)
    return counter.compute()["mistake_severity"]


def hierarchical_distance_at_k(logits: Tensor, labels: Tensor, lca: Tensor, k: int) -> float:
    """Mean over samples of the mean LCA height between the truth and the top-k predictions."""
    counter = HierarchicalCounter(lca, ks=(k,))
    counter.update(logits, labels)
    return counter.compute()[f"hier_dist@{k}"]


def mistakes_at_k(logits: Tensor, labels: Tensor, lca: Tensor, k: int) -> float:
    """Mean LCA height of the wrong predictions among the top-k (NaN if there are none)."""
    counter = HierarchicalCounter(lca, ks=(k,))
    counter.update(logits, labels)
    return counter.compute()[f"mistakes@{k}"]


def crm_predict(probs: Tensor, lca: Tensor) -> Tensor:
    """Conditional risk minimisation: the class with the least expected LCA cost.

    ``probs`` (N, K) class probabilities (e.g. a softmax); returns (N,) argmin_k sum_j
    p_j D[k, j]. Post hoc: no retraining. For top-k metrics pass ``-probs @ D.T`` as scores.
    """
    lca = _check_lca(lca, probs.shape[1])
    risk = probs.to(torch.float64) @ lca.to(probs.device, torch.float64).T
    return risk.argmin(dim=1)


class HierarchicalCounter(Accumulator):
    """Streaming sums for top-1 error, mistake severity, hier. distance@k and mistakes@k.

    Args:
        lca: (K, K) LCA heights (integers or floats).
        ks: the k values to track for the @k metrics, each in ``1..K``.
        device: where the sums live (default: the lca's device).

    State: ``sums`` (3 + 3 len(ks),) float64: samples, wrong top-1, severity sum, then per
    k the distance sum, the wrong count and the wrong-height sum.
    """

    _compatibility_hint = "build both counters with the same lca and ks"

    def __init__(
        self,
        lca: Tensor,
        ks: tuple[int, ...] = (1, 5),
        device: torch.device | str | None = None,
    ) -> None:
        lca = _check_lca(lca)
        super().__init__(device if device is not None else lca.device)
        self.lca = lca.detach().to(self.device, torch.float64)
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
            ranked = _ranked(scores, max(self.ks))
        labels = check_labels(labels, batch=ranked.shape[0], num_classes=self.num_classes)
        labels = labels.to(device)
        heights = self.lca[labels.unsqueeze(1), ranked.to(device)]  # (B, kmax)
        wrong = ranked.to(device) != labels.unsqueeze(1)
        parts = [
            torch.tensor(float(labels.numel()), device=device, dtype=torch.float64),
            wrong[:, 0].double().sum(),
            heights[:, 0].sum(),
        ]
        for k in self.ks:
            parts += [
                heights[:, :k].mean(dim=1).sum(),
                wrong[:, :k].double().sum(),
                (heights[:, :k] * wrong[:, :k]).sum(),
            ]
        self._sums += torch.stack(parts)

    def compute(self) -> dict[str, float]:
        """``num_samples``, ``top1_error``, ``mistake_severity`` and per k ``hier_dist@k``,
        ``mistakes@k`` of every sample counted so far; NaN where undefined (no samples,
        no mistakes)."""
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
            distance, mistakes, mistake_sum = values[3 + 3 * i : 6 + 3 * i]
            result[f"hier_dist@{k}"] = ratio(distance, n)
            result[f"mistakes@{k}"] = ratio(mistake_sum, mistakes)
        return result
