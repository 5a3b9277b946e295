"""LCA conventions, the field's hierarchical metrics, distance files and shipped trees.

Every number is checked against an independent float64 NumPy computation written from the
papers' definitions (making-better-mistakes [Bertinetto 2020], [L23]), or by hand.
"""

from __future__ import annotations

import csv
import io
import json
import lzma
import math
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import neuralcollapse as nc
from neuralcollapse.cli import main
from neuralcollapse.data import fgvc_aircraft_hierarchy, inaturalist_hierarchy
from neuralcollapse.frames import build_frame, hierarchy_aware_frame, hierarchy_similarity
from neuralcollapse.hierarchy import (
    ClassDistances,
    Hierarchy,
    check_convention,
    distance_matrix,
    load_hierarchy,
)
from neuralcollapse.losses import SoftLabelCrossEntropy
from neuralcollapse.metrics.hierarchical import (
    HierarchicalCounter,
    best_hierarchical_distance_at_k,
    crm_predict,
    hierarchical_distance_at_k,
    mistake_severity,
    mistakes_at_k,
    rank_classes,
    top1_error,
)
from neuralcollapse.train import Trainer, load_config
from neuralcollapse.train.build import build_loss
from neuralcollapse.train.config import ConfigError
from neuralcollapse.train.data import load_training_data
from neuralcollapse.train.recipes import RECIPE_DIR
from test_train import write_cifar_standin

# The minimal unbalanced tree: root -> P -> {x, y}; root -> R -> S -> {u, v}.
MINIMAL = [("P", "root"), ("x", "P"), ("y", "P"), ("R", "root"), ("S", "R"), ("u", "S"), ("v", "S")]
# Classes x, y, u, v, computed by hand. "height": LCA(x, y) = P, whose longest way down is
# 1; "level": the deepest leaf is at depth 3 and P at depth 1, so 3 - 1 = 2.
HAND = {
    "height": np.array([[0, 1, 3, 3], [1, 0, 3, 3], [3, 3, 0, 1], [3, 3, 1, 0]], dtype=float),
    "level": np.array([[0, 2, 3, 3], [2, 0, 3, 3], [3, 3, 0, 1], [3, 3, 1, 0]], dtype=float),
}

# CIFAR-100's official fine_label_names (label order) and coarse_label_names with members.
CIFAR100_FINE = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
]
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": "beaver dolphin otter seal whale",
    "fish": "aquarium_fish flatfish ray shark trout",
    "flowers": "orchid poppy rose sunflower tulip",
    "food_containers": "bottle bowl can cup plate",
    "fruit_and_vegetables": "apple mushroom orange pear sweet_pepper",
    "household_electrical_devices": "clock keyboard lamp telephone television",
    "household_furniture": "bed chair couch table wardrobe",
    "insects": "bee beetle butterfly caterpillar cockroach",
    "large_carnivores": "bear leopard lion tiger wolf",
    "large_man-made_outdoor_things": "bridge castle house road skyscraper",
    "large_natural_outdoor_scenes": "cloud forest mountain plain sea",
    "large_omnivores_and_herbivores": "camel cattle chimpanzee elephant kangaroo",
    "medium_mammals": "fox porcupine possum raccoon skunk",
    "non-insect_invertebrates": "crab lobster snail spider worm",
    "people": "baby boy girl man woman",
    "reptiles": "crocodile dinosaur lizard snake turtle",
    "small_mammals": "hamster mouse rabbit shrew squirrel",
    "trees": "maple_tree oak_tree palm_tree pine_tree willow_tree",
    "vehicles_1": "bicycle bus motorcycle pickup_truck train",
    "vehicles_2": "lawn_mower rocket streetcar tank tractor",
}
CIFAR100_COARSE = sorted(CIFAR100_SUPERCLASSES)  # coarse_label_names is alphabetical


@pytest.fixture(scope="module")
def minimal() -> Hierarchy:
    return Hierarchy.from_edges(MINIMAL)


# --------------------------------------------------------------------------- conventions


def test_minimal_unbalanced_tree_gives_1_by_height_and_2_by_level(minimal):
    assert minimal.leaves == ("x", "y", "u", "v") and not minimal.is_balanced
    assert int(minimal.lca_heights("height")[0, 1]) == 1
    assert int(minimal.lca_heights("level")[0, 1]) == 2
    assert int(minimal.lca_heights()[0, 1]) == 2  # "level" is the default
    for convention, expected in HAND.items():
        got = minimal.lca_heights(convention)
        assert got.dtype == torch.int64
        np.testing.assert_array_equal(got.numpy(), expected)
        assert torch.equal(distance_matrix(minimal, convention=convention), got)
    with pytest.raises(ValueError, match="convention must be 'level'"):
        minimal.lca_heights("depth")
    with pytest.raises(ValueError, match="convention must be"):
        check_convention(None)


