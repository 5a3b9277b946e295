"""Losses for classifiers with a fixed frame, all called as ``loss(features, labels, frame)``.

* ``features`` -- (B, d) the features h the frame sees (a head's ``return_features=True``
  output, after its neck); B >= 1.
* ``labels`` -- (B,) integer class indices, or mixup targets ``(y_a, y_b, lam)`` with
  ``lam`` a float, a 0-d tensor or a (B,) tensor; the loss is then
  ``lam * L(h, y_a) + (1 - lam) * L(h, y_b)`` per sample (:func:`mixup_loss`, the one
  place that combination is written).
* ``frame`` -- (K, d) class vectors W (rows); cast to the features' dtype, so autocast and
  half precision work.

Losses: :class:`DotRegressionLoss` ([Y22], docs/theory.md §3), :class:`FrameCrossEntropy`,
and :class:`CosineFrameLoss` ([L23]'s cross-entropy plus cosine regression to a target
Gram, docs/theory.md §6). :class:`SoftLabelCrossEntropy` (Bertinetto et al. 2020's
hierarchy baseline, docs/theory.md §7) works on any classifier's logits and is called
``loss(logits, labels)``. :func:`mixup_loss` applies any loss, these or e.g.
``nn.CrossEntropyLoss``, to mixup targets. The long-tailed baselines on logits
(:class:`LogitAdjustedLoss`, :class:`BalancedSoftmaxLoss`, :class:`LDAMLoss`,
:class:`FocalLoss`, :func:`class_balanced_weights`, ...) live in
:mod:`neuralcollapse.losses.longtail` (all re-exported by :mod:`neuralcollapse.losses`).

Shapes and dtypes are checked on every call (free); an empty batch is an error (a mean
over no samples would be NaN). Label values are range-checked when they live on the CPU.
On an accelerator that check would stall the device every step, so there an out-of-range
label surfaces as PyTorch's own indexing error instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neuralcollapse._internal.checks import check_float
from neuralcollapse.frames import target_similarity
from neuralcollapse.hierarchy import (
    DEFAULT_CONVENTION,
    ClassDistances,
    Hierarchy,
    distance_matrix,
)
from neuralcollapse.losses.context import LossContext
from neuralcollapse.losses.mixup import (
    MixupTargets,
    mixup_loss,
)
from neuralcollapse.losses.mixup import (
    check_batch as _check_batch,
)
from neuralcollapse.losses.mixup import (
    check_reduction as _check_reduction,
)
from neuralcollapse.registry import FRAMES, register_loss

__all__ = [
    "CosineFrameLoss",
    "DotRegressionLoss",
    "FrameCrossEntropy",
    "SoftLabelCrossEntropy",
    "batch_balance_weights",
]

NORM_EPS = 1e-12


def _check_number(name: str, value: object, *, positive: bool) -> float:
    """A finite float, > 0 when ``positive`` else >= 0 (messages from ``check_float``)."""
    return check_float(name, value, minimum=0.0, strict_minimum=positive)


def _check_features_and_frame(features: torch.Tensor, frame: torch.Tensor) -> None:
    if not isinstance(features, torch.Tensor) or features.ndim != 2:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)
        raise ValueError(f"features must be a (B, d) tensor, got {shape}")
    if not features.is_floating_point():
        raise ValueError(f"features must be floating point, got dtype {features.dtype}")
    _check_batch(features.shape[0], "features")
    # On the CPU a NaN check is free beside the loss; on an accelerator it would stall the
    # device every step, and the trainer checks the loss itself. FloatingPointError, as
    # for a diverged loss: the trainer reports either as a failed run (exit 1).
    if features.device.type == "cpu" and not bool(torch.isfinite(features.sum())):
        bad = int((~torch.isfinite(features).all(dim=1)).sum())
        if bad:
            raise FloatingPointError(
                f"features hold NaN or inf in {bad} of {features.shape[0]} rows, so the loss "
                "became NaN: lower optim.lr or set optim.grad_clip (or check the inputs)"
            )
    if not isinstance(frame, torch.Tensor) or frame.ndim != 2:
        shape = tuple(frame.shape) if isinstance(frame, torch.Tensor) else type(frame)
        raise ValueError(f"frame must be a (K, d) tensor, got {shape}")
    if frame.shape[1] != features.shape[1]:
        raise ValueError(
            f"features have d={features.shape[1]} but the frame has d={frame.shape[1]}: pass "
            "the head's output features (after its projection and neck), not the backbone's"
        )


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


class _FrameLoss(nn.Module):
    """Shared plumbing: validation, mixup targets, reduction. Subclasses give per-sample loss."""

    def __init__(self, reduction: str) -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def per_sample(
        self, features: torch.Tensor, labels: torch.Tensor, frame: torch.Tensor
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra(self, features: torch.Tensor) -> torch.Tensor | None:
        """Label-independent per-sample term added once (not per mixup branch)."""
        return None

    def forward(
        self, features: torch.Tensor, labels: torch.Tensor | MixupTargets, frame: torch.Tensor
    ) -> torch.Tensor:
        """Loss of (B, d) features against (B,) labels or mixup targets; see module doc."""
        _check_features_and_frame(features, frame)
        frame = frame.to(device=features.device, dtype=features.dtype)
        loss = mixup_loss(
            lambda h, y: self.per_sample(h, y, frame),
            features,
            labels,
            num_classes=frame.shape[0],
        )
        extra = self.extra(features)
        if extra is not None:
            loss = loss + extra
        return _reduce(loss, self.reduction)


# --------------------------------------------------------------------------- DR


def batch_balance_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-sample weights gamma / n_y, n_y = count of the sample's class in the batch.

    gamma = B / (number of distinct classes in the batch), so the weights average to 1 over
    the classes present. (B,) float64 tensor on the labels' device.
    """
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    gamma = labels.shape[0] / (counts > 0).sum().clamp_min(1).to(torch.float64)
    return gamma / counts[labels]


