"""nc.metrics.functional against independent float64 NumPy definitions, plus invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import neuralcollapse as nc
from neuralcollapse.frames import describe, simplex_etf
from neuralcollapse.metrics import CollapseStats, functional

# ----------------------------------------------------------------- NumPy references


def np_cos(a, b):
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def np_pairs(k):
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def np_equinorm(v):
    norms = np.array([math.sqrt(sum(x * x for x in row)) for row in v])
    return norms.std() / norms.mean()


def np_equiangularity(v):
    k = len(v)
    # Over ordered pairs k != l, as Papyan et al. write it.
    return np.mean(
        [abs(np_cos(v[i], v[j]) + 1 / (k - 1)) for i in range(k) for j in range(k) if i != j]
    )


def np_cosine_std(v):
    return np.std([np_cos(v[i], v[j]) for i, j in np_pairs(len(v))])


def np_etf_distance(a):
    k = a.shape[0]
    target = (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)
    return np.linalg.norm(a / np.linalg.norm(a, "fro") - target, "fro")


def np_cdnv(means, variances):
    return np.mean(
        [
            (variances[i] + variances[j]) / (2 * np.sum((means[i] - means[j]) ** 2))
            for i, j in np_pairs(len(means))
        ]
    )


def np_self_duality(w, m):
    return np.sum((w / np.linalg.norm(w, "fro") - m / np.linalg.norm(m, "fro")) ** 2)


def rng_matrix(seed, k, d, offset=0.0):
    return np.random.default_rng(seed).standard_normal((k, d)) + offset


def random_orthogonal(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def etf_rows(k, d, seed, scale=1.0):
    """A rotated, scaled (K, d) simplex ETF, d >= K - 1: K unit vectors in the (K-1)-dim
    span orthogonal to the all-ones vector (an orthonormal basis of it, scaled), padded
    with zero columns and rotated."""
    centring = np.eye(k) - np.ones((k, k)) / k
    basis = np.linalg.qr(centring[:, : k - 1])[0]  # (K, K-1), spans 1^perp
    rows = np.zeros((k, d))
    rows[:, : k - 1] = np.sqrt(k / (k - 1)) * basis
    return scale * rows @ random_orthogonal(d, seed)


# ----------------------------------------------------------------- against NumPy


@pytest.mark.parametrize(("k", "d", "seed"), [(2, 3, 0), (5, 8, 1), (12, 6, 2), (30, 64, 3)])
def test_every_function_matches_numpy(k, d, seed):
    v = rng_matrix(seed, k, d)
    m = rng_matrix(seed + 100, k, d, offset=2.0)
    w = rng_matrix(seed + 200, k, d)
    var = np.abs(rng_matrix(seed + 300, k, 1)[:, 0]) + 0.1
    t = {name: torch.tensor(x, dtype=torch.float32) for name, x in dict(v=v, m=m, w=w).items()}
    # float32 input, float64 computation: compare with the float64 values of those inputs.
    v, m, w = (t[n].double().numpy() for n in ("v", "m", "w"))
    rel = 1e-10
    assert functional.equinorm(t["v"]) == pytest.approx(np_equinorm(v), rel=rel)
    assert functional.equiangularity(t["v"]) == pytest.approx(np_equiangularity(v), rel=rel)
    assert functional.cosine_std(t["v"]) == pytest.approx(np_cosine_std(v), rel=rel, abs=1e-14)
    gram = torch.tensor(v @ v.T)
    assert functional.etf_distance(gram) == pytest.approx(np_etf_distance(v @ v.T), rel=rel)
    assert functional.cdnv(t["m"], torch.tensor(var)) == pytest.approx(np_cdnv(m, var), rel=1e-9)
    assert functional.self_duality(t["w"], t["m"]) == pytest.approx(np_self_duality(w, m), rel=rel)
    assert functional.nc3_zhu(t["w"], t["m"]) == pytest.approx(np_etf_distance(w @ m.T), rel=rel)
    cos = functional.cosine_matrix(t["v"])
    assert cos.dtype == torch.float64 and cos.shape == (k, k)
    expected = np.array([[np_cos(a, b) for b in v] for a in v])
    np.testing.assert_allclose(cos.numpy(), expected, rtol=1e-12, atol=1e-14)
    pairs = functional.pairwise_cosines(t["v"])
    assert pairs.tolist() == pytest.approx([expected[i, j] for i, j in np_pairs(k)], rel=1e-12)


def test_the_report_uses_the_same_functions():
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(200, 7, generator=gen, dtype=torch.float64) + 5.0
    y = torch.arange(200) % 6
    h = h + 3.0 * torch.randn(6, 7, generator=gen, dtype=torch.float64)[y]
    w = torch.randn(6, 7, generator=gen, dtype=torch.float64)
    stats = CollapseStats(6, 7)
    stats.update(h, y)
    report = stats.compute(w)
    m = stats.centred_class_means()
    rel = 1e-10
    assert report.nc2_etf_distance_means == pytest.approx(functional.etf_distance(m @ m.T), rel=rel)
    assert report.nc2_equinorm_means == pytest.approx(functional.equinorm(m), rel=rel)
    assert report.nc2_equiangular_means == pytest.approx(functional.equiangularity(m), rel=rel)
    assert report.nc2_etf_distance_classifier == pytest.approx(
        functional.etf_distance(w @ w.T), rel=rel
    )
    assert report.nc3_self_duality == pytest.approx(functional.self_duality(w, m), rel=rel)
    assert report.nc3_zhu == pytest.approx(functional.nc3_zhu(w, m), rel=rel)
    variances = torch.stack(
        [(h[y == c] - h[y == c].mean(0)).square().sum(1).mean() for c in range(6)]
    )
    assert report.nc1_cdnv == pytest.approx(functional.cdnv(m, variances), rel=1e-9)


def test_frames_describe_uses_the_cosine_matrix_etf_distance():
    frame = torch.randn(7, 9, generator=torch.Generator().manual_seed(4))
    frame[2] *= 10.0  # unequal norms: the cosine matrix ignores them
    got = describe(frame).etf_distance
    cos = functional.cosine_matrix(frame)
    assert got == functional.etf_distance(cos)
    unit = frame.double().numpy() / np.linalg.norm(frame.double().numpy(), axis=1, keepdims=True)
    assert got == pytest.approx(np_etf_distance(unit @ unit.T), rel=1e-12)
    assert describe(simplex_etf(6, 5, seed=0, dtype=torch.float64)).etf_distance < 1e-12


def test_functional_is_exported_from_the_package():
    assert nc.metrics.functional.etf_distance is functional.etf_distance
    for name in functional.__all__:
        assert callable(getattr(functional, name)), name


# ----------------------------------------------------------------- invariants


@settings(max_examples=30)
@given(
    k=st.integers(2, 9),
    extra=st.integers(0, 4),
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
)
def test_property_any_rotated_scaled_simplex_etf_is_at_distance_zero(k, extra, seed, scale):
    v = torch.tensor(etf_rows(k, k - 1 + extra, seed, scale))
    assert functional.etf_distance(v @ v.T) < 1e-12
    assert functional.etf_distance(functional.cosine_matrix(v)) < 1e-12
    assert functional.equinorm(v) < 1e-12
    assert functional.equiangularity(v) < 1e-12
    assert functional.cosine_std(v) < 1e-12
    assert functional.nc3_zhu(3.0 * v, v) < 1e-12
    assert functional.self_duality(3.0 * v, v) < 1e-24


@settings(max_examples=30)
@given(
    k=st.integers(2, 8),
    d=st.integers(1, 10),
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
)
def test_property_rotation_and_scale_invariance(k, d, seed, scale):
    v = torch.tensor(rng_matrix(seed, k, d))
    q = torch.tensor(random_orthogonal(d, seed + 1))
    moved = scale * v @ q
    for fn in (functional.equinorm, functional.equiangularity, functional.cosine_std):
        assert fn(moved) == pytest.approx(fn(v), rel=1e-9, abs=1e-12), fn.__name__
    assert functional.etf_distance(moved @ moved.T) == pytest.approx(
        functional.etf_distance(v @ v.T), rel=1e-9, abs=1e-12
    )
    w = torch.tensor(rng_matrix(seed + 2, k, d))
    assert functional.self_duality(w @ q, moved) == pytest.approx(
        functional.self_duality(w, v), rel=1e-9, abs=1e-12
    )
    assert functional.nc3_zhu(w @ q, moved) == pytest.approx(
        functional.nc3_zhu(w, v), rel=1e-9, abs=1e-12
    )


@settings(max_examples=30)
@given(k=st.integers(2, 8), d=st.integers(1, 10), seed=st.integers(0, 2**16))
def test_property_cosines_ignore_row_scaling(k, d, seed):
    v = torch.tensor(rng_matrix(seed, k, d))
    row_scale = torch.tensor(np.exp(np.random.default_rng(seed).uniform(-5, 5, (k, 1))))
    scaled = v * row_scale
    assert functional.etf_distance(functional.cosine_matrix(scaled)) == pytest.approx(
        functional.etf_distance(functional.cosine_matrix(v)), rel=1e-9, abs=1e-12
    )
    assert functional.equiangularity(scaled) == pytest.approx(
        functional.equiangularity(v), rel=1e-9, abs=1e-12
    )


@settings(max_examples=30)
@given(
    k=st.integers(2, 8),
    d=st.integers(1, 10),
    seed=st.integers(0, 2**16),
    shift=st.floats(-1e3, 1e3),
    scale=st.floats(1e-2, 1e2),
)
def test_property_cdnv_translation_and_scale_invariance(k, d, seed, shift, scale):
    m = torch.tensor(rng_matrix(seed, k, d))
    var = torch.tensor(np.random.default_rng(seed).uniform(0.1, 2.0, k))
    base = functional.cdnv(m, var)
    assert functional.cdnv(scale * (m + shift), scale**2 * var) == pytest.approx(base, rel=1e-6)


def test_property_etf_distance_is_between_zero_and_two():
    gen = torch.Generator().manual_seed(5)
    for _ in range(20):
        a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
        assert 0.0 <= functional.etf_distance(a) <= 2.0 + 1e-12


# ----------------------------------------------------------------- undefined and errors


def test_undefined_values_are_nan():
    v = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    assert math.isnan(functional.equiangularity(v))
    assert math.isnan(functional.etf_distance(torch.zeros(3, 3)))
    assert functional.cdnv(torch.zeros(2, 3), torch.ones(2)) == math.inf


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: functional.equinorm(np.zeros((3, 2))), "must be a torch.Tensor"),
        (lambda: functional.equinorm(torch.zeros(3)), r"shape \(K, d\) with K >= 2"),
        (lambda: functional.equiangularity(torch.zeros(1, 4)), "K >= 2"),
        (lambda: functional.cosine_std(torch.zeros(3, 2, dtype=torch.bool)), "real numbers"),
        (lambda: functional.etf_distance(torch.zeros(3, 4)), "must be square"),
        (lambda: functional.self_duality(torch.ones(3, 4), torch.ones(3, 5)), "both be"),
        (lambda: functional.nc3_zhu(torch.ones(3, 4), torch.ones(2, 4)), "both be"),
        (lambda: functional.cdnv(torch.ones(3, 4), torch.ones(2)), r"variances must be a \(3,\)"),
    ],
)
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
