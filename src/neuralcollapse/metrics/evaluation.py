"""The one two-pass evaluation driver: accuracy, hierarchy-aware metrics and neural
collapse of one split, from any stream of ``(features, labels, logits)`` batches.

NC4 compares every sample with the FINAL class means, so it needs a second pass:

1. first pass: :class:`~neuralcollapse.metrics.CollapseStats` (NC1-NC3 sums; without
   the d x d scatter when a second pass follows and K <= d),
   :class:`~neuralcollapse.metrics.AccuracyCounter` and, with a class hierarchy,
   :class:`~neuralcollapse.metrics.HierarchicalCounter`. The batches are kept while they
   fit in ``cache_limit`` values, so that the second pass costs no forward passes;
2. (with ``distributed``: every accumulator is all-reduced, so each process holds the
   statistics of the whole split);
3. second pass: :class:`~neuralcollapse.metrics.NCCMismatchCounter` with the final means,
   over the cache or a fresh pass of the stream (all-reduced too); without a scatter,
   it also accumulates the within-class scatter projected on the means, for NC1;
4. ``compute`` of everything, the minority classes chosen from ``train_counts`` when given.

:func:`evaluate_stream` is the driver; :func:`evaluate_model` feeds it a model's
``(logits, features)``; :func:`~neuralcollapse.metrics.collapse_report` and
:func:`~neuralcollapse.metrics.collect` use it too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from neuralcollapse._internal.checks import check_int
from neuralcollapse._internal.jsonio import to_jsonable
from neuralcollapse.metrics._checks import (
    UndefinedMetricError,
    check_bias,
    check_classifier,
    check_counts,
    check_global_mean,
    check_tensor,
)
from neuralcollapse.metrics.classification import AccuracyCounter, as_class_groups
from neuralcollapse.metrics.collapse import CollapseReport, CollapseStats
from neuralcollapse.metrics.hierarchical import HierarchicalCounter
from neuralcollapse.metrics.ncc import NCCMismatchCounter

if TYPE_CHECKING:
    from neuralcollapse.data.longtail import ShotGroups

__all__ = [
    "CACHE_LIMIT",
    "Evaluation",
    "evaluate_model",
    "evaluate_stream",
    "undefined_collapse",
]

#: Default number of cached values (features plus logits) of the first pass: 200 MB in
#: float32.
CACHE_LIMIT = 50_000_000
#: The k of the hierarchical @k metrics (those up to K); making-better-mistakes' code
#: logs 1, 5, 10, 20 and 100 (docs/theory.md §7).
HIERARCHICAL_KS = (1, 5, 20)

Batch = tuple[Tensor, Tensor, "Tensor | None"]
# Feature dimensions up to which the first pass keeps the d x d scatter even when a
# second pass follows (see _Accumulators.create).
_MIN_PROJECTION_DIM = 64


@dataclasses.dataclass
class Evaluation:
    """The evaluation of one split.

    Attributes:
        metrics: JSON-ready (NaN and inf as None, lists not tensors): ``top1``,
            ``balanced``, ``num_samples``, ``per_class`` and one key per class group (see
            :meth:`AccuracyCounter.compute`; only ``num_samples`` when the stream had no
            logits), ``collapse`` (:meth:`CollapseReport.to_dict`; when the data leave the
            metrics undefined, :func:`undefined_collapse`: every metric null and
            ``undefined``, the reason) and, when ``lca`` was
            given, ``hierarchical`` (:meth:`HierarchicalCounter.compute`).
        class_means: ``(K, d)`` float64 class means on CPU, centred on the global mean the
            report used (``global_mean``); rows of classes absent from the split are NaN.
            None for an accuracy-only evaluation (``collapse=False``).
        report: the :class:`CollapseReport`; None for an accuracy-only evaluation or
            undefined metrics.
    """

    metrics: dict[str, Any]
    class_means: Tensor | None
    report: CollapseReport | None


def evaluate_stream(
    stream: Callable[[], Iterable[Batch]],
    *,
    num_classes: int,
    classifier: Tensor | None = None,
    bias: Tensor | None = None,
    groups: Mapping[str, Tensor] | ShotGroups | None = None,
    lca: Tensor | None = None,
    train_counts: Tensor | None = None,
    device: torch.device | str | None = None,
    distributed: bool = False,
    global_mean: str = "weighted",
    cache_limit: int = CACHE_LIMIT,
    ncc: bool = True,
    collapse: bool = True,
) -> Evaluation:
    """Accuracy, hierarchical metrics and the collapse report of one split, in two passes.

    Args:
        stream: called once per pass; each call starts a fresh pass over the same samples
            and yields ``(features (B, d), labels (B,), logits (B, K))``. ``logits`` may be
            None in every batch (features only): then there is no accuracy, no
            hierarchical metric and no NC4. Under ``distributed`` each process streams its
            own disjoint shard of the split.
        num_classes: K.
        classifier: optional ``(K, d)`` classifier rows W for NC2/NC3 of the classifier
            (logits = h @ W.T + b); NC4 compares the stream's logits with the nearest
            class mean whether or not W is given.
        bias: optional ``(K,)`` bias (enters only ``global_mean_logit_norm``).
        groups: named groups of classes for the per-group accuracies: a dict name ->
            class indices or the ShotGroups of ``nc.data.shot_groups(...)``.
        lca: optional class tree: ``(K, K)`` LCA distances, a Hierarchy (its default
            "level" distances) or a ClassDistances; adds ``hierarchical`` (top-1 error,
            mistake severity, hier_dist@k, mistakes@k, best_hier_dist@k for k = 1, 5, 20
            up to K; :mod:`neuralcollapse.metrics.hierarchical`).
        train_counts: optional ``(K,)`` training samples per class; the report's minority
            classes (``minority_classes``, ``minority_cosine``) are then the rarest in
            training rather than in this split (see :meth:`CollapseStats.compute`).
        device: where the statistics accumulate (default: the classifier's device, else
            the first batch's features').
        distributed: all-reduce every accumulator over the default process group before
            computing, so that every process gets the metrics of the whole split (a no-op
            without an initialised group). Every process must call this function.
        global_mean: ``"weighted"`` or ``"balanced"``, see :class:`CollapseStats`.
        cache_limit: keep the first pass's batches (features plus logits, as yielded, on
            their device) while their values total at most this; then the second pass
            reads the cache instead of calling ``stream`` again. 0 never caches.
        ncc: run the second pass (NC4); needs logits.
        collapse: False measures accuracy (and the hierarchical metrics) alone, in one
            pass with no feature statistics: ``metrics["collapse"]`` is ``{}`` and
            ``class_means`` and ``report`` are None. Needs logits.

    Raises:
        ValueError: bad arguments (before any pass), a batch of the wrong shape or with
            NaN features, an empty split, fewer than two classes, or a second pass that
            did not yield the samples of the first.
    """
    k = check_int("num_classes", num_classes, minimum=2)
    global_mean = check_global_mean(global_mean)
    cache_limit = check_int("cache_limit", cache_limit, minimum=0)
    if not callable(stream):
        raise ValueError(
            f"stream must be a callable that starts a fresh pass on each call, got "
            f"{type(stream).__name__}; wrap a list of batches as `lambda: batches`"
        )
    if bias is not None and classifier is None:
        raise ValueError("bias was given without classifier; pass classifier=W too")
    w = b = None
    if classifier is not None:
        w = check_tensor("classifier", classifier)
        if w.ndim != 2 or w.shape[0] != k:
            raise ValueError(
                f"classifier must have shape (num_classes, dim) = ({k}, d), got "
                f"{tuple(w.shape)}; frames are rows (logits = h @ W.T): transpose a (d, K) matrix"
            )
        w = check_classifier(w, k, w.shape[1])
        b = None if bias is None else check_bias(bias, k)
    named_groups = as_class_groups(groups, k)
    reference = None if train_counts is None else check_counts("train_counts", train_counts, k)
    if device is None and w is not None:
        device = w.device
    accumulators = _Accumulators(k, global_mean, lca, collapse=collapse)
    if device is not None and w is not None:
        accumulators.create(torch.device(device), w.shape[1], second_pass=ncc)

    # First pass.
    cache: list[Batch] | None = [] if cache_limit > 0 and collapse and ncc else None
    cached = first_rows = 0
    for batch in stream():
        h, y, logits = _unpack(batch)
        if accumulators.accuracy is None:  # the first batch: now the device and d are known
            h = check_tensor("features", h)
            target = torch.device(device) if device is not None else h.device
            second_pass = ncc and (logits is not None or w is not None)
            accumulators.create(target, h.shape[-1] if h.ndim else 1, second_pass=second_pass)
        accumulators.update(h, y, logits)
        first_rows += h.shape[0]
        if cache is not None:
            cached += h.numel() + (0 if logits is None else logits.numel())
            if cached <= cache_limit:
                cache.append((h.detach(), y, None if logits is None else logits.detach()))
            else:
                cache = None  # too large to keep: the second pass reads the stream again
    stats, accuracy, hierarchy = accumulators.reduced(distributed)
    has_logits = int(accuracy.total.sum()) > 0
    if stats is None:  # collapse=False: accuracy alone
        metrics = accuracy.compute(named_groups)
        metrics["collapse"] = {}
        if hierarchy is not None:
            metrics["hierarchical"] = hierarchy.compute()
        return Evaluation(to_jsonable(metrics), None, None)

    # Second pass: NC4 against the final class means. Features of one class, or all at
    # one point, leave the collapse metrics undefined: recorded as null with the reason.
    report: CollapseReport | None = None
    try:
        counter = None
        if ncc and (has_logits or w is not None):
            counter = _second_pass(
                stats,
                stream,
                cache,
                w=w,
                b=b,
                has_logits=has_logits,
                first_rows=first_rows,
                distributed=distributed,
            )
        report = stats.compute(w, b, ncc=counter, reference_counts=reference)
        collapse = report.to_dict()
    except UndefinedMetricError as exc:
        collapse = undefined_collapse(stats, str(exc))
    metrics: dict[str, Any] = (
        accuracy.compute(named_groups) if has_logits else {"num_samples": stats.num_samples}
    )
    metrics["collapse"] = collapse
    if hierarchy is not None:
        metrics["hierarchical"] = hierarchy.compute()
    return Evaluation(to_jsonable(metrics), stats.centred_class_means().cpu(), report)


def _second_pass(
    stats: CollapseStats,
    stream: Callable[[], Iterable[Batch]],
    cache: list[Batch] | None,
    *,
    w: Tensor | None,
    b: Tensor | None,
    has_logits: bool,
    first_rows: int,
    distributed: bool,
) -> NCCMismatchCounter:
    """NC4's counter over the cache (or a fresh pass of the stream) with the final means."""
    # Without logits from the stream, NC4 compares the classifier W's own logits.
    counter = stats.ncc_mismatch_counter(*((None, None) if has_logits else (w, b)))
    second_rows = 0
    for batch in cache if cache is not None else stream():
        h, y, logits = _unpack(batch)
        if logits is None and has_logits:
            raise ValueError("a batch of the second pass has no logits but the first had")
        counter.update(h, y, logits)
        second_rows += h.shape[0]
    if second_rows != first_rows:
        raise ValueError(
            f"the second pass yielded {second_rows} samples but the first {first_rows}; "
            "stream() must start a fresh pass over the same samples on every call (a "
            "re-iterable loader with deterministic transforms, not a one-shot iterator)"
        )
    if distributed:
        counter.all_reduce()
    return counter


