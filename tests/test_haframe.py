"""Hierarchy-aware frame and the cosine frame loss, against independent float64 NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuralcollapse.frames import (
    _most_negative_psd_offset,
    describe,
    hierarchy_aware_frame,
    hierarchy_similarity,
    simplex_etf,
)
from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.losses import CosineFrameLoss


def binary_tree(levels: int) -> Hierarchy:
    edges = []
    for level in range(1, levels + 1):
        for i in range(2**level):
            parent = "root" if level == 1 else f"n{level - 1}_{i // 2}"
            edges.append((f"n{level}_{i}", parent))
    return Hierarchy.from_edges(edges)


def numpy_offset_by_bisection(lca: np.ndarray, gamma: float) -> float:
    """The most negative s with S(s) PSD, by bisection on NumPy's smallest eigenvalue."""
    a = np.exp(-gamma * lca / lca.max())
    gap = 1.0 - a
    low, high = -1.0, 0.0
    while high - low > 1e-11:
        mid = 0.5 * (low + high)
        if np.linalg.eigvalsh(a + mid * gap)[0] >= -1e-12:
            high = mid
        else:
            low = mid
    return high


@pytest.fixture(scope="module")
def cifar100(cifar100_hierarchy_file) -> Hierarchy:
    return Hierarchy.from_edges(cifar100_hierarchy_file)


def test_cifar100_offset_is_exact_not_the_grid_value(cifar100):
    target = hierarchy_similarity(cifar100, gamma=2.0)
    assert target.s == pytest.approx(-0.30574, abs=5e-6)  # the reference grid gives -0.3001
    lca = cifar100.lca_heights().numpy().astype(np.float64)
    assert target.s == pytest.approx(numpy_offset_by_bisection(lca, 2.0), abs=1e-9)
    assert target.rank == 99
    eigenvalues = np.linalg.eigvalsh(target.matrix.numpy())
    assert eigenvalues[0] > -1e-12 and abs(eigenvalues[0]) < 1e-10  # on the PSD boundary


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_similarity_formula_and_offset_on_a_binary_tree(gamma):
    tree = binary_tree(4)
    lca = tree.lca_heights().numpy().astype(np.float64)
    target = hierarchy_similarity(tree, gamma=gamma)
    s = numpy_offset_by_bisection(lca, gamma)
    assert target.s == pytest.approx(s, abs=1e-9)
    expected = (1 - target.s) * np.exp(-gamma * lca / lca.max()) + target.s
    np.testing.assert_allclose(target.matrix.numpy(), expected, rtol=0, atol=1e-15)
    by_height = target.by_lca_height(tree.lca_heights())
    assert by_height[0] == pytest.approx(1.0)
    assert [by_height[h] for h in range(1, 5)] == sorted(by_height[h] for h in range(1, 5))[::-1]


@pytest.mark.parametrize("seed", [0, 1])
def test_frame_reproduces_the_similarity(cifar100, seed):
    target = hierarchy_similarity(cifar100, gamma=2.0)
    frame = hierarchy_aware_frame(cifar100, gamma=2.0, seed=seed, dtype=torch.float64)
    assert frame.shape == (100, 99)
    w = frame.numpy()
    np.testing.assert_allclose(w @ w.T, target.matrix.numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, atol=1e-10)
    again = hierarchy_aware_frame(cifar100.lca_heights(), gamma=2.0, seed=seed, dtype=torch.float64)
    assert torch.equal(frame, again)


def test_frame_in_a_wider_space_and_a_lower_rank_approximation():
    tree = binary_tree(3)
    target = hierarchy_similarity(tree, gamma=2.0)
    wide = hierarchy_aware_frame(tree, gamma=2.0, dim=32, seed=0, dtype=torch.float64)
    assert wide.shape == (8, 32)
    np.testing.assert_allclose((wide @ wide.T).numpy(), target.matrix.numpy(), atol=1e-10)
    narrow = hierarchy_aware_frame(tree, gamma=2.0, dim=3, seed=0, dtype=torch.float64)
    assert narrow.shape == (8, 3) and describe(narrow).rank == 3
    np.testing.assert_allclose(narrow.norm(dim=1).numpy(), 1.0, atol=1e-12)
    # Not exact any more, but closer to S than a random unit frame of the same size.
    error = np.linalg.norm((narrow @ narrow.T).numpy() - target.matrix.numpy())
    rand = F.normalize(
        torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64), dim=1
    )
    assert error < np.linalg.norm((rand @ rand.T).numpy() - target.matrix.numpy())


