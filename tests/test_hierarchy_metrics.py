"""Hierarchical metrics, CRM, soft labels, the HAFrame neck and hierarchy-aware training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralcollapse.cli import main
from neuralcollapse.frames import describe, hierarchy_aware_frame, hierarchy_similarity
from neuralcollapse.heads import FixedFrameHead
from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.losses import SoftLabelCrossEntropy
from neuralcollapse.metrics.hierarchical import (
    HierarchicalCounter,
    best_hierarchical_distance_at_k,
    crm_predict,
    hierarchical_distance_at_k,
    mistake_severity,
    mistakes_at_k,
    top1_error,
)
from neuralcollapse.models import build
from neuralcollapse.train import Trainer, load_config
from neuralcollapse.train.config import ConfigError
from neuralcollapse.train.recipes import RECIPE_DIR

# root -> {animal, plant}; animal -> {cat, dog}; plant -> {oak, fern}: classes 0..3
SMALL = Hierarchy.from_edges(
    [
        ("animal", "root"),
        ("plant", "root"),
        ("cat", "animal"),
        ("dog", "animal"),
        ("oak", "plant"),
        ("fern", "plant"),
    ]
)
LCA = SMALL.lca_heights()  # [[0,1,2,2],[1,0,2,2],[2,2,0,1],[2,2,1,0]]


def brute_force(scores: np.ndarray, labels: np.ndarray, lca: np.ndarray, k: int) -> dict:
    """making-better-mistakes' definitions, sample by sample (ties: lower index first)."""
    n = len(labels)
    order = [np.argsort(-s, kind="stable")[:k] for s in scores]
    wrong_top1 = [i for i in range(n) if order[i][0] != labels[i]]
    top_k = [[lca[labels[i], p] for p in order[i]] for i in range(n)]
    return {
        "top1_error": len(wrong_top1) / n,
        "mistake_severity": (
            np.mean([lca[labels[i], order[i][0]] for i in wrong_top1])
            if wrong_top1
            else float("nan")
        ),
        "hier_dist": np.mean([np.mean(d) for d in top_k]),
        "mistakes": np.mean([np.mean(top_k[i]) for i in wrong_top1]) if wrong_top1 else np.nan,
        "best": np.mean([np.min(d) for d in top_k]),
    }


def test_hand_computed_example():
    # sample 0: truth cat, ranks cat > dog > oak   -> correct
    # sample 1: truth cat, ranks dog > cat > fern  -> sibling mistake (height 1)
    # sample 2: truth oak, ranks dog > cat > oak   -> cousin mistake (height 2)
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0], [2.0, 3.0, 0.0, 1.0], [2.0, 3.0, 1.0, 0.0]])
    labels = torch.tensor([0, 0, 2])
    assert top1_error(logits, labels) == pytest.approx(2 / 3)
    assert mistake_severity(logits, labels, LCA) == pytest.approx((1 + 2) / 2)
    assert mistake_severity(logits.argmax(1), labels, LCA) == pytest.approx(1.5)
    assert hierarchical_distance_at_k(logits, labels, LCA, 1) == pytest.approx((0 + 1 + 2) / 3)
    # top-2: {cat, dog} -> (0+1)/2; {dog, cat} -> (1+0)/2; {dog, cat} vs oak -> (2+2)/2
    assert hierarchical_distance_at_k(logits, labels, LCA, 2) == pytest.approx((0.5 + 0.5 + 2) / 3)
    # mistakes@2 over the wrong top-1 samples 1 and 2: (1 + 0)/2 and (2 + 2)/2
    assert mistakes_at_k(logits, labels, LCA, 2) == pytest.approx((0.5 + 2) / 2)
    assert mistakes_at_k(logits, labels, LCA, 1) == pytest.approx(1.5)  # = mistake severity
    # best of the top 2: cat (0), cat (0), min(2, 2)
    assert best_hierarchical_distance_at_k(logits, labels, LCA, 2) == pytest.approx(2 / 3)