def test_balanced_trees_agree_under_both_conventions():
    # The hier_mixture recipes' tree (fan-outs 2, 3, 4): nothing changes for them.
    for branching in ([2, 3, 4], [3], [2, 2, 2, 2]):
        tree = Hierarchy.balanced(branching)
        assert torch.equal(tree.lca_heights("level"), tree.lca_heights("height"))
    tree = Hierarchy.balanced([2, 3, 4])
    assert torch.equal(
        hierarchy_aware_frame(tree, gamma=2.0, seed=0, convention="level"),
        hierarchy_aware_frame(tree, gamma=2.0, seed=0, convention="height"),
    )


def numpy_offset(d: np.ndarray, gamma: float) -> float:
    """Most negative s in [-1, 0] with (1 - s) exp(-gamma D / max D) + s PSD (bisection)."""
    a = np.exp(-gamma * d / d.max())
    low, high = -1.0, 0.0
    while high - low > 1e-12:
        mid = 0.5 * (low + high)
        s_matrix = (1 - mid) * a + mid
        low, high = (low, mid) if np.linalg.eigvalsh(s_matrix)[0] >= -1e-12 else (mid, high)
    return high


@pytest.mark.parametrize("convention", ["height", "level"])
def test_frames_follow_the_convention_on_the_hand_tree(minimal, convention):
    d = HAND[convention]
    gamma = 2.0
    target = hierarchy_similarity(minimal, gamma=gamma, convention=convention)
    s = numpy_offset(d, gamma)
    assert target.s == pytest.approx(s, abs=1e-9)
    expected = (1 - s) * np.exp(-gamma * d / d.max()) + s
    np.testing.assert_allclose(target.matrix.numpy(), expected, atol=1e-9)
    frame = hierarchy_aware_frame(
        minimal, gamma=gamma, seed=0, dtype=torch.float64, convention=convention
    )
    np.testing.assert_allclose((frame @ frame.T).numpy(), expected, atol=1e-8)
    same = build_frame(
        "haframe", 4, None, hierarchy=minimal, gamma=gamma, seed=0, convention=convention
    )
    assert torch.allclose(same, frame.float())
    # The matrix itself (tensor or ClassDistances) gives the same frame.
    for given_as in (torch.from_numpy(d), ClassDistances(d, minimal.leaves)):
        again = hierarchy_aware_frame(given_as, gamma=gamma, seed=0, dtype=torch.float64)
        assert torch.equal(again, frame)


def test_the_conventions_give_different_frames_on_the_hand_tree(minimal):
    level = hierarchy_similarity(minimal, gamma=2.0, convention="level").matrix
    height = hierarchy_similarity(minimal, gamma=2.0, convention="height").matrix
    assert float(level[0, 1]) < float(height[0, 1])  # x and y are further apart by level


@pytest.mark.parametrize("convention", ["height", "level"])
def test_metrics_follow_the_convention_on_the_hand_tree(minimal, convention):
    d = HAND[convention]
    # truth x ranks y > u > x > v (top-1 wrong, a sibling); truth u ranks u > v > x > y
    # (correct); truth v ranks x > y > u > v (top-1 wrong, far away).
    logits = torch.tensor([[1.0, 4.0, 3.0, 0.0], [2.0, 1.0, 4.0, 3.0], [4.0, 3.0, 2.0, 1.0]])
    labels = torch.tensor([0, 2, 3])
    rows = [[d[0, 1], d[0, 2], d[0, 0]], [0.0, d[2, 3], d[2, 0]], [d[3, 0], d[3, 1], d[3, 2]]]
    wrong = [0, 2]
    assert top1_error(logits, labels) == pytest.approx(2 / 3)
    kwargs = {"convention": convention}
    assert mistake_severity(logits, labels, minimal, **kwargs) == pytest.approx(
        (d[0, 1] + d[3, 0]) / 2
    )
    for k in (1, 2, 3):
        means = [np.mean(r[:k]) for r in rows]
        assert hierarchical_distance_at_k(logits, labels, minimal, k, **kwargs) == pytest.approx(
            np.mean(means)
        )
        assert mistakes_at_k(logits, labels, minimal, k, **kwargs) == pytest.approx(
            np.mean([means[i] for i in wrong])
        )
        assert best_hierarchical_distance_at_k(
            logits, labels, minimal, k, **kwargs
        ) == pytest.approx(np.mean([min(r[:k]) for r in rows]))
    # by hand: the sibling mistake costs 1 by height, 2 by level
    expected_severity = {"height": (1 + 3) / 2, "level": (2 + 3) / 2}[convention]
    assert mistake_severity(logits, labels, minimal, **kwargs) == expected_severity
    probs = torch.softmax(logits.double(), dim=1)
    assert (
        crm_predict(probs, minimal, **kwargs).tolist()
        == np.argmin(probs.numpy() @ d.T, axis=1).tolist()
    )


