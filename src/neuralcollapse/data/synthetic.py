"""Seeded synthetic feature sets: flat and hierarchical Gaussian mixtures.

A hierarchical mixture takes its tree as a :class:`~neuralcollapse.hierarchy.Hierarchy`
(the package's one tree type), as ``(child, parent)`` pairs (read through
``Hierarchy.from_edges``) or as a (K, K) matrix of lowest-common-ancestor heights (0 on the
diagonal, 1 for siblings, ...). Class ``i`` of the mixture is ``hierarchy.leaves[i]``, so
the class order is Hierarchy's rule (see :mod:`neuralcollapse.hierarchy`), the same as
for every other use of that tree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from neuralcollapse._internal.geometry import etf_min_dim
from neuralcollapse.hierarchy import DEFAULT_CONVENTION, Hierarchy, check_distance_matrix
from neuralcollapse.registry import register_dataset

from .datasets import DataRequest
from .longtail import class_counts
from .sources import LabeledImages

__all__ = ["Mixture", "gaussian_mixture", "hierarchical_mixture"]

HierarchyLike = Hierarchy | Tensor | np.ndarray | Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Mixture:
    """Samples of a Gaussian mixture.

    Attributes:
        features: (N, d) float32 samples, grouped by class (class 0 first).
        labels: (N,) int64 class labels.
        means: (K, d) float32 class means.
        lca_heights: (K, K) LCA heights of the hierarchy (int64 when integral; hierarchical
            mixtures only).
        classes: K class names when the tree had names (``hierarchy.leaves``), else None.
    """

    features: Tensor
    labels: Tensor
    means: Tensor
    lca_heights: Tensor | None = None
    classes: tuple[str, ...] | None = None


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
    if dim >= etf_min_dim(num_classes):
        centred = torch.eye(num_classes, dtype=torch.float64) - 1.0 / num_classes
        # rows of the centring projector are a regular simplex with edge sqrt(2)
        means = _embed(_psd_factor(centred), dim, generator)
    else:
        means = torch.randn(num_classes, dim, generator=generator, dtype=torch.float64)
        means = means / means.norm(dim=1, keepdim=True)
    means = means * (separation / math.sqrt(2.0))
    return _sample(means, sizes, noise, generator)


def hierarchical_mixture(
    hierarchy: HierarchyLike,
    dim: int,
    n_per_class: int = 100,
    *,
    counts: Sequence[int] | Tensor | None = None,
    separation: float = 4.0,
    noise: float = 1.0,
    imbalance_ratio: float = 1.0,
    profile: str = "exp",
    seed: int = 0,
    convention: str = DEFAULT_CONVENTION,
) -> Mixture:
    """Gaussian classes whose means follow a tree: ``||mu_i - mu_j|| = separation *
    sqrt(lca_height(i, j))``, so siblings (height 1) are ``separation`` apart and cousins
    further.

    The means are an exact embedding of the tree metric (the tree covariance
    ``C = max(D) - D``, factored and randomly rotated into R^d), which needs ``dim`` at least
    the rank of C (at most K). Unbalanced trees work too: both LCA conventions of
    :meth:`Hierarchy.lca_heights` ("level", the default, and "height") are ultrametrics.

    Args:
        hierarchy: a :class:`~neuralcollapse.hierarchy.Hierarchy`, ``(child, parent)``
            pairs (converted with ``Hierarchy.from_edges``; build the Hierarchy yourself to
            choose the class order with ``classes=``), or a (K, K) LCA-height tensor/array.
            Class i is ``hierarchy.leaves[i]``.
        dim: d.
        convention: the LCA distance of a tree, ``"level"`` or ``"height"``
            (docs/theory.md §7); ignored for a given matrix.
        Other arguments as in :func:`gaussian_mixture`.

    Returns:
        :class:`Mixture` with ``lca_heights`` (K, K) and, for a named tree, ``classes``.
    """
    heights, names = _lca_matrix(hierarchy, convention)
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
    return Mixture(mixture.features, mixture.labels, mixture.means, heights, names)


def _lca_matrix(hierarchy: object, convention: str) -> tuple[Tensor, tuple[str, ...] | None]:
    """(K, K) LCA heights (int64 when integral, else float64) and the leaf names, if any."""
    names: tuple[str, ...] | None = None
    if isinstance(hierarchy, Hierarchy):
        matrix, names = hierarchy.lca_heights(convention), hierarchy.leaves
    elif isinstance(hierarchy, Tensor | np.ndarray):
        matrix = torch.as_tensor(hierarchy)
    elif isinstance(hierarchy, Sequence) and not isinstance(hierarchy, str):
        tree = Hierarchy.from_edges(hierarchy)
        matrix, names = tree.lca_heights(convention), tree.leaves
    else:
        raise ValueError(
            "hierarchy must be a neuralcollapse.Hierarchy, (child, parent) pairs or a (K, K) "
            f"LCA-height tensor/array; got {type(hierarchy).__name__}"
        )
    return check_distance_matrix(matrix, ultrametric=True), names


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


# ----------------------------------------------------------------------------- registered

# test samples per class of the registered mixtures, drawn with the training samples so
# both share the class means (this project's setting)
MIXTURE_TEST_PER_CLASS = 100


def _split_mixture(
    mixture: Mixture, names: tuple[str, ...], per_class: int, train_per_class: int
) -> tuple[LabeledImages, LabeledImages]:
    """Each class's first ``train_per_class`` samples train, the rest test; features are
    fed as 1x1 "images" (N, d, 1, 1)."""
    dim = mixture.features.shape[1]
    everything = LabeledImages(mixture.features.reshape(-1, dim, 1, 1), mixture.labels, names)
    position = torch.arange(len(mixture.labels)) % per_class  # samples are grouped by class
    test_mask = position >= train_per_class
    train = everything.subset(torch.nonzero(~test_mask).flatten())
    test = everything.subset(torch.nonzero(test_mask).flatten())
    return train, test


@register_dataset("gaussian")
def _gaussian(request: DataRequest) -> tuple[LabeledImages, LabeledImages]:
    """A flat Gaussian mixture: data.num_classes classes in data.dim dimensions."""
    cfg = request.config
    per_class = cfg.samples_per_class + MIXTURE_TEST_PER_CLASS
    mixture = gaussian_mixture(
        cfg.num_classes, cfg.dim, per_class, separation=cfg.separation, seed=request.seed
    )
    names = tuple(str(k) for k in range(cfg.num_classes))
    return _split_mixture(mixture, names, per_class, cfg.samples_per_class)


def _balanced_tree(cfg: object) -> Hierarchy:
    return Hierarchy.balanced(cfg.tree_branching)


@register_dataset("hierarchical", default_tree=_balanced_tree)
def _hierarchical(request: DataRequest) -> tuple[LabeledImages, LabeledImages]:
    """A Gaussian mixture whose class means follow the run's class tree (data.hierarchy,
    else a balanced tree of data.tree_branching)."""
    cfg, tree = request.config, request.hierarchy
    per_class = cfg.samples_per_class + MIXTURE_TEST_PER_CLASS
    mixture = hierarchical_mixture(
        tree if isinstance(tree, Hierarchy) else tree.matrix,
        cfg.dim,
        per_class,
        separation=cfg.separation,
        seed=request.seed,
        convention=cfg.lca_convention,
    )
    return _split_mixture(mixture, tuple(tree.leaves), per_class, cfg.samples_per_class)
