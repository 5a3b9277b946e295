"""Tests of nc.metrics against an independent two-pass float64 NumPy implementation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neuralcollapse.metrics import (
    CollapseReport,
    CollapseStats,
    NCCMismatchCounter,
    collapse_report,
    collect,
)
from neuralcollapse.metrics import collapse as collapse_module

RTOL = 1e-9

# Fields that scale with the features or the classifier; every other number is scale-free.
SCALE_DEPENDENT = {"global_mean_logit_norm"}
INT_FIELDS = {"num_classes", "dim", "num_samples", "sigma_b_rank"}


# --------------------------------------------------------------------------- reference
def reference(h, y, num_classes, w=None, b=None, global_mean="weighted"):
    """Two-pass float64 NumPy definitions (docs/theory.md §4), written independently of
    the library: d x d covariances, explicit pseudo-inverse, explicit pair loops."""
    h = np.asarray(h, dtype=np.float64)
    y = np.asarray(y)
    counts = np.bincount(y, minlength=num_classes)
    present = np.flatnonzero(counts)
    k = len(present)
    means = np.stack([h[y == c].mean(axis=0) for c in present])
    mu_g = h.mean(axis=0) if global_mean == "weighted" else means.mean(axis=0)
    mc = means - mu_g
    row_of = {c: i for i, c in enumerate(present)}
    dev = h - means[[row_of[c] for c in y]]
    sigma_w = dev.T @ dev / len(h)
    sigma_b = mc.T @ mc / k
    lam, vec = np.linalg.eigh(sigma_b)
    order = np.argsort(lam)[::-1][: k - 1]
    lam, vec = lam[order], vec[:, order]
    keep = lam > max(sigma_b.shape) * np.finfo(float).eps * lam[0]
    pinv = (vec[:, keep] / lam[keep]) @ vec[:, keep].T
    out = {
        "nc1": np.trace(sigma_w @ pinv) / k,
        "nc1_trace_ratio": np.trace(sigma_w) / np.trace(sigma_b),
        "sigma_b_rank": int(keep.sum()),
    }
    var = [((h[y == c] - means[i]) ** 2).sum(axis=1).mean() for i, c in enumerate(present)]
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    out["nc1_cdnv"] = np.mean(
        [(var[i] + var[j]) / (2 * ((means[i] - means[j]) ** 2).sum()) for i, j in pairs]
    )
    out.update(_nc2(mc, "means"))
    minority = sorted(present[np.argsort(counts[present], kind="stable")][: max(2, -(-k // 3))])
    vectors = {c: mc[row_of[c]] for c in present}
    if w is not None:
        w = np.asarray(w, dtype=np.float64)
        wp = w[present]
        out.update(_nc2(wp, "classifier"))
        out["nc3_self_duality"] = ((wp / np.linalg.norm(wp) - mc / np.linalg.norm(mc)) ** 2).sum()
        out["nc3_zhu"] = _etf_distance(wp @ mc.T)
        bias = np.zeros(num_classes) if b is None else np.asarray(b, dtype=np.float64)
        out["global_mean_logit_norm"] = np.linalg.norm(w @ mu_g + bias)
        vectors = {c: w[c] for c in present}
        pred = np.argmax(h @ w.T + bias, axis=1)
        dists = ((h[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
        ncc = present[np.argmin(dists, axis=1)]
        out["nc4_ncc_mismatch"] = np.mean(pred != ncc)
        out["ncc_accuracy"] = np.mean(ncc == y)
        out["classifier_accuracy"] = np.mean(pred == y)
    cos = [_cos(vectors[a], vectors[c]) for i, a in enumerate(minority) for c in minority[i + 1 :]]
    out["minority_cosine"] = np.mean(cos)
    out["minority_classes"] = [int(c) for c in minority]
    out["class_counts"] = [int(c) for c in counts]
    out["absent_classes"] = [int(c) for c in np.flatnonzero(counts == 0)]
    return out


def _cos(a, b):
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def _etf_distance(m):
    k = m.shape[0]
    target = (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)
    return np.linalg.norm(m / np.linalg.norm(m) - target)


def _nc2(vectors, suffix):
    k = vectors.shape[0]
    norms = np.linalg.norm(vectors, axis=1)
    cos = np.array([_cos(vectors[i], vectors[j]) for i in range(k) for j in range(i + 1, k)])
    return {
        f"nc2_equinorm_{suffix}": norms.std() / norms.mean(),
        f"nc2_equiangular_{suffix}": np.abs(cos + 1 / (k - 1)).mean(),
        f"nc2_cosine_std_{suffix}": cos.std(),
        f"nc2_etf_distance_{suffix}": _etf_distance(vectors @ vectors.T),
    }


def assert_matches(report: CollapseReport, expected: dict, rtol: float = RTOL) -> None:
    got = report.to_dict()
    assert expected, "nothing to compare"
    for name, value in expected.items():
        if isinstance(value, list):
            assert got[name] == value, name
        else:
            assert got[name] is not None, name
            assert got[name] == pytest.approx(float(value), rel=rtol, abs=1e-13), name


# ------------------------------------------------------------------------------ data
def make_data(seed, n, k, d, *, spread=1.0, offset=0.0, counts=None, dtype=torch.float64):
    """Gaussian classes around random means; ``counts`` fixes the per-class sizes."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((k, d)) * 3.0 + offset
    if counts is None:
        y = rng.integers(0, k, size=n)
    else:
        y = rng.permutation(np.repeat(np.arange(k), counts))
    h = means[y] + spread * rng.standard_normal((len(y), d))
    w = rng.standard_normal((k, d))
    b = rng.standard_normal(k)
    return (
        torch.tensor(h, dtype=dtype),
        torch.tensor(y),
        torch.tensor(w, dtype=dtype),
        torch.tensor(b, dtype=dtype),
    )


