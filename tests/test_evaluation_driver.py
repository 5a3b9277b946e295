"""The one two-pass evaluation driver: evaluate_stream / evaluate_model, and the training
counts that choose the minority classes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from neuralcollapse.data import shot_groups
from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.metrics import (
    AccuracyCounter,
    CollapseStats,
    Evaluation,
    HierarchicalCounter,
    collapse_report,
    evaluate_model,
    evaluate_stream,
)

K, D = 6, 8
LCA = Hierarchy.balanced([2, 3]).lca_heights()


def make_split(seed=0, counts=(30, 25, 20, 15, 10, 8), dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    means = 3.0 * torch.randn(K, D, generator=gen, dtype=torch.float64)
    y = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    y = y[torch.randperm(len(y), generator=gen)]
    h = (means[y] + torch.randn(len(y), D, generator=gen, dtype=torch.float64)).to(dtype)
    w = torch.randn(K, D, generator=gen, dtype=torch.float64).to(dtype)
    b = torch.randn(K, generator=gen, dtype=torch.float64).to(dtype)
    return h, y, w, b


class Stream:
    """A re-playable stream of (features, labels, logits) that counts its passes."""

    def __init__(self, h, y, w, b=None, batch=16, logits=True):
        self.h, self.y, self.w, self.b, self.batch, self.logits = h, y, w, b, batch, logits
        self.calls = 0

    def __call__(self):
        self.calls += 1
        for i in range(0, len(self.y), self.batch):
            h = self.h[i : i + self.batch]
            logits = h @ self.w.T + (0.0 if self.b is None else self.b)
            yield h, self.y[i : i + self.batch], logits if self.logits else None


def manual(h, y, w, b, groups=None, lca=None):
    """The same numbers from the accumulators driven by hand."""
    logits = h @ w.T + b
    stats = CollapseStats(K, D)
    stats.update(h, y)
    accuracy = AccuracyCounter(K)
    accuracy.update(logits, y)
    counter = stats.ncc_mismatch_counter()
    counter.update(h, y, logits)
    out = {**accuracy.compute(groups), "collapse": stats.compute(w, b, ncc=counter).to_dict()}
    if lca is not None:
        hierarchy = HierarchicalCounter(lca, ks=(1, 5))
        hierarchy.update(logits, y)
        out["hierarchical"] = hierarchy.compute()
    return out


def assert_close(expected, got, rtol=1e-10):
    if isinstance(expected, dict):
        assert expected.keys() == got.keys()
        for key in expected:
            assert_close(expected[key], got[key], rtol)
    elif isinstance(expected, list):
        assert len(expected) == len(got)
        for a, b in zip(expected, got, strict=True):
            assert_close(a, b, rtol)
    elif isinstance(expected, float) and math.isnan(expected):
        assert got is None or (isinstance(got, float) and math.isnan(got))
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=rtol, abs=1e-12)
    else:
        assert got == expected


# ----------------------------------------------------------------------- results


def test_stream_matches_the_accumulators_driven_by_hand():
    h, y, w, b = make_split()
    groups = {"head": torch.tensor([0, 1]), "tail": torch.tensor([4, 5])}
    stream = Stream(h, y, w, b)
    result = evaluate_stream(stream, num_classes=K, classifier=w, bias=b, groups=groups, lca=LCA)
    assert isinstance(result, Evaluation)
    assert stream.calls == 1  # the second pass read the cache
    assert_close(manual(h, y, w, b, groups, LCA), result.metrics)
    assert result.report.to_dict() == result.metrics["collapse"]
    assert {"top1", "balanced", "num_samples", "per_class", "head", "tail"} <= set(result.metrics)
    # Accuracy by hand, independently of the counters.
    pred = (h @ w.T + b).argmax(1)
    assert result.metrics["top1"] == pytest.approx(float((pred == y).double().mean()))
    per_class = [float((pred[y == k] == k).double().mean()) for k in range(K)]
    assert result.metrics["balanced"] == pytest.approx(np.mean(per_class))
    assert result.metrics["tail"] == pytest.approx(np.mean(per_class[4:]))


def test_metrics_are_strict_json():
    h, y, w, b = make_split()
    # Logits that are never wrong: mistake severity is undefined (NaN), written as None.
    stream = [(h, y, torch.nn.functional.one_hot(y, K).double())]
    result = evaluate_stream(lambda: iter(stream), num_classes=K, classifier=w, lca=LCA)
    assert result.metrics["hierarchical"]["mistake_severity"] is None
    text = json.dumps(result.metrics, allow_nan=False)
    assert json.loads(text) == result.metrics


@pytest.mark.parametrize("cache_limit", [0, 200, 10**9])
def test_cache_only_saves_passes(cache_limit):
    h, y, w, b = make_split(1)
    stream = Stream(h, y, w, b)
    result = evaluate_stream(stream, num_classes=K, classifier=w, bias=b, cache_limit=cache_limit)
    assert stream.calls == (1 if cache_limit == 10**9 else 2)  # 200 values overflow mid-pass
    reference = evaluate_stream(Stream(h, y, w, b), num_classes=K, classifier=w, bias=b)
    assert result.metrics == reference.metrics


def test_without_ncc_or_logits_there_is_one_pass_and_no_nc4():
    h, y, w, b = make_split(2)
    stream = Stream(h, y, w, b)
    result = evaluate_stream(stream, num_classes=K, classifier=w, ncc=False, cache_limit=0)
    assert stream.calls == 1 and result.report.nc4_ncc_mismatch is None
    assert result.metrics["top1"] is not None
    no_logits = Stream(h, y, w, logits=False)
    result = evaluate_stream(no_logits, num_classes=K, cache_limit=0)
    assert no_logits.calls == 1 and result.report.nc4_ncc_mismatch is None
    assert set(result.metrics) == {"num_samples", "collapse"}
    assert result.metrics["num_samples"] == len(y)
    assert result.report.nc3_zhu is None  # no classifier given


def test_distributed_without_a_process_group_equals_one_process():
    h, y, w, b = make_split(3)
    one = evaluate_stream(Stream(h, y, w, b), num_classes=K, classifier=w, bias=b)
    dist = evaluate_stream(
        Stream(h, y, w, b), num_classes=K, classifier=w, bias=b, distributed=True
    )
    assert one.metrics == dist.metrics


def test_shot_groups_object_is_accepted_as_is():
    h, y, w, b = make_split(4)
    groups = shot_groups(torch.tensor([200, 150, 60, 40, 10, 5]))
    result = evaluate_stream(Stream(h, y, w, b), num_classes=K, classifier=w, groups=groups)
    by_dict = evaluate_stream(
        Stream(h, y, w, b), num_classes=K, classifier=w, groups=groups.as_dict()
    )
    assert result.metrics == by_dict.metrics
    assert {"many", "medium", "few"} <= set(result.metrics)
    counter = AccuracyCounter(K)
    counter.update(h @ w.T, y)
    assert counter.compute(groups) == counter.compute(groups.as_dict())


@pytest.mark.parametrize("global_mean", ["weighted", "balanced"])
def test_class_means_are_centred_like_the_report(global_mean):
    counts = (30, 0, 20, 15, 10, 8)  # class 1 absent
    h, y, w, b = make_split(5, counts=counts)
    result = evaluate_stream(
        Stream(h, y, w, b), num_classes=K, classifier=w, global_mean=global_mean
    )
    means = result.class_means
    assert means.dtype == torch.float64 and means.device.type == "cpu" and means.shape == (K, D)
    assert bool(torch.isnan(means[1]).all())
    present = [k for k in range(K) if counts[k]]
    raw = np.stack([h[y == k].numpy().mean(0) for k in present])
    mu = h.numpy().mean(0) if global_mean == "weighted" else raw.mean(0)
    np.testing.assert_allclose(means[present].numpy(), raw - mu, rtol=1e-10, atol=1e-12)
    m = means[present]
    gram = (m @ m.T).numpy()
    target = (np.eye(5) - 1 / 5) / 2.0
    expected = np.linalg.norm(gram / np.linalg.norm(gram) - target)
    assert result.report.nc2_etf_distance_means == pytest.approx(expected, rel=1e-10)


# ------------------------------------------------------------------- train counts


def test_minority_classes_follow_the_training_counts_on_a_balanced_split():
    h, y, w, b = make_split(6, counts=(20,) * K)
    train_counts = torch.tensor([500, 20, 300, 10, 200, 100])
    plain = evaluate_stream(Stream(h, y, w, b), num_classes=K, classifier=w)
    # Equal evaluated counts: the tie order picks the first classes, which says nothing.
    assert plain.report.minority_classes == (0, 1)
    result = evaluate_stream(
        Stream(h, y, w, b), num_classes=K, classifier=w, train_counts=train_counts
    )
    assert result.report.minority_classes == (1, 3)  # the two rarest in training
    wn = w.numpy()
    cos = wn[1] @ wn[3] / (np.linalg.norm(wn[1]) * np.linalg.norm(wn[3]))
    assert result.report.minority_cosine == pytest.approx(cos, rel=1e-12)
    # Nothing else depends on the counts used for the minority.
    skip = {"minority_classes", "minority_cosine"}
    a, c = plain.report.to_dict(), result.report.to_dict()
    assert {k: v for k, v in a.items() if k not in skip} == {
        k: v for k, v in c.items() if k not in skip
    }


def test_reference_counts_rank_only_the_present_classes():
    counts = (20, 20, 0, 20, 20, 20)  # class 2 absent from the evaluated split
    h, y, _, _ = make_split(7, counts=counts)
    stats = CollapseStats(K, D)
    stats.update(h, y)
    train = [1000, 900, 1, 800, 5, 700]  # class 2 is rarest in training but absent here
    report = stats.compute(reference_counts=train)
    assert report.minority_classes == (4, 5)
    m = stats.centred_class_means().numpy()
    cos = m[4] @ m[5] / (np.linalg.norm(m[4]) * np.linalg.norm(m[5]))
    assert report.minority_cosine == pytest.approx(cos, rel=1e-10)
    with pytest.raises(ValueError, match=r"reference_counts must have shape \(6,\)"):
        stats.compute(reference_counts=torch.ones(5))
    with pytest.raises(ValueError, match="non-negative"):
        stats.compute(reference_counts=torch.tensor([1, 2, 3, -1, 5, 6]))


# ------------------------------------------------------------------ evaluate_model


class Net(nn.Module):
    """Returns (logits, h) with return_features=True, like the package's classifiers."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.body = nn.Sequential(nn.Linear(3, D), nn.Dropout(0.5), nn.ReLU())
        self.head = nn.Linear(D, K)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))

    def forward(self, x, return_features=False):
        h = self.body(x)
        logits = self.head(h)
        return (logits, h) if return_features else logits