@pytest.mark.parametrize("convention", ["height", "level"])
@pytest.mark.parametrize("normalize", [True, False])
def test_soft_labels_follow_the_convention_on_the_hand_tree(minimal, convention, normalize):
    d = HAND[convention]
    beta = 3.0
    scaled = d / d.max() if normalize else d
    expected = np.exp(-beta * scaled) / np.exp(-beta * scaled).sum(axis=1, keepdims=True)
    loss = SoftLabelCrossEntropy(
        minimal, beta=beta, normalize_distances=normalize, convention=convention
    )
    np.testing.assert_allclose(loss.targets.numpy(), expected, rtol=1e-6)


# --------------------------------------------------------------------------- metrics


def field_metrics(scores: np.ndarray, labels: np.ndarray, d: np.ndarray, k: int) -> dict:
    """The paper's definitions, sample by sample; ties rank the lower class index first."""
    order = [sorted(range(len(s)), key=lambda c, s=s: (-s[c], c))[:k] for s in scores]
    dist = np.array([[d[y, c] for c in o] for o, y in zip(order, labels, strict=True)])
    wrong = np.array([o[0] != y for o, y in zip(order, labels, strict=True)])
    nan = float("nan")
    return {
        "top1_error": wrong.mean(),
        "mistake_severity": dist[wrong, 0].mean() if wrong.any() else nan,
        f"hier_dist@{k}": dist.mean(axis=1).mean(),
        f"mistakes@{k}": dist[wrong].mean(axis=1).mean() if wrong.any() else nan,
        f"best_hier_dist@{k}": dist.min(axis=1).mean(),
    }


def assert_same(got: dict, expected: dict) -> None:
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


@given(
    seed=st.integers(0, 10_000),
    k=st.integers(1, 11),
    levels=st.integers(2, 4),
    convention=st.sampled_from(["level", "height"]),
)
@settings(max_examples=60)
def test_property_metrics_equal_the_papers_definitions_with_ties(seed, k, levels, convention):
    rng = np.random.default_rng(seed)
    # a random (usually unbalanced) tree on 12 nodes; k is capped at its leaf count
    parents = [0] + [int(rng.integers(0, i)) for i in range(1, 12)]
    edges = [(f"n{i}", f"n{p}") for i, p in enumerate(parents) if i > 0]
    tree = Hierarchy.from_edges(edges)
    num = tree.num_classes
    k = min(k, num)
    d = tree.lca_heights(convention).numpy().astype(np.float64)
    # integer scores in a small range: many ties; k up to K (past the wrong predictions)
    scores = rng.integers(0, levels, (40, num)).astype(np.float64)
    labels = rng.integers(0, num, 40)
    counter = HierarchicalCounter(tree, ks=(k,), convention=convention)
    counter.update(torch.from_numpy(scores), torch.from_numpy(labels))
    assert_same(counter.compute(), field_metrics(scores, labels, d, k))


def test_ties_rank_the_lower_class_index_first():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    assert rank_classes(scores, 5).tolist() == [[1, 2, 4, 0, 3], [0, 1, 2, 3, 4]]
    assert rank_classes(scores, 1).squeeze(1).tolist() == scores.argmax(1).tolist()
    lca = Hierarchy.balanced([5]).lca_heights()  # every pair at distance 1
    # truth 2: the tie between 1, 2 and 4 ranks class 1 first, so top-1 is wrong
    counter = HierarchicalCounter(lca, ks=(1, 2, 5))
    counter.update(scores[:1], torch.tensor([2]))
    got = counter.compute()
    assert got["top1_error"] == 1.0 and got["mistake_severity"] == 1.0
    assert got["hier_dist@2"] == 0.5 and got["best_hier_dist@2"] == 0.0
    assert got["mistakes@5"] == pytest.approx(4 / 5)  # k > the wrong predictions


def test_k_beyond_the_mistakes_and_no_mistakes():
    lca = HAND["level"]
    scores = torch.eye(4, dtype=torch.float64)
    got = HierarchicalCounter(torch.from_numpy(lca), ks=(1, 4)).compute()
    assert got["num_samples"] == 0 and math.isnan(got["hier_dist@1"])
    counter = HierarchicalCounter(torch.from_numpy(lca), ks=(1, 4))
    counter.update(scores, torch.arange(4))
    got = counter.compute()
    assert got["top1_error"] == 0 and math.isnan(got["mistake_severity"])
    assert math.isnan(got["mistakes@4"]) and got["best_hier_dist@4"] == 0.0
    assert got["hier_dist@4"] == pytest.approx(lca.sum(axis=1).mean() / 4)