def stream(h, y, k, batch=37, global_mean="weighted", precision="auto"):
    stats = CollapseStats(k, h.shape[1], global_mean=global_mean, precision=precision)
    for i in range(0, len(y), batch):
        stats.update(h[i : i + batch], y[i : i + batch])
    return stats


def full_report(h, y, k, w, b, global_mean="weighted", batch=37, precision="auto"):
    stats = stream(h, y, k, batch, global_mean, precision)
    counter = stats.ncc_mismatch_counter()
    for i in range(0, len(y), batch):
        hb = h[i : i + batch]
        counter.update(hb, y[i : i + batch], hb @ w.T + b)
    return stats.compute(w, b, ncc=counter)


def random_orthogonal(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return torch.tensor(q * np.sign(np.diag(r)))


# --------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize(
    ("k", "d", "counts", "global_mean"),
    [
        (5, 8, None, "weighted"),  # K <= d: Gram route
        (12, 6, None, "weighted"),  # K > d: d x d route
        (10, 64, [80, 60, 40, 30, 20, 15, 10, 6, 4, 3], "weighted"),  # imbalanced
        (10, 64, [80, 60, 40, 30, 20, 15, 10, 6, 4, 3], "balanced"),
        (7, 16, [30, 0, 25, 20, 0, 12, 9], "weighted"),  # absent classes
        (2, 3, [40, 25], "balanced"),
    ],
)
def test_every_metric_matches_two_pass_reference(k, d, counts, global_mean):
    h, y, w, b = make_data(1, 300, k, d, counts=counts)
    report = full_report(h, y, k, w, b, global_mean)
    assert_matches(report, reference(h.numpy(), y.numpy(), k, w.numpy(), b.numpy(), global_mean))
    assert report.global_mean == global_mean
    if counts is not None and 0 in counts:
        assert report.absent_classes == tuple(i for i, c in enumerate(counts) if c == 0)


def test_metrics_without_classifier_match_reference_and_leave_classifier_fields_none():
    h, y, _, _ = make_data(2, 250, 6, 10)
    report = stream(h, y, 6).compute()
    assert_matches(report, reference(h.numpy(), y.numpy(), 6))
    for name in ("nc2_equinorm_classifier", "nc3_self_duality", "nc3_zhu", "nc4_ncc_mismatch"):
        assert getattr(report, name) is None


@pytest.mark.parametrize(
    ("precision", "rtol"), [("float64", RTOL), ("auto", 1e-6), ("float32", 1e-6)]
)
def test_float32_features_are_summed_in_float64(precision, rtol):
    h, y, w, b = make_data(3, 400, 8, 32, dtype=torch.float32)
    expected = reference(h.double().numpy(), y.numpy(), 8, w.double().numpy(), b.double().numpy())
    assert_matches(full_report(h, y, 8, w, b, precision=precision), expected, rtol)


