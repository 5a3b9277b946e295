"""Long-tailed baselines: values and gradients against float64 NumPy formulas, mixup targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import neuralcollapse as nc
from neuralcollapse.losses import (
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

K, B = 6, 17
COUNTS = np.array([500, 210, 90, 37, 12, 3])


def inputs(seed: int = 0, scale: float = 2.0):
    rng = np.random.default_rng(seed)
    z = torch.from_numpy(scale * rng.standard_normal((B, K))).requires_grad_(True)
    y = torch.from_numpy(rng.integers(0, K, size=B))
    return z, y


def mix(seed: int = 1, per_sample: bool = False):
    rng = np.random.default_rng(seed)
    y_b = torch.from_numpy(rng.integers(0, K, size=B))
    lam = torch.from_numpy(rng.uniform(size=B)) if per_sample else 0.3
    return y_b, lam


# ----------------------------------------------------------------- NumPy reference formulas


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def np_softmax(z: np.ndarray) -> np.ndarray:
    return np.exp(np_log_softmax(z))


def np_ce(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -np_log_softmax(z)[np.arange(len(y)), y]


def one_hot(y: np.ndarray) -> np.ndarray:
    return np.eye(K)[y]


def np_cb_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    effective = (1 - beta ** counts.astype(np.float64)) / (1 - beta)
    inverse = 1 / effective
    return inverse / inverse.sum() * len(counts)


def np_margins(counts: np.ndarray, max_margin: float) -> np.ndarray:
    raw = 1 / counts.astype(np.float64) ** 0.25
    return raw * max_margin / raw.max()


def np_focal(z: np.ndarray, y: np.ndarray, gamma: float) -> np.ndarray:
    p = np_softmax(z)[np.arange(len(y)), y]
    return -((1 - p) ** gamma) * np.log(p)


def np_focal_grad(z: np.ndarray, y: np.ndarray, gamma: float) -> np.ndarray:
    """d/dz of -(1-p)^g log p per sample, by the chain rule through p = softmax(z)_y."""
    probs = np_softmax(z)
    p = probs[np.arange(len(y)), y]
    q = 1 - p
    dl_dp = gamma * q ** (gamma - 1) * np.log(p) - q**gamma / p
    dp_dz = p[:, None] * (one_hot(y) - probs)
    return dl_dp[:, None] * dp_dz


def as_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


# ----------------------------------------------------------------- class weights and margins


@pytest.mark.parametrize("beta", [0.0, 0.9, 0.99, 0.9999])
def test_class_balanced_weights_match_the_effective_number_formula(beta):
    weights = class_balanced_weights(COUNTS, beta, dtype=torch.float64)
    if beta == 0:
        np.testing.assert_allclose(weights.numpy(), np.ones(K))
    else:
        np.testing.assert_allclose(weights.numpy(), np_cb_weights(COUNTS, beta), rtol=1e-10)
    assert weights.sum().item() == pytest.approx(K)
    assert weights.dtype == torch.float64
    assert class_balanced_weights(COUNTS).dtype == torch.get_default_dtype()
    # rarer classes weigh more; near beta = 1 the weights approach inverse frequency
    assert bool((weights.diff() >= 0).all())


def test_class_balanced_weights_tend_to_inverse_frequency():
    weights = class_balanced_weights(COUNTS, 1 - 1e-9, dtype=torch.float64).numpy()
    inverse = (1 / COUNTS) / (1 / COUNTS).sum() * K
    np.testing.assert_allclose(weights, inverse, rtol=1e-5)


def test_ldam_margins_scale_as_the_inverse_fourth_root():
    margins = ldam_margins(COUNTS, max_margin=0.5).numpy()
    np.testing.assert_allclose(margins, np_margins(COUNTS, 0.5), rtol=1e-13)
    assert margins.max() == pytest.approx(0.5) and margins.argmax() == K - 1
    assert margins[0] / margins[3] == pytest.approx((COUNTS[3] / COUNTS[0]) ** 0.25)


def test_deferred_reweighting_switches_at_its_epoch():
    assert deferred_reweighting(COUNTS, 0, start_epoch=3) is None
    assert deferred_reweighting(COUNTS, 2, start_epoch=3) is None
    assert deferred_reweighting(COUNTS, 5, start_epoch=None) is None
    after = deferred_reweighting(COUNTS, 3, start_epoch=3, beta=0.999)
    np.testing.assert_allclose(after.numpy(), np_cb_weights(COUNTS, 0.999), rtol=1e-6)


def test_log_prior_and_posthoc_adjustment():
    prior = COUNTS / COUNTS.sum()
    np.testing.assert_allclose(log_prior(COUNTS).numpy(), np.log(prior), rtol=1e-13)
    z, _ = inputs()
    adjusted = posthoc_logit_adjustment(z, COUNTS, tau=0.7)
    np.testing.assert_allclose(as_np(adjusted), as_np(z) - 0.7 * np.log(prior), rtol=1e-13)
    assert torch.equal(posthoc_logit_adjustment(z, COUNTS, tau=0.0), z)


# ----------------------------------------------------------------- logit adjustment, BS


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 2.0])
def test_logit_adjusted_value_and_gradient(tau):
    z, y = inputs()
    loss = LogitAdjustedLoss(COUNTS, tau=tau)(z, y)
    (grad,) = torch.autograd.grad(loss, z)
    shifted = as_np(z) + tau * np.log(COUNTS / COUNTS.sum())
    assert loss.item() == pytest.approx(np_ce(shifted, y.numpy()).mean(), rel=1e-13)
    hand = (np_softmax(shifted) - one_hot(y.numpy())) / B
    np.testing.assert_allclose(grad.numpy(), hand, rtol=1e-10, atol=1e-15)
    if tau == 0:
        assert loss.item() == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-14)


def test_balanced_softmax_value_gradient_and_equivalence_to_tau_one():
    z, y = inputs(3)
    loss = BalancedSoftmaxLoss(COUNTS, reduction="none")(z, y)
    zn, yn = as_np(z), y.numpy()
    weighted = COUNTS[None, :] * np.exp(zn)
    reference = -np.log(weighted[np.arange(B), yn] / weighted.sum(axis=1))
    np.testing.assert_allclose(as_np(loss), reference, rtol=1e-12)
    (grad,) = torch.autograd.grad(loss.sum(), z)
    hand = weighted / weighted.sum(axis=1, keepdims=True) - one_hot(yn)
    np.testing.assert_allclose(grad.numpy(), hand, rtol=1e-10, atol=1e-15)
    adjusted = LogitAdjustedLoss(COUNTS, tau=1.0, reduction="none")(z, y)
    np.testing.assert_allclose(as_np(adjusted), as_np(loss), rtol=1e-12)


@pytest.mark.parametrize("per_sample", [False, True])
def test_logit_adjusted_and_balanced_softmax_accept_mixup_targets(per_sample):
    z, y = inputs(4)
    y_b, lam = mix(per_sample=per_sample)
    shifted = as_np(z) + np.log(COUNTS / COUNTS.sum())
    lam_np = lam.numpy() if per_sample else lam
    reference = lam_np * np_ce(shifted, y.numpy()) + (1 - lam_np) * np_ce(shifted, y_b.numpy())
    for loss_fn in (LogitAdjustedLoss(COUNTS), BalancedSoftmaxLoss(COUNTS)):
        assert loss_fn(z, (y, y_b, lam)).item() == pytest.approx(reference.mean(), rel=1e-12)


# ----------------------------------------------------------------- LDAM


@pytest.mark.parametrize("weighted", [False, True])
def test_ldam_value_and_gradient(weighted):
    z, y = inputs(5, scale=0.5)  # cosine-like logits
    s, max_margin = 30.0, 0.5
    w = np_cb_weights(COUNTS, 0.9999) if weighted else np.ones(K)
    loss_fn = LDAMLoss(
        COUNTS, max_margin=max_margin, scale=s, weight=torch.tensor(w) if weighted else None
    )
    loss = loss_fn(z, y)
    (grad,) = torch.autograd.grad(loss, z)
    yn = y.numpy()
    shifted = s * (as_np(z) - one_hot(yn) * np_margins(COUNTS, max_margin)[yn, None])
    per = np_ce(shifted, yn)
    wy = w[yn]
    assert loss.item() == pytest.approx((wy * per).sum() / wy.sum(), rel=1e-6)
    hand = s * wy[:, None] * (np_softmax(shifted) - one_hot(yn)) / wy.sum()
    np.testing.assert_allclose(grad.numpy(), hand, rtol=1e-5, atol=1e-10)


def test_ldam_matches_weighted_cross_entropy_of_pytorch():
    z, y = inputs(6, scale=0.5)
    w = class_balanced_weights(COUNTS, 0.999, dtype=torch.float64)
    loss = LDAMLoss(COUNTS, max_margin=0.3, scale=10.0, weight=w)(z, y)
    margins = torch.from_numpy(np_margins(COUNTS, 0.3))
    shifted = 10.0 * (z - F.one_hot(y, K).double() * margins[y, None])
    expected = nn.CrossEntropyLoss(weight=w)(shifted, y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("per_sample", [False, True])
def test_ldam_with_mixup_targets(per_sample):
    z, y = inputs(7, scale=0.5)
    y_b, lam = mix(2, per_sample=per_sample)
    w = np_cb_weights(COUNTS, 0.99)
    loss = LDAMLoss(COUNTS, weight=torch.tensor(w))(z, (y, y_b, lam))
    margins = np_margins(COUNTS, 0.5)

    def branch(labels):
        shifted = 30.0 * (as_np(z) - one_hot(labels) * margins[labels, None])
        return w[labels] * np_ce(shifted, labels)

    ya, yb = y.numpy(), y_b.numpy()
    if per_sample:  # one weighted mean over both branches
        lam_np = lam.numpy()
        total = (lam_np * branch(ya) + (1 - lam_np) * branch(yb)).sum()
        expected = total / (lam_np * w[ya] + (1 - lam_np) * w[yb]).sum()
    else:  # each branch reduced on its own labels, as nn.CrossEntropyLoss would
        expected = lam * branch(ya).sum() / w[ya].sum() + (1 - lam) * branch(yb).sum() / w[yb].sum()
    assert loss.item() == pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------- focal


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 3.5])
def test_focal_value_and_gradient(gamma):
    z, y = inputs(8)
    loss = FocalLoss(gamma=gamma, reduction="sum")(z, y)
    (grad,) = torch.autograd.grad(loss, z)
    yn = y.numpy()
    assert loss.item() == pytest.approx(np_focal(as_np(z), yn, gamma).sum(), rel=1e-12)
    np.testing.assert_allclose(
        grad.numpy(), np_focal_grad(as_np(z), yn, gamma), rtol=1e-9, atol=1e-14
    )


def test_class_balanced_focal_value_gradient_and_mixup():
    z, y = inputs(9)
    w = np_cb_weights(COUNTS, 0.9999)
    loss_fn = FocalLoss(gamma=1.0, weight=torch.tensor(w))
    yn = y.numpy()
    loss = loss_fn(z, y)
    (grad,) = torch.autograd.grad(loss, z)
    wy = w[yn]
    assert loss.item() == pytest.approx((wy * np_focal(as_np(z), yn, 1.0)).sum() / wy.sum())
    hand = wy[:, None] * np_focal_grad(as_np(z), yn, 1.0) / wy.sum()
    np.testing.assert_allclose(grad.numpy(), hand, rtol=1e-9, atol=1e-14)
    y_b, lam = mix(3)
    mixed = loss_fn(z, (y, y_b, lam)).item()
    ybn = y_b.numpy()
    expected = (
        lam * (wy * np_focal(as_np(z), yn, 1.0)).sum() / wy.sum()
        + (1 - lam) * (w[ybn] * np_focal(as_np(z), ybn, 1.0)).sum() / w[ybn].sum()
    )
    assert mixed == pytest.approx(expected, rel=1e-12)


def test_focal_with_gamma_zero_is_pytorch_cross_entropy():
    z, y = inputs(10)
    w = class_balanced_weights(COUNTS, 0.99, dtype=torch.float64)
    assert FocalLoss(0.0)(z, y).item() == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-13)
    assert FocalLoss(0.0, weight=w)(z, y).item() == pytest.approx(
        nn.CrossEntropyLoss(weight=w)(z, y).item(), rel=1e-6
    )


def test_focal_is_accurate_for_confident_samples():
    z = torch.tensor([[40.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    loss = FocalLoss(gamma=2.0)(z, torch.tensor([0]))
    q = 2 * np.exp(-40.0)  # 1 - p to first order
    assert loss.item() == pytest.approx(q**2 * q, rel=1e-6)  # (1 - p)^2 * (-log p)
    (grad,) = torch.autograd.grad(loss, z)
    assert bool(torch.isfinite(grad).all())
    for dtype in (torch.float32, torch.float64):  # p rounds to 1: still a finite gradient
        sure = torch.tensor([[200.0, 0.0, 0.0]], dtype=dtype, requires_grad=True)
        for gamma in (0.5, 1.0, 2.0):
            value = FocalLoss(gamma=gamma)(sure, torch.tensor([0]))
            (grad,) = torch.autograd.grad(value, sure)
            assert value.item() == 0.0 and bool(torch.isfinite(grad).all()), (dtype, gamma)


def test_set_class_weight_switches_in_place_and_keeps_the_device():
    loss_fn = LDAMLoss(COUNTS)
    z, y = inputs(11, scale=0.5)
    before = loss_fn(z, y)
    loss_fn.set_class_weight(class_balanced_weights(COUNTS))
    assert loss_fn.weight.shape == (K,) and loss_fn(z, y).item() != before.item()
    loss_fn.set_class_weight(None)
    assert loss_fn.weight is None and loss_fn(z, y).item() == before.item()
    focal = FocalLoss(1.0)
    focal.set_class_weight(torch.ones(K))
    assert focal.num_classes == K


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reductions(reduction):
    z, y = inputs(12)
    per = FocalLoss(1.0, reduction="none")(z, y)
    out = FocalLoss(1.0, reduction=reduction)(z, y)
    expected = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    torch.testing.assert_close(out, expected)


# ----------------------------------------------------------------- errors and re-exports


def test_errors_name_the_value_and_the_fix():
    z, y = inputs()
    with pytest.raises(ValueError, match=r"classes \[2\] have 0"):
        LogitAdjustedLoss([10, 5, 0])
    with pytest.raises(ValueError, match=r"logits must be a \(B, 6\) tensor"):
        BalancedSoftmaxLoss(COUNTS)(z[:, :4], y)
    with pytest.raises(ValueError, match=r"weight must have shape \(6,\)"):
        LDAMLoss(COUNTS, weight=torch.ones(4))
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        class_balanced_weights(COUNTS, 1.0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        FocalLoss(reduction="avg")
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        FocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="max_margin must be > 0"):
        LDAMLoss(COUNTS, max_margin=0)
    with pytest.raises(ValueError, match="labels contains 9"):
        LogitAdjustedLoss(COUNTS)(z, torch.full((B,), 9))
    with pytest.raises(ValueError, match="empty batch"):
        FocalLoss()(torch.zeros(0, K), torch.zeros(0, dtype=torch.long))


def test_re_exported_from_neuralcollapse_losses():
    import neuralcollapse.losses.longtail as module

    for name in module.__all__:
        assert getattr(nc.losses, name) is getattr(module, name)


def test_cosine_head_gives_cosines_for_ldam():
    from neuralcollapse.heads import LearnableHead

    head = LearnableHead(5, 3, bias=False, cosine=True)
    x = torch.randn(4, 5)
    logits, h = head(x, return_features=True)
    expected = F.normalize(x, dim=1) @ F.normalize(head.classifier.weight, dim=1).T
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(h.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(head.weight.norm(dim=1), torch.ones(3))
    assert bool((logits.abs() <= 1 + 1e-6).all())
    with pytest.raises(ValueError, match="pass bias=False"):
        LearnableHead(5, 3, cosine=True)


# ----------------------------------------------------------------- the official codes' forms
#
# Independent float64 references written from the official formulas (not from ours):
# Cui et al.: richardaecn/class-balanced-loss src/cifar_main.py:226-266 (focal_loss) and
# :325-342 (per-sample weights w_y tiled over the K columns; softmax loss through
# tf.losses.softmax_cross_entropy with weights, which divides by the B non-zero weights;
# focal/sigmoid losses summed and divided by sum(one_hot) = B).
# Cao et al.: kaidic/LDAM-DRW losses.py:7-21 (p = exp(-CE(weight=w, reduction="none")),
# (1 - p)^gamma * CE, plain mean).


def ref_cui_sigmoid_focal(z, y, w, gamma):
    """Cui's focal_loss: BCE-with-logits on one-hot labels, modulator
    exp(-g*l*z - g*log1p(exp(-z))), times alpha = w_y per row, summed, / sum(labels)."""
    labels = torch.nn.functional.one_hot(y, z.shape[1]).to(z.dtype)
    bce = torch.clamp(z, min=0) - z * labels + torch.log1p(torch.exp(-torch.abs(z)))
    modulator = (
        1.0 if gamma == 0 else torch.exp(-gamma * labels * z - gamma * torch.log1p(torch.exp(-z)))
    )
    alpha = w[y][:, None].expand_as(z)
    return (alpha * modulator * bce).sum() / labels.sum()


def ref_cui_softmax(z, y, w):
    """Cui's class-balanced softmax: sum_i w_{y_i} CE_i / (number of non-zero weights)."""
    ce = -torch.log_softmax(z, dim=1)[torch.arange(len(y)), y]
    weights = w[y]
    return (weights * ce).sum() / (weights != 0).sum()