class DotRegressionLoss(_FrameLoss):
    """The dot-regression (DR) loss of [Y22]: pull h toward its class vector, no push
    (docs/theory.md §3).

    ``form="paper"`` (default), the paper's formula with t = W[y]:
        L = (t.h - sqrt(E_W E_H))^2 / (2 sqrt(E_W E_H)),  E_W = ||t||^2,  E_H = feature_budget
    (E_H is a constant: 1 when features are L2-normalised). Its gradient on h is
    (t.h - sqrt(E_W E_H)) t / sqrt(E_W E_H).

    ``form="reference"``, the authors' released code:
        L = 0.5 (t.h - ||t|| ||h||)^2 / ||h||   with ||t|| and ||h|| detached,
    (``feature_budget`` unused); with unit h this is 0.5 (cos - 1)^2. ||h|| is clamped at
    1e-12 to keep h = 0 finite.

    Args:
        form: ``"paper"`` or ``"reference"``.
        feature_budget: E_H > 0 of the paper form.
        batch_reweight: weight each sample by gamma / n_y (:func:`batch_balance_weights`),
            the reference code's default. The reference code scales the target of class k by
            sqrt(gamma / n_k); in the reference form that is exactly this weighting (both
            terms scale by the square root, the square restores gamma / n_k). In the paper
            form the same per-sample weight is applied.
        norm_penalty: c >= 0; adds c * ||h|| per sample (the ImageNet-LT recipe uses 0.01).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-sample, shape (B,)).
    """

    FORMS = ("paper", "reference")

    def __init__(
        self,
        *,
        form: str = "paper",
        feature_budget: float = 1.0,
        batch_reweight: bool = False,
        norm_penalty: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        if form not in self.FORMS:
            raise ValueError(f"form must be one of {', '.join(self.FORMS)}, got {form!r}")
        self.form = form
        self.feature_budget = _check_number("feature_budget", feature_budget, positive=True)
        self.batch_reweight = bool(batch_reweight)
        self.norm_penalty = _check_number("norm_penalty", norm_penalty, positive=False)

    def per_sample(
        self, features: torch.Tensor, labels: torch.Tensor, frame: torch.Tensor
    ) -> torch.Tensor:
        targets = frame[labels]  # (B, d)
        dots = (targets * features).sum(dim=1)
        if self.form == "paper":
            budget = torch.sqrt((targets * targets).sum(dim=1) * self.feature_budget)
            loss = (dots - budget) ** 2 / (2 * budget)
        else:
            target_norm = targets.norm(dim=1).detach()
            feature_norm = features.norm(dim=1).detach().clamp_min(NORM_EPS)
            loss = 0.5 * (dots - target_norm * feature_norm) ** 2 / feature_norm
        if self.batch_reweight:
            loss = loss * batch_balance_weights(labels, frame.shape[0]).to(loss.dtype)
        return loss

    def extra(self, features: torch.Tensor) -> torch.Tensor | None:
        if self.norm_penalty == 0:
            return None
        return self.norm_penalty * features.norm(dim=1)

    def extra_repr(self) -> str:
        return (
            f"form={self.form!r}, feature_budget={self.feature_budget}, "
            f"batch_reweight={self.batch_reweight}, norm_penalty={self.norm_penalty}, "
            f"reduction={self.reduction!r}"
        )


# --------------------------------------------------------------------------- CE


class FrameCrossEntropy(_FrameLoss):
    """Cross-entropy on the logits ``scale * h @ W.T``.

    With unit features and a unit-row frame the logits lie in [-1, 1], too flat for
    cross-entropy to fit; ``scale`` (an inverse temperature) fixes that.

    Args:
        scale: logit scale > 0.
        label_smoothing: in [0, 1), as in :func:`torch.nn.functional.cross_entropy`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(
        self, *, scale: float = 1.0, label_smoothing: float = 0.0, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        self.scale = _check_number("scale", scale, positive=True)
        smoothing = _check_number("label_smoothing", label_smoothing, positive=False)
        if smoothing >= 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = smoothing

    def per_sample(
        self, features: torch.Tensor, labels: torch.Tensor, frame: torch.Tensor
    ) -> torch.Tensor:
        logits = self.scale * (features @ frame.T)
        return F.cross_entropy(
            logits, labels, reduction="none", label_smoothing=self.label_smoothing
        )

    def extra_repr(self) -> str:
        return (
            f"scale={self.scale}, label_smoothing={self.label_smoothing}, "
            f"reduction={self.reduction!r}"
        )


# --------------------------------------------------------------------------- cosine frame


class CosineFrameLoss(_FrameLoss):
    """[L23]'s loss: cross-entropy plus a regression of cosines onto a target similarity.

    Per sample, with z the (unnormalised) features and S the (K, K) target cosines::

        (1 - alpha) CE(z W^T, y) + alpha sum_c (cos(w_c, z) - S[c, y])^2

    averaged over the batch with ``reduction="mean"`` (docs/theory.md §6). The norm of z acts as a
    temperature for the CE term. ``S`` is usually
    ``nc.frames.hierarchy_similarity(hierarchy, gamma=...).matrix``; with the ETF Gram
    (1 on the diagonal, -1/(K-1) elsewhere) it pulls features onto a simplex ETF.

    Args:
        similarity: (K, K) target cosines (a tensor, or a HierarchySimilarity).
        alpha: weight in [0, 1] of the cosine term ([L23]: 0.4 on CIFAR-100).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    similarity: torch.Tensor

    def __init__(self, similarity: torch.Tensor, *, alpha: float, reduction: str = "mean") -> None:
        super().__init__(reduction)
        matrix = getattr(similarity, "matrix", similarity)
        if (
            not isinstance(matrix, torch.Tensor)
            or matrix.ndim != 2
            or (matrix.shape[0] != matrix.shape[1])
        ):
            shape = tuple(matrix.shape) if isinstance(matrix, torch.Tensor) else type(matrix)
            raise ValueError(f"similarity must be a square (K, K) tensor, got {shape}")
        if not matrix.is_floating_point() or not bool(torch.isfinite(matrix).all()):
            raise ValueError("similarity must be a finite floating-point tensor")
        alpha = _check_number("alpha", alpha, positive=False)
        if alpha > 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.alpha = alpha
        self.register_buffer("similarity", matrix.detach().clone())

    def per_sample(
        self, features: torch.Tensor, labels: torch.Tensor, frame: torch.Tensor
    ) -> torch.Tensor:
        if frame.shape[0] != self.similarity.shape[0]:
            raise ValueError(
                f"the frame has K={frame.shape[0]} classes but the similarity matrix has "
                f"K={self.similarity.shape[0]}"
            )
        cross_entropy = F.cross_entropy(features @ frame.T, labels, reduction="none")
        cosines = F.normalize(features, dim=1, eps=NORM_EPS) @ F.normalize(frame, dim=1).T
        targets = self.similarity.to(features.dtype)[labels]  # row y = S[:, y] (S symmetric)
        regression = ((cosines - targets) ** 2).sum(dim=1)
        return (1 - self.alpha) * cross_entropy + self.alpha * regression

    def extra_repr(self) -> str:
        k = self.similarity.shape[0]
        return f"num_classes={k}, alpha={self.alpha}, reduction={self.reduction!r}"


# --------------------------------------------------------------------------- soft labels


class SoftLabelCrossEntropy(nn.Module):
    """Cross-entropy against hierarchy-aware soft labels (Bertinetto et al., CVPR 2020).

    The target of class y puts mass ``q_y(c) = softmax_c(-beta * D[y, c] / m)`` on every
    class c, with D the LCA distances and m = max D (``normalize_distances=True``, as
    making-better-mistakes and [L23] do) or m = 1: siblings of y get more than distant
    classes, and a large beta approaches the one-hot target. Called ``loss(logits,
    labels)`` (labels (B,) or mixup targets). docs/theory.md §7.

    Reproducing making-better-mistakes: their ``beta`` with ``normalize_distances=True``
    gives the same targets (unnormalised, use ``beta / max D``). Their loss is
    ``nn.KLDivLoss()`` (mean over batch x classes): ``form="kl",
    reduction="elementwise_mean"`` gives its value exactly, and their learning rate and
    weight decay then transfer unchanged. The gradients of ``reduction="mean"`` are K
    times theirs: with it, use their learning rate divided by K and their weight decay
    multiplied by K (docs/theory.md §7).

    Args:
        lca: a Hierarchy, a ClassDistances or (K, K) LCA distances.
        beta: > 0, the sharpness of the soft labels.
        normalize_distances: divide D by its maximum before the softmax.
        reduction: ``"mean"`` (over the batch), ``"elementwise_mean"`` (over batch x
            classes, PyTorch's ``KLDivLoss(reduction="mean")``), ``"sum"`` or ``"none"``
            (per sample, shape (B,)).
        form: ``"cross_entropy"`` -sum_c q_y(c) log p(c), or ``"kl"``, KL(q_y || p) = the
            cross-entropy minus the entropy of q_y: same gradients, the value their code
            logs.
        convention: the LCA distance of a Hierarchy, ``"level"`` or ``"height"``.

    Attributes:
        targets: (K, K) float32 buffer, row y = q_y.
        target_entropy: (K,) float64 buffer, the entropy of q_y (``form="kl"``; kept in
            float64 so that the logged KL is not off by float32 rounding of the entropy).
    """

    REDUCTIONS = ("mean", "elementwise_mean", "sum", "none")
    FORMS = ("cross_entropy", "kl")
    targets: torch.Tensor
    target_entropy: torch.Tensor

    def __init__(
        self,
        lca: Hierarchy | ClassDistances | torch.Tensor,
        *,
        beta: float,
        normalize_distances: bool = True,
        reduction: str = "mean",
        form: str = "cross_entropy",
        convention: str = DEFAULT_CONVENTION,
    ) -> None:
        super().__init__()
        distances = distance_matrix(lca, convention=convention).to(torch.float64).cpu()
        beta = _check_number("beta", beta, positive=True)
        if reduction not in self.REDUCTIONS:
            raise ValueError(
                f"reduction must be one of {', '.join(self.REDUCTIONS)}, got {reduction!r}"
            )
        if form not in self.FORMS:
            raise ValueError(f"form must be one of {', '.join(self.FORMS)}, got {form!r}")
        self.beta, self.reduction, self.form = beta, reduction, form
        self.normalize_distances = bool(normalize_distances)
        if self.normalize_distances and distances.max() > 0:
            distances = distances / distances.max()
        targets = torch.softmax(-beta * distances, dim=1)
        self.register_buffer("targets", targets.float())
        entropy = -torch.special.xlogy(targets, targets).sum(dim=1)
        self.register_buffer("target_entropy", entropy)

    def _per_sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits, dim=1)
        loss = -(self.targets.to(logits.dtype)[labels] * log_probs).sum(dim=1)
        if self.form == "kl":
            entropy = self.target_entropy.to(logits.device)[labels]
            loss = (loss.to(torch.float64) - entropy).to(logits.dtype)
        return loss

    def forward(self, logits: torch.Tensor, labels: torch.Tensor | MixupTargets) -> torch.Tensor:
        """Loss of (B, K) logits against (B,) labels or mixup targets."""
        k = self.targets.shape[0]
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] != k:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
            raise ValueError(f"logits must be (B, {k}), got {shape}")
        loss = mixup_loss(self._per_sample, logits, labels, num_classes=k)
        if self.reduction == "elementwise_mean":
            return loss.sum() / (loss.shape[0] * k)
        return _reduce(loss, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.targets.shape[0]}, beta={self.beta}, "
            f"normalize_distances={self.normalize_distances}, form={self.form!r}, "
            f"reduction={self.reduction!r}"
        )