def test_large_common_offset_keeps_nc1_to_1e_6():
    # features = 1e3 * class_mean + 1e-4 noise: a naive sum of h h^T keeps ~2 digits.
    rng = np.random.default_rng(4)
    k, d, n = 6, 20, 600
    unit_means = rng.standard_normal((k, d))
    y = np.repeat(np.arange(k), n // k)
    h = 1e3 * unit_means[y] + 1e-4 * rng.standard_normal((len(y), d))
    report = stream(torch.tensor(h), torch.tensor(y), k, batch=64).compute()
    expected = reference(h, y, k)
    assert report.nc1 == pytest.approx(expected["nc1"], rel=1e-6)
    assert report.nc1_trace_ratio == pytest.approx(expected["nc1_trace_ratio"], rel=1e-6)
    assert report.nc1_cdnv == pytest.approx(expected["nc1_cdnv"], rel=1e-6)
    # The unstable one-pass formula sum(h h^T) - N mu mu^T is off by orders of magnitude,
    # which is what this test guards against.
    naive_scatter = h.T @ h - sum(
        np.outer(h[y == c].sum(0), h[y == c].sum(0)) / (y == c).sum() for c in range(k)
    )
    exact_scatter = sum(
        (h[y == c] - h[y == c].mean(0)).T @ (h[y == c] - h[y == c].mean(0)) for c in range(k)
    )
    assert abs(np.trace(naive_scatter) / np.trace(exact_scatter) - 1) > 1e-3


def test_post_relu_uncentred_features_give_small_positive_nc1():
    # The case where a float32 eps-cutoff pinv returns a negative NC1.
    rng = np.random.default_rng(5)
    k, d, per_class = 10, 512, 20
    means = np.maximum(rng.standard_normal((k, d)) + 1.0, 0.0)
    y = np.repeat(np.arange(k), per_class)
    h = np.maximum(means[y] + 1e-3 * rng.standard_normal((len(y), d)), 0.0).astype(np.float32)
    report = stream(torch.from_numpy(h), torch.from_numpy(y), k, batch=64).compute()
    expected = reference(h.astype(np.float64), y, k)
    assert 0.0 < report.nc1 < 1e-4
    assert report.nc1 == pytest.approx(expected["nc1"], rel=1e-6)
    assert report.sigma_b_rank == k - 1


# ----------------------------------------------------------- float32 products (fast path)
FLOAT32_RTOL = 1e-6  # the documented accuracy of precision="float32" / "auto"
NC4_FIELDS = ("nc4_ncc_mismatch", "ncc_accuracy", "classifier_accuracy")


def without_nc4(expected: dict) -> dict:
    """The reference without the second-pass fields (for reports computed without one)."""
    return {key: value for key, value in expected.items() if key not in NC4_FIELDS}


@pytest.mark.parametrize(
    ("k", "d", "counts", "global_mean"),
    [
        (5, 8, None, "weighted"),
        (12, 6, None, "weighted"),
        (10, 64, [80, 60, 40, 30, 20, 15, 10, 6, 4, 3], "balanced"),
        (7, 16, [30, 0, 25, 20, 0, 12, 9], "weighted"),
    ],
)
def test_float32_products_match_float64_reference_to_1e_6(k, d, counts, global_mean):
    h, y, w, b = make_data(1, 300, k, d, counts=counts)
    expected = reference(h.numpy(), y.numpy(), k, w.numpy(), b.numpy(), global_mean)
    report = full_report(h, y, k, w, b, global_mean, precision="float32")
    assert_matches(report, expected, FLOAT32_RTOL)


@pytest.mark.parametrize("offset", [1e3, 1e6])
def test_float32_products_keep_1e_6_under_a_large_common_offset(offset):
    # float64 features far from the origin with a small spread: rounding them to float32
    # first would leave no digit of the spread; centring first keeps all of them.
    rng = np.random.default_rng(4)
    k, d, n = 6, 20, 600
    unit_means = rng.standard_normal((k, d))
    y = np.repeat(np.arange(k), n // k)
    h = offset * (1.0 + unit_means[y] * 1e-3) + 1e-4 * rng.standard_normal((n, d))
    report = stream(torch.tensor(h), torch.tensor(y), k, batch=64, precision="float32").compute()
    expected = reference(h, y, k)
    for name in ("nc1", "nc1_trace_ratio", "nc1_cdnv", "nc2_etf_distance_means"):
        assert getattr(report, name) == pytest.approx(expected[name], rel=FLOAT32_RTOL), name


def test_float32_features_with_a_1e6_offset_keep_1e_6():
    # float32 data near 1e6 (resolution 1/16): the reference sees the same float32 values.
    rng = np.random.default_rng(40)
    k, d, n = 8, 48, 4000
    means = 1e6 + 200.0 * rng.standard_normal((k, d))
    y = rng.integers(0, k, size=n)
    h = (means[y] + 20.0 * rng.standard_normal((n, d))).astype(np.float32)
    report = stream(torch.from_numpy(h), torch.from_numpy(y), k, batch=1000).compute()
    assert_matches(report, reference(h.astype(np.float64), y, k), FLOAT32_RTOL)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_features_use_float32_products(dtype):
    h, y, w, b = make_data(41, 500, 6, 24, dtype=dtype)
    expected = reference(h.double().numpy(), y.numpy(), 6)
    assert_matches(stream(h, y, 6).compute(), expected, FLOAT32_RTOL)


def test_float32_shards_merged_and_updated_again_match_one_pass():
    # A merge averages the shifts, so they stop being float32 numbers; later float32
    # batches are then centred in float64 and stay exact.
    h, y, w, _ = make_data(42, 900, 5, 12, dtype=torch.float32)
    order = torch.argsort(y, stable=True)
    a = stream(h[order[:300]], y[order[:300]], 5)
    b = stream(h[order[300:600]], y[order[300:600]], 5)
    merged = a.merge(b)
    merged.update(h[order[600:]], y[order[600:]])
    expected = without_nc4(reference(h.double().numpy(), y.numpy(), 5, w.double().numpy()))
    assert_matches(merged.compute(w), expected, FLOAT32_RTOL)
    one = stream(h, y, 5).compute(w)
    _assert_reports_equal(one, merged.compute(w), rtol=FLOAT32_RTOL)


@pytest.mark.parametrize(("precision", "rtol"), [("float32", FLOAT32_RTOL), ("float64", RTOL)])
def test_wide_features_multiply_the_scatter_by_blocks(precision, rtol):
    # d > 384: the scatter's product runs block row by block row (only the upper blocks);
    # the blocks below the diagonal must be filled too, and every metric as in the
    # reference. (Diagonal blocks may differ from their transpose in the last bits.)
    h, y, w, _ = make_data(47, 300, 7, 600, dtype=torch.float32)
    stats = stream(h, y, 7, batch=128, precision=precision)
    scatter = stats.state_dict()["scatter"]
    torch.testing.assert_close(scatter, scatter.T, rtol=1e-6, atol=0.0)
    expected = without_nc4(reference(h.double().numpy(), y.numpy(), 7, w.double().numpy()))
    assert_matches(stats.compute(w), expected, rtol)


def test_product_dtype_follows_precision_and_the_matmul_setting():
    auto = CollapseStats(3, 4)
    assert auto.product_dtype(torch.float32) == torch.float32
    assert auto.product_dtype(torch.bfloat16) == torch.float32
    assert auto.product_dtype(torch.float64) == torch.float64
    assert CollapseStats(3, 4, precision="float64").product_dtype(torch.float32) == torch.float64
    assert CollapseStats(3, 4, precision="float32").product_dtype(torch.float64) == torch.float32
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        assert auto.product_dtype(torch.float32) == torch.float64
    finally:
        torch.set_float32_matmul_precision(before)
    assert "precision='auto'" in repr(auto)


def test_float32_and_float64_paths_agree_and_merge():
    h, y, w, _ = make_data(43, 400, 6, 10, dtype=torch.float32)
    fast = stream(h[:200], y[:200], 6, precision="float32")
    exact = stream(h[200:], y[200:], 6, precision="float64")
    merged = fast.merge(exact).compute(w)
    expected = without_nc4(reference(h.double().numpy(), y.numpy(), 6, w.double().numpy()))
    assert_matches(merged, expected, FLOAT32_RTOL)


# ---------------------------------------------------------------- NC1: the two routes
@pytest.mark.parametrize("global_mean", ["weighted", "balanced"])
def test_nc1_cholesky_route_equals_the_eigenvalue_route(monkeypatch, global_mean):
    # K <= d: NC1 comes from a Cholesky factor when the Gram matrix has full rank K' - 1;
    # forcing the eigendecomposition route must give the same report.
    h, y, w, _ = make_data(44, 400, 9, 30, counts=[80, 70, 60, 50, 40, 40, 30, 20, 10])
    fast = stream(h, y, 9, global_mean=global_mean).compute(w)
    monkeypatch.setattr(collapse_module, "_smallest_eigenvalue_bound", lambda factor: 0.0)
    slow = stream(h, y, 9, global_mean=global_mean).compute(w)
    assert fast.sigma_b_rank == slow.sigma_b_rank == 8
    _assert_reports_equal(fast, slow, rtol=1e-10)


def test_rank_deficient_class_means_keep_the_cutoff_of_the_reference():
    # Six class means in a plane (rank 2 < K - 1 = 5): the Cholesky route must step
    # aside, and the eigenvalue route drops the round-off directions like the reference.
    rng = np.random.default_rng(45)
    k, d = 6, 10
    plane = rng.standard_normal((2, d))
    means = rng.standard_normal((k, 2)) @ plane * 3.0
    y = np.repeat(np.arange(k), 40)
    noise = rng.standard_normal((len(y), d))
    noise -= np.stack([noise[y == c].mean(axis=0) for c in range(k)])[y]  # class means stay
    h = means[y] + noise
    report = stream(torch.tensor(h), torch.tensor(y), k).compute()
    expected = reference(h, y, k)
    assert report.sigma_b_rank == expected["sigma_b_rank"] == 2
    assert report.nc1 == pytest.approx(expected["nc1"], rel=1e-9)


def test_smallest_eigenvalue_bound_is_above_and_close_to_it():
    rng = np.random.default_rng(46)
    for n, spread in ((50, 1e3), (200, 1e8), (5, 1.0)):
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        eigenvalues = np.geomspace(1.0, spread, n)
        a = torch.tensor((q * eigenvalues) @ q.T)
        bound = collapse_module._smallest_eigenvalue_bound(
            torch.cholesky_inverse(torch.linalg.cholesky(a))
        )
        assert eigenvalues[0] * (1 - 1e-9) <= bound <= 10.0 * eigenvalues[0]


# ------------------------------------------------------------------------- collapsed
def simplex_etf_rows(k, d, seed):
    """sqrt(K/(K-1)) (I - 11^T/K), zero-padded to d columns and rotated: (K, d) rows."""
    etf = np.sqrt(k / (k - 1)) * (np.eye(k) - np.ones((k, k)) / k)
    padded = np.zeros((k, d))
    padded[:, :k] = etf
    return padded @ random_orthogonal(d, seed).numpy()


@pytest.mark.parametrize(
    ("counts", "global_mean"), [([9] * 6, "weighted"), ([30, 20, 12, 7, 3, 2], "balanced")]
)
def test_exactly_collapsed_etf_data(counts, global_mean):
    k, d = 6, 10
    frame = simplex_etf_rows(k, d, seed=6)
    y = np.repeat(np.arange(k), counts)
    h = torch.tensor(5.0 * frame[y])
    w = torch.tensor(frame)
    stats = stream(h, torch.tensor(y), k, batch=8, global_mean=global_mean)
    counter = stats.ncc_mismatch_counter()
    counter.update(h, torch.tensor(y), h @ w.T)
    r = stats.compute(w, ncc=counter)
    assert 0.0 <= r.nc1 < 1e-20
    assert r.nc1_cdnv < 1e-20 and r.nc1_trace_ratio < 1e-20
    for name in (
        "nc2_equinorm_means",
        "nc2_equiangular_means",
        "nc2_cosine_std_means",
        "nc2_etf_distance_means",
        "nc2_equinorm_classifier",
        "nc2_equiangular_classifier",
        "nc2_etf_distance_classifier",
        "nc3_zhu",
    ):
        assert getattr(r, name) < 1e-7, name
    assert r.nc3_self_duality < 1e-14
    assert r.nc4_ncc_mismatch == 0.0
    assert r.ncc_accuracy == 1.0 and r.classifier_accuracy == 1.0


# ------------------------------------------------------------------------- invariance
def _assert_reports_equal(a: CollapseReport, b: CollapseReport, skip=(), rtol=1e-9):
    da, db = a.to_dict(), b.to_dict()
    for name, value in da.items():
        if name in skip:
            continue
        if isinstance(value, float):
            assert db[name] == pytest.approx(value, rel=rtol, abs=1e-12), name
        else:
            assert db[name] == value, name


def test_orthogonal_rotation_leaves_every_metric_unchanged():
    h, y, w, b = make_data(7, 300, 8, 12, counts=[60, 50, 40, 40, 30, 30, 25, 25])
    q = random_orthogonal(12, seed=8)
    _assert_reports_equal(full_report(h, y, 8, w, b), full_report(h @ q, y, 8, w @ q, b))


def test_scaling_leaves_scale_free_metrics_unchanged():
    h, y, w, b = make_data(9, 300, 8, 12)
    base = full_report(h, y, 8, w, b)
    # Scaling the bias with W keeps the argmax, so NC4 must not change either.
    scaled = full_report(h * 37.5, y, 8, w * 0.02, b * 0.02 * 37.5)
    _assert_reports_equal(base, scaled, skip=SCALE_DEPENDENT)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
    k=st.integers(2, 7),
    d=st.integers(2, 9),
)
def test_property_rotation_and_scale_invariance(seed, scale, k, d):
    h, y, w, b = make_data(seed, 80, k, d)
    if len(np.unique(y.numpy())) < 2:
        y[:2] = torch.tensor([0, 1])
    q = random_orthogonal(d, seed + 1)
    base = stream(h, y, k).compute(w)
    moved = stream(h @ q * scale, y, k).compute(w @ q)
    _assert_reports_equal(base, moved, skip=SCALE_DEPENDENT, rtol=1e-7)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2**16), cuts=st.lists(st.integers(0, 120), max_size=4))