def making_better_mistakes_epoch(scores, labels, d, ks, batch):
    """Their evaluation loop re-expressed: per-batch means over equal-sized batches (the
    last incomplete batch dropped), mistakes selected by a nonzero top-1 distance."""
    hdist, best, mistakes_sum, mistakes = np.zeros(len(ks)), np.zeros(len(ks)), np.zeros(len(ks)), 0
    batches = len(labels) // batch
    for b in range(batches):
        s, y = scores[b * batch : (b + 1) * batch], labels[b * batch : (b + 1) * batch]
        top = np.argsort(-s, axis=1, kind="stable")[:, : max(ks)]
        dist = d[y[:, None], top]
        wrong = np.nonzero(dist[:, 0] != 0)[0]
        mistakes += len(wrong)
        for i, k in enumerate(ks):
            hdist[i] += dist[:, :k].mean()
            best[i] += dist[:, :k].min(axis=1).mean()
            mistakes_sum[i] += dist[wrong, :k].sum()
    out = {}
    for i, k in enumerate(ks):
        out[f"hier_dist@{k}"] = hdist[i] / batches
        out[f"best_hier_dist@{k}"] = best[i] / batches
        out[f"mistakes@{k}"] = mistakes_sum[i] / (mistakes * k)
    return out, batches * batch


def test_equal_to_the_reference_evaluation_loop(minimal):
    rng = np.random.default_rng(3)
    d = HAND["level"]
    scores = rng.standard_normal((64, 4))
    labels = rng.integers(0, 4, 64)
    ks = (1, 2, 4)
    expected, used = making_better_mistakes_epoch(scores, labels, d, ks, batch=16)
    counter = HierarchicalCounter(minimal, ks=ks)
    for start in range(0, used, 7):  # any batching: sums, not batch means
        stop = min(start + 7, used)
        counter.update(torch.from_numpy(scores[start:stop]), torch.from_numpy(labels[start:stop]))
    assert_same(counter.compute(), expected)


def test_counter_contract_state_dict_and_merge(minimal):
    rng = np.random.default_rng(5)
    scores, labels = (
        torch.from_numpy(rng.standard_normal((30, 4))),
        torch.from_numpy(rng.integers(0, 4, 30)),
    )
    whole = HierarchicalCounter(minimal, ks=(1, 3))
    whole.update(scores, labels)
    parts = [HierarchicalCounter(minimal, ks=(1, 3)) for _ in range(2)]
    parts[0].update(scores[:11], labels[:11])
    parts[1].update(scores[11:], labels[11:])
    merged = parts[0].merge(parts[1]).all_reduce()
    assert_same(merged.compute(), whole.compute())
    buffer = io.BytesIO()
    torch.save(whole.state_dict(), buffer)
    buffer.seek(0)
    restored = HierarchicalCounter(minimal, ks=(1, 3))
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.compute() == whole.compute()
    assert whole.state_dict()["version"] == 2
    other = HierarchicalCounter(minimal, ks=(1, 3), convention="height")
    with pytest.raises(ValueError, match="same lca and ks"):
        other.merge(whole)
    restored.reset()
    assert restored.compute()["num_samples"] == 0


