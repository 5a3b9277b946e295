"""Neural-collapse metrics: exact, streaming, mergeable NC1-NC4 for any PyTorch model.

::

    stats = nc.metrics.CollapseStats(num_classes=10, dim=64)
    for h, y in batches:
        stats.update(h, y)                        # float64 sums, one pass
    counter = stats.ncc_mismatch_counter()       # NC4 needs a second pass
    for h, y, logits in batches:
        counter.update(h, y, logits)
    report = stats.compute(classifier=W, ncc=counter)

or in one call: ``collapse_report(features, labels, classifier=W)`` for tensors in memory,
``collect(model, loader, layer="fc")`` for a model and a data loader.

Also: :class:`AccuracyCounter` (overall, balanced, per-class and per-shot-group accuracy) and
the hierarchy-aware metrics of :mod:`neuralcollapse.metrics.hierarchical` (mistake
severity, hierarchical distance@k, mistakes@k, CRM decoding).
"""

from neuralcollapse.metrics.classification import AccuracyCounter
from neuralcollapse.metrics.collapse import CollapseReport, CollapseStats
from neuralcollapse.metrics.collect import collapse_report, collect
from neuralcollapse.metrics.hierarchical import (
    HierarchicalCounter,
    crm_predict,
    hierarchical_distance_at_k,
    mistake_severity,
    mistakes_at_k,
    top1_error,
)
from neuralcollapse.metrics.ncc import NCCMismatchCounter, NCCResult

__all__ = [
    "AccuracyCounter",
    "CollapseReport",
    "CollapseStats",
    "NCCMismatchCounter",
    "HierarchicalCounter",
    "NCCResult",
    "collapse_report",
    "collect",
    "crm_predict",
    "hierarchical_distance_at_k",
    "mistake_severity",
    "mistakes_at_k",
    "top1_error",
]