def undefined_collapse(stats: CollapseStats, reason: str) -> dict[str, Any]:
    """The ``collapse`` entry of a split whose collapse metrics cannot be computed: the
    sample counts, every metric null, and ``undefined``: the reason (one line)."""
    counts = stats.class_counts.tolist()
    entry: dict[str, Any] = {field.name: None for field in dataclasses.fields(CollapseReport)}
    entry.update(
        num_classes=stats.num_classes,
        dim=stats.dim,
        num_samples=stats.num_samples,
        class_counts=counts,
        absent_classes=[k for k, n in enumerate(counts) if n == 0],
        global_mean=stats.global_mean,
        undefined=" ".join(reason.split()),
    )
    return entry


def evaluate_model(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    classifier: Tensor,
    bias: Tensor | None = None,
    num_classes: int,
    groups: Mapping[str, Tensor] | ShotGroups | None = None,
    lca: Tensor | None = None,
    train_counts: Tensor | None = None,
    device: torch.device | str | None = None,
    distributed: bool = False,
    global_mean: str = "weighted",
    cache_limit: int = CACHE_LIMIT,
    ncc: bool = True,
    collapse: bool = True,
) -> Evaluation:
    """:func:`evaluate_stream` of a model that returns ``(logits, h)`` for
    ``model(x, return_features=True)`` (this package's classifiers).

    The model runs in eval mode under ``torch.no_grad()``; its mode is restored afterwards.
    ``batches`` yields ``(x, y, ...)``; inputs are moved to the device of the model's first
    parameter. It is read once when the first pass fits in ``cache_limit`` values, else
    twice (so it must be re-iterable then). Other arguments: see :func:`evaluate_stream`;
    ``classifier`` is the ``(K, d)`` effective classifier (e.g. the head's ``weight``).
    """
    model_device = next((p.device for p in model.parameters()), None)

    def stream() -> Iterator[Batch]:
        for batch in batches:
            x, y = batch[0], batch[1]
            if model_device is not None and isinstance(x, Tensor):
                x = x.to(model_device)
            logits, h = model(x, return_features=True)
            yield h, y, logits

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return evaluate_stream(
                stream,
                num_classes=num_classes,
                classifier=classifier,
                bias=bias,
                groups=groups,
                lca=lca,
                train_counts=train_counts,
                device=device,
                distributed=distributed,
                global_mean=global_mean,
                cache_limit=cache_limit,
                ncc=ncc,
                collapse=collapse,
            )
    finally:
        model.train(was_training)


