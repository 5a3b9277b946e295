"""Losses: values and gradients in float64 against NumPy formulas and autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralcollapse.frames import hierarchy_similarity, simplex_etf
from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.losses import (
    CosineFrameLoss,
    DotRegressionLoss,
    FrameCrossEntropy,
    SoftLabelCrossEntropy,
    batch_balance_weights,
    mixup_loss,
)

K, D, B = 5, 7, 12


def setup(seed: int = 0, scale_frame: float = 1.0):
    rng = np.random.default_rng(seed)
    frame = simplex_etf(K, D, seed=seed, dtype=torch.float64) * scale_frame
    h = torch.from_numpy(rng.standard_normal((B, D))).requires_grad_(True)
    y = torch.from_numpy(rng.integers(0, K, size=B))
    return h, y, frame


def numpy_dr_paper(h, y, frame, budget):
    t = frame[y]
    e_w = (t * t).sum(1)
    root = np.sqrt(e_w * budget)
    return ((t * h).sum(1) - root) ** 2 / (2 * root)


def numpy_dr_reference(h, y, frame):
    t = frame[y]
    hn = np.linalg.norm(h, axis=1)
    tn = np.linalg.norm(t, axis=1)
    return 0.5 * ((t * h).sum(1) - tn * hn) ** 2 / hn


def numpy_weights(y):
    counts = np.bincount(y, minlength=K)
    gamma = len(y) / (counts > 0).sum()
    return gamma / counts[y]


def as_np(*tensors):
    return [t.detach().numpy() for t in tensors]


# --------------------------------------------------------------------------- DR, paper form


@pytest.mark.parametrize(("budget", "scale_frame"), [(1.0, 1.0), (4.0, 1.0), (0.5, 2.0)])
def test_dr_paper_value_matches_formula(budget, scale_frame):
    h, y, frame = setup(scale_frame=scale_frame)
    loss = DotRegressionLoss(feature_budget=budget, reduction="none")(h, y, frame)
    hn, fn = as_np(h, frame)
    np.testing.assert_allclose(
        loss.detach().numpy(), numpy_dr_paper(hn, y.numpy(), fn, budget), rtol=1e-13
    )


def test_dr_paper_gradient_matches_hand_derivation_and_autograd():
    h, y, frame = setup(scale_frame=1.5)
    budget = 2.0
    loss = DotRegressionLoss(feature_budget=budget, reduction="sum")(h, y, frame)
    (grad,) = torch.autograd.grad(loss, h)
    hn, fn = as_np(h, frame)
    t = fn[y.numpy()]
    root = np.sqrt((t * t).sum(1) * budget)
    hand = (((t * hn).sum(1) - root) / root)[:, None] * t
    np.testing.assert_allclose(grad.numpy(), hand, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(
        lambda x: DotRegressionLoss(feature_budget=budget)(x, y, frame), (h,)
    )


def test_dr_paper_is_zero_exactly_at_the_layer_peeled_optimum():
    _, y, frame = setup()
    budget = 3.0
    h = (np.sqrt(budget) * frame[y]).requires_grad_(True)
    loss = DotRegressionLoss(feature_budget=budget)(h, y, frame)
    assert loss.item() == pytest.approx(0.0, abs=1e-24)
    (grad,) = torch.autograd.grad(loss, h)
    assert grad.abs().max().item() < 1e-12


# --------------------------------------------------------------------------- DR, reference form


def test_dr_reference_value_and_unit_feature_form():
    h, y, frame = setup()
    loss = DotRegressionLoss(form="reference", reduction="none")(h, y, frame)
    hn, fn = as_np(h, frame)
    np.testing.assert_allclose(
        loss.detach().numpy(), numpy_dr_reference(hn, y.numpy(), fn), rtol=1e-13
    )
    unit = F.normalize(h.detach(), dim=1)
    cos = (unit * frame[y]).sum(1)
    unit_loss = DotRegressionLoss(form="reference", reduction="none")(unit, y, frame)
    np.testing.assert_allclose(unit_loss.numpy(), 0.5 * (cos.numpy() - 1) ** 2, rtol=1e-12)


def test_dr_reference_gradient_is_parallel_to_the_class_vector():
    h, y, frame = setup()
    loss = DotRegressionLoss(form="reference", reduction="sum")(h, y, frame)
    (grad,) = torch.autograd.grad(loss, h)
    hn, fn = as_np(h, frame)
    t = fn[y.numpy()]
    hnorm = np.linalg.norm(hn, axis=1)
    tnorm = np.linalg.norm(t, axis=1)
    hand = (((t * hn).sum(1) - tnorm * hnorm) / hnorm)[:, None] * t
    np.testing.assert_allclose(grad.numpy(), hand, rtol=1e-12, atol=1e-14)
    # Pull only: no component of the gradient outside span(t) (no push from other classes).
    g = grad.numpy()
    residual = g - ((g * t).sum(1) / (t * t).sum(1))[:, None] * t
    assert np.abs(residual).max() < 1e-13


def test_dr_reference_finite_at_zero_features():
    _, y, frame = setup()
    loss = DotRegressionLoss(form="reference")(torch.zeros(B, D, dtype=torch.float64), y, frame)
    assert torch.isfinite(loss)


# --------------------------------------------------------------------------- reweight, penalty


def test_batch_balance_weights_match_counts():
    y = torch.tensor([0, 0, 0, 1, 3, 3])
    w = batch_balance_weights(y, K)
    np.testing.assert_allclose(w.numpy(), numpy_weights(y.numpy()))
    # gamma = 6 / 3 classes present = 2: class 0 -> 2/3, class 1 -> 2, class 3 -> 1
    np.testing.assert_allclose(w.numpy(), [2 / 3] * 3 + [2.0] + [1.0] * 2)


def test_batch_reweight_equals_the_reference_target_scaling():
    h, y, frame = setup(seed=3)
    weights = numpy_weights(y.numpy())
    ours = DotRegressionLoss(form="reference", batch_reweight=True, reduction="none")(h, y, frame)
    # The reference code scales each sample's target by sqrt(gamma / n_k) instead.
    hn, fn = as_np(h, frame)
    t = fn[y.numpy()] * np.sqrt(weights)[:, None]
    hnorm, tnorm = np.linalg.norm(hn, axis=1), np.linalg.norm(t, axis=1)
    scaled = 0.5 * ((t * hn).sum(1) - tnorm * hnorm) ** 2 / hnorm
    np.testing.assert_allclose(ours.detach().numpy(), scaled, rtol=1e-12)
    paper = DotRegressionLoss(batch_reweight=True, reduction="none")(h, y, frame)
    np.testing.assert_allclose(
        paper.detach().numpy(), weights * numpy_dr_paper(hn, y.numpy(), fn, 1.0), rtol=1e-12
    )


def test_norm_penalty_adds_mean_feature_norm():
    h, y, frame = setup()
    base = DotRegressionLoss()(h, y, frame)
    penalised = DotRegressionLoss(norm_penalty=0.01)(h, y, frame)
    expected = base.item() + 0.01 * np.linalg.norm(h.detach().numpy(), axis=1).mean()
    assert penalised.item() == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("loss_cls", [DotRegressionLoss, FrameCrossEntropy])
def test_reductions(loss_cls):
    h, y, frame = setup()
    per = loss_cls(reduction="none")(h, y, frame)
    assert per.shape == (B,)
    assert loss_cls(reduction="sum")(h, y, frame).item() == pytest.approx(per.sum().item())
    assert loss_cls()(h, y, frame).item() == pytest.approx(per.mean().item())


# --------------------------------------------------------------------------- mixup


@pytest.mark.parametrize(
    "loss",
    [
        DotRegressionLoss(reduction="none"),
        DotRegressionLoss(form="reference", batch_reweight=True, reduction="none"),
        FrameCrossEntropy(scale=8.0, reduction="none"),
    ],
)
@pytest.mark.parametrize("lam_kind", ["float", "scalar_tensor", "per_sample"])
def test_mixup_targets_combine_the_two_label_sets(loss, lam_kind):
    h, y_a, frame = setup(seed=1)
    y_b = y_a.roll(1)
    lam = {
        "float": 0.3,
        "scalar_tensor": torch.tensor(0.3, dtype=torch.float64),
        "per_sample": torch.linspace(0, 1, B, dtype=torch.float64),
    }[lam_kind]
    mixed = loss(h, (y_a, y_b, lam), frame)
    lam_np = np.asarray(lam.numpy() if isinstance(lam, torch.Tensor) else lam)
    expected = (
        lam_np * loss(h, y_a, frame).detach().numpy()
        + (1 - lam_np) * loss(h, y_b, frame).detach().numpy()
    )
    np.testing.assert_allclose(mixed.detach().numpy(), expected, rtol=1e-12)


def test_norm_penalty_counted_once_under_mixup():
    h, y, frame = setup()
    plain = DotRegressionLoss(norm_penalty=0.5)(h, (y, y, 0.25), frame)
    assert plain.item() == pytest.approx(DotRegressionLoss(norm_penalty=0.5)(h, y, frame).item())


# --------------------------------------------------------------------------- frame CE


@pytest.mark.parametrize("scale", [1.0, 16.0])
def test_frame_cross_entropy_matches_numpy(scale):
    h, y, frame = setup()
    loss = FrameCrossEntropy(scale=scale, reduction="none")(h, y, frame)
    hn, fn = as_np(h, frame)
    logits = scale * hn @ fn.T
    top = logits.max(1, keepdims=True)
    lse = (top + np.log(np.exp(logits - top).sum(1, keepdims=True)))[:, 0]
    expected = lse - logits[np.arange(B), y.numpy()]
    # lse - logit cancels for confident samples: compare absolutely there.
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-12, atol=1e-13)
    (grad,) = torch.autograd.grad(loss.sum(), h)
    probs = np.exp(logits - lse[:, None])
    onehot = np.eye(K)[y.numpy()]
    np.testing.assert_allclose(grad.numpy(), scale * (probs - onehot) @ fn, rtol=1e-10, atol=1e-13)


def test_frame_cross_entropy_label_smoothing_matches_torch():
    h, y, frame = setup()
    ours = FrameCrossEntropy(scale=2.0, label_smoothing=0.1)(h, y, frame)
    ref = F.cross_entropy(2.0 * h @ frame.T, y, label_smoothing=0.1)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-13)


def test_losses_follow_feature_dtype_and_frame_dtype_is_cast():
    h, y, frame = setup()
    h32 = h.detach().float()
    for loss in (DotRegressionLoss(), FrameCrossEntropy(scale=4.0)):
        assert loss(h32, y, frame).dtype == torch.float32


@given(seed=st.integers(0, 10_000), budget=st.floats(0.1, 10.0))
@settings(max_examples=30, deadline=None)
def test_property_dr_is_nonnegative_and_zero_only_at_target(seed, budget):
    h, y, frame = setup(seed=seed % 50)
    loss = DotRegressionLoss(feature_budget=budget, reduction="none")(h.detach(), y, frame)
    assert (loss >= 0).all()
    at_target = DotRegressionLoss(feature_budget=budget)(np.sqrt(budget) * frame[y], y, frame)
    assert at_target.item() < 1e-20


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: DotRegressionLoss(form="papers"), "form must be one of paper, reference"),
        (lambda: DotRegressionLoss(feature_budget=0), "feature_budget must be > 0"),
        (lambda: DotRegressionLoss(feature_budget=float("nan")), "feature_budget"),
        (lambda: DotRegressionLoss(norm_penalty=-1), "norm_penalty must be >= 0"),
        (lambda: DotRegressionLoss(reduction="avg"), "reduction must be one of"),
        (lambda: FrameCrossEntropy(scale=-2), "scale must be > 0"),
        (lambda: FrameCrossEntropy(label_smoothing=1.0), r"label_smoothing must be in \[0, 1\)"),
    ],
)
def test_bad_loss_configuration(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("loss", [DotRegressionLoss(), FrameCrossEntropy()])
@pytest.mark.parametrize(
    ("args", "match"),
    [
        (lambda h, y, w: (h[0], y, w), r"features must be a \(B, d\) tensor"),
        (lambda h, y, w: (h.long(), y, w), "features must be floating point"),
        (lambda h, y, w: (h, y, w[:, :3]), "d=7 but the frame has d=3"),
        (lambda h, y, w: (h, y, w[0]), r"frame must be a \(K, d\) tensor"),
        (lambda h, y, w: (h, y[:5], w), r"labels must have shape \(12,\)"),
        (lambda h, y, w: (h, y.double(), w), "integer class indices"),
        (lambda h, y, w: (h, y + K, w), "outside the classes 0..4"),
        (lambda h, y, w: (h, y - K, w), "labels contains -5, outside the classes"),
        (lambda h, y, w: (h, (y, y), w), r"\(y_a, y_b, lam\)"),
        (lambda h, y, w: (h, (y, y, 1.5), w), r"lam must be a number in \[0, 1\]"),
        (lambda h, y, w: (h, (y, y, torch.ones(3)), w), r"scalar or a \(12,\) tensor"),
        (lambda h, y, w: (h, (y, y + K, 0.5), w), "y_b contains"),
    ],
)
def test_bad_loss_inputs(loss, args, match):
    h, y, frame = setup()
    with pytest.raises(ValueError, match=match):
        loss(*args(h, y, frame))


# --------------------------------------------------------------------------- empty batches


def _all_frame_losses():
    tree = Hierarchy.balanced([1, K])
    return [
        DotRegressionLoss(),
        DotRegressionLoss(form="reference", batch_reweight=True, norm_penalty=0.1),
        FrameCrossEntropy(scale=4.0),
        CosineFrameLoss(hierarchy_similarity(tree, gamma=1.0), alpha=0.5),
    ]


@pytest.mark.parametrize("loss", _all_frame_losses())
@pytest.mark.parametrize("mixed", [False, True])
def test_empty_batch_is_an_error_not_nan(loss, mixed):
    _, _, frame = setup()
    h = torch.zeros(0, D, dtype=torch.float64)
    y = torch.zeros(0, dtype=torch.int64)
    targets = (y, y, 0.5) if mixed else y
    with pytest.raises(ValueError, match=r"empty batch \(B = 0\)"):
        loss(h, targets, frame)


def test_soft_label_loss_rejects_an_empty_batch():
    loss = SoftLabelCrossEntropy(Hierarchy.balanced([2, 2]).lca_heights(), beta=1.0)
    with pytest.raises(ValueError, match="empty batch"):
        loss(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))


def test_soft_label_kl_keeps_the_target_entropy_in_float64():
    tree = Hierarchy.balanced([3, 4])
    loss = SoftLabelCrossEntropy(tree, beta=3.0, form="kl", reduction="none")
    assert loss.target_entropy.dtype == torch.float64
    logits = torch.randn(9, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.arange(9) % 12
    # independent float64 KL(q_y || p): soft labels from the LCA distances, in NumPy
    from neuralcollapse.hierarchy import distance_matrix

    d = distance_matrix(tree).double().numpy()
    e = np.exp(-3.0 * d / d.max())
    q64 = e / e.sum(axis=1, keepdims=True)
    log_p = logits.numpy() - np.log(np.exp(logits.numpy()).sum(axis=1, keepdims=True))
    q32 = loss.targets.double().numpy()  # the cross term uses the float32 targets buffer
    cross = -(q32[y.numpy()] * log_p).sum(axis=1)
    entropy = -(q64 * np.log(q64)).sum(axis=1)
    np.testing.assert_allclose(loss(logits, y).numpy(), cross - entropy[y.numpy()], rtol=1e-13)
    np.testing.assert_allclose(loss.target_entropy.numpy(), entropy, rtol=1e-14)
    # the float64 entropy is not the float32-rounded one
    rounded = loss.target_entropy.float().double()
    assert not torch.equal(rounded, loss.target_entropy)


# --------------------------------------------------------------------------- mixup_loss


def test_mixup_loss_with_a_reduced_torch_loss():
    logits = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y_a, y_b = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([3, 2, 1, 0, 3, 2])
    ce = torch.nn.CrossEntropyLoss()
    mixed = mixup_loss(ce, logits, (y_a, y_b, 0.25))
    assert mixed.item() == pytest.approx(
        0.25 * ce(logits, y_a).item() + 0.75 * ce(logits, y_b).item()
    )
    assert mixup_loss(ce, logits, y_a).item() == pytest.approx(ce(logits, y_a).item())
    lam = torch.tensor(0.25, dtype=torch.float64)
    assert mixup_loss(ce, logits, (y_a, y_b, lam)).item() == pytest.approx(mixed.item())


def test_mixup_loss_per_sample_lam_needs_a_per_sample_loss():
    logits = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    lam = torch.linspace(0, 1, 6)
    per_sample = torch.nn.CrossEntropyLoss(reduction="none")
    expected = lam * per_sample(logits, y) + (1 - lam) * per_sample(logits, y.flip(0))
    torch.testing.assert_close(mixup_loss(per_sample, logits, (y, y.flip(0), lam)), expected)
    with pytest.raises(ValueError, match="per-sample lam .* needs a per-sample loss"):
        mixup_loss(torch.nn.CrossEntropyLoss(), logits, (y, y.flip(0), lam))


@pytest.mark.parametrize(
    ("targets", "match"),
    [
        (lambda y: (y, y), r"\(y_a, y_b, lam\)"),
        (lambda y: (y, y, -0.1), r"lam must be a number in \[0, 1\]"),
        (lambda y: (y, y + 4, 0.5), "y_b contains 7, outside the classes 0..3"),
        (lambda y: (y[:2], y, 0.5), r"y_a must have shape \(6,\)"),
        (lambda y: y.float(), "integer class indices"),
    ],
)
def test_mixup_loss_checks_targets(targets, match):
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    with pytest.raises(ValueError, match=match):
        mixup_loss(torch.nn.CrossEntropyLoss(), torch.randn(6, 4), targets(y), num_classes=4)


def test_mixup_loss_rejects_an_empty_batch():
    with pytest.raises(ValueError, match="empty batch"):
        mixup_loss(torch.nn.CrossEntropyLoss(), torch.zeros(0, 4), torch.zeros(0).long())


def test_nan_features_are_refused_by_the_frame_losses():
    features = torch.zeros(3, 4)
    features[1, 2] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN or inf in 1 of 3 rows"):
        DotRegressionLoss()(features, torch.tensor([0, 1, 2]), torch.eye(3, 4))
