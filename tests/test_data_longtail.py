"""Long-tailed profiles, subsets, shot groups and class-aware sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralcollapse._internal.seeding import derive_generator
from neuralcollapse.data import (
    ClassSampler,
    class_counts,
    class_sampling_probs,
    epoch_generator,
    epoch_indices,
    long_tailed_indices,
    long_tailed_subset,
    shot_groups,
    shot_groups_by_index,
)

# docs/theory.md §8: CIFAR-LT train-set sizes for ratios 200 / 100 / 50 / 10.
CIFAR_LT_TOTALS = [
    (10, 5000, 200, 11203),
    (10, 5000, 100, 12406),
    (10, 5000, 50, 13996),
    (10, 5000, 10, 20431),
    (100, 500, 200, 9502),
    (100, 500, 100, 10847),
    (100, 500, 50, 12608),
    (100, 500, 10, 19573),
]


@pytest.mark.parametrize(("k", "n_max", "ratio", "total"), CIFAR_LT_TOTALS)
def test_exp_profile_reproduces_cifar_lt_sizes(k, n_max, ratio, total):
    counts = class_counts(n_max, k, ratio)
    assert counts.dtype == torch.int64 and counts.shape == (k,)
    assert int(counts.sum()) == total
    assert int(counts[0]) == n_max
    assert int(counts[-1]) == int(n_max / ratio)


def test_exp_profile_formula_entries():
    # n_i = int(5000 * 0.01 ** (i / 9)): a few entries computed by hand from the formula
    counts = class_counts(5000, 10, 100).tolist()
    assert counts[:3] == [5000, 2997, 1796]
    assert counts[-1] == 50


def test_step_profile():
    assert class_counts(100, 4, 10, profile="step").tolist() == [100, 100, 10, 10]
    # odd K: the tail gets the extra class
    assert class_counts(100, 5, 10, profile="step").tolist() == [100, 100, 10, 10, 10]


def test_balanced_and_single_class():
    assert class_counts(7, 3, 1).tolist() == [7, 7, 7]
    assert class_counts(7, 1, 50).tolist() == [7]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 10, 10), "n_max"),
        ((10, 0, 10), "num_classes"),
        ((10, 10, 0.5), "imbalance_ratio"),
        ((10, 10, float("nan")), "imbalance_ratio"),
        ((10, 10, 200), "0 samples"),
        ((2.5, 10, 10), "n_max"),
    ],
)
def test_class_counts_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        class_counts(*args)


def test_class_counts_rejects_unknown_profile():
    with pytest.raises(ValueError, match="unknown profile 'linear'"):
        class_counts(10, 10, 2, profile="linear")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    n_max=st.integers(1, 5000),
    k=st.integers(1, 200),
    ratio=st.floats(1.0, 500.0),
    profile=st.sampled_from(["exp", "step"]),
)
def test_profile_invariants(n_max, k, ratio, profile):
    try:
        counts = class_counts(n_max, k, ratio, profile)
    except ValueError as err:
        assert "0 samples" in str(err)
        assert int(n_max / ratio) < 1
        return
    assert counts.shape == (k,)
    assert int(counts[0]) == n_max
    assert bool((counts[1:] <= counts[:-1]).all()), "profile must be non-increasing"
    assert int(counts.min()) >= 1 and int(counts.max()) <= n_max
    if k > 1:
        # the smallest class is within rounding of n_max / ratio
        assert abs(int(counts[-1]) - n_max / ratio) <= 1 + 1e-6 * n_max
    assert int(counts.sum()) <= k * n_max


def _labels(per_class):
    return torch.repeat_interleave(torch.arange(len(per_class)), torch.tensor(per_class))


def test_long_tailed_indices_counts_and_determinism():
    labels = _labels([50, 50, 50, 50])[
        torch.randperm(200, generator=torch.Generator().manual_seed(1))
    ]
    counts = [40, 20, 10, 5]
    idx = long_tailed_indices(labels, counts, seed=3)
    assert torch.bincount(labels[idx], minlength=4).tolist() == counts
    assert idx.unique().numel() == idx.numel(), "drawn without replacement"
    assert torch.equal(idx, idx.sort().values)
    assert torch.equal(idx, long_tailed_indices(labels, counts, seed=3))
    assert not torch.equal(idx, long_tailed_indices(labels, counts, seed=4))


def test_long_tailed_indices_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    np_before = np.random.get_state()[1].copy()  # noqa: NPY002 (the legacy global RNG)
    long_tailed_indices(_labels([10, 10]), [5, 2], seed=0)
    assert torch.equal(before, torch.get_rng_state())
    assert np.array_equal(np_before, np.random.get_state()[1])  # noqa: NPY002


def test_long_tailed_indices_accepts_numpy_and_lists():
    labels = np.array([0, 0, 1, 1, 1])
    idx = long_tailed_indices(labels, [1, 2], seed=0)
    assert torch.bincount(torch.as_tensor(labels)[idx]).tolist() == [1, 2]


def test_long_tailed_indices_too_few_samples():
    labels = _labels([5, 3])
    with pytest.raises(ValueError, match="class 1 has 3 samples but 4 were asked"):
        long_tailed_indices(labels, [5, 4])
    idx = long_tailed_indices(labels, [5, 4], allow_fewer=True)
    assert torch.bincount(labels[idx]).tolist() == [5, 3]


@pytest.mark.parametrize(
    ("labels", "counts", "match"),
    [
        ([0, 1, 5], [1, 1], "class 5 but counts has only 2"),
        ([0, -1], [1, 1], "labels must be >= 0"),
        ([0.0, 1.0], [1, 1], "integer class indices"),
        ([[0, 1]], [1, 1], r"labels must have shape \(B,\)"),
    ],
)
def test_long_tailed_indices_bad_labels(labels, counts, match):
    with pytest.raises(ValueError, match=match):
        long_tailed_indices(labels, counts)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    per_class=st.lists(st.integers(0, 30), min_size=1, max_size=8),
    seed=st.integers(0, 2**31),
    data=st.data(),
)
def test_long_tailed_indices_property(per_class, seed, data):
    labels = _labels(per_class)
    counts = [data.draw(st.integers(0, n)) for n in per_class]
    idx = long_tailed_indices(labels, counts, seed=seed)
    assert torch.bincount(labels[idx], minlength=len(counts)).tolist() == counts
    assert idx.unique().numel() == idx.numel()


def test_shot_group_boundaries():
    counts = [101, 100, 50, 20, 19, 0]
    groups = shot_groups(counts)
    assert groups.many.tolist() == [0]
    assert groups.medium.tolist() == [1, 2, 3]
    assert groups.few.tolist() == [4, 5]
    assert set(groups.as_dict()) == {"many", "medium", "few"}


def test_shot_groups_custom_thresholds_and_errors():
    groups = shot_groups([10, 5, 1], many=5, few=2)
    assert (groups.many.tolist(), groups.medium.tolist(), groups.few.tolist()) == ([0], [1], [2])
    with pytest.raises(ValueError, match="few <= many"):
        shot_groups([1, 2], many=10, few=20)


def test_cifar100_lt_groups_count_rule_vs_y22_index_rule():
    counts = class_counts(500, 100, 100)
    by_count = shot_groups(counts)
    assert [len(g) for g in (by_count.many, by_count.medium, by_count.few)] == [35, 35, 30]
    by_index = shot_groups_by_index(100)
    assert by_index.many.tolist() == list(range(36))
    assert by_index.medium.tolist() == list(range(36, 71))
    assert by_index.few.tolist() == list(range(71, 100))


def test_shot_groups_by_index_errors():
    with pytest.raises(ValueError, match="boundaries"):
        shot_groups_by_index(10)  # the CIFAR-100 default does not fit 10 classes
    assert shot_groups_by_index(10, (3, 7)).medium.tolist() == [3, 4, 5, 6]


def test_class_sampling_probs():
    counts = torch.tensor([400, 100, 25])
    assert torch.allclose(
        class_sampling_probs(counts, "balanced"), torch.full((3,), 1 / 3).double()
    )
    sqrt = class_sampling_probs(counts, "sqrt")
    assert torch.allclose(sqrt, torch.tensor([20.0, 10.0, 5.0]).double() / 35)
    assert torch.allclose(class_sampling_probs(counts, "instance"), counts.double() / 525)
    assert float(class_sampling_probs([3, 0], "balanced")[1]) == 0.0
    with pytest.raises(ValueError, match="unknown sampling 'uniform'"):
        class_sampling_probs(counts, "uniform")
    with pytest.raises(ValueError, match="every class count is 0"):
        class_sampling_probs([0, 0], "balanced")


def _long_tail_labels():
    return _labels(class_counts(1000, 10, 100).tolist())


def test_balanced_sampling_is_near_uniform_over_an_epoch():
    labels = _long_tail_labels()  # 2,480 samples, 1000 down to 10 per class
    order = epoch_indices(labels, "balanced", torch.Generator().manual_seed(0))
    assert order.numel() == labels.numel()
    freq = torch.bincount(labels[order], minlength=10).double() / order.numel()
    # binomial std of a class frequency here is about 0.006; allow 5 of them
    assert float((freq - 0.1).abs().max()) < 0.03, freq


def test_sqrt_sampling_follows_square_root_of_counts():
    labels = _long_tail_labels()
    order = epoch_indices(labels, "sqrt", torch.Generator().manual_seed(0), num_samples=50_000)
    freq = torch.bincount(labels[order], minlength=10).double() / order.numel()
    expected = class_sampling_probs(torch.bincount(labels), "sqrt")
    assert float((freq - expected).abs().max()) < 0.01


def test_shuffle_and_sequential_are_permutations():
    labels = _long_tail_labels()
    shuffled = epoch_indices(labels, "shuffle", torch.Generator().manual_seed(0))
    assert torch.equal(shuffled.sort().values, torch.arange(labels.numel()))
    assert torch.equal(epoch_indices(labels, "sequential"), torch.arange(labels.numel()))
    with pytest.raises(ValueError, match="needs a torch.Generator"):
        epoch_indices(labels, "shuffle")


def test_epoch_generator_is_deterministic_and_distinct():
    def draw(seed, epoch):
        return torch.randint(0, 2**31, (4,), generator=epoch_generator(seed, epoch))

    assert torch.equal(draw(0, 1), draw(0, 1))
    assert not torch.equal(draw(0, 1), draw(1, 0))


def test_class_sampler_with_dataloader_and_resume():
    labels = _long_tail_labels()
    sampler = ClassSampler(labels, "balanced", seed=5)
    assert len(sampler) == labels.numel()
    first, second = list(sampler), list(sampler)
    assert first != second, "each pass is a new epoch"
    sampler.set_epoch(1)
    assert list(sampler) == second
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(labels), batch_size=64, sampler=ClassSampler(labels, seed=5)
    )
    seen = torch.cat([b[0] for b in loader])
    assert seen.numel() == labels.numel()
    with pytest.raises(ValueError, match="unknown sampling"):
        ClassSampler(labels, "oversample")


def test_epoch_generator_is_derive_generator():
    # The one seed-derivation scheme: identical numbers, not merely "also deterministic".
    for seed, epoch in [(0, 0), (0, 1), (1, 0), (12345, 199), (2**40, 3)]:
        ours = torch.randint(0, 2**62, (8,), generator=epoch_generator(seed, epoch))
        shared = torch.randint(0, 2**62, (8,), generator=derive_generator(seed, epoch))
        assert torch.equal(ours, shared)
        assert (
            epoch_generator(seed, epoch).initial_seed()
            == derive_generator(seed, epoch).initial_seed()
        )


def test_epoch_generator_keeps_its_historical_numbers():
    # The formula the data order used before it moved to _internal.seeding (resumed runs
    # must replay the same epochs): SeedSequence([seed, epoch]), two 32-bit words.
    state = np.random.SeedSequence([7, 3]).generate_state(2, dtype=np.uint32)
    assert epoch_generator(7, 3).initial_seed() == int(state[0]) << 32 | int(state[1])


# --------------------------------------------------------------------------- long_tailed_subset


def test_long_tailed_subset_matches_counts_and_indices():
    labels = _labels([30, 40, 25, 50])
    idx = long_tailed_subset(labels, imbalance_ratio=5, seed=2)
    # default n_max: the smallest class count (25), so every class can supply its share
    expected = class_counts(25, 4, 5)
    assert torch.bincount(labels[idx], minlength=4).tolist() == expected.tolist()
    assert torch.equal(idx, long_tailed_indices(labels, expected, seed=2))
    assert torch.equal(idx, idx.sort().values) and idx.dtype == torch.int64
    assert torch.equal(idx, long_tailed_subset(labels, imbalance_ratio=5, seed=2))
    assert not torch.equal(idx, long_tailed_subset(labels, imbalance_ratio=5, seed=3))


def test_long_tailed_subset_explicit_n_max_and_step_profile():
    labels = _labels([30, 40, 25, 50])
    idx = long_tailed_subset(labels, imbalance_ratio=4, profile="step", n_max=24, seed=0)
    assert torch.bincount(labels[idx]).tolist() == [24, 24, 6, 6]
    short = _labels([30, 20, 25, 50])
    with pytest.raises(ValueError, match="class 1 has 20 samples but 24 were asked"):
        long_tailed_subset(short, imbalance_ratio=4, profile="step", n_max=24, seed=0)


def test_long_tailed_subset_ratio_one_keeps_everything():
    labels = _labels([3, 7, 5])
    for n_max in (None, 2):
        idx = long_tailed_subset(labels, imbalance_ratio=1, n_max=n_max, seed=0)
        assert torch.equal(idx, torch.arange(labels.numel()))


def test_long_tailed_subset_of_no_labels():
    empty = torch.zeros(0, dtype=torch.int64)
    assert long_tailed_subset(empty, imbalance_ratio=1, seed=0).numel() == 0
    with pytest.raises(ValueError, match="labels is empty"):
        long_tailed_subset(empty, imbalance_ratio=2, seed=0)


def test_long_tailed_subset_accepts_lists_and_missing_tail_classes():
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    idx = long_tailed_subset(labels, imbalance_ratio=4, seed=0)
    assert torch.bincount(torch.tensor(labels)[idx]).tolist() == [4, 1]
    with pytest.raises(ValueError, match=r"classes \[2\] have no samples"):
        long_tailed_subset(labels, imbalance_ratio=4, seed=0, num_classes=3)
    with pytest.raises(ValueError, match="class 2 has 0 samples but 1 were asked"):
        long_tailed_subset(labels, imbalance_ratio=4, n_max=4, seed=0, num_classes=3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"imbalance_ratio": 0.5}, "imbalance_ratio"),
        ({"imbalance_ratio": float("nan")}, "imbalance_ratio"),
        ({"imbalance_ratio": 2, "profile": "linear"}, "unknown profile 'linear'"),
        ({"imbalance_ratio": 2, "n_max": 0}, "n_max"),
        ({"imbalance_ratio": 2, "num_classes": 1}, "num_classes=1"),
        ({"imbalance_ratio": 2, "num_classes": 0}, "num_classes must be an integer >= 1"),
    ],
)
def test_long_tailed_subset_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        long_tailed_subset(_labels([4, 4]), seed=0, **kwargs)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    per_class=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    ratio=st.floats(1.0, 20.0),
    profile=st.sampled_from(["exp", "step"]),
    seed=st.integers(0, 1000),
)
def test_long_tailed_subset_property(per_class, ratio, profile, seed):
    labels = _labels(per_class)
    try:
        idx = long_tailed_subset(labels, imbalance_ratio=ratio, profile=profile, seed=seed)
    except ValueError as err:
        assert "0 samples" in str(err)
        return
    if ratio == 1:
        assert torch.equal(idx, torch.arange(labels.numel()))
        return
    got = torch.bincount(labels[idx], minlength=len(per_class))
    expected = class_counts(min(per_class), len(per_class), ratio, profile)
    assert got.tolist() == expected.tolist()
    assert idx.unique().numel() == idx.numel()
