"""NC1-NC3 as a ``torchmetrics.Metric``: :class:`CollapseMetric` wraps CollapseStats.

Needs the torchmetrics extra: ``pip install 'neuralcollapse[torchmetrics]'``::

    from torchmetrics import MetricCollection
    from torchmetrics.classification import MulticlassAccuracy
    from neuralcollapse.integrations.torchmetrics import CollapseMetric

    metrics = MetricCollection({
        "collapse": CollapseMetric(num_classes=10, dim=64, classifier=model.head),
        "acc": MulticlassAccuracy(num_classes=10),
    })
    logits, h = model(x, return_features=True)
    metrics.update(features=h, target=y, preds=logits)   # each metric takes its own keys
    metrics.compute()   # {"nc1": ..., "nc2_etf_distance_means": ..., ..., "acc": ...}

The whole :class:`~neuralcollapse.metrics.CollapseStats` state (counts, per-class shifts,
shifted sums, squared norms, scatter; float64) is ONE torchmetrics state, declared with
``add_state`` and a reduction that rebuilds a CollapseStats per process (or per merged
metric) and merges them with :meth:`CollapseStats.merge` (exact: the sums are re-centred
about a common shift, see :mod:`neuralcollapse.metrics.collapse`). So torchmetrics'
own machinery (``sync``/``compute`` under DDP, ``merge_state``, ``reset``, ``.to()``,
``MetricCollection``) handles it, and the result equals one CollapseStats fed every batch
up to float64 round-off. ``update()`` feeds a live CollapseStats and packs nothing: the
packed state is rebuilt only when something reads it (``compute``, ``sync``, ``forward``,
``state_dict``, ``merge_state``, ``.to()``), so a batch costs what a CollapseStats update
costs.

``compute()`` before any ``update()`` warns (torchmetrics' own warning) and returns NaN
for every value, as torchmetrics' metrics do, instead of raising.

NC4 needs a second pass over the data with the final class means, which a streaming
metric cannot make: use :func:`neuralcollapse.metrics.collect` or the Lightning callback
(:mod:`neuralcollapse.integrations.lightning`) for it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn

from neuralcollapse.data.files import optional_module
from neuralcollapse.metrics._checks import GlobalMean
from neuralcollapse.metrics.collapse import CollapseReport, CollapseStats
from neuralcollapse.metrics.collect import _resolve_classifier

_torchmetrics = optional_module("torchmetrics", "torchmetrics", "torchmetrics", "CollapseMetric")

__all__ = ["CollapseMetric"]


class _Layout:
    """Where each CollapseStats state tensor lies in the flat float64 state vector."""

    def __init__(self, num_classes: int, dim: int, global_mean: GlobalMean) -> None:
        self.num_classes, self.dim, self.global_mean = num_classes, dim, global_mean
        template = CollapseStats(num_classes, dim, global_mean=global_mean)
        state = template.state_dict()
        self.entries = [
            (name, tuple(value.shape), value.dtype)
            for name, value in state.items()
            if isinstance(value, Tensor)
        ]
        self.size = sum(math.prod(shape) for _, shape, _ in self.entries)

    def empty(self) -> Tensor:
        """The packed state of a CollapseStats that has seen nothing."""
        return self.pack(CollapseStats(self.num_classes, self.dim, global_mean=self.global_mean))

    def pack(self, stats: CollapseStats) -> Tensor:
        """``(size,)`` float64: every state tensor flattened (counts are exact in float64
        up to 2**53 samples)."""
        state = stats.state_dict()
        return torch.cat([state[name].reshape(-1).to(torch.float64) for name, _, _ in self.entries])

    def unpack(self, packed: Tensor) -> CollapseStats:
        """The CollapseStats (on ``packed``'s device) whose :meth:`pack` is ``packed``."""
        if packed.ndim != 1 or packed.shape[0] != self.size:
            raise ValueError(
                f"CollapseMetric state has shape {tuple(packed.shape)}, expected "
                f"({self.size},) for num_classes={self.num_classes}, dim={self.dim}; it is "
                "from another configuration"
            )
        stats = CollapseStats(
            self.num_classes, self.dim, device=packed.device, global_mean=self.global_mean
        )
        state = stats.state_dict()
        offset = 0
        for name, shape, dtype in self.entries:
            size = math.prod(shape)
            state[name] = packed[offset : offset + size].reshape(shape).to(dtype)
            offset += size
        stats.load_state_dict(state)
        return stats


class _MergeStats:
    """torchmetrics reduction of the packed state: ``(P, size)`` -> ``(size,)``, the P
    CollapseStats merged exactly (P processes under sync, 2 in ``merge_state``)."""

    def __init__(self, layout: _Layout) -> None:
        self.layout = layout

    def __call__(self, stacked: Tensor) -> Tensor:
        if stacked.ndim == 1:  # already one state
            return stacked
        merged = self.layout.unpack(stacked[0])
        for row in stacked[1:]:
            merged.merge(self.layout.unpack(row))
        return self.layout.pack(merged)


class CollapseMetric(_torchmetrics.Metric):
    """:class:`~neuralcollapse.metrics.CollapseStats` as a ``torchmetrics.Metric``.

    Args:
        num_classes: K, at least 2.
        dim: d, the width of the features (for a fixed-frame head: the frame's dimension,
            ``head.dim``; the features are ``h`` of ``head(x, return_features=True)``).
        global_mean: ``"weighted"`` or ``"balanced"``, see :class:`CollapseStats`.
        classifier: optional classifier for NC2 of the classifier and NC3, read at every
            :meth:`compute` (so it follows training): a ``(K, d)`` tensor W, a ``(W, b)``
            pair, or a module with ``weight`` (K, d) and ``bias`` (``nn.Linear``, this
            package's heads, whose ``weight`` is ``scale * frame``). It is referenced, not
            registered as a submodule.
        reference_counts: optional ``(K,)`` training samples per class, which choose the
            minority classes (see :meth:`CollapseStats.compute`).
        **kwargs: torchmetrics' own options (``dist_sync_on_step``, ``process_group``,
            ``compute_on_cpu``, ...).

    ``update(features, target)`` takes ``(B, d)`` features and ``(B,)`` labels;
    :meth:`compute` returns a dict name -> scalar float64 tensor of every float field of
    the :class:`~neuralcollapse.metrics.CollapseReport` (``nc1``, ``nc1_cdnv``,
    ``nc2_etf_distance_means``, ..., with a classifier ``nc3_self_duality``, ``nc3_zhu``,
    ...); :meth:`report` returns the report itself and :meth:`stats` the accumulated
    CollapseStats. As with any torchmetrics metric, calling it (``forward``) returns the
    values of that batch alone, which needs two classes in the batch: prefer ``update``.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        global_mean: GlobalMean = "weighted",
        classifier: Tensor | nn.Module | tuple[Tensor, Tensor | None] | None = None,
        reference_counts: Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        layout = _Layout(num_classes, dim, global_mean)  # checks K, d and global_mean
        self._layout = layout
        _resolve_classifier(classifier)  # checked now, read again at every compute()
        # Held in a tuple: a module set as an attribute would become a submodule.
        self._classifier = (classifier,)
        self._reference_counts = reference_counts
        self.add_state("stats_state", layout.empty(), dist_reduce_fx=_MergeStats(layout))

    # The packed state, kept consistent with the live CollapseStats that update() feeds:
    # torchmetrics reads and writes it as an attribute (sync, reduce, reset, state_dict,
    # .to()), so a read packs pending updates and a write drops the live copy.
    @property
    def stats_state(self) -> Tensor:
        live = self.__dict__.get("_live")
        if live is not None and self.__dict__.get("_dirty", False):
            self.__dict__["_packed"] = self._layout.pack(live)
            self.__dict__["_dirty"] = False
        return self.__dict__["_packed"]

    @stats_state.setter
    def stats_state(self, value: Tensor) -> None:
        self.__dict__["_packed"] = value
        self.__dict__["_live"] = None
        self.__dict__["_dirty"] = False

    @property
    def num_classes(self) -> int:
        return self._layout.num_classes

    @property
    def dim(self) -> int:
        return self._layout.dim

    def update(self, features: Tensor, target: Tensor) -> None:
        """Add one batch: ``(B, d)`` floating features and ``(B,)`` integer labels."""
        live = self.__dict__.get("_live")
        if live is None:
            # a copy: the packed tensor may be held elsewhere (forward's saved state)
            live = self._layout.unpack(self.stats_state.clone())
            self.__dict__["_live"] = live
        live.update(features, target)
        self.__dict__["_dirty"] = True

    def merge_state(self, incoming_state: Any) -> None:
        """Add another CollapseMetric's state (or its ``metric_state`` dict): exact, as
        :meth:`CollapseStats.merge`."""
        if isinstance(incoming_state, CollapseMetric):
            theirs = (incoming_state.num_classes, incoming_state.dim)
            if theirs != (self.num_classes, self.dim):
                raise ValueError(
                    f"cannot merge a CollapseMetric with num_classes={theirs[0]}, "
                    f"dim={theirs[1]} into one with num_classes={self.num_classes}, "
                    f"dim={self.dim}; build both with the same K and d"
                )
        super().merge_state(incoming_state)

    def stats(self) -> CollapseStats:
        """A CollapseStats holding everything accumulated (synced, if under DDP and
        called from :meth:`compute`)."""
        return self._layout.unpack(self.stats_state)

    def report(self) -> CollapseReport:
        """The full :class:`~neuralcollapse.metrics.CollapseReport` of the accumulated
        features (no NC4: that needs a second pass)."""
        w, b = _resolve_classifier(self._classifier[0])
        return self.stats().compute(w, b, reference_counts=self._reference_counts)

    def compute(self) -> dict[str, Tensor]:
        """Every float field of :meth:`report` as a scalar float64 tensor (NaN where
        undefined; classifier fields only with a classifier)."""
        stats = self.stats()
        if int(stats.state_dict()["counts"].sum()) == 0:
            return self._undefined()  # torchmetrics has warned that nothing was updated
        report = self.report()
        return {
            name: torch.tensor(value, dtype=torch.float64, device=self.stats_state.device)
            for name, value in dataclasses.asdict(report).items()
            if isinstance(value, float)
        }

    def _undefined(self) -> dict[str, Tensor]:
        """NaN for every value :meth:`compute` returns, for a metric that saw nothing."""
        with_classifier = self._classifier[0] is not None
        second_pass = {"nc4_ncc_mismatch", "ncc_accuracy", "classifier_accuracy"}
        names = [
            field.name
            for field in dataclasses.fields(CollapseReport)
            if str(field.type) in ("float", "<class 'float'>")
            or (with_classifier and "float" in str(field.type) and field.name not in second_pass)
        ]
        nan = float("nan")
        device = self.stats_state.device
        return {name: torch.tensor(nan, dtype=torch.float64, device=device) for name in names}