def test_singular_base_uses_the_bisection_path():
    ones = torch.ones(4, 4, dtype=torch.float64)
    assert _most_negative_psd_offset(ones) == -1.0
    # A PSD but singular base whose boundary lies inside (-1, 0).
    v = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    base = v @ v.T + 0.0
    s = _most_negative_psd_offset(base)
    gap = 1.0 - base.numpy()
    assert np.linalg.eigvalsh(base.numpy() + s * gap)[0] >= -1e-10
    assert np.linalg.eigvalsh(base.numpy() + (s - 1e-6) * gap)[0] < 0 or s == -1.0


@pytest.mark.parametrize(
    ("lca", "gamma", "match"),
    [
        (torch.zeros(3), 1.0, "square"),
        (torch.tensor([[0.0, 1.0], [2.0, 0.0]]), 1.0, "symmetric"),
        (torch.tensor([[1.0, 1.0], [1.0, 1.0]]), 1.0, "0 on the diagonal"),
        (torch.tensor([[0.0, -1.0], [-1.0, 0.0]]), 1.0, "non-negative"),
        (torch.tensor([[0.0, 0.0], [0.0, 0.0]]), 1.0, "LCA height 0"),
        (torch.tensor([[0.0, 1.0], [1.0, 0.0]]), 0.0, "gamma must be a positive"),
        ("tree.csv", 1.0, "Hierarchy or a"),
    ],
)
def test_bad_input(lca, gamma, match):
    with pytest.raises(ValueError, match=match):
        hierarchy_aware_frame(lca, gamma=gamma)


# --------------------------------------------------------------------------- loss


def numpy_cosine_frame_loss(z, y, w, s, alpha):
    logits = z @ w.T
    top = logits.max(1, keepdims=True)
    lse = (top + np.log(np.exp(logits - top).sum(1, keepdims=True)))[:, 0]
    ce = lse - logits[np.arange(len(y)), y]
    cos = (z / np.linalg.norm(z, axis=1, keepdims=True)) @ (
        w / np.linalg.norm(w, axis=1, keepdims=True)
    ).T
    reg = ((cos - s[:, y].T) ** 2).sum(1)
    return (1 - alpha) * ce + alpha * reg


def test_cosine_frame_loss_matches_numpy_and_autograd():
    tree = binary_tree(3)
    target = hierarchy_similarity(tree, gamma=2.0)
    frame = hierarchy_aware_frame(tree, gamma=2.0, seed=0, dtype=torch.float64)
    rng = np.random.default_rng(0)
    z = torch.from_numpy(rng.standard_normal((10, frame.shape[1]))).requires_grad_(True)
    y = torch.from_numpy(rng.integers(0, 8, 10))
    loss = CosineFrameLoss(target, alpha=0.4, reduction="none")(z, y, frame)
    expected = numpy_cosine_frame_loss(
        z.detach().numpy(), y.numpy(), frame.numpy(), target.matrix.numpy(), 0.4
    )
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-12)
    assert torch.autograd.gradcheck(
        lambda x: CosineFrameLoss(target.matrix, alpha=0.4)(x, y, frame), (z,)
    )


def test_cosine_term_vanishes_on_the_frame_with_an_etf_target():
    frame = simplex_etf(6, 6, seed=0, dtype=torch.float64)
    gram = frame @ frame.T
    y = torch.arange(6)
    loss = CosineFrameLoss(gram, alpha=1.0, reduction="none")(3.0 * frame[y], y, frame)
    assert loss.abs().max().item() < 1e-24
    only_ce = CosineFrameLoss(gram, alpha=0.0)(3.0 * frame[y], y, frame)
    assert only_ce.item() == pytest.approx(F.cross_entropy(3.0 * frame @ frame.T, y).item())


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: CosineFrameLoss(torch.eye(3), alpha=1.5), r"alpha must be in \[0, 1\]"),
        (lambda: CosineFrameLoss(torch.ones(3, 2), alpha=0.5), "square"),
        (lambda: CosineFrameLoss(torch.full((2, 2), float("nan")), alpha=0.5), "finite"),
    ],
)
def test_cosine_frame_loss_rejects_bad_configuration(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_cosine_frame_loss_rejects_mismatched_frame():
    loss = CosineFrameLoss(torch.eye(3, dtype=torch.float64), alpha=0.5)
    frame = simplex_etf(4, 4, dtype=torch.float64, seed=0)
    with pytest.raises(ValueError, match="K=4 classes but the similarity matrix has K=3"):
        loss(torch.randn(2, 4, dtype=torch.float64), torch.tensor([0, 1]), frame)