def _batches(n=120, batch=25):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=gen)
    y = torch.arange(n) % K
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)], x, y


def test_evaluate_model_runs_in_eval_mode_and_restores_it():
    model = Net().train()
    batches, x, y = _batches()
    result = evaluate_model(
        model, batches, classifier=model.head.weight, bias=model.head.bias, num_classes=K
    )
    assert model.training  # restored
    with torch.no_grad():
        h = model.eval().body(x)
    expected = collapse_report(h, y, classifier=model.head.weight, bias=model.head.bias)
    got = result.report.to_dict()
    for key, value in expected.to_dict().items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
        else:
            assert got[key] == value, key
    model.eval()
    assert evaluate_model(model, batches, classifier=model.head.weight, num_classes=K)
    assert not model.training


def test_evaluate_model_reads_a_one_shot_iterator_once_when_it_fits():
    model = Net()
    batches, _, _ = _batches()
    result = evaluate_model(model, iter(batches), classifier=model.head.weight, num_classes=K)
    assert result.report.nc4_ncc_mismatch is not None
    with pytest.raises(ValueError, match="second pass yielded 0 samples but the first 120"):
        evaluate_model(
            model, iter(batches), classifier=model.head.weight, num_classes=K, cache_limit=0
        )


def test_evaluate_model_restores_the_mode_after_an_error():
    model = Net().train()
    with pytest.raises(ValueError):
        evaluate_model(
            model,
            [(torch.randn(4, 3), torch.tensor([0, 1, 9, 2]))],
            classifier=model.head.weight,
            num_classes=K,
        )
    assert model.training


