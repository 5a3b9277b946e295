"""Frames: geometry checked in float64 NumPy, independently of the library's own code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import neuralcollapse as nc
from neuralcollapse.frames import (
    FrameGeometry,
    coherence_bound,
    describe,
    simplex_etf,
    spread_frame,
    unreachable_classes,
)


def gram_cosines(frame: torch.Tensor) -> np.ndarray:
    """Pairwise cosines of the rows, float64, computed with NumPy."""
    w = frame.detach().cpu().numpy().astype(np.float64)
    unit = w / np.linalg.norm(w, axis=1, keepdims=True)
    return unit @ unit.T


def off_diagonal(matrix: np.ndarray) -> np.ndarray:
    return matrix[~np.eye(matrix.shape[0], dtype=bool)]


def random_rotation(dim: int, seed: int) -> torch.Tensor:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return torch.from_numpy(q * np.sign(np.diag(r)))


# --------------------------------------------------------------------------- simplex ETF

ETF_SIZES = [(k, d) for k in (2, 3, 10, 100, 1000) for d in (k - 1, k, 2 * k)]


@pytest.mark.parametrize(("num_classes", "dim"), ETF_SIZES)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_simplex_etf_geometry(num_classes, dim, dtype, tol):
    frame = simplex_etf(num_classes, dim, seed=3, dtype=dtype)
    assert frame.shape == (num_classes, dim)
    assert frame.dtype == dtype
    w = frame.numpy().astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, atol=tol, rtol=0)
    cosines = off_diagonal(gram_cosines(frame))
    np.testing.assert_allclose(cosines, -1.0 / (num_classes - 1), atol=tol, rtol=0)
    # Spans exactly the K-1 dims of a simplex and sums to zero.
    assert np.linalg.matrix_rank(w, tol=1e-4) == num_classes - 1
    np.testing.assert_allclose(w.sum(axis=0), 0.0, atol=max(tol, 1e-12) * num_classes)


def test_simplex_etf_same_seed_same_frame_and_different_seeds_differ():
    a = simplex_etf(10, 16, seed=7)
    b = simplex_etf(10, 16, seed=7)
    c = simplex_etf(10, 16, seed=8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_simplex_etf_generator_matches_seed_and_advances():
    by_seed = simplex_etf(5, 9, seed=11, dtype=torch.float64)
    gen = torch.Generator().manual_seed(11)
    first = simplex_etf(5, 9, generator=gen, dtype=torch.float64)
    second = simplex_etf(5, 9, generator=gen, dtype=torch.float64)
    assert torch.equal(by_seed, first)
    assert not torch.allclose(first, second)


def test_simplex_etf_never_touches_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    simplex_etf(10, 20, seed=1)
    simplex_etf(10, 20)  # fresh entropy, still private
    spread_frame(6, 3, seed=0, steps=5)
    assert torch.equal(torch.rand(5), expected)


def test_simplex_etf_without_seed_is_random():
    assert not torch.allclose(simplex_etf(4, 4), simplex_etf(4, 4))


def test_simplex_etf_rotation_is_not_degenerate():
    # Random rotation: the frame is not confined to the first K-1 coordinates.
    w = simplex_etf(3, 50, seed=0, dtype=torch.float64)
    assert (w[:, 2:].abs().sum() > 0.1).item()


@given(seed=st.integers(0, 2**31 - 1), k=st.integers(2, 12), extra=st.integers(0, 6))
@settings(max_examples=40, deadline=None)
def test_property_seeded_etf_is_reproducible_and_exact(seed, k, extra):
    a = simplex_etf(k, k - 1 + extra, seed=seed, dtype=torch.float64)
    assert torch.equal(a, simplex_etf(k, k - 1 + extra, seed=seed, dtype=torch.float64))
    gram = a @ a.T
    target = torch.full((k, k), -1.0 / (k - 1), dtype=torch.float64).fill_diagonal_(1.0)
    assert torch.allclose(gram, target, atol=1e-12, rtol=0)


def test_simplex_etf_below_k_minus_one_names_spread_frame():
    with pytest.raises(ValueError, match="no simplex ETF.*spread_frame"):
        simplex_etf(10, 8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1, "dim": 4}, "num_classes must be >= 2"),
        ({"num_classes": -3, "dim": 4}, "num_classes must be >= 2"),
        ({"num_classes": 2.5, "dim": 4}, "num_classes must be an integer"),
        ({"num_classes": True, "dim": 4}, "num_classes must be an integer"),
        ({"num_classes": 3, "dim": -2}, "dim must be >= 1"),
        ({"num_classes": 3, "dim": "8"}, "dim must be an integer"),
        ({"num_classes": 3, "dim": 4, "seed": 1, "generator": torch.Generator()}, "not both"),
        ({"num_classes": 3, "dim": 4, "seed": 1.5}, "seed must be an integer"),
        ({"num_classes": 3, "dim": 4, "dtype": torch.int64}, "floating-point"),
        ({"num_classes": 3, "dim": 4, "generator": 5}, "torch.Generator"),
    ],
)
def test_simplex_etf_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simplex_etf(**kwargs)


def test_simplex_etf_accepts_numpy_integers():
    assert simplex_etf(np.int64(4), np.int32(5), seed=0).shape == (4, 5)


# --------------------------------------------------------------------------- spread frame


@pytest.mark.parametrize(
    ("num_classes", "dim"), [(2, 2), (3, 2), (5, 4), (10, 9), (10, 20), (40, 39)]
)
def test_spread_frame_reaches_the_simplex_optimum_where_it_exists(num_classes, dim):
    frame = spread_frame(num_classes, dim, seed=0, steps=600)
    cosines = off_diagonal(gram_cosines(frame))
    np.testing.assert_allclose(np.linalg.norm(frame.numpy(), axis=1), 1.0, atol=1e-6)
    assert cosines.max() <= -1.0 / (num_classes - 1) + 1e-3


@pytest.mark.parametrize(("num_classes", "dim", "known_optimum"), [(6, 2, 0.5), (12, 6, 0.0)])
def test_spread_frame_near_known_optimum_beyond_simplex(num_classes, dim, known_optimum):
    # hexagon in the plane (cos 60 deg); 12 = 2d vectors fit as the cross-polytope (cos 0)
    frame = spread_frame(num_classes, dim, seed=1, steps=1500)
    worst = off_diagonal(gram_cosines(frame)).max()
    assert worst >= coherence_bound(num_classes, dim) - 1e-9
    assert worst <= known_optimum + 0.02


def test_spread_frame_is_seeded_and_leaves_no_autograd_state():
    a = spread_frame(20, 5, seed=4, steps=50)
    b = spread_frame(20, 5, seed=4, steps=50, dtype=torch.float64)
    assert not a.requires_grad
    assert torch.allclose(a.double(), b, atol=1e-6)
    assert not torch.equal(a, spread_frame(20, 5, seed=5, steps=50))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1, "dim": 4}, "num_classes must be >= 2"),
        ({"num_classes": 5, "dim": 1}, "dim must be >= 2"),
        ({"num_classes": 5, "dim": 3, "steps": 0}, "steps must be >= 1"),
        ({"num_classes": 5, "dim": 3, "steps": 2.0}, "steps must be an integer"),
    ],
)
def test_spread_frame_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        spread_frame(**kwargs)


# --------------------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    ("num_classes", "dim", "best_known"),
    [
        (5, 2, math.cos(2 * math.pi / 5)),  # regular pentagon
        (7, 2, math.cos(2 * math.pi / 7)),
        (12, 3, 1 / math.sqrt(5)),  # icosahedron
        (16, 5, 0.2),  # half-cube (Clebsch) code: the bound is attained
        (27, 6, 0.25),  # Schlafli code: attained
        (24, 4, 0.5),  # 24-cell
        (56, 7, 1 / 3),  # 28 equiangular lines, both signs
        (240, 8, 0.5),  # E8 roots
    ],
)
def test_coherence_bound_is_below_every_known_code(num_classes, dim, best_known):
    bound = coherence_bound(num_classes, dim)
    assert 0 < bound <= best_known + 1e-9


@pytest.mark.parametrize(("num_classes", "dim", "tight"), [(16, 5, 0.2), (27, 6, 0.25)])
def test_coherence_bound_is_tight_on_tight_designs(num_classes, dim, tight):
    assert coherence_bound(num_classes, dim) == pytest.approx(tight, abs=1e-7)


def test_coherence_bound_regimes():
    assert coherence_bound(10, 9) == pytest.approx(-1 / 9)
    assert coherence_bound(10, 200) == pytest.approx(-1 / 9)
    assert coherence_bound(11, 9) == 0.0  # Rankin: d + 2 vectors
    assert coherence_bound(18, 9) == 0.0  # cross-polytope
    assert coherence_bound(3, 1) == 1.0
    # Levenshtein's degree-2 bound (K - 2d)/(d(K - 2)) is implied.
    for k, d in [(100, 16), (1000, 64), (1000, 128), (50, 3)]:
        assert coherence_bound(k, d) >= (k - 2 * d) / (d * (k - 2)) - 1e-12


@given(k=st.integers(2, 400), d=st.integers(1, 64))
@settings(max_examples=60, deadline=None)
def test_property_bound_monotone_in_classes(k, d):
    assert coherence_bound(k, d) <= coherence_bound(k + 1, d) + 1e-9


# --------------------------------------------------------------------------- describe


def reference_geometry(frame: torch.Tensor) -> dict[str, float]:
    w = frame.detach().numpy().astype(np.float64)
    k = w.shape[0]
    cos = gram_cosines(frame)
    off = off_diagonal(cos)
    target = (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)
    return {
        "max_cosine": off.max(),
        "mean_cosine": off.mean(),
        "min_cosine": off.min(),
        "etf_distance": np.linalg.norm(cos / np.linalg.norm(cos) - target),
        "min_norm": np.linalg.norm(w, axis=1).min(),
        "max_norm": np.linalg.norm(w, axis=1).max(),
        "rank": np.linalg.matrix_rank(w),
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_describe_matches_numpy_on_a_random_frame(seed):
    frame = torch.from_numpy(np.random.default_rng(seed).standard_normal((7, 5)) * 3.0)
    geometry = describe(frame)
    expected = reference_geometry(frame)
    assert isinstance(geometry, FrameGeometry)
    assert (geometry.num_classes, geometry.dim, geometry.rank) == (7, 5, expected.pop("rank"))
    for name, value in expected.items():
        assert getattr(geometry, name) == pytest.approx(value, rel=1e-12, abs=1e-14), name
    assert geometry.coherence_bound == coherence_bound(7, 5)
    assert geometry.coherence_gap == pytest.approx(geometry.max_cosine - geometry.coherence_bound)


def test_describe_of_an_etf():
    geometry = describe(simplex_etf(10, 12, seed=0, dtype=torch.float64))
    assert geometry.rank == 9
    assert geometry.etf_distance < 1e-12
    assert geometry.max_cosine == pytest.approx(-1 / 9, abs=1e-12)
    assert geometry.coherence_gap == pytest.approx(0, abs=1e-12)


def test_describe_is_frozen_and_serialisable():
    import json

    geometry = describe(simplex_etf(4, 4, seed=0))
    with pytest.raises(AttributeError):
        geometry.rank = 2  # type: ignore[misc]
    data = json.loads(json.dumps(geometry.to_dict()))
    assert set(data) >= {
        "num_classes",
        "dim",
        "rank",
        "min_norm",
        "max_norm",
        "max_cosine",
        "mean_cosine",
        "min_cosine",
        "etf_distance",
        "coherence_bound",
        "coherence_gap",
    }


@given(seed=st.integers(0, 10_000), k=st.integers(2, 9), d=st.integers(2, 10))
@settings(max_examples=40, deadline=None)
def test_property_describe_is_rotation_and_scale_invariant(seed, k, d):
    rng = np.random.default_rng(seed)
    frame = torch.from_numpy(rng.standard_normal((k, d)))
    rotated = frame @ random_rotation(d, seed + 1)
    scaled = 2.5 * frame
    base = describe(frame)
    for other in (describe(rotated), describe(scaled)):
        assert other.rank == base.rank
        for name in ("max_cosine", "mean_cosine", "min_cosine", "etf_distance"):
            assert getattr(other, name) == pytest.approx(getattr(base, name), abs=1e-10)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (np.zeros((3, 3)), "torch.Tensor"),
        (torch.zeros(3), r"shape \(K, d\)"),
        (torch.zeros(1, 4), r"K >= 2"),
        (torch.ones(3, 3, dtype=torch.int64), "floating point"),
        (torch.tensor([[1.0, 0.0], [float("nan"), 1.0]]), "NaN or infinite"),
        (torch.tensor([[1.0, 0.0], [0.0, 0.0]]), r"rows \[1\] are zero"),
    ],
)
def test_describe_rejects_bad_frames(frame, match):
    with pytest.raises(ValueError, match=match):
        describe(frame)


def test_lazy_submodule_access():
    assert nc.frames.simplex_etf is simplex_etf
    with pytest.raises(AttributeError):
        _ = nc.not_a_module


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_describe_rank_uses_the_frames_own_precision(dtype):
    assert describe(simplex_etf(10, 64, seed=0, dtype=dtype)).rank == 9


# --------------------------------------------------------------------------- reachability


def _brute_force_reachable(frame: torch.Tensor, samples: int = 200_000) -> set[int]:
    """Classes predicted for some of many random non-negative features (a lower bound)."""
    generator = torch.Generator().manual_seed(0)
    h = torch.rand(samples, frame.shape[1], generator=generator, dtype=torch.float64) ** 4
    return set((h @ frame.double().T).argmax(1).unique().tolist())


def test_canonical_etf_is_an_etf_with_every_class_reachable():
    for k, d in ((10, 10), (5, 8), (6, 5)):
        frame = simplex_etf(k, d, rotate=False, dtype=torch.float64)
        geometry = describe(frame)
        assert geometry.etf_distance < 1e-12 and abs(geometry.max_norm - 1) < 1e-12
        if d >= k:
            assert unreachable_classes(frame) == []
            assert torch.equal(
                frame, simplex_etf(k, d, seed=123, rotate=False, dtype=torch.float64)
            )


def test_unreachable_classes_on_hand_built_frames():
    negative_row = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    assert unreachable_classes(negative_row) == [2]  # its region misses h >= 0
    assert unreachable_classes(negative_row, nonnegative=False) == []  # h = (-1, -1) wins
    inside = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.4, 0.4]])
    assert unreachable_classes(inside) == [2]  # needs a negative coordinate to win
    assert unreachable_classes(inside, nonnegative=False) == []
    hull = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])  # on the segment: only ties
    assert unreachable_classes(hull, nonnegative=False) == [2]


@pytest.mark.parametrize("seed", range(6))
def test_unreachable_classes_agrees_with_sampling(seed):
    frame = simplex_etf(6, 6, seed=seed, dtype=torch.float64)
    missing = set(unreachable_classes(frame))
    seen = _brute_force_reachable(frame)
    assert seen.isdisjoint(missing)  # no sampled feature ever predicts an unreachable class
    assert seen | missing == set(range(6))  # and the sampling finds every reachable one


def test_rotated_etfs_with_d_equal_k_often_leave_classes_unreachable():
    count = sum(bool(unreachable_classes(simplex_etf(10, 10, seed=s))) for s in range(100))
    assert 30 <= count <= 80  # 53 of seeds 0-99: why the d = K recipe uses the canonical ETF


# --------------------------------------------------------------------------- reachability in a run


@pytest.mark.parametrize("neck", ["none", "l2"])
def test_a_rotated_d_equal_k_frame_behind_relu_is_refused_with_l2_too(neck, caplog):
    from neuralcollapse.errors import ConfigError
    from neuralcollapse.train.build import run_frame
    from neuralcollapse.train.config import load_config

    overrides = [
        "model.name=mlp",
        "model.options={hidden: [32], feature_dim: 10}",
        f"head.neck={neck}",
        "head.rotation=random",
        "train.seed=2",
    ]
    assert unreachable_classes(simplex_etf(10, 10, seed=2))  # seed 2 leaves classes out
    with pytest.raises(ConfigError, match=rf"head.neck={neck} .*unreachable.*head.rotation=none"):
        run_frame(load_config(None, overrides), 10, 10, None)
    allowed = load_config(None, [*overrides, "head.allow_unreachable=true"])
    with caplog.at_level("WARNING", logger="neuralcollapse.train.build"):
        frame = run_frame(allowed, 10, 10, None)
    assert unreachable_classes(frame) and "head.allow_unreachable=true" in caplog.text
    # signed necks (bn, bn_l2, mlp) and a projection (head.dim != feature_dim) can reach all
    for other in (["head.neck=bn_l2"], ["head.neck=bn"], [f"head.neck={neck}", "head.dim=12"]):
        run_frame(load_config(None, [*overrides, *other]), 10, 10, None)
    # auto rotation picks the canonical ETF behind l2 as behind none: every class reachable
    auto = load_config(None, [*overrides[:3], "train.seed=2"])
    assert unreachable_classes(run_frame(auto, 10, 10, None)) == []