def test_no_mistakes_gives_nan_severity_not_zero():
    logits = torch.eye(4)
    assert np.isnan(mistake_severity(logits, torch.arange(4), LCA))
    assert hierarchical_distance_at_k(logits, torch.arange(4), LCA, 1) == 0.0


@given(seed=st.integers(0, 10_000), k=st.integers(1, 4))
@settings(max_examples=40)
def test_property_vectorised_equals_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((30, 4))
    labels = rng.integers(0, 4, 30)
    expected = brute_force(scores, labels, LCA.numpy(), k)
    counter = HierarchicalCounter(LCA, ks=(k,))
    counter.update(torch.from_numpy(scores), torch.from_numpy(labels))
    got = counter.compute()
    assert got["top1_error"] == pytest.approx(expected["top1_error"])
    assert got[f"hier_dist@{k}"] == pytest.approx(expected["hier_dist"], rel=1e-12)
    assert got[f"best_hier_dist@{k}"] == pytest.approx(expected["best"], rel=1e-12)
    for ours, theirs in (
        (got["mistake_severity"], expected["mistake_severity"]),
        (got[f"mistakes@{k}"], expected["mistakes"]),
    ):
        assert (np.isnan(ours) and np.isnan(theirs)) or ours == pytest.approx(theirs, rel=1e-12)


def test_counter_merges_batches_exactly():
    rng = np.random.default_rng(1)
    scores, labels = (
        torch.from_numpy(rng.standard_normal((50, 4))),
        torch.from_numpy(rng.integers(0, 4, 50)),
    )
    whole = HierarchicalCounter(LCA, ks=(1, 3))
    whole.update(scores, labels)
    first, second = HierarchicalCounter(LCA, ks=(1, 3)), HierarchicalCounter(LCA, ks=(1, 3))
    first.update(scores[:17], labels[:17])
    second.update(scores[17:], labels[17:])
    merged, expected = first.merge(second).compute(), whole.compute()
    assert merged.keys() == expected.keys()
    for key, value in expected.items():
        assert merged[key] == pytest.approx(value, rel=1e-12)


def test_crm_predict_minimises_expected_cost():
    rng = np.random.default_rng(2)
    probs = torch.softmax(torch.from_numpy(rng.standard_normal((20, 4))), dim=1)
    ours = crm_predict(probs, LCA)
    expected = np.argmin(probs.numpy() @ LCA.numpy().T, axis=1)
    assert ours.tolist() == expected.tolist()
    # a near tie between two cousins tips toward the class whose sibling is likely
    tie = torch.tensor([[0.30, 0.0, 0.25, 0.45]])  # oak+fern together outweigh cat
    assert crm_predict(tie, LCA).tolist() == [3]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: HierarchicalCounter(torch.zeros(3)), r"square \(K, K\)"),
        (lambda: HierarchicalCounter(LCA, ks=(5,)), "ks must be in 1..4"),
        (
            lambda: mistake_severity(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), LCA),
            "3 classes but lca has 4",
        ),
        (lambda: mistake_severity(torch.zeros(2, 4), torch.tensor([0, 9]), LCA), "0..3"),
        (
            lambda: hierarchical_distance_at_k(
                torch.zeros(2), torch.zeros(2, dtype=torch.long), LCA, 2
            ),
            "no ranking",
        ),
    ],
)
def test_metric_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_soft_labels_follow_the_tree():
    loss = SoftLabelCrossEntropy(LCA, beta=2.0)
    targets = loss.targets
    np.testing.assert_allclose(targets.sum(1).numpy(), 1.0, rtol=1e-6)
    assert targets[0, 0] > targets[0, 1] > targets[0, 2] == targets[0, 3]
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 0])
    expected = -(targets.double()[labels] * torch.log_softmax(logits, 1)).sum(1).mean()
    assert loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    sharp = SoftLabelCrossEntropy(LCA, beta=200.0)(logits, labels)
    assert sharp.item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-6
    )
    with pytest.raises(ValueError, match="beta must be"):
        SoftLabelCrossEntropy(LCA, beta=0)


