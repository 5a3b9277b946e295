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
    "cosine_matrix",
    "cosine_std",
    "equiangularity",
    "equinorm",
    "etf_distance",
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
    norms = torch.linalg.vector_norm(_matrix("vectors", vectors), dim=1)
    return float(norms.std(correction=0) / norms.mean())


def equiangularity(vectors: Tensor) -> float:
    """``mean_{k<l} |cos(v_k, v_l) + 1/(K-1)|`` of the rows of ``vectors`` ``(K, d)``: 0 when
    every pair meets at the simplex angle ``arccos(-1/(K-1))``. (The mean over ordered
    pairs ``k != l`` is the same number.)"""
    v = _matrix("vectors", vectors)
    return float((_upper(_cosines(v)) + 1.0 / (v.shape[0] - 1)).abs().mean())


def cosine_std(vectors: Tensor) -> float:
    """Population standard deviation of ``cos(v_k, v_l)`` over the pairs ``k < l`` of the
    rows of ``vectors`` ``(K, d)``: 0 when all angles are equal (whatever the angle)."""
    return float(pairwise_cosines(vectors).std(correction=0))


def etf_distance(matrix: Tensor) -> float:
    """``|| A/||A||_F - (I - 11^T/K) / sqrt(K - 1) ||_F`` of a ``(K, K)`` matrix ``A``.

    ``A`` is the Gram matrix ``V V^T`` of K vectors (norms count), their cosine matrix
    (:func:`cosine_matrix`; directions only) or any square matrix such as ``W M^T`` (see
    the module docstring). 0 exactly for the Gram matrix of a simplex ETF in any rotation
    and scale; between 0 and 2. NaN for a zero matrix.
    """
    a = _matrix("matrix", matrix)
    k = a.shape[0]
    if a.shape[1] != k:
        raise ValueError(
            f"matrix must be square (K, K), e.g. a Gram matrix V @ V.T, got {tuple(a.shape)}"
        )
    eye = torch.eye(k, dtype=torch.float64, device=a.device)
    target = (eye - 1.0 / k) / math.sqrt(k - 1)
    return float(torch.linalg.matrix_norm(a / torch.linalg.matrix_norm(a) - target))


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
    if not isinstance(variances, Tensor) or tuple(variances.shape) != (m.shape[0],):
        shape = tuple(variances.shape) if isinstance(variances, Tensor) else type(variances)
        raise ValueError(
            f"variances must be a ({m.shape[0]},) tensor, one per row of means, got {shape}"
        )
    s = variances.detach().to(m.device, torch.float64)
    # Distances are translation invariant; centring keeps the Gram products small.
    m = m - m.mean(dim=0)
    gram = m @ m.T
    sq = torch.diagonal(gram)
    dist2 = (sq.unsqueeze(0) + sq.unsqueeze(1) - 2.0 * gram).clamp(min=0.0)
    i, j = _pair_indices(m.shape[0], m.device)
    return float(((s[i] + s[j]) / (2.0 * dist2[i, j])).mean())


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
    w_unit = w / torch.linalg.matrix_norm(w)
    m_unit = m / torch.linalg.matrix_norm(m)
    return float((w_unit - m_unit).square().sum())


def nc3_zhu(classifier: Tensor, means: Tensor) -> float:
    """``etf_distance(W M^T)`` (Zhu et al. 2021, NC3): 0 when ``W M^T`` is proportional to
    the simplex ETF's Gram matrix.

    Args:
        classifier: ``(K, d)`` classifier rows ``W``.
        means: ``(K, d)`` class means ``M`` centred on the global mean, same class order.
    """
    w, m = _pair(classifier, means)
    return etf_distance(w @ m.T)