# --------------------------------------------------------------------------- soft labels


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")
def test_soft_labels_match_making_better_mistakes_loss():
    tree = Hierarchy.balanced([2, 3])
    d = tree.lca_heights().numpy().astype(np.float64)
    k, beta = d.shape[0], 10.0
    # their targets: exp(-beta D / max D), normalised over each column; column y = class y
    e = np.exp(-beta * d / d.max())
    soft = e / e.sum(axis=0, keepdims=True)
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.standard_normal((5, k)))
    labels = torch.tensor([0, 1, 2, 3, 5])
    log_p = torch.log_softmax(logits, dim=1).numpy()
    q = soft[:, labels.numpy()].T  # (B, K)
    theirs = (q * (np.log(q) - log_p)).sum() / (5 * k)  # KLDivLoss(): mean over B x K
    torch_theirs = torch.nn.KLDivLoss()(torch.log_softmax(logits, 1), torch.from_numpy(q))
    assert float(torch_theirs) == pytest.approx(theirs, rel=1e-12)
    ours = SoftLabelCrossEntropy(tree, beta=beta, form="kl", reduction="elementwise_mean")
    assert float(ours(logits, labels)) == pytest.approx(theirs, rel=1e-6)
    np.testing.assert_allclose(ours.targets.numpy(), soft.T, rtol=1e-6)
    # Unnormalised D with beta / max D gives the same targets.
    plain = SoftLabelCrossEntropy(tree, beta=beta / d.max(), normalize_distances=False)
    np.testing.assert_allclose(plain.targets.numpy(), soft.T, rtol=1e-6)
    # Cross-entropy form: their value plus the targets' entropy, same gradient.
    ce = SoftLabelCrossEntropy(tree, beta=beta, reduction="elementwise_mean")
    entropy = -(q * np.log(q)).sum() / (5 * k)
    assert float(ce(logits, labels)) == pytest.approx(theirs + entropy, rel=1e-6)
    # "mean" (over the batch) is K times "elementwise_mean": their lr / K transfers.
    grads = []
    for reduction in ("mean", "elementwise_mean"):
        x = logits.clone().requires_grad_(True)
        SoftLabelCrossEntropy(tree, beta=beta, reduction=reduction)(x, labels).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], k * grads[1])
    with pytest.raises(ValueError, match="reduction must be one of"):
        SoftLabelCrossEntropy(tree, beta=1.0, reduction="batchmean")
    with pytest.raises(ValueError, match="form must be one of"):
        SoftLabelCrossEntropy(tree, beta=1.0, form="js")


def test_soft_label_config_keys_reach_the_loss():
    config = load_config(
        RECIPE_DIR / "hier_mixture_learnable.yaml",
        [
            "loss.name=soft_ce",
            "loss.beta=4",
            "loss.normalize_distances=false",
            "loss.soft_reduction=elementwise_mean",
            "data.lca_convention=height",
        ],
    )
    loss = build_loss(config, None, Hierarchy.from_edges(MINIMAL)).inner
    assert isinstance(loss, SoftLabelCrossEntropy)
    assert loss.reduction == "elementwise_mean" and not loss.normalize_distances
    e = np.exp(-4 * HAND["height"])
    np.testing.assert_allclose(loss.targets.numpy(), e / e.sum(1, keepdims=True), rtol=1e-6)
    default = load_config(RECIPE_DIR / "hier_mixture_learnable.yaml", ["loss.name=soft_ce"])
    assert default.data.lca_convention == "level" and default.loss.normalize_distances
    assert default.loss.soft_reduction == "mean"
    with pytest.raises(ConfigError, match="lca_convention"):
        load_config(None, ["data.lca_convention=depth"])


# --------------------------------------------------------------------------- distance files


def write_pairs(path: Path, pairs: dict, compress: bool = False) -> Path:
    raw = pickle.dumps(pairs, protocol=3)
    path.write_bytes(lzma.compress(raw) if compress else raw)
    return path


def all_node_pairs(tree: Hierarchy) -> dict:
    """A making-better-mistakes style file: every pair of nodes (inner ones too), each
    once, at 'level' distance (tree depth minus the LCA's depth; 0 on the diagonal)."""
    nodes = tree.nodes
    out = {}
    for i, a in enumerate(nodes):
        chain_a = [a, *tree.ancestors(a)]
        for b in nodes[i:]:
            chain_b = {b, *tree.ancestors(b)}
            lca = next(n for n in chain_a if n in chain_b)
            out[(a, b)] = 0 if a == b else tree.depth - tree.node_depth(lca)
    return out


@pytest.mark.parametrize("compress", [False, True])
def test_distance_pickle_with_inner_nodes(tmp_path, minimal, compress):
    name = "d.pkl.xz" if compress else "d.pkl"
    path = write_pairs(tmp_path / name, all_node_pairs(minimal), compress)
    distances = ClassDistances.load(path, classes=minimal.leaves)
    assert distances.classes == minimal.leaves and distances.named
    assert torch.equal(distances.matrix, minimal.lca_heights("level"))
    everything = load_hierarchy(path)  # all 8 names, first-appearance order
    assert isinstance(everything, ClassDistances) and everything.num_classes == len(minimal)
    assert torch.equal(everything.select(minimal.leaves).matrix, distances.matrix)
    # frames, metrics and soft labels take it like the tree
    assert torch.equal(
        hierarchy_aware_frame(distances, gamma=1.0, seed=0),
        hierarchy_aware_frame(minimal, gamma=1.0, seed=0),
    )
    scores, labels = (
        torch.randn(9, 4, generator=torch.Generator().manual_seed(0)),
        torch.arange(9) % 4,
    )
    a, b = HierarchicalCounter(distances, ks=(2,)), HierarchicalCounter(minimal, ks=(2,))
    a.update(scores, labels)
    b.update(scores, labels)
    assert a.compute() == b.compute()
    assert torch.equal(
        SoftLabelCrossEntropy(distances, beta=2.0).targets,
        SoftLabelCrossEntropy(minimal, beta=2.0).targets,
    )