def ref_cao_focal(z, y, w, gamma):
    """Cao's FocalLoss: c = w_y CE, p = exp(-c), mean((1 - p)^gamma c)."""
    c = -torch.log_softmax(z, dim=1)[torch.arange(len(y)), y] * w[y]
    p = torch.exp(-c)
    return ((1 - p) ** gamma * c).mean()


def _official_inputs(seed: int, k: int, batch: int = 32):
    g = torch.Generator().manual_seed(seed)
    z = (3 * torch.randn(batch, k, generator=g, dtype=torch.float64)).requires_grad_(True)
    y = torch.randint(0, k, (batch,), generator=g)
    counts = torch.randint(1, 500, (k,), generator=g)
    return z, y, class_balanced_weights(counts, 0.9999, dtype=torch.float64)


def _value_and_grad(fn, z):
    value = fn(z)
    (grad,) = torch.autograd.grad(value, z)
    return value.detach(), grad


@pytest.mark.parametrize("k", [10, 100])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_sigmoid_cb_focal_matches_cui_et_al(k, seed, gamma):
    z, y, w = _official_inputs(seed, k)
    ours = FocalLoss(gamma, weight=w, form="sigmoid_cb")
    value, grad = _value_and_grad(lambda t: ours(t, y), z)
    expected, expected_grad = _value_and_grad(lambda t: ref_cui_sigmoid_focal(t, y, w, gamma), z)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-14)
    # differs from the softmax focal loss the weights alone would give (issue: 47-62% apart)
    softmax = FocalLoss(gamma, weight=w, reduction="batch")(z, y)
    assert not torch.isclose(value, softmax, rtol=1e-3)


