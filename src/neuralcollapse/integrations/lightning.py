"""A Lightning callback that measures neural collapse on the validation (and training) data.

Needs the lightning extra: ``pip install 'neuralcollapse[lightning]'`` (the ``lightning``
package; with only the older ``pytorch_lightning`` installed, that one is used)::

    import lightning as L
    from neuralcollapse.integrations.lightning import NeuralCollapseCallback

    callback = NeuralCollapseCallback(every_n_epochs=5, train_counts=train_counts)
    trainer = L.Trainer(max_epochs=200, callbacks=[callback], logger=CSVLogger("logs"))
    trainer.fit(module, train_loader, val_loader)
    # logged every 5th epoch: nc/nc1, nc/nc2_etf_distance_means, nc/nc3_self_duality,
    # nc/nc4_ncc_mismatch, ..., nc/top1, nc/balanced, nc/many, nc/medium, nc/few

With ``splits=("val", "train")`` it also reads the training loader at the end of every N-th
training epoch and logs the same numbers under ``nc/train/...`` (neural collapse is a
property of the training features; the loader is read as it is, augmentation included, so
pass an unaugmented ``train_eval_loader`` for the clean training geometry).

At the end of every N-th validation epoch the callback reads the validation loader (twice
when it does not fit in the cache, for NC4) through
:func:`neuralcollapse.metrics.collect.collect_evaluation`: features are what the
classifier head sees (the head's ``features()``: after its neck, in the frame's dimension),
the classifier is the head's effective one (``scale * frame`` for a fixed frame), and the
numbers go to ``pl_module.log_dict``, i.e. to every logger of the trainer (and to
callbacks such as ModelCheckpoint, which can monitor ``nc/nc1``). Under DDP each process
reads its own shard and the statistics are summed exactly over processes.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from neuralcollapse._internal.checks import check_int
from neuralcollapse.data.files import optional_module
from neuralcollapse.data.longtail import shot_groups
from neuralcollapse.heads import FixedFrameHead, LearnableHead
from neuralcollapse.metrics.collect import collect_evaluation
from neuralcollapse.metrics.evaluation import CACHE_LIMIT, Evaluation

if TYPE_CHECKING:
    from neuralcollapse.data.longtail import ShotGroups

__all__ = ["NeuralCollapseCallback"]


def _lightning() -> Any:
    """``lightning.pytorch``, else ``pytorch_lightning``, else an ImportError naming the
    extra."""
    try:
        return importlib.import_module("lightning.pytorch")
    except ImportError:
        pass
    try:
        return importlib.import_module("pytorch_lightning")
    except ImportError:
        return optional_module(
            "lightning.pytorch", "lightning", "lightning", "NeuralCollapseCallback"
        )


_pl = _lightning()

# Fields of the collapse report that describe the data, not its geometry: not logged.
_BOOKKEEPING = frozenset({"num_classes", "dim", "num_samples", "sigma_b_rank"})


class NeuralCollapseCallback(_pl.Callback):
    """Log NC1-NC4 and (shot-group) accuracy of the validation data every N epochs.

    Args:
        every_n_epochs: measure after the validation of every N-th epoch (1-based: with
            N = 5, epochs 5, 10, ...). The sanity check before training is skipped.
        layer: name (in ``pl_module.named_modules()``) of the classifier module; default:
            the one :class:`~neuralcollapse.heads.FixedFrameHead` or
            :class:`~neuralcollapse.heads.LearnableHead` of the module (an error asks for
            ``layer`` when there is none or several). Any module works whose input is the
            ``(B, d)`` feature; one with a ``features(x)`` method and a ``weight``
            (K, d) is measured in its own feature space with its own classifier.
        groups: named groups of classes for per-group accuracy: the ShotGroups of
            ``nc.data.shot_groups(train_counts)`` as it is, or a dict name -> classes.
        train_counts: ``(K,)`` training samples per class: gives the default groups
            (``shot_groups(train_counts)``: many > 100, medium 20-100, few < 20) and the
            minority classes of the report.
        prefix: put before every logged name (default ``"nc/"``).
        dataloader_idx: which validation loader, when there are several.
        ncc: also measure NC4 (``nc4_ncc_mismatch``, a second pass unless cached).
        global_mean: ``"weighted"`` or ``"balanced"`` (see CollapseStats).
        cache_limit: values (features plus logits) kept from the first pass so that the
            second pass needs no forward passes; past it the loader is read again.
        splits: which data to measure: ``"val"`` (the validation loader, logged as
            ``{prefix}{name}``) and/or ``"train"`` (logged as ``{prefix}train/{name}``).
        train_eval_loader: the loader read for ``"train"`` (default: the trainer's own
            training loader, with its shuffling and augmentation).

    After a measurement :attr:`last` holds the whole
    :class:`~neuralcollapse.metrics.Evaluation` of the validation data (class means,
    per-class accuracy, the report) and :attr:`last_epoch` its 0-based epoch;
    :attr:`last_train` and :attr:`last_train_epoch` the same for the training data.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        *,
        layer: str | None = None,
        groups: Mapping[str, Tensor] | ShotGroups | None = None,
        train_counts: Tensor | None = None,
        prefix: str = "nc/",
        dataloader_idx: int = 0,
        ncc: bool = True,
        global_mean: str = "weighted",
        cache_limit: int = CACHE_LIMIT,
        splits: Sequence[str] = ("val",),
        train_eval_loader: Any = None,
    ) -> None:
        super().__init__()
        if isinstance(splits, str) or not set(splits) <= {"val", "train"} or not splits:
            raise ValueError(
                f"splits must be a non-empty list of 'val' and 'train', got {splits!r}"
            )
        self.splits = tuple(dict.fromkeys(splits))
        self.train_eval_loader = train_eval_loader
        self.every_n_epochs = check_int("every_n_epochs", every_n_epochs, minimum=1)
        self.dataloader_idx = check_int("dataloader_idx", dataloader_idx, minimum=0)
        self.cache_limit = check_int("cache_limit", cache_limit, minimum=0)
        if not isinstance(prefix, str):
            raise ValueError(f"prefix must be a string, got {type(prefix).__name__}")
        if groups is None and train_counts is not None:
            groups = shot_groups(train_counts)
        self.layer, self.groups, self.train_counts = layer, groups, train_counts
        self.prefix, self.ncc, self.global_mean = prefix, bool(ncc), global_mean
        self.last: Evaluation | None = None
        self.last_epoch: int | None = None
        self.last_train: Evaluation | None = None
        self.last_train_epoch: int | None = None

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if "val" not in self.splits:
            return
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        distributed = trainer.world_size > 1
        evaluation = self.measure(pl_module, self._loader(trainer), distributed)
        self.last, self.last_epoch = evaluation, trainer.current_epoch
        self._log(pl_module, self.values(evaluation), distributed)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if "train" not in self.splits or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        loader = self.train_eval_loader
        if loader is None:
            loader = trainer.train_dataloader
        if loader is None:
            raise ValueError(
                "NeuralCollapseCallback: splits includes 'train' but the trainer has no "
                "training loader; pass train_eval_loader="
            )
        distributed = trainer.world_size > 1
        evaluation = self.measure(pl_module, loader, distributed)  # eval mode, restored
        self.last_train, self.last_train_epoch = evaluation, trainer.current_epoch
        values = self.values(evaluation)
        train_prefix = f"{self.prefix}train/"
        self._log(
            pl_module,
            {train_prefix + k.removeprefix(self.prefix): v for k, v in values.items()},
            distributed,
        )

    @staticmethod
    def _log(pl_module: Any, values: dict[str, float], distributed: bool) -> None:
        # Every process holds the same (all-reduced) numbers; sync_dist only keeps
        # Lightning from warning about epoch-level values under DDP.
        pl_module.log_dict(values, on_step=False, on_epoch=True, sync_dist=distributed)

    def measure(self, module: nn.Module, loader: Any, distributed: bool = False) -> Evaluation:
        """The evaluation of ``module`` on ``loader`` (what the callback logs); usable
        outside a trainer too."""
        return collect_evaluation(
            module,
            loader,
            layer=self.layer if self.layer is not None else _find_head(module),
            ncc=self.ncc,
            global_mean=self.global_mean,  # type: ignore[arg-type]
            groups=self.groups,
            train_counts=self.train_counts,
            distributed=distributed,
            cache_limit=self.cache_limit,
        )

    def values(self, evaluation: Evaluation) -> dict[str, float]:
        """The logged numbers: the collapse report's geometry and NC4, accuracy (top1,
        balanced) and one accuracy per group; undefined values are left out."""
        metrics = evaluation.metrics
        collapse = metrics["collapse"]
        values = {
            name: value
            for name, value in collapse.items()
            if name not in _BOOKKEEPING and isinstance(value, (int, float))
        }
        group_names = ["top1", "balanced", *_group_names(self.groups)]
        values.update({name: metrics[name] for name in group_names if name in metrics})
        return {
            f"{self.prefix}{name}": float(value)
            for name, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }

    def _loader(self, trainer: Any) -> Any:
        loaders = trainer.val_dataloaders
        if isinstance(loaders, Mapping):
            loaders = list(loaders.values())
        if not isinstance(loaders, (list, tuple)):
            loaders = [loaders]
        if self.dataloader_idx >= len(loaders) or loaders[self.dataloader_idx] is None:
            raise ValueError(
                f"NeuralCollapseCallback: dataloader_idx={self.dataloader_idx} but the "
                f"trainer has {len(loaders)} validation loader(s); pass val_dataloaders to "
                "trainer.fit or a smaller dataloader_idx"
            )
        return loaders[self.dataloader_idx]


def _find_head(module: nn.Module) -> str:
    """The name of the module's one FixedFrameHead or LearnableHead."""
    heads = [
        name
        for name, sub in module.named_modules()
        if isinstance(sub, (FixedFrameHead, LearnableHead)) and name
    ]
    if len(heads) == 1:
        return heads[0]
    found = f"several heads {heads}" if heads else "no FixedFrameHead or LearnableHead"
    raise ValueError(
        f"NeuralCollapseCallback: the module has {found}; pass layer='<name of the "
        "classifier module>' (a name from module.named_modules(), e.g. 'fc')"
    )


def _group_names(groups: Any) -> list[str]:
    if groups is None:
        return []
    as_dict = getattr(groups, "as_dict", None)
    return list(as_dict() if callable(as_dict) else groups)
