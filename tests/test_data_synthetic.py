"""Synthetic mixtures: flat and hierarchical, seeded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralcollapse.data import class_counts, gaussian_mixture, hierarchical_mixture
from neuralcollapse.hierarchy import Hierarchy

# root -> {a, b}; a -> {a1, a2}; b -> {b1, b2, b3}: a two-level tree with 5 leaves
EDGES = [
    ("a", "root"),
    ("b", "root"),
    ("a1", "a"),
    ("a2", "a"),
    ("b1", "b"),
    ("b2", "b"),
    ("b3", "b"),
]


def _mean_distances(mixture):
    return torch.cdist(mixture.means.double(), mixture.means.double())


def test_gaussian_mixture_shapes_counts_and_seed():
    m = gaussian_mixture(4, 8, 30, seed=1)
    assert m.features.shape == (120, 8) and m.features.dtype == torch.float32
    assert torch.bincount(m.labels).tolist() == [30] * 4
    assert m.means.shape == (4, 8) and m.lca_heights is None
    again = gaussian_mixture(4, 8, 30, seed=1)
    assert torch.equal(m.features, again.features)
    assert not torch.equal(m.features, gaussian_mixture(4, 8, 30, seed=2).features)


@pytest.mark.parametrize("dim", [9, 10, 32])
def test_gaussian_mixture_means_are_equidistant_when_dim_allows(dim):
    m = gaussian_mixture(10, dim, 2, separation=3.0)
    dist = _mean_distances(m)
    off = dist[~torch.eye(10, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, 3.0), atol=1e-5)


def test_gaussian_mixture_low_dim_and_noise():
    m = gaussian_mixture(10, 3, 500, separation=2.0, noise=0.5, seed=0)
    norms = m.means.norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, 2.0 / math.sqrt(2)), atol=1e-5)
    residual = m.features - m.means[m.labels]
    assert abs(float(residual.std()) - 0.5) < 0.02


def test_gaussian_mixture_imbalance():
    m = gaussian_mixture(5, 4, 200, imbalance_ratio=10, seed=0)
    assert torch.bincount(m.labels).tolist() == class_counts(200, 5, 10).tolist()
    m = gaussian_mixture(3, 4, counts=[5, 0, 2])
    assert torch.bincount(m.labels, minlength=3).tolist() == [5, 0, 2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 0, "dim": 3}, "num_classes >= 1"),
        ({"num_classes": 3, "dim": 3, "separation": 0.0}, "separation > 0"),
        ({"num_classes": 3, "dim": 3, "noise": -1.0}, "noise >= 0"),
        ({"num_classes": 3, "dim": 3, "counts": [1, 2]}, "counts must be 3"),
        ({"num_classes": 3, "dim": 3, "imbalance_ratio": 0.1}, "imbalance_ratio"),
    ],
)
def test_gaussian_mixture_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gaussian_mixture(**kwargs)


def test_tree_from_edges_gives_hierarchy_order_and_heights():
    m = hierarchical_mixture(EDGES, dim=6, n_per_class=2, seed=0)
    tree = Hierarchy.from_edges(EDGES)
    assert m.classes == tree.leaves == ("a1", "a2", "b1", "b2", "b3")
    assert m.lca_heights.tolist() == [
        [0, 1, 2, 2, 2],
        [1, 0, 2, 2, 2],
        [2, 2, 0, 1, 1],
        [2, 2, 1, 0, 1],
        [2, 2, 1, 1, 0],
    ]
    assert torch.equal(m.lca_heights, tree.lca_heights())


@pytest.mark.parametrize(
    ("edges", "order"),
    [
        # no integer suffixes: first appearance, never alphabetical
        ([("dog", "root"), ("cat", "root")], ("dog", "cat")),
        # distinct integer suffixes: by the integer alone, whatever precedes it
        ([("x10", "root"), ("y2", "root")], ("y2", "x10")),
        ([(f"L-{i}", "root") for i in (10, 2, 1)], ("L-1", "L-2", "L-10")),
    ],
)
def test_synthetic_class_order_is_hierarchy_order(edges, order):
    tree = Hierarchy.from_edges(edges)
    assert tree.leaves == order
    for given_as in (edges, tree):
        m = hierarchical_mixture(given_as, dim=len(order), n_per_class=3, seed=1)
        assert m.classes == order
        # class i of the mixture is leaf i: same means whichever way the tree came in
        assert torch.equal(m.means, hierarchical_mixture(tree, len(order), 3, seed=1).means)


def test_explicit_class_order_goes_through_hierarchy():
    tree = Hierarchy.from_edges(EDGES, classes=["b1", "a1", "b2", "a2", "b3"])
    m = hierarchical_mixture(tree, dim=6, n_per_class=2, seed=0)
    assert m.classes[0] == "b1"
    assert int(m.lca_heights[0, 2]) == 1 and int(m.lca_heights[0, 1]) == 2


def test_a_bare_matrix_has_no_class_names():
    heights = Hierarchy.from_edges(EDGES).lca_heights()
    assert hierarchical_mixture(heights, dim=6, n_per_class=2).classes is None


@pytest.mark.parametrize(
    ("edges", "match"),
    [
        ([], "no edges"),
        ([("a", "r"), ("a", "s")], "two parents"),
        ([("a", "r"), ("b", "s")], "2 roots"),
        ([("a", "b", "c")], r"\(child, parent\) pair"),
    ],
)
def test_edge_errors_come_from_hierarchy(edges, match):
    with pytest.raises(ValueError, match=match):
        hierarchical_mixture(edges, dim=4)


def test_unbalanced_trees_embed_exactly():
    # leaves at depths 1, 2 and 3: Hierarchy's heights are still an ultrametric
    edges = [("a", "root"), ("b", "root"), ("a1", "a"), ("a2", "a"), ("a11", "a1"), ("a12", "a1")]
    tree = Hierarchy.from_edges(edges)
    assert not tree.is_balanced
    m = hierarchical_mixture(tree, dim=tree.num_classes, n_per_class=1, separation=2.0)
    expected = 2.0 * tree.lca_heights().double().sqrt()
    assert torch.allclose(_mean_distances(m), expected, atol=1e-5)


@pytest.mark.parametrize("form", ["edges", "matrix", "numpy", "hierarchy"])
def test_hierarchical_mixture_distances_follow_the_tree(form):
    tree = Hierarchy.from_edges(EDGES)
    heights = tree.lca_heights()
    given_as = {"edges": EDGES, "matrix": heights, "numpy": heights.numpy(), "hierarchy": tree}
    m = hierarchical_mixture(given_as[form], dim=6, n_per_class=4, separation=2.0, seed=0)
    expected = 2.0 * heights.double().sqrt()
    assert torch.allclose(_mean_distances(m), expected, atol=1e-5)
    assert torch.equal(m.lca_heights, heights)
    # siblings closer than cousins
    assert float(_mean_distances(m)[0, 1]) < float(_mean_distances(m)[0, 2])
    assert torch.bincount(m.labels).tolist() == [4] * 5


def test_hierarchical_mixture_seeded_and_imbalanced():
    a = hierarchical_mixture(EDGES, 8, 50, imbalance_ratio=5, seed=3)
    b = hierarchical_mixture(EDGES, 8, 50, imbalance_ratio=5, seed=3)
    assert torch.equal(a.features, b.features)
    assert torch.bincount(a.labels).tolist() == class_counts(50, 5, 5).tolist()


def test_hierarchical_mixture_errors():
    with pytest.raises(ValueError, match="dim=2 is too small"):
        hierarchical_mixture(EDGES, dim=2)
    not_a_tree = torch.tensor([[0, 1, 3], [1, 0, 1], [3, 1, 0]])
    with pytest.raises(ValueError, match="do not come from a tree"):
        hierarchical_mixture(not_a_tree, dim=4)
    with pytest.raises(ValueError, match="symmetric"):
        hierarchical_mixture(torch.tensor([[0, 1], [2, 0]]), dim=4)
    with pytest.raises(ValueError, match="0 on the diagonal"):
        hierarchical_mixture(torch.tensor([[1, 1], [1, 1]]), dim=4)
    with pytest.raises(ValueError, match=r"\(K, K\)"):
        hierarchical_mixture(torch.zeros(2, 3), dim=4)
    with pytest.raises(ValueError, match="hierarchy must be a neuralcollapse.Hierarchy"):
        hierarchical_mixture(42, dim=4)

    class LooksLikeATree:  # duck typing is gone: Hierarchy is the one tree type
        def lca_heights(self):
            return torch.zeros(2, 2)

    with pytest.raises(ValueError, match="got LooksLikeATree"):
        hierarchical_mixture(LooksLikeATree(), dim=4)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(branching=st.lists(st.integers(1, 4), min_size=1, max_size=4), seed=st.integers(0, 99))
def test_random_trees_embed_exactly(branching, seed):
    edges = []
    for g, size in enumerate(branching):
        edges.append((f"g{g}", "root"))
        edges += [(f"g{g}-{i}", f"g{g}") for i in range(size)]
    tree = Hierarchy.from_edges(edges)
    heights = tree.lca_heights()
    k = heights.shape[0]
    m = hierarchical_mixture(tree, dim=k, n_per_class=1, separation=1.5, seed=seed)
    assert m.classes == tree.leaves
    assert torch.allclose(_mean_distances(m), 1.5 * heights.double().sqrt(), atol=1e-5)


def test_cifar100_hierarchy_lca_height_histogram(cifar100_hierarchy_file):
    tree = Hierarchy.load(cifar100_hierarchy_file)
    m = hierarchical_mixture(tree, dim=100, n_per_class=1, seed=0)
    assert m.classes[:2] == ("L5-0", "L5-1") and m.classes[-1] == "L5-99"
    upper = m.lca_heights[np.triu_indices(100, 1)]
    # docs/theory.md §7: heights 1..5 occur 200, 525, 1050, 900, 2275 times
    assert torch.bincount(upper, minlength=6).tolist()[1:] == [200, 525, 1050, 900, 2275]