@pytest.mark.parametrize("k", [10, 100])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_cao_weighted_focal_matches_cao_et_al(k, seed, gamma):
    z, y, w = _official_inputs(seed, k)
    ours = FocalLoss(gamma, weight=w, weighting="cao")
    value, grad = _value_and_grad(lambda t: ours(t, y), z)
    expected, expected_grad = _value_and_grad(lambda t: ref_cao_focal(t, y, w, gamma), z)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-14)
    unweighted = FocalLoss(gamma, weighting="cao")(z, y)  # weight None: plain focal mean
    torch.testing.assert_close(unweighted, ref_cao_focal(z, y, torch.ones(k, dtype=z.dtype), gamma))


@pytest.mark.parametrize("k", [10, 100])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_balanced_ce_reductions_batch_and_weight_sum(k, seed):
    z, y, w = _official_inputs(seed, k)
    batch = FocalLoss(0.0, weight=w, reduction="batch")
    value, grad = _value_and_grad(lambda t: batch(t, y), z)
    expected, expected_grad = _value_and_grad(lambda t: ref_cui_softmax(t, y, w), z)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-14)
    weight_sum = FocalLoss(0.0, weight=w, reduction="weight_sum")
    value, grad = _value_and_grad(lambda t: weight_sum(t, y), z)
    torch_ce = nn.CrossEntropyLoss(weight=w)
    expected, expected_grad = _value_and_grad(lambda t: torch_ce(t, y), z)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-14)
    # the two differ by sum_i w_{y_i} / B
    ratio = float(batch(z, y).detach() / weight_sum(z, y).detach())
    assert ratio == pytest.approx(float(w[y].sum()) / len(y), rel=1e-12)
    assert FocalLoss(0.0, weight=w)(z, y).item() == pytest.approx(weight_sum(z, y).item())


def test_focal_forms_refuse_bad_combinations_and_keep_mixup():
    with pytest.raises(ValueError, match="form must be one of"):
        FocalLoss(form="sigmoid")
    with pytest.raises(ValueError, match="weighting must be one of"):
        FocalLoss(weighting="lin")
    with pytest.raises(ValueError, match="weighting='cao'"):
        FocalLoss(form="sigmoid_cb", weighting="cao")
    z, y, w = _official_inputs(0, 10)
    y_b = torch.roll(y, 1)
    for loss in (
        FocalLoss(1.0, weight=w, form="sigmoid_cb"),
        FocalLoss(1.0, weight=w, weighting="cao"),
    ):
        mixed = loss(z, (y, y_b, 0.3))
        torch.testing.assert_close(mixed, 0.3 * loss(z, y) + 0.7 * loss(z, y_b))
