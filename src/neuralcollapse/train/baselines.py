"""The long-tailed baselines' training losses of a run, from the ``loss.*`` keys.

Which config selects which method (docs/theory.md §8, "Long-tailed baselines"):

* ``loss.name=logit_adjusted`` (``loss.tau``): Menon et al. 2021's loss-time logit
  adjustment; the post-hoc variant is ``loss.name=ce`` with ``eval.logit_adjust_tau``.
* ``loss.name=balanced_softmax``: Ren et al. 2020.
* ``loss.name=ldam`` (``loss.max_margin``, ``loss.logit_scale``) with ``loss.drw_epoch``:
  LDAM-DRW, Cao et al. 2019 (on a cosine classifier, ``head.cosine=true``).
* ``loss.name=focal`` (``loss.focal_gamma``) with ``loss.class_weight=class_balanced``
  (``loss.cb_beta``): Cui et al. 2019's class-balanced focal loss; the same weights on
  ``ce`` give class-balanced cross-entropy.

The two-stage methods (cRT, LWS, tau-normalisation) are :mod:`neuralcollapse.train.stage2`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import Tensor, nn

from neuralcollapse.errors import usage_errors
from neuralcollapse.losses.longtail import (
    BalancedSoftmaxLoss,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    class_balanced_weights,
    deferred_reweighting,
)
from neuralcollapse.train.config import Config

__all__ = ["LONGTAIL_LOSSES", "longtail_loss", "uses_class_counts"]

LONGTAIL_LOSSES = ("logit_adjusted", "balanced_softmax", "ldam", "focal")


def uses_class_counts(config: Config) -> bool:
    """Whether the configured loss needs the training class counts."""
    cfg = config.loss
    return cfg.name in LONGTAIL_LOSSES or cfg.class_weight != "none" or cfg.drw_epoch is not None


def longtail_loss(
    config: Config, class_counts: Tensor | None
) -> tuple[nn.Module, Callable[[int], Tensor | None] | None]:
    """The loss ``loss(logits, targets)`` of ``config`` and, with ``loss.drw_epoch``, the
    per-epoch class weights (:func:`~neuralcollapse.losses.longtail.deferred_reweighting`).

    Class-weighted ``ce`` is :class:`~neuralcollapse.losses.longtail.FocalLoss` with
    gamma = 0 (the same value as ``nn.CrossEntropyLoss(weight=w)``).

    Raises:
        ValueError: ``class_counts`` missing; UsageError: a class without training samples.
    """
    if class_counts is None:
        raise ValueError(
            f"loss.name={config.loss.name!r} (or class weights) needs the training class "
            "counts: pass class_counts=data.train_counts to build_loss"
        )
    cfg = config.loss
    with usage_errors("loss"):
        weight = (
            class_balanced_weights(class_counts, cfg.cb_beta)
            if cfg.class_weight == "class_balanced"
            else None
        )
        if cfg.name == "logit_adjusted":
            inner: nn.Module = LogitAdjustedLoss(class_counts, tau=cfg.tau)
        elif cfg.name == "balanced_softmax":
            inner = BalancedSoftmaxLoss(class_counts)
        elif cfg.name == "ldam":
            inner = LDAMLoss(
                class_counts, max_margin=cfg.max_margin, scale=cfg.logit_scale, weight=weight
            )
        elif cfg.name == "focal":
            inner = FocalLoss(cfg.focal_gamma, weight=weight)
        else:  # class-weighted ce
            inner = FocalLoss(0.0, weight=weight)
        epoch_weights = None
        if cfg.drw_epoch is not None:
            epoch_weights = functools.partial(
                deferred_reweighting, class_counts, start_epoch=cfg.drw_epoch, beta=cfg.cb_beta
            )
            class_balanced_weights(class_counts, cfg.cb_beta)  # checked now, not at the switch
    return inner, epoch_weights