# ------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "num_classes must be an integer >= 2"),
        ({"bias": torch.zeros(K)}, "bias was given without classifier"),
        ({"classifier": torch.zeros(D, K)}, r"classifier must have shape \(num_classes, dim\)"),
        ({"lca": torch.zeros(4, 4)}, r"lca is \(4, 4\) but num_classes is 6"),
        ({"groups": {"top1": torch.tensor([0])}}, "group names must be strings other than"),
        ({"groups": {"few": torch.tensor([9])}}, r"groups\['few'\] contains 9"),
        ({"groups": [1, 2]}, "groups must be a dict"),
        ({"train_counts": torch.ones(3)}, r"train_counts must have shape \(6,\)"),
        ({"global_mean": "median"}, "global_mean must be one of"),
        ({"cache_limit": -1}, "cache_limit must be an integer >= 0"),
    ],
)
def test_bad_arguments_fail_before_any_pass(kwargs, message):
    h, y, w, b = make_split(8)
    stream = Stream(h, y, w, b)
    with pytest.raises(ValueError, match=message):
        evaluate_stream(stream, **{"num_classes": K, **kwargs})
    assert stream.calls == 0


def test_bad_streams_are_clear_errors():
    h, y, w, b = make_split(9)
    with pytest.raises(ValueError, match="stream must be a callable"):
        evaluate_stream([(h, y, h @ w.T)], num_classes=K)
    with pytest.raises(ValueError, match="split is empty"):
        evaluate_stream(lambda: iter([]), num_classes=K)
    with pytest.raises(ValueError, match="split is empty"):
        evaluate_stream(lambda: iter([]), num_classes=K, classifier=w)
    with pytest.raises(ValueError, match=r"\(features, labels, logits\) triple"):
        evaluate_stream(lambda: iter([(h, y)]), num_classes=K)
    mixed = [(h[:10], y[:10], h[:10] @ w.T), (h[10:], y[10:], None)]
    with pytest.raises(ValueError, match="some batches of the stream have logits"):
        evaluate_stream(lambda: iter(mixed), num_classes=K)
    with pytest.raises(ValueError, match="yields no logits"):
        evaluate_stream(Stream(h, y, w, logits=False), num_classes=K, lca=LCA)
    with pytest.raises(ValueError, match=r"logits have 5 classes, expected 6"):
        evaluate_stream(lambda: iter([(h, y, h @ w[:5].T)]), num_classes=K)


