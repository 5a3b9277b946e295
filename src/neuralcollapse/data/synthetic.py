"""Seeded synthetic feature sets: flat and hierarchical Gaussian mixtures.

A hierarchy is given as a (K, K) matrix of lowest-common-ancestor heights (0 on the
diagonal, 1 for siblings, ...), as a sequence of ``(child, parent)`` pairs, or as any object
with an ``lca_heights()`` method returning such a matrix (so a future ``nc.Hierarchy`` plugs
in unchanged).
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .longtail import class_counts

__all__ = ["Mixture", "gaussian_mixture", "hierarchical_mixture", "lca_heights_from_edges"]


@dataclass(frozen=True)
class Mixture:
    """Samples of a Gaussian mixture.

    Attributes:
        features: (N, d) float32 samples, grouped by class (class 0 first).
        labels: (N,) int64 class labels.
        means: (K, d) float32 class means.
        lca_heights: (K, K) LCA heights of the hierarchy (int64 when integral; hierarchical
            mixtures only).
    """

    features: Tensor
    labels: Tensor
    means: Tensor
    lca_heights: Tensor | None = None


def gaussian_mixture(
    num_classes: int,
    dim: int,
    n_per_class: int = 100,
    *,
    counts: Sequence[int] | Tensor | None = None,
    separation: float = 4.0,
    noise: float = 1.0,
    imbalance_ratio: float = 1.0,
    profile: str = "exp",
    seed: int = 0,
) -> Mixture:
    """K isotropic Gaussian classes in d dimensions.

    Class means: when ``dim >= K - 1`` they form a randomly rotated regular simplex, so every
    pair of means is exactly ``separation`` apart; when ``dim < K - 1`` they are random
    directions of norm ``separation / sqrt(2)`` (pairwise distance ``separation`` on average).
    Samples: mean + ``noise`` * standard normal.

    Args:
        num_classes, dim: K and d.
        n_per_class: n_max of the class-count profile (all classes when balanced).
        counts: explicit (K,) per-class counts; overrides ``n_per_class``/``imbalance_ratio``.
        separation: distance between class means (same units as the features).
        noise: per-coordinate standard deviation within a class.
        imbalance_ratio, profile: long-tail profile, see :func:`class_counts`.
        seed: seed of means and samples.
    """
    _check_dims(num_classes, dim, separation, noise)
    generator = torch.Generator().manual_seed(seed)
    sizes = _sizes(num_classes, n_per_class, counts, imbalance_ratio, profile)
    if dim >= num_classes - 1:
        centred = torch.eye(num_classes, dtype=torch.float64) - 1.0 / num_classes
        # rows of the centring projector are a regular simplex with edge sqrt(2)
        means = _embed(_psd_factor(centred), dim, generator)
    else:
        means = torch.randn(num_classes, dim, generator=generator, dtype=torch.float64)
        means = means / means.norm(dim=1, keepdim=True)
    means = means * (separation / math.sqrt(2.0))
    return _sample(means, sizes, noise, generator)


def hierarchical_mixture(
    hierarchy: Any,
    dim: int,
    n_per_class: int = 100,
    *,
    counts: Sequence[int] | Tensor | None = None,
    separation: float = 4.0,
    noise: float = 1.0,
    imbalance_ratio: float = 1.0,
    profile: str = "exp",
    leaves: Sequence[Hashable] | None = None,
    seed: int = 0,
) -> Mixture:
    """Gaussian classes whose means follow a tree: ``||mu_i - mu_j|| = separation *
    sqrt(lca_height(i, j))``, so siblings (height 1) are ``separation`` apart and cousins
    further.

    The means are an exact embedding of the tree metric (the tree covariance
    ``C = max(D) - D``, factored and randomly rotated into R^d), which needs ``dim`` at least
    the rank of C (at most K).

    Args:
        hierarchy: (K, K) LCA-height tensor/array, ``(child, parent)`` pairs, or an object with
            ``lca_heights()``. With pairs, every leaf must sit at the same depth.
        dim: d.
        leaves: class order for ``(child, parent)`` pairs (default: leaves in natural sort
            order, so ``"L5-2"`` comes before ``"L5-10"``).
        Other arguments as in :func:`gaussian_mixture`.
    """
    heights = _lca_matrix(hierarchy, leaves)
    num_classes = heights.shape[0]
    _check_dims(num_classes, dim, separation, noise)
    factor = _tree_factor(heights)
    if factor.shape[1] > dim:
        raise ValueError(
            f"dim={dim} is too small to embed this hierarchy exactly: need dim >= "
            f"{factor.shape[1]} (rank of its tree covariance)"
        )
    generator = torch.Generator().manual_seed(seed)
    sizes = _sizes(num_classes, n_per_class, counts, imbalance_ratio, profile)
    means = _embed(factor, dim, generator) * (separation / math.sqrt(2.0))
    mixture = _sample(means, sizes, noise, generator)
    return Mixture(mixture.features, mixture.labels, mixture.means, heights)


def lca_heights_from_edges(
    edges: Sequence[tuple[Hashable, Hashable]], leaves: Sequence[Hashable] | None = None
) -> tuple[Tensor, tuple[Hashable, ...]]:
    """LCA heights between the leaves of a tree given as ``(child, parent)`` pairs.

    Returns:
        ``(heights, leaves)``: (K, K) int64 tensor (0 on the diagonal, 1 for siblings) and the
        leaf order used for its rows.
    """
    parent: dict[Hashable, Hashable] = {}
    for pair in edges:
        if len(pair) != 2:
            raise ValueError(f"each edge must be a (child, parent) pair, got {pair!r}")
        child, par = pair
        if child in parent and parent[child] != par:
            raise ValueError(f"node {child!r} has two parents: {parent[child]!r} and {par!r}")
        parent[child] = par
    if not parent:
        raise ValueError("the hierarchy has no edges")
    roots = {p for p in parent.values() if p not in parent}
    if len(roots) != 1:
        found = sorted(map(str, roots))
        raise ValueError(f"the hierarchy must have exactly one root, found {found}")
    leaf_set = set(parent) - set(parent.values())
    order = _leaf_order(leaf_set, leaves)
    paths = [_path_to_root(leaf, parent) for leaf in order]
    depths = {len(p) for p in paths}
    if len(depths) != 1:
        raise ValueError(
            f"leaves sit at different depths {sorted(d - 1 for d in depths)}; LCA heights need "
            f"every leaf at the same depth"
        )
    ids = {node: i for i, node in enumerate({n for p in paths for n in p})}
    ancestors = np.array([[ids[n] for n in p] for p in paths])  # (K, depth + 1), leaf first
    heights = np.full((len(order), len(order)), ancestors.shape[1] - 1, dtype=np.int64)
    for level in range(ancestors.shape[1] - 1, -1, -1):
        same = ancestors[:, level, None] == ancestors[None, :, level]
        heights[same] = level
    return torch.from_numpy(heights), tuple(order)


def _lca_matrix(hierarchy: Any, leaves: Sequence[Hashable] | None) -> Tensor:
    if hasattr(hierarchy, "lca_heights"):
        matrix = torch.as_tensor(np.asarray(hierarchy.lca_heights()))
    elif isinstance(hierarchy, Tensor | np.ndarray):
        matrix = torch.as_tensor(hierarchy)
    elif isinstance(hierarchy, Sequence) and not isinstance(hierarchy, str):
        matrix, _ = lca_heights_from_edges(hierarchy, leaves)
    else:
        raise ValueError(
            f"hierarchy must be a (K, K) LCA-height tensor/array, (child, parent) pairs or an "
            f"object with lca_heights(); got {type(hierarchy).__name__}"
        )
    matrix = matrix.to(torch.float64)
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 1:
        raise ValueError(f"LCA heights must be a (K, K) matrix, got shape {tuple(matrix.shape)}")
    if not torch.equal(matrix, matrix.T) or bool((matrix.diagonal() != 0).any()):
        raise ValueError("LCA heights must be symmetric with zeros on the diagonal")
    if bool((matrix < 0).any()):
        raise ValueError("LCA heights must be >= 0")
    _check_ultrametric(matrix)
    return matrix.round().to(torch.int64) if torch.equal(matrix, matrix.round()) else matrix


def _check_ultrametric(d: Tensor) -> None:
    """LCA heights of a tree satisfy D[i, j] <= max(D[i, k], D[k, j]) for every k."""
    for k in range(d.shape[0]):
        bound = torch.maximum(d[:, k, None], d[None, k, :])
        bad = torch.nonzero(d > bound)
        if bad.numel():
            i, j = (int(v) for v in bad[0])
            raise ValueError(
                f"these LCA heights do not come from a tree: D[{i}, {j}] = {float(d[i, j]):g} "
                f"exceeds max(D[{i}, {k}], D[{k}, {j}]) = {float(bound[i, j]):g}"
            )


def _tree_factor(heights: Tensor) -> Tensor:
    """B (K, r) with ||b_i - b_j||^2 = 2 * heights[i, j]; fails if heights is not a tree."""
    d = heights.to(torch.float64)
    cov = d.max() - d  # shared root-path length: positive semidefinite exactly for trees
    factor = _psd_factor(cov)
    if factor is None:
        raise ValueError(
            "these LCA heights do not come from a tree (max(D) - D is not positive semidefinite)"
        )
    return factor


def _psd_factor(gram: Tensor) -> Tensor | None:
    """B (K, r), r = rank, with B @ B.T = gram; None if gram is not positive semidefinite."""
    evals, evecs = torch.linalg.eigh(gram)
    tol = 1e-9 * max(1.0, float(evals.abs().max()))
    if float(evals.min()) < -tol:
        return None
    keep = evals > tol
    return evecs[:, keep] * evals[keep].sqrt()


def _embed(points: Tensor, dim: int, generator: torch.Generator) -> Tensor:
    """Rows of ``points`` (K, r) rotated isometrically into R^dim by a random orthonormal map."""
    r = points.shape[1]
    if r == 0:
        return torch.zeros(points.shape[0], dim, dtype=torch.float64)
    gauss = torch.randn(dim, r, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(gauss)  # (dim, r) with orthonormal columns, as dim >= r here
    return points @ q.T


def _sample(means: Tensor, sizes: Tensor, noise: float, generator: torch.Generator) -> Mixture:
    labels = torch.repeat_interleave(torch.arange(means.shape[0]), sizes)
    eps = torch.randn(labels.numel(), means.shape[1], generator=generator, dtype=torch.float64)
    features = means[labels] + noise * eps
    return Mixture(features.float(), labels, means.float())


def _sizes(
    num_classes: int,
    n_per_class: int,
    counts: Sequence[int] | Tensor | None,
    imbalance_ratio: float,
    profile: str,
) -> Tensor:
    if counts is None:
        return class_counts(n_per_class, num_classes, imbalance_ratio, profile)
    sizes = torch.as_tensor(counts, dtype=torch.int64)
    if sizes.shape != (num_classes,) or bool((sizes < 0).any()):
        raise ValueError(
            f"counts must be {num_classes} non-negative integers, got {sizes.tolist()}"
        )
    return sizes


def _check_dims(num_classes: int, dim: int, separation: float, noise: float) -> None:
    if num_classes < 1 or dim < 1:
        raise ValueError(f"need num_classes >= 1 and dim >= 1, got {num_classes} and {dim}")
    if not separation > 0 or not noise >= 0:
        raise ValueError(f"need separation > 0 and noise >= 0, got {separation} and {noise}")


def _leaf_order(leaf_set: set[Hashable], leaves: Sequence[Hashable] | None) -> list[Hashable]:
    if leaves is None:
        return sorted(leaf_set, key=_natural_key)
    if len(leaves) != len(leaf_set) or set(leaves) != leaf_set:
        raise ValueError(
            f"leaves must list each of the {len(leaf_set)} leaves exactly once; "
            f"missing {sorted(map(str, leaf_set - set(leaves)))[:5]}, "
            f"not leaves {sorted(map(str, set(leaves) - leaf_set))[:5]}"
        )
    return list(leaves)


def _natural_key(node: Hashable) -> list[Any]:
    parts = re.split(r"(\d+)", str(node))
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts]


def _path_to_root(leaf: Hashable, parent: dict[Hashable, Hashable]) -> list[Hashable]:
    path = [leaf]
    while path[-1] in parent:
        path.append(parent[path[-1]])
        if len(path) > len(parent) + 1:
            raise ValueError(f"the hierarchy has a cycle through {leaf!r}")
    return path
