"""Where the images of file-backed data sets live during a run: decoded into the
device-resident store when they fit in ``data.memory_limit_mb`` (``data.store=auto``), else
streamed from disk by DataLoader workers; both paths see the same decoded images.

Which data set is read, and how, is the registered data set's business
(:mod:`neuralcollapse.data.datasets`); this module only decides where its decoded images
are kept.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from neuralcollapse.data import LabeledImages, materialize
from neuralcollapse.errors import ConfigError, usage_errors
from neuralcollapse.train.config import DataConfig

__all__ = ["store_images"]

_MB = 1 << 20


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