@pytest.mark.parametrize("case", ["one class", "one point"])
def test_undefined_collapse_metrics_are_null_with_the_reason(case):
    h, y, w, b = make_split(2)
    if case == "one class":
        h, y = h[y == 0], y[y == 0]
        reason = "at least two classes"
    else:  # every feature at one point: all class means coincide
        h = torch.ones_like(h)
        reason = "all present class means coincide"
    result = evaluate_stream(lambda: iter([(h, y, h @ w.T + b)]), num_classes=K, classifier=w)
    collapse = result.metrics["collapse"]
    assert reason in collapse["undefined"] and "\n" not in collapse["undefined"]
    assert collapse["nc1"] is None and collapse["nc4_ncc_mismatch"] is None
    assert collapse["num_samples"] == len(y) and sum(collapse["class_counts"]) == len(y)
    assert result.report is None and result.metrics["num_samples"] == len(y)
    assert result.metrics["top1"] == float((torch.argmax(h @ w.T + b, 1) == y).double().mean())
    json.dumps(result.metrics, allow_nan=False)  # strict JSON: the records can hold it


def test_accuracy_only_evaluation_equals_the_full_one_in_one_pass():
    h, y, w, b = make_split(seed=3)
    groups = shot_groups(torch.bincount(y, minlength=K), many=20, few=10)
    full = evaluate_stream(
        Stream(h, y, w, b),
        num_classes=K,
        classifier=w,
        bias=b,
        groups=groups,
        lca=LCA,
        cache_limit=0,
    )
    stream = Stream(h, y, w, b)
    alone = evaluate_stream(stream, num_classes=K, groups=groups, lca=LCA, collapse=False)
    assert stream.calls == 1  # no second pass and no feature statistics
    assert alone.report is None and alone.class_means is None
    assert alone.metrics["collapse"] == {}
    assert {key: full.metrics[key] for key in alone.metrics if key != "collapse"} == {
        key: value for key, value in alone.metrics.items() if key != "collapse"
    }
    # independent float64 count
    hits = ((h @ w.T + b).argmax(1) == y).double()
    assert alone.metrics["top1"] == pytest.approx(float(hits.mean()), rel=1e-12)


def test_accuracy_only_evaluation_needs_logits():
    h, y, w, _ = make_split(seed=4)
    with pytest.raises(ValueError, match="collapse=False measures accuracy alone"):
        evaluate_stream(Stream(h, y, w, logits=False), num_classes=K, collapse=False)