def test_property_any_sharding_merges_to_one_pass(seed, cuts):
    h, y, w, _ = make_data(seed, 120, 5, 7)
    edges = [0, *sorted(cuts), 120]
    shards = [stream(h[a:b], y[a:b], 5) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    merged = shards[0]
    for shard in shards[1:]:
        merged.merge(shard)
    _assert_reports_equal(stream(h, y, 5).compute(w), merged.compute(w), rtol=1e-10)


def test_nc1_is_never_negative_under_hypothesis_style_degeneracy():
    # Within-class spread far below round-off of the between-class scale.
    h, y, _, _ = make_data(10, 200, 5, 30, spread=1e-12)
    report = stream(h, y, 5).compute()
    assert 0.0 <= report.nc1 < 1e-20


# ---------------------------------------------------------------- merge and persistence
def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        same = torch.equal(value, b[key]) if isinstance(value, torch.Tensor) else value == b[key]
        assert same, key


def test_shards_merged_equal_one_pass():
    h, y, w, b = make_data(11, 400, 9, 16, counts=[80, 70, 60, 50, 50, 40, 30, 15, 5])
    one = full_report(h, y, 9, w, b)
    # Shard by class ranges too, so that shards disagree on which classes they saw.
    order = torch.argsort(y, stable=True)
    parts = [order[:90], order[90:250], order[250:]]
    stats = [stream(h[p], y[p], 9, batch=16) for p in parts]
    before = stats[1].state_dict()
    merged = stats[0].merge(stats[1]).merge(stats[2])
    assert_same_state(stats[1].state_dict(), before)
    counters = [merged.ncc_mismatch_counter() for _ in parts]
    for counter, p in zip(counters, parts, strict=True):
        counter.update(h[p], y[p], h[p] @ w.T + b)
    counters[0].merge(counters[1]).merge(counters[2])
    _assert_reports_equal(one, merged.compute(w, b, ncc=counters[0]), rtol=1e-11)


def test_batch_size_does_not_change_the_result():
    h, y, w, _ = make_data(12, 300, 6, 9)
    a = stream(h, y, 6, batch=1).compute(w)
    b = stream(h, y, 6, batch=300).compute(w)
    _assert_reports_equal(a, b, rtol=1e-11)


def test_state_dict_round_trip_and_resume(tmp_path):
    h, y, w, _ = make_data(13, 200, 5, 6)
    stats = stream(h[:120], y[:120], 5, global_mean="balanced")
    torch.save(stats.state_dict(), tmp_path / "stats.pt")
    resumed = CollapseStats(5, 6)
    resumed.load_state_dict(torch.load(tmp_path / "stats.pt", weights_only=True))
    assert resumed.global_mean == "balanced" and resumed.num_samples == 120
    for i in range(120, 200, 30):
        resumed.update(h[i : i + 30], y[i : i + 30])
    _assert_reports_equal(stream(h, y, 5, global_mean="balanced").compute(w), resumed.compute(w))


def test_ncc_counter_state_dict_round_trip():
    h, y, w, _ = make_data(14, 100, 4, 5)
    stats = stream(h, y, 4)
    counter = stats.ncc_mismatch_counter()
    counter.update(h, y, h @ w.T)
    copy = stats.ncc_mismatch_counter()
    copy.load_state_dict(counter.state_dict())
    assert copy.compute() == counter.compute()


def test_update_with_bad_batch_leaves_statistics_unchanged():
    h, y, _, _ = make_data(15, 60, 3, 4)
    stats = stream(h[:30], y[:30], 3)
    before = stats.state_dict()
    bad = h[30:].clone()
    bad[5, 2] = math.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        stats.update(bad, y[30:])
    assert_same_state(stats.state_dict(), before)


@pytest.mark.parametrize(("precision", "rtol"), [("float64", 1e-11), ("float32", 1e-6)])
def test_batches_larger_than_one_chunk_match_small_batches(precision, rtol):
    # update() centres large batches in chunks of rows; the result must not notice.
    h, y, w, _ = make_data(24, 9000, 4, 3, dtype=torch.float32)
    one = stream(h, y, 4, batch=9000, precision=precision).compute(w)
    _assert_reports_equal(one, stream(h, y, 4, precision=precision).compute(w), rtol=rtol)


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_nan_in_a_later_chunk_of_a_large_batch_leaves_statistics_unchanged(precision, dtype):
    h, y, _, _ = make_data(25, 9000, 4, 3, dtype=dtype)
    stats = stream(h[:100], y[:100], 4, precision=precision)
    before = stats.state_dict()
    bad = h.clone()
    bad[8900, 1] = math.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        stats.update(bad, y)
    assert_same_state(stats.state_dict(), before)


@pytest.mark.parametrize("rows", [50, 9000])
def test_batch_whose_squares_overflow_float32_is_rejected_whole(rows):
    # Finite float32 values whose squares overflow: the float32 route refuses the batch
    # before adding anything; the float64 route takes it.
    h, y, _, _ = make_data(27, rows, 4, 3, dtype=torch.float32)
    stats = stream(h[:40], y[:40], 4)
    before = stats.state_dict()
    bad = h.clone()
    bad[-1, 0] = 1e25
    with pytest.raises(ValueError, match="too large to square in torch.float32"):
        stats.update(bad, y)
    assert_same_state(stats.state_dict(), before)
    exact = stream(h[:40], y[:40], 4, precision="float64")
    exact.update(bad, y)
    assert exact.num_samples == 40 + rows


def test_rows_whose_squares_only_overflow_together_are_rejected():
    h = torch.full((8, 2), 1.2e19)
    y = torch.tensor([0, 1] * 4)
    stats = CollapseStats(2, 2)
    stats.update(torch.zeros(2, 2), torch.tensor([0, 1]))
    before = stats.state_dict()
    with pytest.raises(ValueError, match="overflow torch.float32 when summed"):
        stats.update(h, y)
    assert_same_state(stats.state_dict(), before)


def test_features_that_require_grad_are_accepted():
    h, y, w, _ = make_data(26, 60, 3, 4)
    report = stream(h.clone().requires_grad_(True), y, 3).compute(w.requires_grad_(True))
    _assert_reports_equal(stream(h, y, 3).compute(w.detach()), report)


def test_update_does_not_modify_caller_tensors():
    h, y, _, _ = make_data(16, 50, 3, 4)
    copy = h.clone()
    stream(h, y, 3)
    assert torch.equal(h, copy)


# ------------------------------------------------------------------------ one-call APIs
def test_collapse_report_matches_reference_with_nc4():
    h, y, w, b = make_data(17, 500, 7, 11)
    report = collapse_report(h, y, classifier=w, bias=b)
    assert_matches(report, reference(h.numpy(), y.numpy(), 7, w.numpy(), b.numpy()))


def test_collapse_report_without_classifier_has_no_nc4():
    h, y, _, _ = make_data(18, 100, 4, 6)
    report = collapse_report(h, y, num_classes=6, global_mean="balanced")
    assert report.nc4_ncc_mismatch is None
    assert report.absent_classes == (4, 5) and report.num_classes == 6


def test_to_dict_is_strict_json():
    h, y, w, b = make_data(19, 100, 4, 6)
    payload = collapse_report(h, y, classifier=w, bias=b).to_dict()
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload


def test_to_dict_turns_undefined_values_into_none():
    # Two classes whose means are symmetric about the weighted global mean, plus a third
    # class sitting exactly on it: its centred mean has norm 0 and cosines are undefined.
    h = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [1.0, 1e-3], [-1.0, -1e-3]])
    y = torch.tensor([0, 1, 2, 0, 1])
    payload = collapse_report(h, y).to_dict()
    assert payload["nc2_equiangular_means"] is None
    json.dumps(payload, allow_nan=False)


