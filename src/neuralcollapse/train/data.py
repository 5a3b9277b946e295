"""The data side of a run: load the configured set, subset it, and batch it on the device.

Tensor data sets (digits, CIFAR, Gaussian mixtures) live whole on the training device and
are batched by :class:`~neuralcollapse.data.DeviceLoader` (augmentation per batch on the
device). File-backed sets (image folders, list files) go through a standard ``DataLoader``
with workers, and are augmented and normalised on the device after transfer.

The splits of a run, in the order they are made:

1. the training and test splits as loaded (the release's, the folder's, the list files');
2. the validation split (``data.val_fraction`` or ``data.val_list``), held out of the loaded
   training split, so it keeps that split's class proportions (balanced for CIFAR-LT,
   digits and the other artificially long-tailed sets, like their test splits);
3. the long-tailed training subset (``data.imbalance_ratio``) of what is left. Its class
   counts, ``TrainingData.train_counts``, define the shot groups.

The training split is evaluated without augmentation, on a fixed stratified subsample of
``eval.train_subsample`` samples except at the last epoch (:func:`train_eval_subset`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from neuralcollapse._internal.seeding import derive_generator, derive_seed
from neuralcollapse.data import (
    DataRequest,
    DeviceLoader,
    LabeledImages,
    center_crop,
    channel_stats,
    color_jitter,
    dataset_traits,
    long_tailed_indices,
    long_tailed_subset,
    make_dataloader,
    materialize,
    normalize,
    original_worker_errors,
    random_crop_flip,
    random_resized_crop,
)
from neuralcollapse.errors import ConfigError, usage_errors
from neuralcollapse.hierarchy import (
    ClassDistances,
    Hierarchy,
    check_class_count,
    load_hierarchy,
    match_classes,
)
from neuralcollapse.registry import DATASETS
from neuralcollapse.train.config import Config, DataConfig
from neuralcollapse.train.distributed import DistContext
from neuralcollapse.train.release_data import store_images

__all__ = [
    "Batches",
    "Loaders",
    "TrainingData",
    "build_loaders",
    "load_splits",
    "load_training_data",
    "read_index_list",
    "subsample_counts",
    "train_eval_subset",
    "validation_counts",
]

# Normalisation of file-backed (ImageNet-style) images: the usual ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class TrainingData:
    """Train, validation and test sets of one run.

    ``train`` / ``val`` / ``test`` are :class:`LabeledImages` for tensor sets, or datasets
    with a ``labels`` tensor for file-backed sets; ``val`` is None without a validation
    split. ``train_counts`` (K,) are the training samples per class after the validation
    split and the long-tailed subset; ``mean`` / ``std`` normalise channels.
    """

    train: LabeledImages | Dataset
    test: LabeledImages | Dataset
    class_names: tuple[str, ...]
    train_counts: Tensor
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    hierarchy: Hierarchy | ClassDistances | None = None  # classes in data-set order
    val: LabeledImages | Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_memory(self) -> bool:
        return isinstance(self.train, LabeledImages)


def _long_tailed(dataset: LabeledImages | Dataset, cfg: DataConfig, seed: int):
    """The long-tailed training subset of ``data.imbalance_ratio`` (all of it at ratio 1)."""
    if cfg.imbalance_ratio == 1:
        return dataset
    with usage_errors("data"):
        keep = long_tailed_subset(
            dataset.labels,
            imbalance_ratio=cfg.imbalance_ratio,
            profile=cfg.profile,
            n_max=cfg.n_max,
            seed=seed,
        )
    return _subset(dataset, keep)


class _LabelledSubset(Dataset):
    """A subset of a file-backed dataset that keeps the ``labels`` tensor samplers need."""

    def __init__(self, base: Dataset, indices: Tensor) -> None:
        self.base, self.indices = base, indices
        self.labels = base.labels[indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.base[int(self.indices[index])]


def _class_tree(cfg: DataConfig, request: DataRequest) -> Hierarchy | ClassDistances | None:
    """The run's class tree: data.hierarchy (a file, builtin:NAME, or "dataset" for the
    tree the data set ships), else the tree the data set's classes come from, else None."""
    traits = dataset_traits(cfg.name)
    if cfg.hierarchy == "dataset":
        if traits.tree is None:
            raise ConfigError(
                f"data.name={cfg.name!r} ships no class tree; give data.hierarchy a file"
            )
        with usage_errors("data.hierarchy='dataset'"):
            return traits.tree(request)
    if cfg.hierarchy:
        with usage_errors(f"data.hierarchy={cfg.hierarchy!r}"):
            return load_hierarchy(cfg.hierarchy, max_classes=cfg.max_classes)
    if traits.default_tree is not None:
        with usage_errors(f"data.name={cfg.name!r}"):
            return traits.default_tree(cfg)
    return None


