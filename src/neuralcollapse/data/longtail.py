"""Long-tailed class-count profiles, long-tailed subsets, shot groups and class-aware sampling.

Conventions: classes are indexed 0..K-1 and the profiles give the head classes the smallest
indices (class 0 is the largest), as in the CIFAR-LT benchmarks (docs/theory.md §8). Every
random draw takes an explicit seed or ``torch.Generator``; the global RNG is never touched.

:func:`long_tailed_subset` is the one way to cut a long-tailed training subset out of a
labelled set (profile, head count, seeded draw); :func:`class_counts` and
:func:`long_tailed_indices` are its two halves, for callers that need explicit counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler

from neuralcollapse._internal.checks import check_float, check_int, check_labels
from neuralcollapse._internal.seeding import derive_generator

__all__ = [
    "PROFILES",
    "SAMPLINGS",
    "Y22_CIFAR100_BOUNDARIES",
    "ClassSampler",
    "ShotGroups",
    "class_counts",
    "class_sampling_probs",
    "epoch_generator",
    "epoch_indices",
    "long_tailed_indices",
    "long_tailed_subset",
    "shot_groups",
    "shot_groups_by_index",
]

PROFILES = ("exp", "step")
# sampling name -> exponent q: class k is drawn with probability proportional to n_k ** q.
SAMPLINGS = {"instance": 1.0, "sqrt": 0.5, "balanced": 0.0}
# [Y22]'s fixed index ranges for CIFAR-100-LT: many = 0..35, medium = 36..70, few = 71..99.
Y22_CIFAR100_BOUNDARIES = (36, 71)

LabelsLike = Tensor | np.ndarray | Sequence[int]


def class_counts(
    n_max: int, num_classes: int, imbalance_ratio: float, profile: str = "exp"
) -> Tensor:
    """Per-class sample counts of a long-tailed profile.

    ``"exp"``: ``n_i = int(n_max * rho ** (i / (K - 1)))`` with ``rho = 1 / imbalance_ratio``
    (the CIFAR-LT definition; CIFAR-10-LT with ``n_max=5000`` and ratio 100 totals 12,406).
    ``"step"``: the first ``K // 2`` classes get ``n_max``, the remaining ``K - K // 2`` get
    ``int(n_max * rho)``. With K = 1 both give ``[n_max]``.

    Args:
        n_max: count of the largest class (class 0), >= 1.
        num_classes: K >= 1.
        imbalance_ratio: n_max / n_min >= 1 (1 gives a balanced set).
        profile: ``"exp"`` or ``"step"``.

    Returns:
        (K,) int64 tensor, non-increasing, first entry ``n_max``.
    """
    n_max = check_int("n_max", n_max, minimum=1)
    num_classes = check_int("num_classes", num_classes, minimum=1)
    rho = 1.0 / _check_ratio(imbalance_ratio)
    _check_profile(profile)
    if num_classes == 1:  # a single class is its own head under either profile
        counts = [n_max]
    elif profile == "exp":
        counts = [int(n_max * rho ** (i / (num_classes - 1))) for i in range(num_classes)]
    else:
        head = num_classes // 2
        counts = [n_max] * head + [int(n_max * rho)] * (num_classes - head)
    if min(counts) < 1:
        raise ValueError(
            f"profile {profile!r} with n_max={n_max} and imbalance_ratio={imbalance_ratio} gives "
            f"a class with 0 samples; raise n_max or lower the ratio"
        )
    return torch.tensor(counts, dtype=torch.int64)


def long_tailed_indices(
    labels: LabelsLike,
    counts: LabelsLike,
    seed: int = 0,
    *,
    allow_fewer: bool = False,
) -> Tensor:
    """Indices of a long-tailed subset: ``counts[k]`` samples of class k, drawn without
    replacement.

    The draw is a deterministic function of ``(labels, counts, seed)`` (one
    ``torch.Generator`` visits the classes in index order).

    Args:
        labels: (N,) integer class labels in ``[0, len(counts))``.
        counts: (K,) wanted samples per class (from :func:`class_counts` or any list).
        seed: seed of the draw.
        allow_fewer: if a class has fewer samples than asked, take all of them instead of
            raising.

    Returns:
        (M,) int64 tensor of indices into ``labels``, sorted ascending.
    """
    labels_t = _as_labels(labels)
    counts_t = _as_counts(counts, name="counts")
    num_classes = counts_t.numel()
    if labels_t.numel() and int(labels_t.max()) >= num_classes:
        raise ValueError(
            f"labels contain class {int(labels_t.max())} but counts has only {num_classes} "
            f"entries; give one count per class"
        )
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    available = torch.bincount(labels_t, minlength=num_classes)
    for k in range(num_classes):
        want, have = int(counts_t[k]), int(available[k])
        if want > have and not allow_fewer:
            raise ValueError(
                f"class {k} has {have} samples but {want} were asked; lower counts[{k}] or pass "
                f"allow_fewer=True to take all {have}"
            )
        members = torch.nonzero(labels_t == k).flatten()
        pick = torch.randperm(have, generator=generator)[: min(want, have)]
        chosen.append(members[pick])
    return torch.sort(torch.cat(chosen)).values


def long_tailed_subset(
    labels: LabelsLike,
    *,
    imbalance_ratio: float,
    profile: str = "exp",
    n_max: int | None = None,
    seed: int,
    num_classes: int | None = None,
) -> Tensor:
    """Indices of the long-tailed training subset of a labelled set, in one call.

    The subset keeps ``class_counts(n_max, K, imbalance_ratio, profile)[k]`` samples of
    class k, drawn without replacement by :func:`long_tailed_indices` with ``seed``: class 0
    becomes the head, class K-1 the tail (docs/theory.md §8). ``imbalance_ratio == 1``
    keeps the set as loaded: every index, in order, whatever ``n_max`` says (so a run
    configured with ratio 1 trains on exactly the data it loaded).

    Args:
        labels: (N,) integer class labels (tensor, array or list) in ``[0, K)``.
        imbalance_ratio: n_max / n_min >= 1.
        profile: ``"exp"`` or ``"step"`` (see :func:`class_counts`).
        n_max: samples of the head class; default the smallest class count of ``labels``,
            so that every class can supply its share. Must not exceed the count of class 0
            (or of any class asked for more than it has).
        seed: seed of the draw.
        num_classes: K; default ``max(labels) + 1``. Give it when the last classes may be
            absent from ``labels`` (then the default ``n_max`` is 0 and an error says so).

    Returns:
        (M,) int64 tensor of indices into ``labels``, sorted ascending.
    """
    labels_t = _as_labels(labels)
    ratio = _check_ratio(imbalance_ratio)
    _check_profile(profile)
    if num_classes is not None:
        num_classes = check_int("num_classes", num_classes, minimum=1)
        if labels_t.numel() and int(labels_t.max()) >= num_classes:
            raise ValueError(
                f"labels contain class {int(labels_t.max())} but num_classes={num_classes}"
            )
    if ratio == 1.0:
        return torch.arange(labels_t.numel())
    if not labels_t.numel():
        raise ValueError("labels is empty: a long-tailed subset needs samples of every class")
    if num_classes is None:
        num_classes = int(labels_t.max()) + 1
    available = torch.bincount(labels_t, minlength=num_classes)
    if n_max is None:
        n_max = int(available.min())
        if n_max < 1:
            empty = torch.nonzero(available == 0).flatten().tolist()
            raise ValueError(
                f"classes {empty[:5]} have no samples, so the default n_max (the smallest "
                "class count) is 0; pass n_max explicitly or drop those classes"
            )
    counts = class_counts(n_max, num_classes, ratio, profile)
    return long_tailed_indices(labels_t, counts, seed)


@dataclass(frozen=True)
class ShotGroups:
    """Class indices (int64 tensors) of the many-, medium- and few-shot groups."""

    many: Tensor
    medium: Tensor
    few: Tensor

    def as_dict(self) -> dict[str, Tensor]:
        return {"many": self.many, "medium": self.medium, "few": self.few}


def shot_groups(train_counts: LabelsLike, many: int = 100, few: int = 20) -> ShotGroups:
    """Split classes by their number of training samples n_k.

    Boundary rule: many-shot ``n_k > many``; medium-shot ``few <= n_k <= many``; few-shot
    ``n_k < few``. With the defaults: many > 100, medium 20..100 inclusive, few < 20.

    Args:
        train_counts: (K,) training samples per class.
        many, few: thresholds, ``0 <= few <= many``.
    """
    counts = _as_counts(train_counts, name="train_counts")
    if not 0 <= few <= many:
        raise ValueError(f"need 0 <= few <= many, got few={few}, many={many}")
    is_many = counts > many
    is_few = counts < few
    is_medium = ~is_many & ~is_few
    return ShotGroups(*(torch.nonzero(m).flatten() for m in (is_many, is_medium, is_few)))


def shot_groups_by_index(
    num_classes: int, boundaries: tuple[int, int] = Y22_CIFAR100_BOUNDARIES
) -> ShotGroups:
    """[Y22]'s fixed index-range split: many = ``[0, b1)``, medium = ``[b1, b2)``,
    few = ``[b2, K)``.

    Assumes classes are ordered by decreasing training count, as the profiles produce. The
    default ``(36, 71)`` is [Y22]'s CIFAR-100 split (0-36, 36-71, 71-100); it differs from the
    count rule of :func:`shot_groups`, which on CIFAR-100-LT (ratio 100) gives 35/35/30 classes.
    """
    num_classes = check_int("num_classes", num_classes, minimum=1)
    b1, b2 = boundaries
    if not 0 <= b1 <= b2 <= num_classes:
        raise ValueError(
            f"boundaries must satisfy 0 <= b1 <= b2 <= num_classes={num_classes}, got {boundaries}"
        )
    idx = torch.arange(num_classes)
    return ShotGroups(idx[:b1], idx[b1:b2], idx[b2:])


def class_sampling_probs(counts: LabelsLike, sampling: str | float) -> Tensor:
    """Probability of drawing each class: proportional to ``n_k ** q``.

    ``sampling``: ``"instance"`` (q = 1, the data's own frequencies), ``"sqrt"`` (q = 1/2,
    square-root sampling), ``"balanced"`` (q = 0, every class equally often) or a float q.

    Returns:
        (K,) float64 probabilities summing to 1 (classes with n_k = 0 get 0).
    """
    q = _sampling_power(sampling)
    n = _as_counts(counts, name="counts").to(torch.float64)
    weights = torch.where(n > 0, n.clamp(min=1.0) ** q, torch.zeros_like(n))
    total = weights.sum()
    if total <= 0:
        raise ValueError("every class count is 0; nothing to sample")
    return weights / total


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """CPU generator for one epoch: ``_internal.seeding.derive_generator(seed, epoch)``.

    Seeded from ``(seed, epoch)`` without collisions between nearby pairs (seed 0 epoch 1
    and seed 1 epoch 0 differ); kept as the data module's name for the per-epoch stream.
    """
    return derive_generator(seed, epoch)


def epoch_indices(
    labels: LabelsLike,
    sampling: str | float = "shuffle",
    generator: torch.Generator | None = None,
    num_samples: int | None = None,
) -> Tensor:
    """Sample indices for one epoch.

    ``"sequential"``: 0..N-1. ``"shuffle"``: a random permutation. ``"instance"``,
    ``"sqrt"``, ``"balanced"`` or a float q: ``num_samples`` draws with replacement, each
    sample weighted so that class k is drawn with probability proportional to ``n_k ** q``.

    Args:
        labels: (N,) class labels.
        sampling: strategy, see above.
        generator: CPU ``torch.Generator`` driving the draw (required except for
            ``"sequential"``).
        num_samples: draws per epoch for the weighted strategies (default N).

    Returns:
        (num_samples,) int64 CPU tensor of indices.
    """
    labels_t = _as_labels(labels)
    n = labels_t.numel()
    if sampling == "sequential":
        return torch.arange(n)
    if generator is None:
        raise ValueError(f"sampling={sampling!r} needs a torch.Generator; pass generator=")
    if sampling == "shuffle":
        return torch.randperm(n, generator=generator)
    counts = torch.bincount(labels_t)
    class_p = class_sampling_probs(counts, sampling)
    per_sample = (class_p / counts.clamp(min=1).to(torch.float64))[labels_t]
    draws = check_int("num_samples", n if num_samples is None else num_samples, minimum=1)
    return torch.multinomial(per_sample, draws, replacement=True, generator=generator)


class ClassSampler(Sampler[int]):
    """A ``torch.utils.data.Sampler`` over :func:`epoch_indices`, for the DataLoader path.

    Epoch e draws from ``epoch_generator(seed, e)``; the epoch advances after each pass and
    ``set_epoch`` sets it, so a resumed run replays the same order.

    ``shard=(rank, world_size)``: every process draws the same order and keeps positions
    ``rank::world_size`` (disjoint shards). With ``drop_remainder=True`` the order is first
    cut to a multiple of world_size, so every process gets the same number of samples (as
    training needs); with False (evaluation) every sample is kept exactly once.
    """

    def __init__(
        self,
        labels: LabelsLike,
        sampling: str | float = "shuffle",
        seed: int = 0,
        num_samples: int | None = None,
        *,
        shard: tuple[int, int] = (0, 1),
        drop_remainder: bool = False,
    ) -> None:
        self.labels = _as_labels(labels)
        if sampling not in ("sequential", "shuffle"):
            _sampling_power(sampling)
        rank, world = shard
        if not 0 <= rank < world:
            raise ValueError(f"shard must be (rank, world_size), 0 <= rank < world_size: {shard}")
        self.rank, self.world_size, self.drop_remainder = rank, world, drop_remainder
        self.sampling = sampling
        self.seed = seed
        self.num_samples = self.labels.numel() if num_samples is None else num_samples
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _epoch_length(self) -> int:
        if self.sampling in ("sequential", "shuffle"):
            return self.labels.numel()
        return self.num_samples

    def __len__(self) -> int:
        n, world = self._epoch_length(), self.world_size
        if self.drop_remainder:
            return n // world
        return len(range(self.rank, n, world))

    def __iter__(self) -> Iterator[int]:
        generator = epoch_generator(self.seed, self.epoch)
        self.epoch += 1
        order = epoch_indices(self.labels, self.sampling, generator, self.num_samples)
        if self.drop_remainder:
            order = order[: order.numel() - order.numel() % self.world_size]
        return iter(order[self.rank :: self.world_size].tolist())


def _sampling_power(sampling: str | float) -> float:
    if isinstance(sampling, str):
        if sampling not in SAMPLINGS:
            known = ("sequential", "shuffle", *SAMPLINGS)
            raise ValueError(f"unknown sampling {sampling!r}; choose one of {known} or a float")
        return SAMPLINGS[sampling]
    if isinstance(sampling, bool) or not isinstance(sampling, int | float):
        raise ValueError(f"sampling must be a name or a float exponent, got {sampling!r}")
    return float(sampling)


def _check_ratio(imbalance_ratio: object) -> float:
    """The imbalance ratio n_max / n_min as a float >= 1."""
    return check_float("imbalance_ratio (n_max / n_min)", imbalance_ratio, minimum=1.0)


def _check_profile(profile: object) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")


def _as_labels(values: LabelsLike, name: str = "labels") -> Tensor:
    """(N,) int64 CPU class labels from a tensor, array or list; rejects negative labels."""
    t = check_labels(torch.as_tensor(values), name=name).cpu()
    if t.numel() and int(t.min()) < 0:
        raise ValueError(f"{name} must be >= 0 (class indices), got {int(t.min())}")
    return t


def _as_counts(values: LabelsLike, name: str) -> Tensor:
    """(K,) int64 CPU per-class counts from a tensor, array or list; rejects negatives."""
    t = torch.as_tensor(values)
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, one count per class, got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be integers, got dtype {t.dtype}")
    t = t.to(device="cpu", dtype=torch.int64)
    if t.numel() and int(t.min()) < 0:
        raise ValueError(f"{name} must be >= 0, got {int(t.min())}")
    return t