class _TwoLayer(nn.Module):
    def __init__(self, k=4, d=6, return_features=False):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.body = nn.Linear(3, d)
        self.fc = nn.Linear(d, k)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
        self.return_features = return_features

    def forward(self, x):
        features = torch.relu(self.body(x))
        logits = self.fc(features)
        return (logits, features) if self.return_features else logits


def _loader(n=120, k=4, batch=25):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=gen)
    y = torch.randint(0, k, (n,), generator=gen)
    dataset = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(dataset, batch_size=batch), x, y


def test_collect_with_layer_hook_matches_collapse_report():
    model = _TwoLayer()
    loader, x, y = _loader()
    model.train()
    calls = []

    def progress(iterable):
        calls.append(1)
        return iterable

    report = collect(model, loader, layer="fc", progress=progress)
    assert model.training and len(calls) == 2
    with torch.no_grad():
        features = torch.relu(model.body(x))
    expected = collapse_report(features, y, classifier=model.fc.weight, bias=model.fc.bias)
    _assert_reports_equal(expected, report, rtol=1e-6)
    assert report.nc4_ncc_mismatch is not None


def test_collect_uses_logits_and_features_returned_by_the_model():
    model = _TwoLayer(return_features=True)
    loader, x, y = _loader()
    report = collect(model, loader, classifier=model.fc, ncc=True)
    with torch.no_grad():
        features = torch.relu(model.body(x))
    expected = collapse_report(features, y, classifier=model.fc.weight, bias=model.fc.bias)
    _assert_reports_equal(expected, report, rtol=1e-6)
    no_classifier = collect(model, loader, ncc=True)
    assert no_classifier.nc3_zhu is None
    # Without a classifier NC4 compares the model's own logits with the nearest mean.
    assert no_classifier.nc4_ncc_mismatch == pytest.approx(expected.nc4_ncc_mismatch)
    assert collect(model, loader, ncc=False).nc4_ncc_mismatch is None


