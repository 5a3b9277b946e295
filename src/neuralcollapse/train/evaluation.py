"""Evaluation of a run's model on its splits, and the schedule that decides what is measured.

:func:`evaluate_splits` measures, ONE forward pass per split, accuracy (overall, balanced,
per class and per shot group), with a class tree the hierarchical metrics, and (unless
``collapse=False``, for the epochs without collapse metrics) the collapse report, all
through the one two-pass driver :func:`neuralcollapse.metrics.evaluation.evaluate_model`
(its second pass reads the cached first pass, not the model).

:func:`eval_plan` says what an epoch gets (``eval.every``, ``eval.collapse_every``,
the last epoch). This module only says which loaders, classifier and class groups a run
uses. Shot groups and the minority classes of the collapse report always follow the
TRAINING counts (of the training set left after the validation split and the long-tailed
subset), also when the validation or test split is evaluated.

With ``eval.logit_adjust_tau`` = tau > 0 the predictions are post-hoc logit-adjusted
(Menon et al. 2021): accuracies and NC4 use ``logits - tau * log prior`` (training prior);
the features, class means and classifier of the collapse report are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from neuralcollapse.data import shot_groups, shot_groups_by_index
from neuralcollapse.errors import usage_errors
from neuralcollapse.hierarchy import distance_matrix
from neuralcollapse.losses.longtail import log_prior, posthoc_logit_adjustment
from neuralcollapse.metrics.evaluation import Evaluation, evaluate_model
from neuralcollapse.train.build import Classifier
from neuralcollapse.train.config import Config
from neuralcollapse.train.data import Batches, Loaders, TrainingData

__all__ = [
    "SPLITS",
    "EvalPlan",
    "eval_plan",
    "evaluate_splits",
    "shot_group_classes",
]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class EvalPlan:
    """What one evaluated epoch measures.

    Attributes:
        collapse: the collapse metrics of every evaluated split, and the training split
            (accuracy and collapse); otherwise the accuracy of the validation and test
            splits only.
        full: the training split whole, not its ``eval.train_subsample`` (the last epoch).
    """

    collapse: bool
    full: bool


def eval_plan(config: Config, epoch: int, *, last: bool) -> EvalPlan | None:
    """The evaluation of 1-based ``epoch`` (of a stage), or None when it is not evaluated.

    An epoch is evaluated when it is a multiple of ``eval.every`` (accuracy) or of
    ``eval.collapse_every`` (everything, the training split subsampled), and the ``last``
    epoch always gets everything on the whole training split, so that the final numbers
    of a run are exact.
    """
    if last:
        return EvalPlan(collapse=True, full=True)
    collapse = epoch % config.eval.collapse_every == 0
    if collapse or epoch % config.eval.every == 0:
        return EvalPlan(collapse=collapse, full=False)
    return None


def shot_group_classes(config: Config, data: TrainingData) -> dict[str, Tensor]:
    """Class indices of the many / medium / few groups (``eval.shot_split``)."""
    if config.eval.shot_split == "index":
        k = data.num_classes  # [Y22]'s fixed ranges, 0-36-71-100 on CIFAR-100, scaled to K
        return shot_groups_by_index(k, (round(0.36 * k), round(0.71 * k))).as_dict()
    return shot_groups(data.train_counts, many=config.eval.many, few=config.eval.few).as_dict()


def _batches(loaders: Loaders, split: str, train_sample: bool) -> Batches:
    if split == "train":
        return loaders.train_sample if train_sample and loaders.train_sample else loaders.train_eval
    if split == "val":
        if loaders.val is None:
            raise ValueError(
                "the run has no validation split: set data.val_fraction or data.val_list"
            )
        return loaders.val
    return loaders.test


def _check_splits(splits: Sequence[str]) -> None:
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; use {SPLITS}")


def _scored(model: Classifier, config: Config, data: TrainingData) -> nn.Module:
    if config.eval.logit_adjust_tau > 0:
        return _PosthocAdjusted(model, data.train_counts, config.eval.logit_adjust_tau)
    return model


def evaluate_splits(
    model: Classifier,
    loaders: Loaders,
    data: TrainingData,
    config: Config,
    device: torch.device,
    *,
    splits: Sequence[str] = ("train", "test"),
    train_sample: bool = False,
    distributed: bool = False,
    collapse: bool = True,
) -> dict[str, Evaluation]:
    """Accuracy, collapse report (and hierarchical metrics) of ``model`` on ``splits``
    (of "train", "val", "test"), keyed by split name. The training split is evaluated
    without augmentation, whole, or on its ``eval.train_subsample`` with ``train_sample``.
    Under ``distributed`` each process evaluates its shard and the statistics are summed
    exactly across processes. ``collapse=False`` measures accuracy alone: one forward pass
    per split, no feature statistics (``metrics["collapse"]`` is ``{}``)."""
    _check_splits(splits)
    head = model.head
    tree, convention = data.hierarchy, config.data.lca_convention
    common = dict(
        num_classes=head.num_classes,
        classifier=head.weight.detach(),
        bias=head.bias.detach() if head.bias is not None else None,
        groups=shot_group_classes(config, data),
        lca=None if tree is None else distance_matrix(tree, convention=convention),
        train_counts=data.train_counts,
        device=device,
        distributed=distributed,
    )
    scored = _scored(model, config, data)
    return {
        split: evaluate_model(
            scored, _batches(loaders, split, train_sample), collapse=collapse, **common
        )
        for split in splits
    }


class _PosthocAdjusted(nn.Module):
    """``model`` with its logits post-hoc adjusted, same ``(x, return_features)`` call."""

    def __init__(self, model: nn.Module, class_counts: Tensor, tau: float) -> None:
        super().__init__()
        with usage_errors("eval.logit_adjust_tau"):
            log_prior(class_counts)  # a class without training samples has no prior
        self.model, self.class_counts, self.tau = model, class_counts, tau

    def forward(self, x: Tensor, return_features: bool = False):
        logits, h = self.model(x, return_features=True)
        logits = posthoc_logit_adjustment(logits, self.class_counts, self.tau)
        return (logits, h) if return_features else logits
