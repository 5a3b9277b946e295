"""Long-tailed baselines on a classifier's logits: logit adjustment, balanced softmax, LDAM
(with deferred re-weighting), focal loss and class-balanced weights.

These are the methods [Y22]'s tables put beside the fixed ETF + DR (docs/theory.md §8,
"Long-tailed baselines"). Every loss is called like ``nn.CrossEntropyLoss``::

    loss = LDAMLoss(class_counts, max_margin=0.5, scale=30.0)(logits, labels)

* ``logits`` -- (B, K) scores of any classifier (a learnable head's, or a fixed frame's).
* ``labels`` -- (B,) int64 class indices, or mixup targets ``(y_a, y_b, lam)``; the
  combination ``lam * L(z, y_a) + (1 - lam) * L(z, y_b)`` is taken by
  :func:`neuralcollapse.losses.mixup_loss` (every loss here allows mixup targets).
* ``class_counts`` -- (K,) training samples per class n_k, all >= 1 (a tensor, array or
  list; ``TrainingData.train_counts`` in a run).

**Reduction and class weights.** Losses with a ``weight`` (``LDAMLoss``, ``FocalLoss``)
take per-class weights w and one of these reductions:

* ``"weight_sum"``: ``sum_i w_{y_i} l_i / sum_i w_{y_i}``, ``nn.CrossEntropyLoss(weight=w)``'s
  weighted mean, so ``FocalLoss(gamma=0, weight=w)`` equals it;
* ``"batch"``: ``sum_i w_{y_i} l_i / B``, what Cui et al.'s and Cao et al.'s code divide by
  (class-balanced softmax: richardaecn/class-balanced-loss src/cifar_main.py:332-335,
  ``tf.losses.softmax_cross_entropy`` with per-sample weights, whose default reduction
  divides by the B non-zero weights);
* ``"mean"``: the loss's own default (``"weight_sum"`` unless its form says otherwise; the
  plain mean when ``weight`` is None, where the two agree); ``"sum"``; ``"none"`` (B,).

With mixup targets and a scalar lam each branch is reduced on its own labels; with a
per-sample lam (shape (B,)) the weighted mean divides by ``sum_i lam_i w_{y_a,i} + (1 -
lam_i) w_{y_b,i}``. ``set_class_weight`` changes the weights in place (deferred
re-weighting).

References: Menon et al. 2021 (*Long-tail learning via logit adjustment*, ICLR), Ren et al.
2020 (*Balanced Meta-Softmax*, NeurIPS), Cao et al. 2019 (*LDAM-DRW*, NeurIPS), Cui et al.
2019 (*Class-balanced loss based on effective number of samples*, CVPR), Lin et al. 2017
(*Focal loss for dense object detection*, ICCV).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralcollapse._internal.checks import check_float, check_int
from neuralcollapse.losses.context import LossContext
from neuralcollapse.losses.mixup import MixupTargets, mixup_loss
from neuralcollapse.registry import register_loss

__all__ = [
    "BalancedSoftmaxLoss",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "class_balanced_weights",
    "deferred_reweighting",
    "ldam_margins",
    "log_prior",
    "posthoc_logit_adjustment",
]

CountsLike = Tensor | np.ndarray | Sequence[int]

#: Reductions of the losses that take class weights (module doc).
WEIGHTED_REDUCTIONS = ("mean", "weight_sum", "batch", "sum", "none")


def _check_weighted_reduction(reduction: str) -> str:
    if reduction not in WEIGHTED_REDUCTIONS:
        raise ValueError(
            f"reduction must be one of {', '.join(WEIGHTED_REDUCTIONS)}, got {reduction!r}"
        )
    return reduction


# --------------------------------------------------------------------------- helpers


def _counts(class_counts: CountsLike) -> Tensor:
    """(K,) float64 CPU counts, K >= 2, every entry a finite number >= 1."""
    counts = torch.as_tensor(class_counts)
    if counts.ndim != 1 or counts.numel() < 2:
        raise ValueError(
            f"class_counts must be a 1-D sequence with one count per class (K >= 2), got "
            f"shape {tuple(counts.shape)}"
        )
    if counts.dtype == torch.bool or counts.is_complex():
        raise ValueError(f"class_counts must hold numbers, got dtype {counts.dtype}")
    counts = counts.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(counts).all()):
        raise ValueError("class_counts must be finite")
    if float(counts.min()) < 1:
        empty = torch.nonzero(counts < 1).flatten().tolist()
        raise ValueError(
            f"class_counts must be >= 1 for every class, but classes {empty[:10]} have "
            f"{counts[empty[0]].item():g}: a class without training samples has no prior; "
            "drop it or give it a count"
        )
    return counts


def _check_logits(logits: object, num_classes: int | None) -> Tensor:
    """(B, K) floating-point logits with B >= 1 (any K when ``num_classes`` is None)."""
    if (
        not isinstance(logits, Tensor)
        or logits.ndim != 2
        or (num_classes is not None and logits.shape[1] != num_classes)
    ):
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        expected = "(B, K)" if num_classes is None else f"(B, {num_classes})"
        raise ValueError(f"logits must be a {expected} tensor, one column per class, got {shape}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
    if logits.shape[0] == 0:
        raise ValueError("logits hold an empty batch (B = 0); skip empty batches")
    return logits


def _check_weight(weight: object, num_classes: int | None) -> Tensor | None:
    """None, or a (K,) finite non-negative float tensor (a detached float64 CPU copy)."""
    if weight is None:
        return None
    values = torch.as_tensor(weight)
    if values.ndim != 1 or (num_classes is not None and values.numel() != num_classes):
        expected = f"({num_classes},)" if num_classes is not None else "(K,)"
        raise ValueError(
            f"weight must have shape {expected}, one weight per class, got {tuple(values.shape)}"
        )
    if values.dtype == torch.bool or values.is_complex():
        raise ValueError(f"weight must hold real numbers, got dtype {values.dtype}")
    values = values.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(values).all()) or float(values.min()) < 0:
        raise ValueError("weight must be finite and >= 0 for every class")
    return values


def log_prior(class_counts: CountsLike) -> Tensor:
    """log pi_k = log(n_k / sum_j n_j): (K,) float64, the log class prior of the training set."""
    counts = _counts(class_counts)
    return torch.log(counts / counts.sum())


def posthoc_logit_adjustment(logits: Tensor, class_counts: CountsLike, tau: float = 1.0) -> Tensor:
    """Menon et al. 2021's post-hoc logit adjustment: ``logits - tau * log pi``.

    Applied at prediction time to a model trained with plain cross-entropy: the argmax of
    the adjusted logits estimates the balanced-error-optimal class (tau = 1 is the
    Bayes-consistent choice). The training loss is untouched.

    Args:
        logits: (B, K) scores.
        class_counts: (K,) training counts n_k >= 1 (pi_k = n_k / N).
        tau: >= 0, the strength (0 returns the logits unchanged).

    Returns:
        (B, K) adjusted logits, same dtype and device.
    """
    tau = check_float("tau", tau, minimum=0.0)
    prior = log_prior(class_counts)
    logits = _check_logits(logits, prior.numel())
    return logits - tau * prior.to(device=logits.device, dtype=logits.dtype)


def class_balanced_weights(
    class_counts: CountsLike, beta: float = 0.9999, *, dtype: torch.dtype | None = None
) -> Tensor:
    """Cui et al. 2019's class-balanced weights from the effective number of samples.

    With the effective number E_k = (1 - beta^{n_k}) / (1 - beta), the weight of class k is
    proportional to 1 / E_k = (1 - beta) / (1 - beta^{n_k}), normalised so that the K
    weights sum to K::

        w_k = K * (1 / E_k) / sum_j (1 / E_j)

    beta = 0 gives all ones; beta -> 1 approaches inverse class frequency (1 / n_k).

    Args:
        class_counts: (K,) training counts n_k >= 1.
        beta: in [0, 1) ([Cui 2019] and Cao et al.'s DRW use 0.9999 on CIFAR-LT).
        dtype: of the result (default: torch's default floating dtype, float32).

    Returns:
        (K,) tensor on the CPU summing to K (up to rounding).
    """
    counts = _counts(class_counts)
    beta = check_float("beta", beta, minimum=0.0)
    if beta >= 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}: 1 - beta^n would be 0")
    # 1 - beta^n computed as -expm1(n log beta) keeps precision for beta near 1.
    if beta == 0:
        inverse_effective = torch.ones_like(counts)
    else:
        inverse_effective = (1 - beta) / -torch.expm1(counts * float(np.log(beta)))
    weights = inverse_effective * counts.numel() / inverse_effective.sum()
    return weights.to(dtype or torch.get_default_dtype())


def deferred_reweighting(
    class_counts: CountsLike, epoch: int, *, start_epoch: int | None, beta: float = 0.9999
) -> Tensor | None:
    """Cao et al. 2019's deferred re-weighting (DRW): the class weights of epoch ``epoch``.

    None (no re-weighting) for 0-based epochs ``epoch < start_epoch`` (or when
    ``start_epoch`` is None), then :func:`class_balanced_weights` (``beta``). Cao et al.
    switch at epoch 160 of 200 on CIFAR-LT. In a plain loop::

        for epoch in range(200):
            loss_fn.set_class_weight(deferred_reweighting(counts, epoch, start_epoch=160))
            ...
    """
    epoch = check_int("epoch", epoch, minimum=0)
    if start_epoch is None or epoch < check_int("start_epoch", start_epoch, minimum=0):
        return None
    return class_balanced_weights(class_counts, beta)


def ldam_margins(class_counts: CountsLike, max_margin: float = 0.5) -> Tensor:
    """LDAM's per-class margins (Cao et al. 2019): m_k = C / n_k^(1/4), with C chosen so
    that the largest margin (the rarest class's) is ``max_margin``. (K,) float64."""
    counts = _counts(class_counts)
    max_margin = check_float("max_margin", max_margin, minimum=0.0, strict_minimum=True)
    raw = counts.pow(-0.25)
    return raw * (max_margin / raw.max())


def _reduce_weighted(
    per_sample: Callable[[Tensor, Tensor], Tensor],
    logits: Tensor,
    targets: Tensor | MixupTargets,
    weight: Tensor | None,
    reduction: str,
    num_classes: int,
    *,
    weighted_inside: bool = False,
) -> Tensor:
    """Per-sample loss -> weighted ``reduction`` with mixup (module doc).

    ``per_sample(logits, labels)`` returns the (B,) losses l_i, unweighted unless
    ``weighted_inside`` (then it has applied the class weights itself, as Cao et al.'s
    focal loss must, and ``weight`` only supplies the divisor of ``"weight_sum"``).
    ``reduction`` is ``"weight_sum"``, ``"batch"``, ``"sum"`` or ``"none"`` (``"mean"``
    resolved by the caller).
    """
    if weight is None:
        losses = mixup_loss(per_sample, logits, targets, num_classes=num_classes)
        if reduction in ("weight_sum", "batch"):
            return losses.mean()
        return losses.sum() if reduction == "sum" else losses
    w = weight.to(device=logits.device, dtype=logits.dtype)

    def weighted(z: Tensor, y: Tensor) -> Tensor:
        return per_sample(z, y) if weighted_inside else w[y] * per_sample(z, y)

    if reduction != "weight_sum":
        losses = mixup_loss(weighted, logits, targets, num_classes=num_classes)
        if reduction == "batch":
            return losses.mean()
        return losses.sum() if reduction == "sum" else losses
    lam = targets[2] if isinstance(targets, (tuple, list)) and len(targets) == 3 else None
    if isinstance(lam, Tensor) and lam.ndim == 1:  # one weighted mean over both branches
        total = mixup_loss(weighted, logits, targets, num_classes=num_classes).sum()
        mass = mixup_loss(lambda z, y: w[y], logits, targets, num_classes=num_classes).sum()
        return total / mass

    def weighted_mean(z: Tensor, y: Tensor) -> Tensor:
        return weighted(z, y).sum() / w[y].sum()

    return mixup_loss(weighted_mean, logits, targets, num_classes=num_classes)


class _LogitLoss(nn.Module):
    """Shared plumbing: number of classes, reduction, optional per-class weight buffer.

    ``num_classes`` None (an unweighted focal loss) accepts logits with any K.
    """

    weight: Tensor | None

    def __init__(self, num_classes: int | None, reduction: str, weight: object = None) -> None:
        super().__init__()
        checked = _check_weight(weight, num_classes)
        if num_classes is None and checked is not None:
            num_classes = checked.numel()
        self.num_classes = num_classes
        self.reduction = _check_weighted_reduction(reduction)
        self.register_buffer("weight", None if checked is None else checked)

    def set_class_weight(self, weight: object) -> None:
        """Replace the per-class weights: a (K,) tensor, or None for none (deferred
        re-weighting calls this between epochs); they move to the logits' device on use."""
        checked = _check_weight(weight, self.num_classes)
        if checked is None:
            self.weight = None
            return
        if self.num_classes is None:
            self.num_classes = checked.numel()
        device = next((b.device for b in self.buffers()), torch.device("cpu"))
        self.weight = checked.to(device=device, dtype=torch.float64)

    def per_sample(self, logits: Tensor, labels: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    #: what ``reduction="mean"`` means for this loss
    mean_reduction = "weight_sum"
    #: ``per_sample`` applies the class weights itself
    weighted_inside = False

    def forward(self, logits: Tensor, labels: Tensor | MixupTargets) -> Tensor:
        """Loss of (B, K) logits against (B,) labels or mixup ``(y_a, y_b, lam)``; a scalar,
        or (B,) with ``reduction="none"``."""
        logits = _check_logits(logits, self.num_classes)
        if self.weight is not None and self.weight.device != logits.device:
            self.weight = self.weight.to(logits.device)  # once, not every step
        reduction = self.mean_reduction if self.reduction == "mean" else self.reduction
        return _reduce_weighted(
            self.per_sample,
            logits,
            labels,
            self.weight,
            reduction,
            logits.shape[1],
            weighted_inside=self.weighted_inside,
        )


class _OffsetCrossEntropy(_LogitLoss):
    """Cross-entropy on ``logits + offset`` with a fixed (K,) offset."""

    offset: Tensor

    def __init__(self, offset: Tensor, reduction: str) -> None:
        super().__init__(offset.numel(), reduction)
        self.register_buffer("offset", offset)

    def per_sample(self, logits: Tensor, labels: Tensor) -> Tensor:
        shifted = logits + self.offset.to(device=logits.device, dtype=logits.dtype)
        return F.cross_entropy(shifted, labels, reduction="none")


class LogitAdjustedLoss(_OffsetCrossEntropy):
    """Menon et al. 2021's logit-adjusted loss: cross-entropy on ``z + tau * log pi``.

    Per sample, with pi_k = n_k / N the training prior::

        L(z, y) = -log( exp(z_y + tau log pi_y) / sum_k exp(z_k + tau log pi_k) )

    Adding the prior at training time makes the plain argmax of z estimate the
    balanced-error-optimal class; tau = 1 is the Bayes-consistent choice, tau = 0 is plain
    cross-entropy. (The post-hoc variant instead subtracts tau log pi from a CE-trained
    model's logits at evaluation: :func:`posthoc_logit_adjustment`.)

    Args:
        class_counts: (K,) training counts n_k >= 1.
        tau: >= 0.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(self, class_counts: CountsLike, tau: float = 1.0, reduction: str = "mean") -> None:
        self.tau = check_float("tau", tau, minimum=0.0)
        super().__init__(self.tau * log_prior(class_counts), reduction)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, tau={self.tau}, reduction={self.reduction!r}"


class BalancedSoftmaxLoss(_OffsetCrossEntropy):
    """Ren et al. 2020's balanced softmax: cross-entropy on ``z + log n``.

    Per sample::

        L(z, y) = -log( n_y exp(z_y) / sum_k n_k exp(z_k) )

    the softmax of the training distribution when exp(z) models the balanced one. It equals
    :class:`LogitAdjustedLoss` with tau = 1 (log n_k and log pi_k differ by the constant
    log N, which the softmax ignores).

    Args:
        class_counts: (K,) training counts n_k >= 1.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(self, class_counts: CountsLike, reduction: str = "mean") -> None:
        super().__init__(torch.log(_counts(class_counts)), reduction)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, reduction={self.reduction!r}"


class LDAMLoss(_LogitLoss):
    """Cao et al. 2019's label-distribution-aware margin (LDAM) loss.

    The true class's logit is lowered by its margin m_y = C / n_y^(1/4) (the rarest class
    gets ``max_margin``, :func:`ldam_margins`), then everything is scaled by s::

        L(z, y) = w_y * CE( s * (z - m_y e_y), y )

    Cao et al. use it on a cosine classifier (unit features and unit class vectors, so z
    lies in [-1, 1]; ``head.cosine=true`` in a run) with s = 30 and max_margin = 0.5, and
    add deferred re-weighting (:func:`deferred_reweighting`: ``set_class_weight`` with
    class-balanced weights from epoch 160 of 200).

    Args:
        class_counts: (K,) training counts n_k >= 1.
        max_margin: > 0, the largest margin.
        scale: s > 0.
        weight: optional (K,) per-class weights w (see the module doc for the mean).
        reduction: ``"mean"`` (= ``"weight_sum"``: Cao et al.'s code takes
            ``F.cross_entropy(..., weight=w)``, kaidic/LDAM-DRW losses.py:45),
            ``"weight_sum"``, ``"batch"``, ``"sum"`` or ``"none"``.
    """

    margins: Tensor

    def __init__(
        self,
        class_counts: CountsLike,
        max_margin: float = 0.5,
        scale: float = 30.0,
        weight: Tensor | None = None,
        reduction: str = "mean",
    ) -> None:
        margins = ldam_margins(class_counts, max_margin)
        super().__init__(margins.numel(), reduction, weight)
        self.max_margin = float(max_margin)
        self.scale = check_float("scale", scale, minimum=0.0, strict_minimum=True)
        self.register_buffer("margins", margins)

    def per_sample(self, logits: Tensor, labels: Tensor) -> Tensor:
        margins = self.margins.to(device=logits.device, dtype=logits.dtype)
        shift = F.one_hot(labels, self.num_classes).to(logits.dtype) * margins[labels, None]
        return F.cross_entropy(self.scale * (logits - shift), labels, reduction="none")

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, max_margin={self.max_margin}, "
            f"scale={self.scale}, weighted={self.weight is not None}, "
            f"reduction={self.reduction!r}"
        )


class FocalLoss(_LogitLoss):
    """Focal loss (Lin et al. 2017), optionally class-weighted, in the forms of the
    long-tailed baselines' official code.

    With z the (B, K) logits, y the labels, w the class weights (w_y = 1 without) and
    gamma >= 0, per sample:

    * ``form="softmax", weighting="alpha"`` (default): Lin et al.'s alpha-balanced
      multi-class focal loss with p_y = softmax(z)_y::

          l = -w_y (1 - p_y)^gamma log p_y

      reduced as ``nn.CrossEntropyLoss(weight=w)`` (``"mean"`` = ``"weight_sum"``), so
      gamma = 0 is weighted cross-entropy.
    * ``form="softmax", weighting="cao"``: Cao et al. 2019's weighted focal loss, the
      weight inside the focusing term (kaidic/LDAM-DRW losses.py:7-21: the weighted
      per-sample cross-entropy c = w_y CE(z, y), p = exp(-c), then a plain batch mean)::

          c = -w_y log p_y,   l = (1 - exp(-c))^gamma c      ("mean" = "batch": sum / B)

    * ``form="sigmoid_cb"``: Cui et al. 2019's class-balanced focal loss, a SIGMOID focal
      loss over all K logits weighted by the sample's class weight and divided by the
      batch size (richardaecn/class-balanced-loss src/cifar_main.py:226-266, its
      ``focal_loss``, and :325-330/341-342, the per-sample weights w_y): with s_k = z_k
      for k = y and s_k = -z_k otherwise, sigma the logistic function::

          l = w_y sum_k (1 - sigma(s_k))^gamma (-log sigma(s_k))   ("mean" = "batch")

      computed as ``exp(-gamma softplus(s_k)) softplus(-s_k)`` (stable for any z). Cui
      et al.'s CIFAR-LT runs use w = :func:`class_balanced_weights` (beta 0.9999) and
      gamma in {0.5, 1, 2}; gamma = 0 is their class-balanced sigmoid cross-entropy.

    Args:
        gamma: >= 0, the focusing parameter.
        weight: optional (K,) per-class weights. Without weights any number of classes
            is accepted; with them, K is the weights' length.
        reduction: ``"mean"`` (the form's own normalisation, above), ``"weight_sum"``,
            ``"batch"``, ``"sum"`` or ``"none"`` (module doc).
        form: ``"softmax"`` or ``"sigmoid_cb"``.
        weighting: ``"alpha"`` or ``"cao"`` (softmax form only).
    """

    FORMS = ("softmax", "sigmoid_cb")
    WEIGHTINGS = ("alpha", "cao")

    def __init__(
        self,
        gamma: float = 2.0,
        weight: Tensor | None = None,
        reduction: str = "mean",
        *,
        form: str = "softmax",
        weighting: str = "alpha",
    ) -> None:
        super().__init__(None, reduction, weight)
        self.gamma = check_float("gamma", gamma, minimum=0.0)
        if form not in self.FORMS:
            raise ValueError(f"form must be one of {', '.join(self.FORMS)}, got {form!r}")
        if weighting not in self.WEIGHTINGS:
            raise ValueError(
                f"weighting must be one of {', '.join(self.WEIGHTINGS)}, got {weighting!r}"
            )
        if form == "sigmoid_cb" and weighting != "alpha":
            raise ValueError(
                "weighting='cao' is Cao et al.'s softmax focal loss; form='sigmoid_cb' weights "
                "each sample by w_y (weighting='alpha')"
            )
        self.form, self.weighting = form, weighting
        self.weighted_inside = weighting == "cao"
        self.mean_reduction = "weight_sum" if (form, weighting) == ("softmax", "alpha") else "batch"

    def _modulated(self, loss: Tensor, log_q: Tensor) -> Tensor:
        """``(1 - q)^gamma * loss`` for the probability q = exp(log_q)."""
        if self.gamma == 0:
            return loss
        # 1 - q = -expm1(log q): accurate when q is close to 1. The floor keeps the
        # gradient finite (not inf * 0) when q rounds to 1 and gamma < 1.
        one_minus_q = (-torch.expm1(log_q)).clamp_min(torch.finfo(log_q.dtype).tiny)
        return one_minus_q**self.gamma * loss

    def per_sample(self, logits: Tensor, labels: Tensor) -> Tensor:
        if self.form == "sigmoid_cb":
            sign = 1 - 2 * F.one_hot(labels, logits.shape[1]).to(logits.dtype)  # -1 at y
            s = -sign * logits  # z_y at the label, -z_k elsewhere
            bce = F.softplus(-s)  # -log sigma(s)
            if self.gamma == 0:
                return bce.sum(dim=1)
            return (torch.exp(-self.gamma * F.softplus(s)) * bce).sum(dim=1)
        log_p = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
        if self.weighting == "cao":
            w = self.weight
            c = -log_p if w is None else -log_p * w.to(logits.dtype)[labels]
            return self._modulated(c, -c)
        return self._modulated(-log_p, log_p)

    def extra_repr(self) -> str:
        return (
            f"gamma={self.gamma}, form={self.form!r}, weighting={self.weighting!r}, "
            f"weighted={self.weight is not None}, reduction={self.reduction!r}"
        )


# --------------------------------------------------------------------------- registry


def _class_weighted_reduction(ctx: LossContext) -> str:
    """``loss.cb_reduction`` as a reduction: ``auto`` is the loss's own ``"mean"``."""
    choice = ctx.config.loss.cb_reduction
    return "mean" if choice == "auto" else choice


@register_loss("ce", reads="logits", weighted=True)
def build_cross_entropy(ctx: LossContext) -> nn.Module:
    """Cross-entropy on the head's logits (``loss.label_smoothing``); with class weights,
    class-balanced cross-entropy (Cui et al. 2019; ``loss.cb_reduction``)."""
    cfg = ctx.config.loss
    if ctx.class_weight is None and cfg.drw_epoch is None:
        return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    return FocalLoss(0.0, weight=ctx.class_weight, reduction=_class_weighted_reduction(ctx))


@register_loss("logit_adjusted", reads="logits")
def build_logit_adjusted(ctx: LossContext) -> nn.Module:
    """Menon et al. 2021's logit-adjusted loss (``loss.tau``)."""
    return LogitAdjustedLoss(ctx.counts, tau=ctx.config.loss.tau)


@register_loss("balanced_softmax", reads="logits")
def build_balanced_softmax(ctx: LossContext) -> nn.Module:
    """Ren et al. 2020's balanced softmax."""
    return BalancedSoftmaxLoss(ctx.counts)


@register_loss("ldam", reads="logits", weighted=True)
def build_ldam(ctx: LossContext) -> nn.Module:
    """Cao et al. 2019's LDAM loss (``loss.max_margin``, ``loss.logit_scale``)."""
    cfg = ctx.config.loss
    return LDAMLoss(
        ctx.counts,
        max_margin=cfg.max_margin,
        scale=cfg.logit_scale,
        weight=ctx.class_weight,
        reduction=_class_weighted_reduction(ctx),
    )


@register_loss("focal", reads="logits", weighted=True)
def build_focal(ctx: LossContext) -> nn.Module:
    """Focal loss (``loss.focal_gamma``, ``loss.focal_form``, ``loss.focal_weighting``)."""
    cfg = ctx.config.loss
    return FocalLoss(
        cfg.focal_gamma,
        weight=ctx.class_weight,
        reduction=_class_weighted_reduction(ctx),
        form=cfg.focal_form,
        weighting=cfg.focal_weighting,
    )