def load_splits(config: Config) -> tuple[LabeledImages | Dataset, LabeledImages | Dataset, object]:
    """(training split, evaluation split, class tree or None) of the registered data set
    ``data.name``, as its function returns them (before any validation split or subset)."""
    cfg = config.data
    entry = DATASETS.get(cfg.name)
    traits = dataset_traits(entry)
    options = entry.parse_options(getattr(cfg, "options", None), "data.options")
    request = DataRequest(cfg, config.train.seed, options, None, traits.default_splits)
    hierarchy = _class_tree(cfg, request)
    if hierarchy is not None:
        with usage_errors(f"data.hierarchy={cfg.hierarchy!r}"):
            # before anything of size K x K is built (frames, metrics, mixtures)
            check_class_count(hierarchy.num_classes, cfg.max_classes, what="class tree")
        if isinstance(hierarchy, Hierarchy):
            hierarchy.max_classes = cfg.max_classes
    request = dataclasses.replace(request, hierarchy=hierarchy)
    with usage_errors(f"data.name={cfg.name!r}"):
        train, test = entry.build(request)
    for part, split in (("training", train), ("evaluation", test)):
        if not isinstance(getattr(split, "labels", None), Tensor) or not hasattr(
            split, "class_names"
        ):
            raise TypeError(
                f"data set {cfg.name!r} returned a {type(split).__name__} as its {part} split; "
                "a registered data set returns LabeledImages or datasets with a labels tensor "
                "and class_names"
            )
    return train, test, hierarchy


def load_training_data(config: Config) -> TrainingData:
    """Load the data of ``config``: the splits as loaded, the validation split held out of
    the training split, the long-tailed subset of the rest (all seeded by train.seed)."""
    cfg, seed = config.data, config.train.seed
    train, test, hierarchy = load_splits(config)
    if isinstance(train, LabeledImages):
        train, val = _hold_out_validation(train, cfg, seed, train.class_names)
        train = _long_tailed(train, cfg, seed)
        mean, std = channel_stats(train.images)
        data = TrainingData(
            train,
            test,
            train.class_names,
            train.class_counts(),
            tuple(mean.tolist()),
            tuple(std.tolist()),
            hierarchy,
            val,
        )
    else:
        names = tuple(test.class_names)
        train, val = _hold_out_validation(train, cfg, seed, names)
        train = _long_tailed(train, cfg, seed)
        counts = torch.bincount(train.labels, minlength=len(names))
        # decoded into the device-resident store when they fit, else streamed; ImageNet
        # statistics either way (the convention of the pretrained backbones they start from)
        train, test = store_images(train, test, names, cfg)
        if val is not None and isinstance(train, LabeledImages):
            with usage_errors(f"data.name={cfg.name!r}"):
                val = materialize(val, names, num_workers=cfg.num_workers)  # stored like train
        data = TrainingData(train, test, names, counts, IMAGENET_MEAN, IMAGENET_STD, hierarchy, val)
    if hierarchy is not None:
        where = f"data.hierarchy={cfg.hierarchy!r}" if cfg.hierarchy else "the data set's tree"
        try:
            data.hierarchy = match_classes(hierarchy, data.class_names, source="the file")
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if isinstance(data.hierarchy, Hierarchy):
            data.hierarchy.max_classes = cfg.max_classes
    return data


