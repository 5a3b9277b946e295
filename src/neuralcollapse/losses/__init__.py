"""Losses: the fixed-frame losses (:mod:`neuralcollapse.losses.frame`), the long-tailed
baselines on logits (:mod:`neuralcollapse.losses.longtail`) and the one mixup combination
(:mod:`neuralcollapse.losses.mixup`), all importable from here as ``nc.losses.NAME``.

Importing this package registers every built-in loss (``neuralcollapse.registry.LOSSES``:
each is one decorated builder beside its class, taking a :class:`LossContext`)."""

from neuralcollapse.losses.context import LossContext
from neuralcollapse.losses.frame import (
    CosineFrameLoss,
    DotRegressionLoss,
    FrameCrossEntropy,
    SoftLabelCrossEntropy,
    batch_balance_weights,
)
from neuralcollapse.losses.longtail import (
    BalancedSoftmaxLoss,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    class_balanced_weights,
    deferred_reweighting,
    ldam_margins,
    log_prior,
    posthoc_logit_adjustment,
)
from neuralcollapse.losses.mixup import MixupTargets, mixup_loss

__all__ = [
    "BalancedSoftmaxLoss",
    "CosineFrameLoss",
    "DotRegressionLoss",
    "FocalLoss",
    "FrameCrossEntropy",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "LossContext",
    "MixupTargets",
    "SoftLabelCrossEntropy",
    "batch_balance_weights",
    "class_balanced_weights",
    "deferred_reweighting",
    "ldam_margins",
    "log_prior",
    "mixup_loss",
    "posthoc_logit_adjustment",
]
