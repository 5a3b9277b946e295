"""The data sets read from their official releases (``data.name`` mnist, fashion_mnist,
svhn, stl10, cub, fgvc_aircraft, inaturalist): which reader and splits a config asks for,
the tree a data set ships, and where the images of image-file sets live.

Array releases (MNIST, Fashion-MNIST, SVHN, STL-10) load whole as uint8 tensors. Image
files (CUB, FGVC-Aircraft, iNaturalist, and image folders / list files) are decoded into
the device-resident store when they fit in ``data.memory_limit_mb`` (``data.store=auto``),
else streamed from disk by DataLoader workers; both paths see the same decoded images.
"""

from __future__ import annotations

import functools
from pathlib import Path

from torch.utils.data import Dataset

from neuralcollapse.data import (
    LabeledImages,
    load_cub,
    load_fgvc_aircraft,
    load_inaturalist,
    load_mnist,
    load_stl10,
    load_svhn,
    materialize,
)
from neuralcollapse.errors import ConfigError, usage_errors
from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.train.config import IMAGE_FILE_DATA, DataConfig

__all__ = [
    "ARRAY_DATA",
    "DEFAULT_SPLITS",
    "load_array_sets",
    "load_image_file_sets",
    "shipped_hierarchy",
    "splits_of",
    "store_images",
]

ARRAY_DATA = ("mnist", "fashion_mnist", "svhn", "stl10")
DEFAULT_SPLITS = {"fgvc_aircraft": ("trainval", "test"), "inaturalist": ("train", "val")}
_MB = 1 << 20


def splits_of(cfg: DataConfig) -> tuple[str, str]:
    """(training split, evaluation split): ``data.splits``, else the data set's default."""
    if cfg.splits is not None:
        return cfg.splits[0], cfg.splits[1]
    return DEFAULT_SPLITS.get(cfg.name, ("train", "test"))


def load_array_sets(cfg: DataConfig) -> tuple[LabeledImages, LabeledImages]:
    """Train and evaluation sets of an array release, as uint8 tensors."""
    loaders = {
        "mnist": functools.partial(load_mnist, fashion=False),
        "fashion_mnist": functools.partial(load_mnist, fashion=True),
        "svhn": load_svhn,
        "stl10": load_stl10,
    }
    load = loaders[cfg.name]
    first, second = splits_of(cfg)
    with usage_errors(f"data.name={cfg.name!r}"):
        return load(cfg.root, first), load(cfg.root, second)


def load_image_file_sets(cfg: DataConfig) -> tuple[Dataset, Dataset]:
    """Train and evaluation sets of an image-file release, decoded on access."""
    common = {"size": cfg.image_size, "resize": cfg.resize}
    if cfg.name == "cub":
        load = functools.partial(load_cub, cfg.root, **common)
    elif cfg.name == "fgvc_aircraft":
        load = functools.partial(
            load_fgvc_aircraft,
            cfg.root,
            level=cfg.label_level,
            crop_banner=cfg.crop_banner,
            **common,
        )
    elif cfg.name == "inaturalist":
        load = functools.partial(load_inaturalist, cfg.root, **common)
    else:
        raise ValueError(f"{cfg.name!r} is not one of {IMAGE_FILE_DATA}")
    first, second = splits_of(cfg)
    with usage_errors(f"data.name={cfg.name!r}"):
        train, test = load(first), load(second)
    if train.class_names != test.class_names:
        raise ConfigError(
            f"data.splits={[first, second]}: the two splits of {cfg.root} name different classes"
        )
    return train, test


def shipped_hierarchy(cfg: DataConfig) -> Hierarchy:
    """``data.hierarchy=dataset``: FGVC-Aircraft's level tree (leaves at
    ``data.label_level``) or iNaturalist's taxonomy (from the training split's JSON)."""
    with usage_errors("data.hierarchy='dataset'"):
        if cfg.name == "fgvc_aircraft":
            return Hierarchy.from_fgvc_aircraft(cfg.root, level=cfg.label_level)
        if cfg.name == "inaturalist":
            return Hierarchy.from_inaturalist(Path(cfg.root) / f"{splits_of(cfg)[0]}2019.json")
    raise ConfigError(f"data.name={cfg.name!r} ships no class tree; give data.hierarchy a file")


def _decoded_bytes(dataset: Dataset, size: int) -> int:
    return len(dataset) * 3 * size * size


def store_images(
    train: Dataset, test: Dataset, class_names: tuple[str, ...], cfg: DataConfig
) -> tuple[LabeledImages | Dataset, LabeledImages | Dataset]:
    """Decode both sets into memory (``data.store=memory``, or ``auto`` when their uint8
    images take at most ``data.memory_limit_mb``), else return them unchanged (streamed).

    The decoded sets report their size in bytes as ``LabeledImages.nbytes``.
    """
    if cfg.store == "stream":
        return train, test
    if cfg.image_size is None:
        if cfg.store == "memory":
            raise ConfigError(
                "data.store='memory' stacks the decoded images into one tensor: set "
                "data.image_size so they share one size"
            )
        return train, test
    need = _decoded_bytes(train, cfg.image_size) + _decoded_bytes(test, cfg.image_size)
    if cfg.store == "auto" and need > cfg.memory_limit_mb * _MB:
        return train, test
    with usage_errors(f"data.name={cfg.name!r}"):
        return tuple(
            materialize(part, class_names, num_workers=cfg.num_workers) for part in (train, test)
        )