def test_collect_with_a_package_head_and_forward_kwargs():
    from neuralcollapse.heads import FixedFrameHead

    frame = torch.tensor(simplex_etf_rows(4, 6, seed=2), dtype=torch.float32)
    head = FixedFrameHead(3, frame)
    loader, x, y = _loader()
    report = collect(head, loader, classifier=head, forward_kwargs={"return_features": True})
    with torch.no_grad():
        logits, features = head.eval()(x, return_features=True)
    expected = collapse_report(features, y, classifier=head.weight)
    _assert_reports_equal(expected, report, rtol=1e-6)


def test_collect_hooking_a_hidden_layer_has_no_classifier_metrics():
    model = _TwoLayer()
    loader, x, y = _loader()
    report = collect(model, loader, layer="body", ncc=False)
    assert report.dim == 3 and report.nc3_zhu is None


# ------------------------------------------------------------------------- error paths
def _stats():
    return CollapseStats(3, 4)


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (torch.zeros(5, 3), torch.zeros(5, dtype=torch.long), r"shape \(batch, 4\)"),
        (torch.zeros(5, 4, 1), torch.zeros(5, dtype=torch.long), r"shape \(batch, 4\)"),
        (torch.zeros(5, 4), torch.zeros(4, dtype=torch.long), r"shape \(5,\)"),
        (torch.zeros(5, 4), torch.zeros(5, 1, dtype=torch.long), r"shape \(5,\)"),
        (torch.zeros(5, 4), torch.zeros(5), "integer class indices"),
        (torch.zeros(5, 4, dtype=torch.long), torch.zeros(5, dtype=torch.long), "floating"),
        (torch.zeros(5, 4), torch.tensor([0, 1, 3, 0, 1]), "contains 3, outside the classes 0..2"),
        (torch.zeros(5, 4), torch.tensor([0, -1, 2, 0, 1]), "contains -1, outside"),
        (torch.full((5, 4), math.inf), torch.zeros(5, dtype=torch.long), "NaN or inf"),
        (torch.full((5, 4), math.nan), torch.zeros(5, dtype=torch.long), "NaN or inf"),
        (np.zeros((5, 4)), torch.zeros(5, dtype=torch.long), "torch.Tensor"),
    ],
)
def test_update_rejects_bad_batches(features, labels, message):
    with pytest.raises(ValueError, match=message):
        _stats().update(features, labels)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1, "dim": 4}, "num_classes must be an integer >= 2"),
        ({"num_classes": 3, "dim": 0}, "dim must be an integer >= 1"),
        ({"num_classes": 3.0, "dim": 4}, "num_classes must be an integer"),
        ({"num_classes": 3, "dim": 4, "global_mean": "median"}, "global_mean must be one of"),
        ({"num_classes": 3, "dim": 4, "precision": "float16"}, "precision must be one of"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CollapseStats(**kwargs)


def test_compute_needs_two_present_classes():
    stats = _stats()
    with pytest.raises(ValueError, match="at least two classes, got 0"):
        stats.compute()
    stats.update(torch.randn(4, 4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="at least two classes, got 1"):
        stats.compute()
    with pytest.raises(ValueError, match="at least two classes"):
        stats.ncc_mismatch_counter()


def test_compute_rejects_coincident_means():
    stats = _stats()
    stats.update(torch.ones(4, 4), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="means coincide"):
        stats.compute()


def test_compute_rejects_bad_classifier_and_bias():
    h, y, w, b = make_data(20, 60, 3, 4)
    stats = stream(h, y, 3)
    with pytest.raises(ValueError, match=r"classifier must have shape \(num_classes, dim\)"):
        stats.compute(w.T)
    with pytest.raises(ValueError, match="finite floating"):
        stats.compute(torch.full_like(w, math.nan))
    with pytest.raises(ValueError, match="bias was given without classifier"):
        stats.compute(bias=b)
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        stats.compute(w, b[:2])
    with pytest.raises(ValueError, match="must be a torch.Tensor"):
        stats.compute(w.numpy())


def test_compute_rejects_counter_from_other_statistics():
    h, y, w, _ = make_data(21, 60, 3, 4)
    stats = stream(h[:30], y[:30], 3)
    counter = stats.ncc_mismatch_counter()
    counter.update(h[:30], y[:30], h[:30] @ w.T)
    stats.update(h[30:], y[30:])
    with pytest.raises(ValueError, match="different class means"):
        stats.compute(w, ncc=counter)
    with pytest.raises(ValueError, match="NCCMismatchCounter"):
        stats.compute(w, ncc="counter")


def test_counter_rejects_bad_input():
    h, y, w, _ = make_data(22, 60, 3, 4)
    stats = stream(h, y, 3)
    counter = stats.ncc_mismatch_counter()
    with pytest.raises(ValueError, match="seen no samples"):
        counter.compute()
    with pytest.raises(ValueError, match=r"logits must have shape \(60, 3\)"):
        counter.update(h, y, h @ w[:2].T)
    with pytest.raises(ValueError, match="logits contain NaN"):
        counter.update(h, y, torch.full((60, 3), math.nan))
    with pytest.raises(ValueError, match="same class means"):
        counter.merge(stream(h[:30], y[:30], 3).ncc_mismatch_counter())
    with pytest.raises(ValueError, match="two non-NaN rows"):
        NCCMismatchCounter(torch.full((3, 4), math.nan))
    with pytest.raises(ValueError, match="other class means"):
        counter.load_state_dict(stream(h[:30], y[:30], 3).ncc_mismatch_counter().state_dict())


def test_merge_and_load_reject_mismatched_statistics():
    stats = _stats()
    with pytest.raises(ValueError, match="same K, d and scatter"):
        stats.merge(CollapseStats(3, 5))
    with pytest.raises(ValueError, match="takes a CollapseStats"):
        stats.merge({"counts": 1})
    with pytest.raises(ValueError, match="num_classes=4, dim=4"):
        stats.load_state_dict(CollapseStats(4, 4).state_dict())
    with pytest.raises(ValueError, match="lacks"):
        stats.load_state_dict({"version": 1})
    state = _stats().state_dict()
    state["scatter"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="'scatter' has shape"):
        stats.load_state_dict(state)


def test_all_reduce_without_process_group_is_a_no_op():
    # One process already holds the whole sum (the accumulator contract).
    h, y, _, _ = make_data(27, 60, 3, 4)
    stats = stream(h, y, 3)
    before = stats.state_dict()
    assert stats.all_reduce() is stats
    assert_same_state(stats.state_dict(), before)


def test_collect_rejects_bad_setups():
    model = _TwoLayer()
    loader, _, _ = _loader()
    with pytest.raises(ValueError, match="no module named 'head'"):
        collect(model, loader, layer="head")
    with pytest.raises(ValueError, match="one-shot iterator"):
        collect(model, iter(loader), layer="fc")
    with pytest.raises(ValueError, match="returned a single tensor"):
        collect(model, loader)
    with pytest.raises(ValueError, match=r"\(batch, d\) vectors"):
        collect(nn.Sequential(nn.Unflatten(1, (3, 1)), nn.Flatten()), loader, layer="1")
    with pytest.raises(ValueError, match="no batches"):
        collect(model, [], layer="fc")
    with pytest.raises(ValueError, match="classifier must be"):
        collect(model, loader, layer="fc", classifier="W")


def test_collapse_report_rejects_bad_input():
    h, y, w, b = make_data(23, 40, 3, 4)
    with pytest.raises(ValueError, match="bias was given without classifier"):
        collapse_report(h, y, bias=b)
    with pytest.raises(ValueError, match=r"\(N, d\) torch.Tensor, got \(40,\)"):
        collapse_report(h[:, 0], y)
    with pytest.raises(ValueError, match=r"\(N, d\) torch.Tensor, got ndarray"):
        collapse_report(h.numpy(), y)
    with pytest.raises(ValueError, match=r"classifier must have shape"):
        collapse_report(h, y, classifier=w[:, :3], num_classes=3)


def test_finiteness_check_passes_finite_values_whose_sum_overflows_and_names_nan():
    from neuralcollapse.metrics._checks import all_finite, check_classifier

    huge = torch.full((3, 4), 3e38)  # finite float32 entries; their float32 sum is inf
    assert not bool(torch.isfinite(huge.sum()))
    assert all_finite(huge)
    assert check_classifier(huge, 3, 4) is not None
    bad = huge.clone()
    bad[1, 2] = math.nan
    assert not all_finite(bad)
    with pytest.raises(ValueError, match="classifier must be a finite floating tensor"):
        check_classifier(bad, 3, 4)
    inf = torch.zeros(3, 4)
    inf[0, 0] = math.inf
    assert not all_finite(inf)


def test_float32_class_sums_match_float64_when_a_batch_holds_more_than_a_chunk_of_a_class():
    # d = 8: 128 rows per chunk, so class 0's 3000 rows in one batch are summed chunk by
    # chunk, and the later small batches are held in float32 across batches
    gen = torch.Generator().manual_seed(0)
    x = 1e3 + torch.randn(3600, 8, generator=gen)
    y = torch.cat([torch.zeros(3000, dtype=torch.long), torch.randint(0, 3, (600,), generator=gen)])
    fast = CollapseStats(3, 8, precision="float32")
    exact = CollapseStats(3, 8, precision="float64")
    for start in (0, 3000, 3200, 3400):
        stop = 3000 if start == 0 else start + 200
        fast.update(x[start:stop], y[start:stop])
        exact.update(x[start:stop].double(), y[start:stop])
    torch.testing.assert_close(fast.class_means(), exact.class_means(), rtol=1e-12, atol=1e-9)
    assert fast.compute().nc1 == pytest.approx(exact.compute().nc1, rel=1e-6)