def test_distance_pairs_order_and_errors(tmp_path):
    pairs = {("c2", "c10"): 1, ("c10", "c1"): 2, ("c1", "c2"): 2}
    distances = ClassDistances.load(write_pairs(tmp_path / "a.pkl", pairs))
    assert distances.classes == ("c1", "c2", "c10")  # distinct integer suffixes
    np.testing.assert_array_equal(distances.matrix.numpy(), [[0, 2, 2], [2, 0, 1], [2, 1, 0]])
    floats = ClassDistances.from_pairs({("a", "b"): 0.5})
    assert floats.matrix.dtype == torch.float64 and floats.classes == ("a", "b")
    with pytest.raises(ValueError, match="no distance between 'a' and 'c'"):
        ClassDistances.from_pairs({("a", "b"): 1, ("b", "c"): 1})
    with pytest.raises(ValueError, match="must be symmetric"):
        ClassDistances.from_pairs({("a", "b"): 1, ("b", "a"): 2})
    with pytest.raises(ValueError, match="itself"):
        ClassDistances.from_pairs({("a", "a"): 1, ("a", "b"): 1})
    with pytest.raises(ValueError, match=r"classes \['z'\] have no distances"):
        ClassDistances.from_pairs({("a", "b"): 1}, ["a", "z"])
    bad = write_pairs(tmp_path / "neg.pkl", {("a", "b"): -1})
    with pytest.raises(ValueError, match="finite numbers >= 0"):
        ClassDistances.load(bad)
    with pytest.raises(ValueError, match="not a pair of class names"):
        ClassDistances.load(write_pairs(tmp_path / "key.pkl", {"a": 1}))
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="junk.pkl: not a pickled dict"):
        ClassDistances.load(tmp_path / "junk.pkl")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ClassDistances.load(tmp_path / "missing.pkl")
    with pytest.raises(ValueError, match=r"classes lists \['a'\] more than once"):
        ClassDistances.from_pairs({("a", "b"): 1}, ["a", "a"])
    with pytest.raises(ValueError, match="is a distance file, not a tree"):
        Hierarchy.load(tmp_path / "a.pkl")


