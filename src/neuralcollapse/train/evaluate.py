"""Evaluation of a classifier on one split: accuracy by class and shot group, plus collapse.

Two passes, as NC4 needs the final class means: the first accumulates accuracy and the
collapse statistics, the second counts nearest-class-mean mismatches. Features of the first
pass are kept (on the device) when they fit in ``cache_limit`` values, so the second pass
costs no forward passes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from neuralcollapse.metrics import CollapseStats
from neuralcollapse.metrics.classification import AccuracyCounter
from neuralcollapse.metrics.hierarchical import HierarchicalCounter

__all__ = ["evaluate"]

CACHE_LIMIT = 50_000_000  # float values (200 MB in float32)


def _forward(model: nn.Module, batches: Iterable):
    """Yield (h, labels, logits) per batch, in float32."""
    for x, y in batches:
        logits, h = model(x, return_features=True)
        yield h.float(), y, logits.float()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable,
    *,
    num_classes: int,
    groups: dict[str, Tensor],
    classifier: Tensor,
    bias: Tensor | None = None,
    device: torch.device | None = None,
    distributed: bool = False,
    lca: Tensor | None = None,
    cache_limit: int = CACHE_LIMIT,
) -> dict[str, Any]:
    """Accuracy summary and collapse report of ``model`` over ``batches`` (in eval mode).

    Args:
        model: returns ``(logits, h)`` for ``model(x, return_features=True)``.
        batches: an iterable of ``(x, y)``; under ``distributed`` each process's disjoint
            shard of the split.
        num_classes: K.
        groups: named tensors of class indices, e.g. many / medium / few.
        classifier: (K, d) effective classifier rows (the head's ``weight``).
        bias: (K,) or None.
        device: where statistics accumulate (default: the classifier's device).
        distributed: sum the statistics of every process (torch.distributed) before
            computing, so the result covers the whole split, each sample counted once.
        lca: optional (K, K) LCA heights of a class hierarchy; adds ``hierarchical``
            (top-1 error, mistake severity, hier_dist@1/5, mistakes@1/5).

    Returns:
        The :meth:`AccuracyCounter.summary` keys plus ``collapse`` (the report's dict) and,
        with ``lca``, ``hierarchical``.
    """
    was_training = model.training
    model.eval()
    device = device or classifier.device
    accuracy = AccuracyCounter(num_classes, device=device)
    dim = classifier.shape[1]
    stats = CollapseStats(num_classes, dim, device=device)
    ks = tuple(k for k in (1, 5) if k <= num_classes)
    severity = None if lca is None else HierarchicalCounter(lca, ks=ks, device=device)
    cache: list[tuple[Tensor, Tensor, Tensor]] | None = []
    cached = 0
    try:
        for h, y, logits in _forward(model, batches):
            stats.update(h, y)
            accuracy.update(logits, y)
            if severity is not None:
                severity.update(logits, y)
            if cache is not None:
                cached += h.numel() + logits.numel()
                if cached <= cache_limit:
                    cache.append((h, y, logits))
                else:
                    cache = None  # too large to keep: the second pass runs the model again
        if distributed:
            stats.all_reduce()
            accuracy.all_reduce()
            if severity is not None:
                severity.all_reduce()
        if stats.num_samples == 0:
            raise ValueError("the evaluation split is empty")
        counter = stats.ncc_mismatch_counter()
        for h, y, logits in cache if cache is not None else _forward(model, batches):
            counter.update(h, y, logits)
        if distributed:
            counter.all_reduce()
        report = stats.compute(classifier, bias, ncc=counter)
    finally:
        model.train(was_training)
    result = {**accuracy.summary(groups), "collapse": report.to_dict()}
    if severity is not None:
        result["hierarchical"] = severity.summary()
    return result