# --------------------------------------------------------------------------- registry


@register_loss("dr", reads="features")
def build_dot_regression(ctx: LossContext) -> nn.Module:
    """[Y22]'s dot-regression loss onto the fixed frame (``loss.form``,
    ``loss.feature_budget``, ``loss.batch_reweight``, ``loss.norm_penalty``)."""
    cfg = ctx.config.loss
    return DotRegressionLoss(
        form=cfg.form,
        feature_budget=cfg.feature_budget,
        batch_reweight=cfg.batch_reweight,
        norm_penalty=cfg.norm_penalty,
    )


@register_loss("cosine_frame", reads="features")
def build_cosine_frame(ctx: LossContext) -> nn.Module:
    """[L23]'s cross-entropy + cosine regression onto the frame's target similarity
    (``loss.alpha``): the HAFrame's S for a hierarchy frame, else the frame's own cosines."""
    config = ctx.config
    tree_frame = FRAMES.get(config.head.kind).meta.get("hierarchy", False)
    similarity = target_similarity(
        ctx.head_frame,
        hierarchy=ctx.hierarchy if tree_frame else None,
        gamma=config.head.gamma,
        convention=config.data.lca_convention,
    )
    return CosineFrameLoss(similarity.float(), alpha=config.loss.alpha)


@register_loss("soft_ce", reads="logits", hierarchy=True)
def build_soft_label_cross_entropy(ctx: LossContext) -> nn.Module:
    """Bertinetto et al. 2020's hierarchy soft-label cross-entropy (``loss.beta``,
    ``loss.normalize_distances``, ``loss.soft_reduction``)."""
    cfg = ctx.config.loss
    if ctx.hierarchy is None:
        raise ValueError("loss.name='soft_ce' needs a class hierarchy: set data.hierarchy")
    return SoftLabelCrossEntropy(
        ctx.hierarchy,
        beta=cfg.beta,
        normalize_distances=cfg.normalize_distances,
        reduction=cfg.soft_reduction,
        convention=ctx.config.data.lca_convention,
    )
