"""Fixed class frames: the classifier rows a fixed-frame head never learns.

A frame is a (K, d) tensor ``W`` whose row ``W[k]`` is the class vector of class ``k``;
logits are ``h @ W.T``. Three constructions:

* :func:`simplex_etf` -- the simplex equiangular tight frame: unit rows with every pairwise
  cosine equal to ``-1/(K-1)``, the most spread configuration there is. Exists iff
  ``d >= K - 1``.
* :func:`spread_frame` -- for any ``K`` and ``d``: unit rows optimised to make the largest
  pairwise cosine as small as possible (the answer when ``K > d + 1`` rules out an ETF).
* :func:`hierarchy_aware_frame` -- the HAFrame of [L23]: unit rows whose cosines follow a
  class tree (siblings closer than cousins); :func:`hierarchy_similarity` gives its target
  cosine matrix and the offset ``s`` it chose.
* :func:`build_frame` -- the one factory that builds any of them by name (used by the
  trainer, the UFM simulator and the ``frame`` command), with :func:`target_similarity`
  the cosine matrix a frame is meant to have. The names are a registry
  (``neuralcollapse.registry.FRAMES``): each frame is one function decorated with
  ``register_frame`` taking a :class:`FrameRequest`, so a frame of your own is usable by
  name (``head.kind``) without changing this module.
* :func:`describe` -- the geometry of any frame (cosines, norms, rank, distance to an ETF,
  and the best max cosine achievable for its ``K`` and ``d``).

Frames are built in float64 and cast to the requested dtype at the end. Randomness comes
only from the ``seed`` or ``generator`` argument; the global RNG is never touched.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from neuralcollapse._internal.checks import check_int
from neuralcollapse._internal.geometry import ETF_MIN_DIM_RULE, etf_min_dim
from neuralcollapse._internal.names import FRAME_KINDS
from neuralcollapse.hierarchy import DEFAULT_CONVENTION, check_distance_matrix, distance_matrix
from neuralcollapse.registry import FRAMES, register_frame

if TYPE_CHECKING:
    from neuralcollapse.hierarchy import ClassDistances, Hierarchy

    TreeLike = Hierarchy | ClassDistances | torch.Tensor

__all__ = [
    "FRAME_KINDS",
    "FrameGeometry",
    "FrameRequest",
    "HierarchySimilarity",
    "build_frame",
    "coherence_bound",
    "describe",
    "hierarchy_aware_frame",
    "hierarchy_similarity",
    "simplex_etf",
    "spread_frame",
    "target_similarity",
    "unreachable_classes",
]


# --------------------------------------------------------------------------- validation


def _check_int(name: str, value: object, minimum: int) -> int:
    value = check_int(name, value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_float_dtype(dtype: torch.dtype) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


def _make_generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    """One private generator from ``seed`` or ``generator``; fresh OS entropy if neither."""
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    private = torch.Generator(device="cpu")
    if seed is None:
        private.seed()  # non-deterministic, and leaves the global RNG alone
    else:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        private.manual_seed(int(seed))
    return private


# --------------------------------------------------------------------------- simplex ETF


def _centred_orthonormal_basis(num_classes: int) -> torch.Tensor:
    """(K, K-1) float64 matrix with orthonormal columns, all orthogonal to the ones vector.

    Closed form (Helmert's contrasts): column j is (1, ..., 1, -(j+1), 0, ..., 0) with j+1
    ones, normalised. Its rows are the K centred coordinate vectors written in K-1 dims,
    which is why the ETF fits in d = K-1.
    """
    rows = torch.arange(num_classes, dtype=torch.float64).unsqueeze(1)
    n = torch.arange(1, num_classes, dtype=torch.float64).unsqueeze(0)
    norm = torch.sqrt(n * (n + 1))
    basis = torch.where(rows < n, 1.0 / norm, torch.zeros(()))
    return torch.where(rows == n, -n / norm, basis)


def _random_orthonormal_columns(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """(rows, cols) float64 matrix with Haar-random orthonormal columns (rows >= cols)."""
    gaussian = torch.randn(
        rows, cols, generator=generator, dtype=torch.float64, device=generator.device
    )
    q, r = torch.linalg.qr(gaussian)
    # Fixing the signs of R's diagonal makes the distribution of Q exactly uniform (Haar).
    signs = torch.sign(torch.diagonal(r))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return q * signs


def simplex_etf(
    num_classes: int,
    dim: int,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    rotate: bool = True,
) -> torch.Tensor:
    """A randomly rotated (or, with ``rotate=False``, the canonical) simplex ETF.

    Args:
        num_classes: K >= 2.
        dim: feature dimension d >= K - 1 (d = K - 1 is the smallest that holds one).
        seed: draws the rotation; the same seed gives the same frame. ``None`` together with
            ``generator=None`` draws fresh entropy (not reproducible).
        generator: a ``torch.Generator`` to draw the rotation from instead of ``seed``.
        dtype: floating dtype of the result (the frame is built in float64).
        device: device of the result (default: the generator's device, else CPU).
        rotate: ``False`` gives the canonical ETF instead of a random rotation of it
            (docs/theory.md §1): for d >= K, row k is ``sqrt(K/(K-1)) (e_k - 1/K)`` padded
            with zeros, [Z21]'s fixed classifier, whose every class region meets the
            non-negative orthant (each class wins on its own coordinate), so features after
            a ReLU can reach every class; for d = K - 1 the rows are written in the
            Helmert basis of the centred subspace. ``seed``/``generator`` are then unused.

    Returns:
        (K, d) tensor ``W`` with unit rows and ``W[i] . W[j] = -1/(K-1)`` for i != j.

    Raises:
        ValueError: K < 2, d < K - 1 (no simplex ETF exists: use :func:`spread_frame`),
            non-integer sizes, or both ``seed`` and ``generator``.
    """
    k = _check_int("num_classes", num_classes, 2)
    d = _check_int("dim", dim, 1)
    if d < etf_min_dim(k):
        raise ValueError(
            f"no simplex ETF of num_classes={k} exists in dim={d}: it needs "
            f"dim >= num_classes - 1 = {k - 1}. Raise dim, or use "
            f"nc.frames.spread_frame({k}, {d}) for the most spread frame that fits."
        )
    dtype = _check_float_dtype(dtype)
    if not rotate:
        if d >= k:
            centred = torch.eye(k, dtype=torch.float64) - 1.0 / k
            frame = math.sqrt(k / (k - 1)) * torch.nn.functional.pad(centred, (0, d - k))
        else:
            frame = math.sqrt(k / (k - 1)) * _centred_orthonormal_basis(k)
        return frame.to(device=device if device is not None else "cpu", dtype=dtype)
    rng = _make_generator(seed, generator)
    rotation = _random_orthonormal_columns(d, k - 1, rng)  # (d, K-1)
    basis = _centred_orthonormal_basis(k).to(rotation.device)  # (K, K-1)
    frame = math.sqrt(k / (k - 1)) * basis @ rotation.T
    return frame.to(device=device if device is not None else frame.device, dtype=dtype)


# --------------------------------------------------------------------------- bounds


def _levenshtein_size_bound(dim: int, s: float) -> float:
    """Upper bound on the size of a code in S^{dim-1} with all inner products <= s (s >= 0).

    Delsarte's linear-programming method with two explicit polynomials, minimised over a
    free root: f(t) = (t + 1)(t - s) (Levenshtein's degree-2 bound 2n(1-s)/(1-ns)) and
    f(t) = (t - s)(t - a)^2, both <= 0 on [-1, s]. With Gegenbauer coefficients f_i >= 0
    and f_0 > 0, any such code has at most f(1)/f_0 points.
    """
    n = float(dim)
    best = 2 * n * (1 - s) / (1 - n * s) if n * s < 1 else math.inf
    # Degree 3: expand t^3 and t^2 in the normalised Gegenbauer basis of dimension n:
    # t^2 = ((n-1) G2 + 1)/n,  t^3 = ((n-1) G3 + 3 G1)/(n+2).
    grid = torch.linspace(-1.0, -s / 2, 4001, dtype=torch.float64)
    a = grid
    f1 = a * a + 2 * a * s + 3.0 / (n + 2)
    f0 = -(2 * a + s) / n - s * a * a
    value = (1 - s) * (1 - a) ** 2 / f0
    feasible = (f1 >= 0) & (f0 > 0)
    if bool(feasible.any()):
        best = min(best, float(value[feasible].min()))
    return best


def coherence_bound(num_classes: int, dim: int) -> float:
    """Lower bound on the largest pairwise cosine of ``num_classes`` unit vectors in R^dim.

    * K <= d + 1: -1/(K-1), attained by the simplex ETF (the bound is exact).
    * d + 1 < K <= 2d: 0 (Rankin: at most d + 1 vectors can have all cosines negative;
      the bound is attained by part of the cross-polytope +-e_i).
    * K > 2d: the smallest s >= 0 that Levenshtein's linear-programming bounds (degree 2
      and 3) allow for K points; a valid bound, not always attained.

    The quantity bounded is the *signed* max cosine that :func:`spread_frame` minimises.
    (Welch's bound is about the absolute coherence max |cos| and does not apply to it:
    2d vectors +-e_i have max cosine 0, below Welch's 1/sqrt(2d-1).)
    """
    k = _check_int("num_classes", num_classes, 2)
    d = _check_int("dim", dim, 1)
    if k <= d + 1:
        return -1.0 / (k - 1)
    if k <= 2 * d:
        return 0.0
    if d == 1:
        return 1.0  # three or more points on {-1, +1} repeat one of them
    # The size bound grows with s; bisect for the first s at which K points become possible.
    lo, hi = 0.0, 1.0 - 1e-12
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _levenshtein_size_bound(d, mid) < k:
            lo = mid
        else:
            hi = mid
    return lo


# --------------------------------------------------------------------------- spread frame


def _smooth_max_cosine(vectors: torch.Tensor, sharpness: float) -> tuple[torch.Tensor, float]:
    """Log-sum-exp smooth maximum of the off-diagonal cosines, and the true maximum."""
    unit = vectors / vectors.norm(dim=1, keepdim=True)
    cosines = unit @ unit.T
    k = cosines.shape[0]
    off_diagonal = cosines.masked_fill(
        torch.eye(k, dtype=torch.bool, device=cosines.device), -math.inf
    )
    smooth = torch.logsumexp(sharpness * off_diagonal.flatten(), dim=0) / sharpness
    return smooth, float(off_diagonal.detach().max())


def spread_frame(
    num_classes: int,
    dim: int,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    steps: int = 1000,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Unit class vectors whose largest pairwise cosine is made as small as we can.

    Minimises a log-sum-exp smooth maximum of the pairwise cosines with Adam (learning
    rate 0.02 decayed geometrically to 1e-4), sharpening the smooth maximum geometrically
    from 10 to 10^4 so that late steps act on the closest pairs only, re-projecting the
    rows onto the sphere after every step, and keeping the iterate with the smallest true
    max cosine. Works for any K >= 2, d >= 2; compare its max cosine with
    :func:`coherence_bound` (``describe(frame)`` reports both). Where d >= K - 1 it gets
    within 1e-6 of the optimum -1/(K-1) in our tests (and there :func:`simplex_etf` gives
    the optimum exactly); benchmarks/RESULTS.md records the gap to the bound for K > d + 1.

    Args:
        num_classes: K >= 2.
        dim: d >= 2.
        seed / generator: the random start (same seed, same device -> same frame).
        steps: optimisation steps (each costs one K x K Gram and its gradient: about
            15 ms at K=1000, d=128 on 2 CPU cores).
        device: where to optimise (a GPU makes large K fast); the result stays there.
        dtype: dtype of the result (optimisation runs in float32, the final rows are
            normalised in float64).

    Returns:
        (K, d) tensor with unit rows.
    """
    k = _check_int("num_classes", num_classes, 2)
    d = _check_int("dim", dim, 2)
    n_steps = _check_int("steps", steps, 1)
    dtype = _check_float_dtype(dtype)
    rng = _make_generator(seed, generator)
    start = torch.randn(k, d, generator=rng, dtype=torch.float32, device=rng.device)
    target = torch.device(device) if device is not None else start.device
    vectors = start.to(target).requires_grad_(True)

    optimizer = torch.optim.Adam([vectors], lr=0.02)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.005 ** (step / max(n_steps - 1, 1))
    )
    best_vectors, best_max = vectors.detach().clone(), math.inf
    for step in range(n_steps):
        sharpness = 10.0 * 1000.0 ** (step / max(n_steps - 1, 1))
        smooth, current_max = _smooth_max_cosine(vectors, sharpness)
        if current_max < best_max:
            best_vectors, best_max = vectors.detach().clone(), current_max
        optimizer.zero_grad(set_to_none=True)
        smooth.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():  # stay on the sphere: keeps Adam's step size meaningful
            vectors /= vectors.norm(dim=1, keepdim=True)
    _, final_max = _smooth_max_cosine(vectors.detach(), 1.0)
    if final_max < best_max:
        best_vectors = vectors.detach()
    frame = best_vectors.to(torch.float64)
    frame = frame / frame.norm(dim=1, keepdim=True)
    return frame.to(dtype)


# --------------------------------------------------------------------------- HAFrame


@dataclass(frozen=True)
class HierarchySimilarity:
    """The target cosine matrix of a hierarchy-aware frame.

    ``matrix`` = S(s) = (1 - s) exp(-gamma D / max D) + s, (K, K) float64, with ``s`` the
    most negative offset (>= -1) for which S(s) is positive semidefinite, so that a frame
    with W W^T = S exists and the classes are spread as far as the tree allows.
    """

    matrix: torch.Tensor
    s: float
    gamma: float
    rank: int

    def by_lca_height(self, lca_heights: torch.Tensor) -> dict[int, float]:
        """Target cosine for each LCA height present (0 -> 1.0 on the diagonal)."""
        heights = lca_heights.to(self.matrix.device)
        return {int(h): float(self.matrix[heights == h][0]) for h in torch.unique(heights)}


def _check_lca(lca: torch.Tensor) -> torch.Tensor:
    """Checked (K, K) float64 LCA distances (the one check: hierarchy.check_distance_matrix)."""
    return check_distance_matrix(lca, min_classes=2, separated=True).to(torch.float64)


def _most_negative_psd_offset(base: torch.Tensor) -> float:
    """Smallest s in [-1, 0] with (1 - s) A + s J positive semidefinite, A = ``base``.

    For positive definite A (always so for a tree: exp(-t * ultrametric) is positive
    definite) the answer is exact and closed-form: (1 - s) A - |s| 1 1^T is PSD iff
    |s| * 1^T A^-1 1 <= 1 - s, i.e. s = -1 / (1^T A^-1 1 - 1). Otherwise the smallest
    eigenvalue, concave in s, is bisected to 1e-12.
    """
    k = base.shape[0]
    ones = torch.ones(k, dtype=torch.float64, device=base.device)
    factor, info = torch.linalg.cholesky_ex(base)
    if int(info) == 0:
        q = float(ones @ torch.cholesky_solve(ones.unsqueeze(1), factor).squeeze(1))
        return max(-1.0, -1.0 / (q - 1.0)) if q > 1.0 else -1.0
    jitter = 1e-12 * k
    gap = torch.ones(k, k, dtype=torch.float64, device=base.device) - base

    def smallest(s: float) -> float:
        return float(torch.linalg.eigvalsh(base + s * gap)[0])

    if smallest(0.0) < -jitter:
        raise ValueError(
            "exp(-gamma D / max D) is not positive semidefinite for these LCA heights, so no "
            "offset s in [-1, 0] gives a valid frame: check that D comes from a tree"
        )
    if smallest(-1.0) >= -jitter:
        return -1.0
    low, high = -1.0, 0.0
    while high - low > 1e-12:
        mid = 0.5 * (low + high)
        low, high = (low, mid) if smallest(mid) >= -jitter else (mid, high)
    return high


def _lca_matrix(hierarchy_or_lca: TreeLike, convention: str = DEFAULT_CONVENTION) -> torch.Tensor:
    """Checked (K, K) float64 D of a tree (in ``convention``), distances or a tensor."""
    return _check_lca(distance_matrix(hierarchy_or_lca, convention=convention))


def _similarity_and_spectrum(
    hierarchy_or_lca: TreeLike, gamma: float, convention: str
) -> tuple[HierarchySimilarity, torch.Tensor, torch.Tensor]:
    """S, s and rank, plus S's eigendecomposition (ascending), computed once."""
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not 0 < gamma < math.inf:
        raise ValueError(f"gamma must be a positive number, got {gamma!r}")
    d = _lca_matrix(hierarchy_or_lca, convention)
    base = torch.exp(-float(gamma) * d / d.max())
    s = _most_negative_psd_offset(base)
    matrix = (1 - s) * base + s
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    rank = int((eigenvalues > 1e-10 * eigenvalues[-1]).sum())
    target = HierarchySimilarity(matrix=matrix, s=s, gamma=float(gamma), rank=rank)
    return target, eigenvalues, eigenvectors


def hierarchy_similarity(
    hierarchy_or_lca: TreeLike, *, gamma: float, convention: str = DEFAULT_CONVENTION
) -> HierarchySimilarity:
    """Target cosines S of the hierarchy-aware frame of [L23] (docs/theory.md §6).

    Args:
        hierarchy_or_lca: a :class:`~neuralcollapse.hierarchy.Hierarchy`, a
            :class:`~neuralcollapse.hierarchy.ClassDistances` or a (K, K) tensor D of
            lowest-common-ancestor distances (0 on the diagonal).
        gamma: > 0; larger spreads cousins further apart relative to siblings.
        convention: the LCA distance of a Hierarchy, ``"level"`` ([L23]'s distance files)
            or ``"height"`` (docs/theory.md §7); ignored for a given matrix.

    Returns:
        :class:`HierarchySimilarity` with S (float64), the chosen offset ``s`` and rank(S).
    """
    return _similarity_and_spectrum(hierarchy_or_lca, gamma, convention)[0]


def hierarchy_aware_frame(
    hierarchy_or_lca: TreeLike,
    *,
    gamma: float,
    dim: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    convention: str = DEFAULT_CONVENTION,
) -> torch.Tensor:
    """The hierarchy-aware frame (HAFrame) of [L23]: W (K, dim) with W W^T = S.

    S comes from :func:`hierarchy_similarity` (call it to see ``s`` and S). W = V
    Lambda^{1/2} Q^T from the eigendecomposition S = V Lambda V^T, with Q a random
    orthonormal (dim, r) rotation drawn from ``seed``/``generator``.

    Args:
        hierarchy_or_lca: a Hierarchy, a ClassDistances or a (K, K) LCA-distance tensor.
        gamma: > 0, see :func:`hierarchy_similarity`.
        dim: feature dimension; ``None`` means rank(S) (then W W^T = S to ~1e-12). Below the
            rank, the best rank-``dim`` approximation of S is used and its rows are
            renormalised to unit length (the cosines then only approximate S;
            ``describe(frame, target)`` reports by how much).
        seed / generator: the random rotation.
        dtype: dtype of the result (built in float64).
        convention: the LCA distance of a Hierarchy (see :func:`hierarchy_similarity`).
    """
    target, eigenvalues, eigenvectors = _similarity_and_spectrum(
        hierarchy_or_lca, gamma, convention
    )
    d = target.rank if dim is None else _check_int("dim", dim, 1)
    rng = _make_generator(seed, generator)
    keep = min(d, target.rank)
    values = eigenvalues[-keep:].clamp_min(0)
    factor = eigenvectors[:, -keep:] * values.sqrt()  # (K, keep)
    rotation = _random_orthonormal_columns(d, keep, rng).to(factor.device)  # (d, keep)
    frame = factor @ rotation.T
    if keep < target.rank:
        frame = frame / frame.norm(dim=1, keepdim=True)
    return frame.to(dtype)


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class FrameGeometry:
    """The geometry of a (K, d) frame; cosines are between unit-normalised rows.

    ``etf_distance`` is || G/||G||_F - (I - 11^T/K)/sqrt(K-1) ||_F with G the Gram matrix of
    the normalised rows (0 for a simplex ETF, at most 2). ``coherence_bound`` is the best
    max cosine any K unit vectors in R^d can have (see :func:`coherence_bound`).
    ``target_error`` (only when ``describe`` was given a target cosine matrix S, e.g. a
    HAFrame's) is max_ij |G_ij - S_ij|: how far a reduced-dimension frame is from S.
    """

    num_classes: int
    dim: int
    rank: int
    min_norm: float
    max_norm: float
    max_cosine: float
    mean_cosine: float
    min_cosine: float
    etf_distance: float
    coherence_bound: float
    target_error: float | None = None

    @property
    def coherence_gap(self) -> float:
        """How far ``max_cosine`` is above the best possible value (0 = optimal)."""
        return self.max_cosine - self.coherence_bound

    def to_dict(self) -> dict[str, float | int]:
        """Plain JSON-serialisable dict of every field plus ``coherence_gap``."""
        return {**asdict(self), "coherence_gap": self.coherence_gap}


def _check_frame(frame: object) -> torch.Tensor:
    if not isinstance(frame, torch.Tensor):
        raise ValueError(
            f"frame must be a torch.Tensor of shape (K, d), got {type(frame).__name__}"
        )
    if frame.ndim != 2 or frame.shape[0] < 2 or frame.shape[1] < 1:
        raise ValueError(
            f"frame must have shape (K, d) with K >= 2 classes as rows, got {tuple(frame.shape)}"
        )
    if not frame.is_floating_point():
        raise ValueError(f"frame must be floating point, got dtype {frame.dtype}")
    if not bool(torch.isfinite(frame).all()):
        raise ValueError("frame contains NaN or infinite values")
    return frame


def describe(frame: torch.Tensor, target: torch.Tensor | None = None) -> FrameGeometry:
    """Geometry numbers of a (K, d) frame, computed in float64.

    ``target``: optional (K, K) cosine matrix the frame should reproduce (a
    :class:`HierarchySimilarity` or its ``matrix``); fills ``target_error``.

    ``rank`` counts singular values above ``eps * max(K, d) * largest``, with ``eps`` the
    machine epsilon of the frame's own dtype.

    Raises:
        ValueError: not a 2-D floating tensor with K >= 2 rows, non-finite entries, or a
            zero row (its cosines are undefined).
    """
    # Imported on use, so that importing frames does not load the metrics package.
    from neuralcollapse.metrics.functional import etf_distance

    frame = _check_frame(frame)
    w = frame.detach().to(torch.float64)
    k, d = w.shape
    # Rank at the precision the frame was stored in: a float32 ETF has a ~1e-7 singular
    # value where the exact one is 0, which a float64 tolerance would count.
    rank_rtol = torch.finfo(frame.dtype).eps * max(k, d)
    norms = w.norm(dim=1)
    zero_rows = torch.nonzero(norms == 0).flatten().tolist()
    if zero_rows:
        raise ValueError(f"frame rows {zero_rows[:10]} are zero: cosines are undefined there")
    unit = w / norms.unsqueeze(1)
    gram = unit @ unit.T
    off = gram[~torch.eye(k, dtype=torch.bool, device=gram.device)]
    return FrameGeometry(
        num_classes=k,
        dim=d,
        rank=int(torch.linalg.matrix_rank(w, rtol=rank_rtol)),
        min_norm=float(norms.min()),
        max_norm=float(norms.max()),
        max_cosine=float(off.max()),
        mean_cosine=float(off.mean()),
        min_cosine=float(off.min()),
        # The distance of the cosine matrix: only directions count for a frame.
        etf_distance=etf_distance(gram),
        coherence_bound=coherence_bound(k, d),
        target_error=None if target is None else _target_error(gram, target),
    )


def _target_error(gram: torch.Tensor, target: object) -> float:
    matrix = getattr(target, "matrix", target)
    if not isinstance(matrix, torch.Tensor) or tuple(matrix.shape) != tuple(gram.shape):
        shape = tuple(matrix.shape) if isinstance(matrix, torch.Tensor) else type(matrix).__name__
        raise ValueError(f"target must be a {tuple(gram.shape)} cosine matrix, got {shape}")
    return float((gram - matrix.to(gram.device, torch.float64)).abs().max())


# --------------------------------------------------------------------------- factory


@dataclass(frozen=True)
class FrameRequest:
    """What a registered frame builder is given (:func:`build_frame`'s arguments).

    A frame is added by one decorated function returning the (K, d) frame::

        @register_frame("my_frame", options=MyOptions)
        def build_my_frame(request: FrameRequest) -> torch.Tensor: ...

    Metadata the callers read: ``hierarchy=True`` (the frame is built from the class tree;
    ``dim`` may be None, the frame then picks it), ``canonical=True`` (``rotate=False``
    gives a canonical, unrotated frame), ``min_dim`` (K -> the smallest d it exists in)
    with ``min_dim_rule`` (how that reads in messages).

    Attributes:
        num_classes: K (None for a hierarchy frame: the tree's leaf count).
        dim: d (None for a hierarchy frame: its own choice).
        seed: draws the random rotation or start.
        hierarchy: the class tree (Hierarchy, ClassDistances or (K, K) LCA distances).
        gamma: the HAFrame's spread parameter.
        steps: optimisation steps of an optimised frame.
        dtype: dtype of the result.
        rotate: False for the canonical form (``canonical`` frames only).
        convention: the LCA distance of a Hierarchy, "level" or "height".
        options: the entry's own options dataclass (``head.options``), or None.
    """

    num_classes: int | None
    dim: int | None
    seed: int | None = None
    hierarchy: TreeLike | None = None
    gamma: float | None = None
    steps: int = 1000
    dtype: torch.dtype = torch.float32
    rotate: bool = True
    convention: str = DEFAULT_CONVENTION
    options: Any = None

    def sizes(self, kind: str) -> tuple[int, int]:
        """(K, d), both given.

        Raises:
            ValueError: either is None.
        """
        if self.num_classes is None or self.dim is None:
            raise ValueError(f"a {kind!r} frame needs num_classes and dim")
        return self.num_classes, self.dim


@register_frame("etf", canonical=True, min_dim=etf_min_dim, min_dim_rule=ETF_MIN_DIM_RULE)
def build_etf(request: FrameRequest) -> torch.Tensor:
    """Simplex ETF (:func:`simplex_etf`), randomly rotated or canonical."""
    k, d = request.sizes("etf")
    return simplex_etf(k, d, seed=request.seed, dtype=request.dtype, rotate=request.rotate)


@register_frame("spread")
def build_spread(request: FrameRequest) -> torch.Tensor:
    """Spread frame (:func:`spread_frame`): any K and d."""
    k, d = request.sizes("spread")
    return spread_frame(k, d, seed=request.seed, steps=request.steps, dtype=request.dtype)


@register_frame("haframe", hierarchy=True)
def build_haframe(request: FrameRequest) -> torch.Tensor:
    """[L23]'s hierarchy-aware frame (:func:`hierarchy_aware_frame`)."""
    if request.hierarchy is None or request.gamma is None:
        raise ValueError("a 'haframe' frame needs hierarchy= (the class tree) and gamma=")
    lca = _lca_matrix(request.hierarchy, request.convention)
    if request.num_classes is not None and request.num_classes != lca.shape[0]:
        raise ValueError(
            f"the hierarchy has {lca.shape[0]} leaf classes but num_classes={request.num_classes}"
        )
    return hierarchy_aware_frame(
        lca, gamma=request.gamma, dim=request.dim, seed=request.seed, dtype=request.dtype
    )


def build_frame(
    kind: str,
    num_classes: int | None,
    dim: int | None,
    *,
    seed: int | None = None,
    hierarchy: TreeLike | None = None,
    gamma: float | None = None,
    steps: int = 1000,
    dtype: torch.dtype = torch.float32,
    rotate: bool = True,
    convention: str = DEFAULT_CONVENTION,
    options: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """The (K, d) fixed frame registered as ``kind`` (``"etf"``, ``"spread"``,
    ``"haframe"`` or one of your own: :func:`neuralcollapse.registry.register_frame`).

    Args:
        kind: a registered frame name.
        num_classes: K (for ``"haframe"``: None, or the tree's leaf count, checked).
        dim: d (for ``"haframe"``: None means the rank of the target similarity).
        seed: draws the random rotation (and the spread frame's start).
        hierarchy: the class tree (a Hierarchy, ClassDistances or (K, K) LCA distances);
            hierarchy frames (``"haframe"``) only.
        gamma: the HAFrame's spread parameter (> 0); ``"haframe"`` only.
        steps: optimisation steps of the spread frame.
        dtype: dtype of the result.
        rotate: ``False`` gives the canonical (unrotated) frame, for frames that have one
            (``"etf"``: see :func:`simplex_etf`).
        convention: the LCA distance of a Hierarchy, ``"level"`` or ``"height"``
            (docs/theory.md §7); ``"haframe"`` only.
        options: the entry's own options (``head.options``), checked against its options
            dataclass.

    Raises:
        ValueError: an unknown kind (a ConfigError listing the registered ones), an ETF
            with d < K - 1 (naming :func:`spread_frame`), a HAFrame without a tree or
            gamma, a tree whose leaf count is not K, a tree given to a frame that takes
            none, ``rotate=False`` for a frame without a canonical form.
    """
    entry = FRAMES.get(kind)
    if hierarchy is not None and not entry.meta.get("hierarchy", False):
        raise ValueError(f"a {kind!r} frame takes no hierarchy; use kind='haframe'")
    if not rotate and not entry.meta.get("canonical", False):
        raise ValueError(f"rotate=False is defined for the 'etf' frame only, not {kind!r}")
    request = FrameRequest(
        num_classes,
        dim,
        seed=seed,
        hierarchy=hierarchy,
        gamma=gamma,
        steps=steps,
        dtype=dtype,
        rotate=rotate,
        convention=convention,
        options=entry.parse_options(options, "head.options"),
    )
    return entry.build(request)


def target_similarity(
    frame: torch.Tensor,
    *,
    hierarchy: TreeLike | None = None,
    gamma: float | None = None,
    convention: str = DEFAULT_CONVENTION,
) -> torch.Tensor:
    """(K, K) float64 cosine matrix ``frame`` is meant to have: the HAFrame's S when a
    ``hierarchy`` and ``gamma`` are given (its LCA distances in ``convention``), otherwise
    the frame's own cosines (what the cosine frame loss pulls features onto)."""
    if hierarchy is not None:
        if gamma is None:
            raise ValueError("target_similarity with a hierarchy needs gamma=")
        target = hierarchy_similarity(hierarchy, gamma=gamma, convention=convention)
        return target.matrix.to(torch.float64)
    w = _check_frame(frame).detach().to(torch.float64)
    unit = w / w.norm(dim=1, keepdim=True)
    return unit @ unit.T


# --------------------------------------------------------------------------- reachability


def _game_value(payoff: torch.Tensor) -> float:
    """max over x in the probability simplex of min_j (payoff @ x)_j, exactly (float64).

    With B = payoff + c > 0 (c shifts every entry positive), the value of B is 1 / the
    optimum of the LP  max 1^T y  s.t.  B^T y <= 1, y >= 0 , whose slack basis is feasible,
    so one phase of the simplex method with Bland's rule (no cycling) solves it.
    """
    a = payoff.detach().to(torch.float64).cpu()
    shift = 1.0 - float(a.min())  # every entry of B is then >= 1
    b = a + shift  # (m, n): m constraints (rows j), n coordinates
    m, n = b.shape
    # Tableau rows: the n constraints B^T y + s = 1; columns: y (m), s (n), right-hand side.
    tableau = torch.cat(
        [b.T, torch.eye(n, dtype=torch.float64), torch.ones(n, 1, dtype=torch.float64)], 1
    )
    objective = torch.cat(
        [-torch.ones(m, dtype=torch.float64), torch.zeros(n + 1, dtype=torch.float64)]
    )
    basis = list(range(m, m + n))
    tol = 1e-12
    for _ in range(50 * (m + n)):
        entering = next((j for j in range(m + n) if objective[j] < -tol), None)
        if entering is None:
            break
        column = tableau[:, entering]
        ratios = [
            (float(tableau[i, -1] / column[i]), basis[i], i) for i in range(n) if column[i] > tol
        ]
        _, _, row = min(ratios)  # smallest ratio, ties by lowest basic index (Bland)
        tableau[row] /= tableau[row, entering].clone()
        for i in range(n):
            if i != row and tableau[i, entering] != 0:
                tableau[i] -= tableau[i, entering] * tableau[row]
        objective -= objective[entering] * tableau[row]
        basis[row] = entering
    optimum = float(objective[-1])
    return 1.0 / optimum - shift


def unreachable_classes(
    frame: torch.Tensor, *, nonnegative: bool = True, tol: float = 1e-9
) -> list[int]:
    """Classes whose decision region misses the features the frame can be given.

    Class k is predicted for ``h`` when ``h . w_k > h . w_j`` for every j != k (logits
    ``h @ W.T``, no bias). With ``nonnegative=True`` the features are those a ReLU
    backbone produces without a neck (h >= 0): class k is reachable iff some h >= 0 gives
    it a positive margin over every other class. Margins scale with h, so this is the sign
    of the value of the matrix game ``max_{h in simplex} min_j (w_k - w_j) . h``, found
    exactly by linear programming (docs/theory.md §1); a class whose best margin is within
    ``tol`` (relative to the largest row norm squared) of 0 can at most tie, and counts as
    unreachable. With ``nonnegative=False`` (any real h) a class is unreachable iff its row
    lies in the convex hull of the others, which the same game over signed coordinates
    decides.

    Args:
        frame: (K, d) rows.
        nonnegative: features restricted to the non-negative orthant.
        tol: relative margin below which a class counts as unreachable.

    Returns:
        Sorted class indices (empty when every class is reachable).
    """
    w = _check_frame(frame).detach().to(torch.float64).cpu()
    k = w.shape[0]
    if not nonnegative:  # h = h+ - h-: the game over the coordinates of [I, -I]
        w = torch.cat([w, -w], dim=1)
    scale = float(w.square().sum(dim=1).max())
    missing = []
    for c in range(k):
        others = torch.cat([w[:c], w[c + 1 :]])
        if _game_value(w[c] - others) <= tol * scale:
            missing.append(c)
    return missing
