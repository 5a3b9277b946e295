"""Evaluation of a run's model on its splits, through the one two-pass driver.

Accuracy (overall, balanced, per class and per shot group), the collapse report and, with a
class tree, the hierarchical metrics all come from
:func:`neuralcollapse.metrics.evaluation.evaluate_model`; this module only says which
loaders, classifier and class groups a run uses. Shot groups and the minority classes of the
collapse report always follow the TRAINING counts, also when the test split is evaluated.

With ``eval.logit_adjust_tau`` = tau > 0 the predictions are post-hoc logit-adjusted
(Menon et al. 2021): accuracies and NC4 use ``logits - tau * log prior`` (training prior);
the features, class means and classifier of the collapse report are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from neuralcollapse.data import shot_groups, shot_groups_by_index
from neuralcollapse.errors import usage_errors
from neuralcollapse.hierarchy import distance_matrix
from neuralcollapse.longtail_losses import log_prior, posthoc_logit_adjustment
from neuralcollapse.metrics.evaluation import Evaluation, evaluate_model
from neuralcollapse.train.build import Classifier
from neuralcollapse.train.config import Config
from neuralcollapse.train.data import Loaders, TrainingData

__all__ = ["evaluate_splits", "shot_group_classes"]

SPLITS = ("train", "test")


def shot_group_classes(config: Config, data: TrainingData) -> dict[str, Tensor]:
    """Class indices of the many / medium / few groups (``eval.shot_split``)."""
    if config.eval.shot_split == "index":
        k = data.num_classes  # [Y22]'s fixed ranges, 0-36-71-100 on CIFAR-100, scaled to K
        return shot_groups_by_index(k, (round(0.36 * k), round(0.71 * k))).as_dict()
    return shot_groups(data.train_counts, many=config.eval.many, few=config.eval.few).as_dict()


def evaluate_splits(
    model: Classifier,
    loaders: Loaders,
    data: TrainingData,
    config: Config,
    device: torch.device,
    *,
    splits: Sequence[str] = SPLITS,
    distributed: bool = False,
) -> dict[str, Evaluation]:
    """Evaluate ``model`` on the training split (no augmentation; ``eval.train_subsample``)
    and/or the test split, keyed by split name. Under ``distributed`` each process
    evaluates its shard and the statistics are summed exactly across processes."""
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; use {SPLITS}")
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
    batches = {"train": loaders.train_eval, "test": loaders.test}
    scored: nn.Module = model
    if config.eval.logit_adjust_tau > 0:
        scored = _PosthocAdjusted(model, data.train_counts, config.eval.logit_adjust_tau)
    return {split: evaluate_model(scored, batches[split], **common) for split in splits}


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