def test_frame_command_reads_builtin_trees_and_distance_files(tmp_path, capsys, minimal):
    code = main(["frame", "haframe", "--hierarchy", "builtin:cifar100", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["num_classes"] == 100 and out["s"] == pytest.approx(-0.30574, abs=5e-6)
    path = write_pairs(tmp_path / "d.pkl.xz", all_node_pairs(minimal), compress=True)
    tree_file = str(minimal.save(tmp_path / "t.csv"))
    for convention, heights in (("level", {"0", "1", "2", "3"}), ("height", {"0", "1", "3"})):
        code = main(
            ["frame", "haframe", "--hierarchy", tree_file, "--convention", convention, "--json"]
        )
        out = json.loads(capsys.readouterr().out)
        assert code == 0 and set(out["cosine_by_lca_height"]) == heights
    assert main(["frame", "haframe", "--hierarchy", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_classes"] == len(minimal)  # every node of the file is a class
    assert main(["frame", "haframe", "--hierarchy", "builtin:nope"]) == 2
    assert "no built-in hierarchy 'nope'" in capsys.readouterr().err


def test_pickles_holding_other_objects_are_refused_unbuilt(tmp_path):
    ordered = OrderedDict({("a", "b"): 1})
    path = tmp_path / "ordered.pkl"
    path.write_bytes(pickle.dumps(ordered))
    with pytest.raises(ValueError, match=r"collections\.OrderedDict object; only plain dict"):
        ClassDistances.load(path)

    class Sneaky:
        def __reduce__(self):
            return (print, ("this must never run",))

    path.write_bytes(lzma.compress(pickle.dumps({("a", "b"): Sneaky()})))
    with pytest.raises(ValueError, match=r"builtins\.print object"):
        ClassDistances.load(path)


def test_npy_distances(tmp_path, minimal):
    path = tmp_path / "d.npy"
    np.save(path, HAND["height"])
    distances = load_hierarchy(path)
    assert isinstance(distances, ClassDistances) and not distances.named
    assert distances.classes == ("0", "1", "2", "3")
    np.testing.assert_array_equal(distances.matrix.numpy(), HAND["height"])
    assert distances.matrix.dtype == torch.int64
    named = ClassDistances.load(path, classes=["x", "y", "u", "v"])
    assert named.classes == minimal.leaves
    np.save(tmp_path / "bad.npy", np.array([[0.0, 1.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match="symmetric"):
        ClassDistances.load(tmp_path / "bad.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="obj.npy"):
        ClassDistances.load(tmp_path / "obj.npy")
    with pytest.raises(ValueError, match="Hierarchy or a"):
        distance_matrix(str(path))


# --------------------------------------------------------------------------- shipped trees


def test_builtin_cifar100_tree():
    tree = nc.Hierarchy.builtin("cifar100")
    assert tree.num_classes == 100 and tree.depth == 5 and tree.is_balanced
    assert len(tree.edges) == 134 and tree.root == "root"
    assert tree.leaves == tuple(CIFAR100_FINE)
    for convention in ("level", "height"):
        lca = tree.lca_heights(convention)
        upper = lca[torch.triu_indices(100, 100, 1).unbind()]
        assert torch.bincount(upper, minlength=6).tolist() == [0, 200, 525, 1050, 900, 2275]
    # the level above the leaves: the 20 official superclasses with their members
    coarse = {tree.parent(leaf) for leaf in tree.leaves}
    assert sorted(coarse) == CIFAR100_COARSE
    for superclass, members in CIFAR100_SUPERCLASSES.items():
        assert sorted(tree.children(superclass)) == sorted(members.split())
    assert load_hierarchy("builtin:cifar100").leaves == tree.leaves
    with pytest.raises(ValueError, match="no built-in hierarchy 'cifar10'; the package ships"):
        Hierarchy.builtin("cifar10")


def test_builtin_cifar100_is_l23s_tree(cifar100_hierarchy_file):
    """The shipped file is [L23]'s public tree with the official CIFAR-100 names: fine
    label i for L5-i, superclass j for L4-j (docs/theory.md §7)."""
    with open(cifar100_hierarchy_file, newline="") as handle:
        rows = list(csv.reader(handle))[1:]

    def rename(node: str) -> str:
        if node.startswith("L5-"):
            return CIFAR100_FINE[int(node[3:])]
        if node.startswith("L4-"):
            return CIFAR100_COARSE[int(node[3:])]
        return node

    public = {(rename(child), rename(parent)) for child, parent in rows}
    assert set(Hierarchy.builtin("cifar100").edges) == public
    assert torch.equal(
        Hierarchy.builtin("cifar100").lca_heights(),
        Hierarchy.from_edges(cifar100_hierarchy_file).lca_heights(),
    )


def test_fgvc_aircraft_and_inaturalist_builders(tmp_path):
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True)
    tree_rows = [  # variant, family, manufacturer
        ("707-320", "Boeing 707", "Boeing"),
        ("737-200", "Boeing 737", "Boeing"),
        ("737-300", "Boeing 737", "Boeing"),
        ("A300B4", "A300", "Airbus"),
        ("DC-3", "DC-3", "Douglas Aircraft Company"),
    ]
    (data / "variants.txt").write_text("\n".join(r[0] for r in tree_rows) + "\n")
    (data / "families.txt").write_text("\n".join(dict.fromkeys(r[1] for r in tree_rows)) + "\n")
    (data / "manufacturers.txt").write_text(
        "\n".join(dict.fromkeys(r[2] for r in tree_rows)) + "\n"
    )
    for split, offset in (("trainval", 0), ("test", 100)):
        for level, column in (("variant", 0), ("family", 1), ("manufacturer", 2)):
            lines = [f"{offset + i:07d} {row[column]}" for i, row in enumerate(tree_rows)]
            (data / f"images_{level}_{split}.txt").write_text("\n".join(lines) + "\n")
    fgvc = fgvc_aircraft_hierarchy(tmp_path / "fgvc-aircraft-2013b")
    assert fgvc.leaves == tuple(r[0] for r in tree_rows)
    assert fgvc.depth == 3 and fgvc.is_balanced
    assert fgvc.parent("DC-3") == "family:DC-3"  # a family may share a variant's name
    lca = fgvc.lca_heights()
    assert lca[1, 2] == 1 and lca[0, 1] == 2 and lca[0, 3] == 3

    categories = [
        {"id": 2, "name": "Aix galericulata", "genus": "Aix"},
        {"id": 0, "name": "Aix sponsa", "genus": "Aix"},
        {"id": 1, "name": "Anas acuta", "genus": "Anas"},
    ]
    for category in categories:
        category.update(
            kingdom="Animalia", phylum="Chordata", order="Anseriformes", family="Anatidae"
        )
        category["class"] = "Aves"
    annotation = tmp_path / "train2019.json"
    annotation.write_text(json.dumps({"categories": categories, "images": [], "annotations": []}))
    inat = inaturalist_hierarchy(annotation)
    assert inat.leaves == ("Aix sponsa", "Anas acuta", "Aix galericulata")  # id order
    assert inat.depth == 7 and inat.parent("Aix sponsa") == "genus:Aix"
    assert inat.lca_heights()[0, 2] == 1 and inat.lca_heights()[0, 1] == 2


# --------------------------------------------------------------------------- training


def test_cifar100_haframe_recipe_runs_on_the_builtin_tree(tmp_path, capsys):
    config = load_config(RECIPE_DIR / "cifar100_haframe.yaml")
    assert config.data.hierarchy == "builtin:cifar100"
    assert config.data.lca_convention == "level"
    root = tmp_path / "cifar100"
    write_cifar_standin(root, "cifar100", per_class=1)
    run_dir = tmp_path / "run"
    code = main(
        [
            "train",
            "--config",
            "cifar100_haframe",
            f"data.root={root}",
            "train.epochs=1",
            "model.options={depth: 10, width: 1}",
            "train.batch_size=50",
            "eval.batch_size=100",
            "data.num_workers=0",
            "data.val_fraction=0",
            "log.tensorboard=false",
            "log.report=false",
            "--run-dir",
            str(run_dir),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    hierarchical = summary["final"]["hierarchical"]
    assert hierarchical["num_samples"] == 200
    assert {"hier_dist@20", "mistakes@5", "best_hier_dist@5"} <= set(hierarchical)


def test_training_with_a_distance_file_equals_training_with_its_tree(tmp_path):
    tree = Hierarchy.balanced([2, 3, 4])
    lca = tree.lca_heights().tolist()
    # as [L23]'s FGVC-Aircraft file: every ordered pair of leaves, diagonal included
    pairs = {
        (a, b): lca[i][j] for i, a in enumerate(tree.leaves) for j, b in enumerate(tree.leaves)
    }
    path = write_pairs(tmp_path / "tree.pkl.xz", pairs, compress=True)
    common = [
        "loss.name=soft_ce",
        "train.epochs=1",
        "log.tensorboard=false",
        "log.report=false",
    ]
    recipe = RECIPE_DIR / "hier_mixture_learnable.yaml"
    with_tree = Trainer(load_config(recipe, common), tmp_path / "a").fit()
    with_file = Trainer(load_config(recipe, [*common, f"data.hierarchy={path}"]), tmp_path / "b")
    assert with_file.data.hierarchy.classes == tree.leaves
    assert with_file.fit()["final"]["hierarchical"] == with_tree["final"]["hierarchical"]


def test_trainer_matches_classes_by_name_or_refuses(tmp_path):
    with pytest.raises(ConfigError, match="names no shipped tree"):
        load_config(None, ["data.hierarchy=builtin:imagenet", "head.kind=haframe"])
    with pytest.raises(ConfigError, match="builtin:cifar100"):
        load_config(None, ["head.kind=haframe"])
    root = tmp_path / "cifar100"
    write_cifar_standin(root, "cifar100", per_class=1)  # the official class names
    base = [
        "data.name=cifar100",
        f"data.root={root}",
        "head.kind=learnable",
        "loss.name=ce",
        "data.val_fraction=0",
    ]
    np.save(tmp_path / "three.npy", HAND["level"][:3, :3])
    three = load_config(None, [*base, f"data.hierarchy={tmp_path / 'three.npy'}"])
    with pytest.raises(ConfigError, match="has 3 classes but the data set has 100"):
        load_training_data(three)
    # a tree over the data set's class names, listed in another order: matched by name
    names = list(Hierarchy.builtin("cifar100").leaves)
    edges = [(f"group{i // 10}", "root") for i in range(0, 100, 10)]
    edges += [(name, f"group{i // 10}") for i, name in enumerate(names)]
    shuffled = names[50:] + names[:50]
    path = Hierarchy(edges, classes=shuffled).save(tmp_path / "tree.json")
    assert Hierarchy.load(path).leaves == tuple(shuffled)
    data = load_training_data(load_config(None, [*base, f"data.hierarchy={path}"]))
    assert data.hierarchy.leaves == tuple(names)
    assert data.hierarchy.lca_heights()[0, 9] == 1 and data.hierarchy.lca_heights()[0, 10] == 2
    # a distance file that also lists the inner nodes (as making-better-mistakes ships
    # them): the data set's classes are picked out by name
    pickled = write_pairs(tmp_path / "d.pkl.xz", all_node_pairs(Hierarchy(edges)), compress=True)
    data = load_training_data(load_config(None, [*base, f"data.hierarchy={pickled}"]))
    assert isinstance(data.hierarchy, ClassDistances) and data.hierarchy.classes == tuple(names)
    assert torch.equal(data.hierarchy.matrix, Hierarchy(edges).lca_heights())
