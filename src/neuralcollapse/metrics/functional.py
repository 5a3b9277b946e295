r"""The geometry measures of neural collapse as plain functions of tensors.

Each function takes the vectors (or matrix) it measures, computes in float64 whatever the
input dtype and device, and returns a Python float. They are what
:meth:`~neuralcollapse.metrics.CollapseStats.compute` reports (on the centred class means
``M~`` and the classifier rows ``W`` of the present classes) and what
:func:`neuralcollapse.frames.describe` uses; call them directly on any vectors.

Notation: ``V`` is a ``(K, d)`` matrix whose rows ``v_k`` are one vector per class,
``cos_kl = v_k . v_l / (||v_k|| ||v_l||)`` and "pairs" are the ``K (K - 1) / 2`` pairs
``k < l``. Standard deviations are population ones (ddof = 0). A quantity that is
undefined for the input (a cosine with a zero vector, a zero matrix) is NaN.

===================  ========================================================================
function             value
===================  ========================================================================
``equinorm``         ``std_k ||v_k|| / mean_k ||v_k||`` (NC2, equal norms: 0)
``equiangularity``   ``mean_pairs |cos_kl + 1/(K-1)|`` (NC2, simplex angles: 0)
``cosine_std``       ``std_pairs cos_kl`` (NC2, equal angles: 0)
``etf_distance``     ``|| A/||A||_F - (I - 11^T/K) / sqrt(K-1) ||_F`` of a ``(K, K)`` matrix
``cdnv``             ``mean_pairs (s_k + s_l) / (2 ||mu_k - mu_l||^2)`` (NC1, Galanti et al.)
``self_duality``     ``|| W/||W||_F - M/||M||_F ||_F^2`` (NC3, Papyan et al.)
``nc3_zhu``          ``etf_distance(W M^T)`` (NC3, Zhu et al.)
===================  ========================================================================

When the Gram matrix ``V V^T`` is at hand (``CollapseStats`` builds it once per report),
:func:`nc2_from_gram` gives the four NC2 measures and :func:`cdnv_from_gram` the CDNV
from it alone, without another ``K x K x d`` product; the values equal those of the
vector functions up to float64 round-off.

:func:`etf_distance` takes a square matrix, not vectors, because the right matrix depends
on the question: the Gram matrix ``V V^T`` when norms count (NC2 of class means and
classifier rows, where unequal norms are a departure from the ETF too), the cosine
matrix (:func:`cosine_matrix`) when only directions count (a frame's geometry in
:func:`neuralcollapse.frames.describe`), or ``W M^T`` for NC3. The target
``(I - 11^T/K) / sqrt(K-1)`` has unit Frobenius norm and is the normalised Gram matrix of
every simplex ETF, so the distance is 0 exactly for (rotated, uniformly scaled) simplex
ETFs and at most 2.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "cdnv",
    "cdnv_from_gram",
    "cosine_matrix",
    "cosines_from_gram",
    "cosine_std",
    "equiangularity",
    "equinorm",
    "etf_distance",
    "nc2_from_gram",
    "nc3_zhu",
    "pairwise_cosines",
    "self_duality",
]


def _matrix(name: str, value: object, *, min_rows: int = 2) -> Tensor:
    """``value`` as a ``(K, d)`` float64 tensor with K >= ``min_rows``."""
    if not isinstance(value, Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor, got {type(value).__name__}; "
            "convert it with torch.as_tensor(...)"
        )
    if value.ndim != 2 or value.shape[0] < min_rows or value.shape[1] < 1:
        raise ValueError(
            f"{name} must have shape (K, d) with K >= {min_rows} rows (one per class), got "
            f"{tuple(value.shape)}"
        )
    if value.dtype == torch.bool or value.is_complex():
        raise ValueError(f"{name} must hold real numbers, got dtype {value.dtype}")
    return value.detach().to(torch.float64)


def _pair_indices(k: int, device: torch.device) -> tuple[Tensor, Tensor]:
    i, j = torch.triu_indices(k, k, offset=1, device=device)
    return i, j


def _cosines(v: Tensor) -> Tensor:
    unit = v / torch.linalg.vector_norm(v, dim=1, keepdim=True)
    return unit @ unit.T


def _upper(cos: Tensor) -> Tensor:
    i, j = _pair_indices(cos.shape[0], cos.device)
    return cos[i, j]


def _square(name: str, value: object) -> Tensor:
    """``value`` as a ``(K, K)`` float64 tensor with K >= 2."""
    a = _matrix(name, value)
    if a.shape[1] != a.shape[0]:
        raise ValueError(
            f"{name} must be square (K, K), e.g. a Gram matrix V @ V.T, got {tuple(a.shape)}"
        )
    return a


def _gram_cosines(gram: Tensor) -> Tensor:
    norms = torch.diagonal(gram).clamp(min=0.0).sqrt()
    return gram / (norms.unsqueeze(1) * norms.unsqueeze(0))


def _equinorm(norms: Tensor) -> float:
    return float(norms.std(correction=0) / norms.mean())


def _equiangularity(pairs: Tensor, k: int) -> float:
    """From the cosines of the ``k (k-1) / 2`` pairs of ``k`` vectors."""
    return float((pairs + 1.0 / (k - 1)).abs().mean())


def _cosine_std(pairs: Tensor) -> float:
    return float(pairs.std(correction=0))


def _etf_distance(a: Tensor) -> float:
    k = a.shape[0]
    eye = torch.eye(k, dtype=torch.float64, device=a.device)
    target = (eye - 1.0 / k) / math.sqrt(k - 1)
    return float(torch.linalg.matrix_norm(a / torch.linalg.matrix_norm(a) - target))


def _cdnv(gram: Tensor, variances: Tensor) -> float:
    s = variances.detach().to(gram.device, torch.float64)
    sq = torch.diagonal(gram)
    dist2 = (sq.unsqueeze(0) + sq.unsqueeze(1) - 2.0 * gram).clamp(min=0.0)
    i, j = _pair_indices(gram.shape[0], gram.device)
    return float(((s[i] + s[j]) / (2.0 * dist2[i, j])).mean())


def _check_variances(variances: object, k: int) -> Tensor:
    if not isinstance(variances, Tensor) or tuple(variances.shape) != (k,):
        shape = tuple(variances.shape) if isinstance(variances, Tensor) else type(variances)
        raise ValueError(f"variances must be a ({k},) tensor, one per class, got {shape}")
    return variances


def cosine_matrix(vectors: Tensor) -> Tensor:
    """``(K, K)`` float64 matrix of ``cos(v_k, v_l)`` of the rows of ``vectors`` ``(K, d)``.

    Rows of zero norm give NaN cosines.
    """
    return _cosines(_matrix("vectors", vectors))


def pairwise_cosines(vectors: Tensor) -> Tensor:
    """``(K (K-1) / 2,)`` float64 cosines ``cos(v_k, v_l)`` of the pairs ``k < l`` of the
    rows of ``vectors`` ``(K, d)``, in row-major order of the upper triangle."""
    return _upper(cosine_matrix(vectors))


def equinorm(vectors: Tensor) -> float:
    """``std_k ||v_k|| / mean_k ||v_k||`` of the rows of ``vectors`` ``(K, d)``: 0 when all
    norms are equal; scale- and rotation-invariant."""
    return _equinorm(torch.linalg.vector_norm(_matrix("vectors", vectors), dim=1))


def equiangularity(vectors: Tensor) -> float:
    """``mean_{k<l} |cos(v_k, v_l) + 1/(K-1)|`` of the rows of ``vectors`` ``(K, d)``: 0 when
    every pair meets at the simplex angle ``arccos(-1/(K-1))``. (The mean over ordered
    pairs ``k != l`` is the same number.)"""
    v = _matrix("vectors", vectors)
    return _equiangularity(_upper(_cosines(v)), v.shape[0])


def cosine_std(vectors: Tensor) -> float:
    """Population standard deviation of ``cos(v_k, v_l)`` over the pairs ``k < l`` of the
    rows of ``vectors`` ``(K, d)``: 0 when all angles are equal (whatever the angle)."""
    return _cosine_std(_upper(_cosines(_matrix("vectors", vectors))))


def etf_distance(matrix: Tensor) -> float:
    """``|| A/||A||_F - (I - 11^T/K) / sqrt(K - 1) ||_F`` of a ``(K, K)`` matrix ``A``.

    ``A`` is the Gram matrix ``V V^T`` of K vectors (norms count), their cosine matrix
    (:func:`cosine_matrix`; directions only) or any square matrix such as ``W M^T`` (see
    the module docstring). 0 exactly for the Gram matrix of a simplex ETF in any rotation
    and scale; between 0 and 2. NaN for a zero matrix.
    """
    return _etf_distance(_square("matrix", matrix))


def cosines_from_gram(gram: Tensor) -> Tensor:
    """``(K, K)`` float64 cosines ``G_kl / sqrt(G_kk G_ll)`` of the vectors whose Gram
    matrix is ``gram`` ``(K, K)``; rows of zero norm give NaN cosines."""
    return _gram_cosines(_square("gram", gram))


def nc2_from_gram(gram: Tensor) -> dict[str, float]:
    """The four NC2 measures of K vectors from their ``(K, K)`` Gram matrix ``V V^T``.

    Returns:
        ``{"equinorm", "equiangularity", "cosine_std", "etf_distance"}``: the values of
        :func:`equinorm`, :func:`equiangularity`, :func:`cosine_std` on ``V`` and
        :func:`etf_distance` on ``V V^T``, from one ``(K, K)`` matrix.
    """
    g = _square("gram", gram)
    pairs = _upper(_gram_cosines(g))
    return {
        "equinorm": _equinorm(torch.diagonal(g).clamp(min=0.0).sqrt()),
        "equiangularity": _equiangularity(pairs, g.shape[0]),
        "cosine_std": _cosine_std(pairs),
        "etf_distance": _etf_distance(g),
    }


def cdnv(means: Tensor, variances: Tensor) -> float:
    """Class-distance normalised variance (Galanti et al. 2022), a variant of NC1.

    ``mean_{k<l} (s_k + s_l) / (2 ||mu_k - mu_l||^2)``.

    Args:
        means: ``(K, d)`` class means ``mu_k``.
        variances: ``(K,)`` within-class variances ``s_k = mean_{i in k} ||h_i - mu_k||^2``
            (the trace of the class covariance).

    Returns:
        0 when every class has collapsed to its mean; inf when two means coincide.
    """
    m = _matrix("means", means)
    s = _check_variances(variances, m.shape[0])
    # Distances are translation invariant; centring keeps the Gram products small.
    m = m - m.mean(dim=0)
    return _cdnv(m @ m.T, s)


def cdnv_from_gram(gram: Tensor, variances: Tensor) -> float:
    """:func:`cdnv` from the ``(K, K)`` Gram matrix ``M M^T`` of the class means (best
    centred, e.g. on the global mean: ``||mu_k - mu_l||^2 = G_kk + G_ll - 2 G_kl`` then
    cancels little) and the ``(K,)`` within-class variances."""
    g = _square("gram", gram)
    return _cdnv(g, _check_variances(variances, g.shape[0]))


def _pair(classifier: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
    w = _matrix("classifier", classifier)
    m = _matrix("means", means).to(w.device)
    if w.shape != m.shape:
        raise ValueError(
            f"classifier {tuple(w.shape)} and means {tuple(m.shape)} must both be (K, d), "
            "one row per class in the same order"
        )
    return w, m


def self_duality(classifier: Tensor, means: Tensor) -> float:
    """``|| W/||W||_F - M/||M||_F ||_F^2`` (Papyan et al. 2020, NC3): 0 when the classifier
    rows are the centred class means up to one scale.

    Args:
        classifier: ``(K, d)`` classifier rows ``W`` (logits = h @ W.T + b).
        means: ``(K, d)`` class means ``M`` centred on the global mean, same class order.
    """
    w, m = _pair(classifier, means)
    w_norm, m_norm = torch.linalg.matrix_norm(w), torch.linalg.matrix_norm(m)
    # W/|W| - M/|M| = (W - (|W|/|M|) M) / |W|: one (K, d) temporary instead of four.
    gap = torch.linalg.matrix_norm(torch.add(w, m, alpha=-float(w_norm / m_norm)))
    return float((gap / w_norm).square())


def nc3_zhu(classifier: Tensor, means: Tensor) -> float:
    """``etf_distance(W M^T)`` (Zhu et al. 2021, NC3): 0 when ``W M^T`` is proportional to
    the simplex ETF's Gram matrix.

    Args:
        classifier: ``(K, d)`` classifier rows ``W``.
        means: ``(K, d)`` class means ``M`` centred on the global mean, same class order.
    """
    w, m = _pair(classifier, means)
    return etf_distance(w @ m.T)