# --------------------------------------------------------------------------- validation


def validation_counts(counts: Tensor, fraction: float) -> Tensor:
    """(K,) samples per class that ``data.val_fraction`` = ``fraction`` holds out of a
    split with ``counts`` (K,) per class: ``round(fraction * n_k)`` (halves up)."""
    return torch.floor(counts.double() * fraction + 0.5).long()


def read_index_list(path: str | Path, size: int) -> Tensor:
    """The sorted (M,) int64 indices of an index-list file (``data.val_list``): 0-based
    integers into a split of ``size`` samples, separated by whitespace or commas, ``#``
    starting a comment.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: a word that is not an integer, an index outside ``[0, size)``, an
            index listed twice, or no index at all (naming the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data.val_list={str(path)!r} does not exist")
    indices: list[int] = []
    seen: dict[int, int] = {}
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        for word in line.split("#", 1)[0].replace(",", " ").split():
            where = f"data.val_list={str(path)!r} line {number}"
            if not re.fullmatch(r"[0-9]+", word):
                raise ConfigError(f"{where}: {word!r} is not a 0-based sample index")
            index = int(word)
            if index >= size:
                raise ConfigError(
                    f"{where}: index {index} is outside the training split's {size} samples "
                    f"(0..{size - 1})"
                )
            if index in seen:
                raise ConfigError(
                    f"{where}: index {index} is listed twice (also line {seen[index]})"
                )
            seen[index] = number
            indices.append(index)
    if not indices:
        raise ConfigError(f"data.val_list={str(path)!r} lists no index")
    return torch.tensor(sorted(indices), dtype=torch.int64)


def _hold_out_validation(
    train: LabeledImages | Dataset, cfg: DataConfig, seed: int, class_names: tuple[str, ...]
) -> tuple[LabeledImages | Dataset, LabeledImages | Dataset | None]:
    """(what stays for training, the validation split) of the loaded training split;
    the split is None without data.val_fraction / data.val_list."""
    if cfg.val_fraction == 0 and cfg.val_list is None:
        return train, None
    labels = train.labels
    counts = torch.bincount(labels, minlength=len(class_names))
    if cfg.val_list is not None:
        held = torch.zeros(len(labels), dtype=torch.bool)
        held[read_index_list(cfg.val_list, len(labels))] = True
        key = f"data.val_list={cfg.val_list!r}"
    else:
        want = validation_counts(counts, cfg.val_fraction)
        if int(want.sum()) == 0:
            raise ConfigError(
                f"data.val_fraction={cfg.val_fraction} holds out no sample of the {len(labels)} "
                "training samples (round(f * n) is 0 for every class): raise it"
            )
        chosen = long_tailed_indices(labels, want, seed=derive_seed(seed, "validation-split"))
        held = torch.zeros(len(labels), dtype=torch.bool)
        held[chosen] = True
        key = f"data.val_fraction={cfg.val_fraction}"
    left = torch.bincount(labels[~held], minlength=len(class_names))
    emptied = [k for k in range(len(class_names)) if counts[k] > 0 and left[k] == 0]
    if emptied:
        shown = ", ".join(f"{class_names[k]!r} ({int(counts[k])} samples)" for k in emptied[:5])
        more = f" and {len(emptied) - 5} more" if len(emptied) > 5 else ""
        raise ConfigError(
            f"{key} leaves class(es) {shown}{more} with no training sample: hold out fewer "
            "samples of them"
        )
    return (
        _subset(train, torch.nonzero(~held).flatten()),
        _subset(train, torch.nonzero(held).flatten()),
    )


def _subset(dataset: LabeledImages | Dataset, indices: Tensor) -> LabeledImages | Dataset:
    if isinstance(dataset, LabeledImages):
        return dataset.subset(indices)
    return _LabelledSubset(dataset, indices)


class Batches:
    """One interface over both loader kinds: iterate for ``(x, y)`` on the device.

    ``batch_size`` is global: under torchrun each process takes its disjoint shard of every
    batch (``context``). ``set_epoch(e)`` makes epoch e's order and augmentation a function
    of (seed, e), so a resumed run sees the batches it would have seen. Training under
    several processes drops a final incomplete batch, so every rank takes the same steps.
    """

    def __init__(
        self,
        dataset: LabeledImages | Dataset,
        data: TrainingData,
        *,
        batch_size: int,
        training: bool,
        config: Config,
        context: DistContext,
    ) -> None:
        cfg = config.data
        self.crop = cfg.crop_padding if training and cfg.augment == "crop_flip" else 0
        self.flip = training and cfg.augment in ("crop_flip", "flip")
        # random_resized_crop (training) resizes to data.crop_size; anything else is
        # centre-cropped to it, after normalisation, on the device
        self.resized_crop = training and cfg.augment == "random_resized_crop"
        self.crop_size, self.rrc_scale = cfg.crop_size, tuple(cfg.rrc_scale)
        self.jitter = cfg.color_jitter if training else 0.0
        sampling = cfg.sampling if training else "sequential"
        device = context.device
        self.device, self.mean, self.std = device, data.mean, data.std
        self.seed = config.train.seed
        self._epoch = 0
        # Several processes must take the same number of steps; and a final training batch
        # of one sample would break BatchNorm (no batch statistics): both drop it.
        drop_last = training and (context.enabled or len(dataset.labels) % batch_size == 1)
        if isinstance(dataset, LabeledImages):
            self._loader = DeviceLoader(
                dataset.images,
                dataset.labels,
                batch_size,
                sampling=sampling,
                crop_padding=self.crop,
                flip=self.flip,
                mean=data.mean,
                std=data.std,
                seed=self.seed,
                device=device,
                shard=context.shard,
                drop_last=drop_last,
            )
            self._files = False
        else:
            self._loader = make_dataloader(
                dataset,
                max(batch_size // context.world_size, 1),
                sampling=sampling,
                seed=self.seed,
                num_workers=cfg.num_workers,
                pin_memory=device.type == "cuda",
                shard=context.shard,
                drop_last=drop_last,
            )
            self._files = True
        self.labels = dataset.labels

    def __len__(self) -> int:
        return len(self._loader)

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        if self._files:
            self._loader.sampler.set_epoch(epoch)
        else:
            self._loader.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        generator = derive_generator(self.seed, "augment", self._epoch)
        if not self._files:
            for images, labels in self._loader:
                yield self._jitter(self._fit_size(images, generator), generator), labels
            return
        with original_worker_errors():
            for images, labels in self._loader:
                images = images.to(self.device, non_blocking=True)
                if self.crop or self.flip:
                    images = random_crop_flip(images, self.crop, self.flip, generator)
                images = self._fit_size(normalize(images, self.mean, self.std), generator)
                images = self._jitter(images, generator)
                yield images, labels.to(self.device, non_blocking=True)

    def _jitter(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """data.color_jitter on the [0, 1] scale: the normalised batch is mapped back,
        jittered and normalised again (crops commute with the per-channel normalisation,
        so this is torchvision's order: crop, flip, jitter, normalise)."""
        if not self.jitter:
            return images
        if self.mean is None:
            return color_jitter(images, self.jitter, generator)
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        return (color_jitter(images * std + mean, self.jitter, generator) - mean) / std

    def _fit_size(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """data.crop_size: a random-resized crop (training with that augmentation), else
        the central square; unchanged without a crop size."""
        if self.resized_crop:
            size = self.crop_size or images.shape[-1]
            return random_resized_crop(images, size, scale=self.rrc_scale, generator=generator)
        if self.crop_size is not None and self.crop_size < min(images.shape[-2:]):
            return center_crop(images, self.crop_size)
        return images


def _check_batch_split(config: Config, context: DistContext) -> None:
    parts = context.world_size * config.train.accumulate
    if config.train.batch_size % parts:
        raise ConfigError(
            f"train.batch_size={config.train.batch_size} (the global batch) must divide into "
            f"{context.world_size} process(es) x train.accumulate={config.train.accumulate}"
        )


def subsample_counts(counts: Tensor, size: int) -> Tensor:
    """(K,) per-class sizes of a stratified subsample of ``size`` samples of a split with
    ``counts`` (K,) per class: every class present keeps one sample, the other
    ``size - (classes present)`` are shared in proportion to ``n_k - 1`` (largest
    remainder, ties to the lower class index), so the sizes sum to exactly ``size``.
    ``size`` >= the split's size gives ``counts`` itself.

    Raises:
        ValueError: ``size`` is below the number of classes present.
    """
    counts = counts.long()
    total, present = int(counts.sum()), int((counts > 0).sum())
    if size >= total:
        return counts.clone()
    if size < present:
        raise ValueError(
            f"a subsample of {size} cannot hold one sample of each of the {present} classes"
        )
    spare = (counts - 1).clamp(min=0)
    share = (size - present) * spare.double() / max(int(spare.sum()), 1)
    extra = torch.floor(share).long()
    left = size - present - int(extra.sum())
    order = torch.argsort(-(share - extra.double()), stable=True)
    extra[order[:left]] += 1
    return (counts > 0).long() + extra


def train_eval_subset(
    data: TrainingData, config: Config, *, full: bool = False
) -> LabeledImages | Dataset:
    """The training set for evaluation: all of it (``full``, or ``eval.train_subsample``
    null or >= its size), else the stratified subsample of ``eval.train_subsample``
    samples (:func:`subsample_counts`) drawn once with train.seed: the same subset every
    epoch and on every rank.

    Raises:
        ConfigError: eval.train_subsample is below the number of classes.
    """
    limit, n = config.eval.train_subsample, len(data.train.labels)
    if full or limit is None or limit >= n:
        return data.train
    try:
        sizes = subsample_counts(data.train_counts, limit)
    except ValueError as exc:
        raise ConfigError(f"eval.train_subsample={limit}: {exc}; raise it or set null") from None
    keep = long_tailed_indices(
        data.train.labels, sizes, seed=derive_seed(config.train.seed, "train-eval-subset")
    )
    return _subset(data.train, keep)


class Loaders(NamedTuple):
    """The batches of a run, the evaluated ones without augmentation: ``train`` (augmented,
    sampled), ``train_eval`` (the whole training set), ``test``, ``train_sample`` (the
    ``eval.train_subsample`` of the training set; the same object as ``train_eval`` when
    that is the whole set) and ``val`` (None without a validation split)."""

    train: Batches
    train_eval: Batches
    test: Batches
    train_sample: Batches | None = None
    val: Batches | None = None


def build_loaders(data: TrainingData, config: Config, context: DistContext) -> Loaders:
    """The :class:`Loaders` of a run.

    Training batches hold ``train.batch_size / train.accumulate`` samples (summed over
    processes): the optimiser steps once per ``train.accumulate`` of them.
    """
    _check_batch_split(config, context)
    micro_batch = config.train.batch_size // config.train.accumulate
    common = dict(config=config, context=context)
    train = Batches(data.train, data, batch_size=micro_batch, training=True, **common)

    def evaluated(dataset: LabeledImages | Dataset) -> Batches:
        return Batches(dataset, data, batch_size=config.eval.batch_size, training=False, **common)

    train_eval = evaluated(data.train)
    sample = train_eval_subset(data, config)
    train_sample = train_eval if sample is data.train else evaluated(sample)
    val = None if data.val is None else evaluated(data.val)
    return Loaders(train, train_eval, evaluated(data.test), train_sample, val)