def test_haframe_neck_and_head():
    tree = Hierarchy.balanced([2, 4])
    frame = hierarchy_aware_frame(tree, gamma=2.0, seed=0)
    torch.manual_seed(0)
    head = FixedFrameHead(16, frame, neck="haframe").eval()
    logits, h = head(torch.randn(5, 16), return_features=True)
    assert logits.shape == (5, 8) and h.shape == (5, frame.shape[1])
    assert sum(isinstance(m, torch.nn.PReLU) for m in head.modules()) == 4


def test_describe_reports_the_target_error():
    tree = Hierarchy.balanced([2, 2, 3])
    target = hierarchy_similarity(tree, gamma=2.0)
    exact = describe(hierarchy_aware_frame(tree, gamma=2.0, seed=0, dtype=torch.float64), target)
    assert exact.target_error < 1e-10 and exact.to_dict()["target_error"] == exact.target_error
    low = describe(hierarchy_aware_frame(tree, gamma=2.0, dim=3, seed=0), target)
    assert low.target_error > 0.05
    assert describe(hierarchy_aware_frame(tree, gamma=2.0, seed=0)).target_error is None
    with pytest.raises(ValueError, match="target must be a"):
        describe(hierarchy_aware_frame(tree, gamma=2.0, seed=0), torch.eye(3))


def test_balanced_tree_and_load(tmp_path):
    tree = Hierarchy.balanced([2, 3, 4])
    assert tree.num_classes == 24 and tree.depth == 3 and tree.leaves[0] == "class0"
    for name, fmt in (("t.csv", "edges"), ("t.json", "nested"), ("p.csv", "paths")):
        path = tree.save(tmp_path / name, format=fmt)
        assert torch.equal(Hierarchy.load(path).lca_heights(), tree.lca_heights())
    with pytest.raises(ValueError, match="branching"):
        Hierarchy.balanced([1, 1])


def test_wide_resnet_backbone():
    model = build("wide_resnet", seed=0, depth=10, width=2)
    assert model.feature_dim == 128
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 128)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        build("wide_resnet", depth=12)


# --------------------------------------------------------------------------- training


def test_training_with_a_hierarchy_reports_mistake_severity(tmp_path):
    config = load_config(
        RECIPE_DIR / "hier_mixture_haframe.yaml",
        ["train.epochs=2", "log.tensorboard=false", "log.report=false"],
    )
    summary = Trainer(config, tmp_path / "run").fit()
    severity = summary["final"]["hierarchical"]
    assert set(severity) >= {"top1_error", "mistake_severity", "hier_dist@1", "hier_dist@5"}
    assert 0 <= severity["top1_error"] <= 1
    assert severity["top1_error"] == pytest.approx(1 - summary["final"]["top1"])
    assert "hierarchical" in summary["final"]["train"]


def test_soft_label_training_and_config_errors(tmp_path):
    config = load_config(
        RECIPE_DIR / "hier_mixture_learnable.yaml",
        [
            "loss.name=soft_ce",
            "loss.beta=5",
            "train.epochs=1",
            "log.tensorboard=false",
            "log.report=false",
        ],
    )
    assert Trainer(config, tmp_path / "run").fit()["final"]["hierarchical"]["num_samples"] > 0
    with pytest.raises(ConfigError, match="soft_ce' needs a class hierarchy"):
        load_config(None, ["loss.name=soft_ce", "head.kind=learnable"])
    with pytest.raises(ConfigError, match="haframe' needs a class hierarchy"):
        load_config(None, ["head.kind=haframe"])


def test_frame_command_haframe_json(tmp_path, capsys):
    path = Hierarchy.balanced([2, 3]).save(tmp_path / "tree.csv")
    code = main(["frame", "haframe", "--hierarchy", str(path), "--gamma", "1.5", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["num_classes"] == 6 and out["gamma"] == 1.5
    assert out["s"] < 0 and out["cosine_by_lca_height"]["0"] == pytest.approx(1.0)
    assert out["target_error"] < 1e-6
