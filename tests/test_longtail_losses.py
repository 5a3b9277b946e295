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
