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
``collect(model, loader, layer="fc")`` for a model and a data loader, and
:func:`evaluate_stream` / :func:`evaluate_model` for accuracy, shot groups, hierarchical
metrics and collapse of one split in one two-pass run (what training and ``eval`` use).

Also: :class:`AccuracyCounter` (overall, balanced, per-class and per-shot-group accuracy),
the hierarchy-aware metrics of :mod:`neuralcollapse.metrics.hierarchical` (top-1 error,
mistake severity, hier-dist@k, mistakes@k, best-of-top-k, CRM decoding) and the geometry measures as
plain functions in :mod:`neuralcollapse.metrics.functional` (``etf_distance``,
``equinorm``, ``equiangularity``, ``cdnv``, ``self_duality``, ``nc3_zhu``, ...).

Every accumulator (:class:`CollapseStats`, :class:`NCCMismatchCounter`,
:class:`AccuracyCounter`, :class:`HierarchicalCounter`) follows one contract,
:class:`~neuralcollapse.metrics.base.Accumulator`: ``update``, ``compute``, ``reset``,
``merge``, ``all_reduce`` (a no-op without a process group), ``state_dict``,
``load_state_dict``.
"""

from neuralcollapse.metrics import functional
from neuralcollapse.metrics.base import Accumulator
from neuralcollapse.metrics.classification import AccuracyCounter
from neuralcollapse.metrics.collapse import CollapseReport, CollapseStats
from neuralcollapse.metrics.collect import collapse_report, collect, collect_evaluation
from neuralcollapse.metrics.evaluation import Evaluation, evaluate_model, evaluate_stream
from neuralcollapse.metrics.hierarchical import (
    HierarchicalCounter,
    best_hierarchical_distance_at_k,
    crm_predict,
    hierarchical_distance_at_k,
    mistake_severity,
    mistakes_at_k,
    rank_classes,
    top1_error,
)
from neuralcollapse.metrics.ncc import NCCMismatchCounter, NCCResult

__all__ = [
    "Accumulator",
    "AccuracyCounter",
    "CollapseReport",
    "CollapseStats",
    "Evaluation",
    "HierarchicalCounter",
    "NCCMismatchCounter",
    "NCCResult",
    "best_hierarchical_distance_at_k",
    "collapse_report",
    "collect",
    "collect_evaluation",
    "crm_predict",
    "evaluate_model",
    "evaluate_stream",
    "functional",
    "hierarchical_distance_at_k",
    "mistake_severity",
    "mistakes_at_k",
    "rank_classes",
    "top1_error",
]