def _unpack(batch: Any) -> Batch:
    if not isinstance(batch, (tuple, list)) or len(batch) != 3:
        size = f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
        raise ValueError(
            "each batch of the stream must be a (features, labels, logits) triple, got a "
            f"{type(batch).__name__}{size}"
        )
    h, y, logits = batch
    return h, y, logits


class _Accumulators:
    """The first-pass accumulators, created once the device and d are known."""

    def __init__(
        self, num_classes: int, global_mean: str, lca: Tensor | None, *, collapse: bool = True
    ) -> None:
        self.num_classes = num_classes
        self.global_mean = global_mean
        self.lca = lca
        self.collapse = collapse  # False: no feature statistics (accuracy alone)
        self.stats: CollapseStats | None = None
        self.accuracy: AccuracyCounter | None = None
        self.hierarchy: HierarchicalCounter | None = None
        self.with_logits: bool | None = None
        if lca is not None:  # checked now, before any pass
            self._hierarchy_on(lca.device if isinstance(lca, Tensor) else None)

    def _hierarchy_on(self, device: torch.device | None) -> HierarchicalCounter:
        lca = self.lca
        assert lca is not None
        if isinstance(lca, Tensor) and lca.ndim == 2 and lca.shape[0] != self.num_classes:
            raise ValueError(
                f"lca is {tuple(lca.shape)} but num_classes is {self.num_classes}; pass "
                "the (K, K) LCA heights of the evaluated classes"
            )
        ks = tuple(k for k in HIERARCHICAL_KS if k <= self.num_classes)
        return HierarchicalCounter(lca, ks=ks, device=device)

    def create(self, device: torch.device, dim: int, *, second_pass: bool) -> None:
        """Build the accumulators. With a second pass to come and K <= d, the statistics
        keep no d x d scatter: NC1 comes from the K' x K' scatter projected on the class
        means in the second pass, from the product that scores NC4 (N K'^2 / 2
        multiply-adds in place of N d^2 / 2). Not for d <= ``_MIN_PROJECTION_DIM``,
        where the scatter costs little and its float32 products stay at the precision
        of the first pass (a handful of classes in a few dimensions, such as a random
        network's, leaves the means too close for float32 projections)."""
        if self.collapse:
            project = second_pass and self.num_classes <= dim and dim > _MIN_PROJECTION_DIM
            self.stats = CollapseStats(
                self.num_classes,
                dim,
                device=device,
                global_mean=self.global_mean,
                scatter=not project,
            )
        self.accuracy = AccuracyCounter(self.num_classes, device=device)
        if self.lca is not None:
            self.hierarchy = self._hierarchy_on(device)

    def update(self, h: Tensor, y: Tensor, logits: Tensor | None) -> None:
        assert self.accuracy is not None
        with_logits = logits is not None
        if self.with_logits is None:
            self.with_logits = with_logits
        elif with_logits != self.with_logits:
            raise ValueError(
                "some batches of the stream have logits and some have None; yield logits "
                "with every batch or with none"
            )
        if not with_logits and self.hierarchy is not None:
            raise ValueError("lca was given but the stream yields no logits to rank classes")
        if not with_logits and not self.collapse:
            raise ValueError(
                "collapse=False measures accuracy alone, but the stream yields no logits"
            )
        if self.stats is not None:
            self.stats.update(h, y)
        if logits is not None:
            self.accuracy.update(logits, y)
            if self.hierarchy is not None:
                self.hierarchy.update(logits, y)

    def reduced(
        self, distributed: bool
    ) -> tuple[CollapseStats | None, AccuracyCounter, HierarchicalCounter | None]:
        if self.accuracy is None:
            raise ValueError(
                "the evaluation split is empty: the stream yielded no batches"
                + (
                    " on this process; with distributed=True pass classifier= so that every "
                    "process can take part"
                    if distributed
                    else ""
                )
            )
        if distributed:
            if self.stats is not None:
                self.stats.all_reduce()
            self.accuracy.all_reduce()
            if self.hierarchy is not None:
                self.hierarchy.all_reduce()
        total = self.stats.num_samples if self.stats is not None else int(self.accuracy.total.sum())
        if total == 0:
            raise ValueError("the evaluation split is empty: the stream yielded no samples")
        return self.stats, self.accuracy, self.hierarchy
