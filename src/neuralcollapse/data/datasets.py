"""The data-set registry's contract: what a registered data set is given and declares.

A data set is one function decorated with
:func:`neuralcollapse.registry.register_dataset`, beside its loader::

    @register_dataset("cub", reads_files=True, release=True, image_files=True, any_size=True)
    def _cub(request: DataRequest) -> tuple[ImageFiles, ImageFiles]:
        \"\"\"CUB-200-2011 (200 bird species) from its official release folder.\"\"\"
        train_split, test_split = request.splits
        ...

The function takes a :class:`DataRequest` and returns ``(training split, evaluation
split)``: two :class:`~neuralcollapse.data.LabeledImages` (held whole in memory and batched
on the device) or two datasets of image files (``labels`` tensor and ``class_names``, items
``(uint8 image (C, H, W), label)``; decoded into memory or streamed by DataLoader workers).
The keyword arguments of ``register_dataset`` besides ``options`` are the data set's
:class:`DatasetTraits`, what the trainer and the config checks need to know about it; its
own config keys, if any, are an ``options`` dataclass read from ``data.options``.

This module imports neither torch nor the readers, so config checks can read the traits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuralcollapse.registry import DATASETS, Entry

__all__ = ["DataRequest", "DatasetTraits", "dataset_traits"]


@dataclass(frozen=True)
class DataRequest:
    """What a registered data set's function is given.

    Attributes:
        config: the run's ``data`` section (:class:`neuralcollapse.train.config.DataConfig`:
            ``root``, ``image_size``, ``resize``, ``splits``, ... as set by the user).
        seed: the run's seed (``train.seed``), for data sets drawn at random.
        options: the entry's options dataclass filled from ``data.options``, or None.
        hierarchy: the class tree (or distances) the run uses, when the data set's classes
            come from it (``hierarchical``); else None.
        default_splits: the traits' ``default_splits``.
    """

    config: Any
    seed: int = 0
    options: Any = None
    hierarchy: Any = None
    default_splits: tuple[str, str] = ("train", "test")

    @property
    def root(self) -> Path:
        """``data.root`` as a path (a ValueError when it is not set)."""
        root = getattr(self.config, "root", None)
        if root is None:
            raise ValueError("data.root is not set: point it at the data set's folder")
        return Path(root).expanduser()

    @property
    def splits(self) -> tuple[str, str]:
        """(training split, evaluation split): ``data.splits``, else the data set's default."""
        chosen = getattr(self.config, "splits", None)
        return (chosen[0], chosen[1]) if chosen else self.default_splits

    @property
    def allow_outside_root(self) -> bool:
        """``data.allow_outside_root``: whether listed files may lie outside ``data.root``."""
        return bool(getattr(self.config, "allow_outside_root", False))


@dataclass(frozen=True)
class DatasetTraits:
    """What a registered data set declares (``register_dataset(name, **traits)``).

    Attributes:
        reads_files: it reads files under ``data.root`` (which must then be set).
        requires: other ``data`` keys that must be set (``list_file``: ``train_list``,
            ``test_list``).
        release: an official release with named splits (``data.splits`` applies).
        default_splits: its (training, evaluation) splits when ``data.splits`` is unset.
        image_files: it decodes image files (``data.image_size``, the decoded size, applies;
            its splits are datasets of files, decoded into memory or streamed).
        any_size: its image files come in many sizes (``data.image_size`` must be set;
            ``data.resize`` applies).
        tree: ``f(request) -> Hierarchy``, the class tree the data set ships
            (``data.hierarchy: dataset``); None when it ships none.
        default_tree: ``f(data_config) -> Hierarchy``, the tree its classes come from when
            ``data.hierarchy`` is unset (the synthetic ``hierarchical`` mixture); None
            otherwise.
    """

    reads_files: bool = False
    requires: tuple[str, ...] = ()
    release: bool = False
    default_splits: tuple[str, str] = ("train", "test")
    image_files: bool = False
    any_size: bool = False
    tree: Callable[[DataRequest], Any] | None = None
    default_tree: Callable[[Any], Any] | None = None


_TRAITS = {f.name for f in dataclasses.fields(DatasetTraits)}


def dataset_traits(entry: Entry | str) -> DatasetTraits:
    """The :class:`DatasetTraits` of a registered data set (an entry or its name).

    Raises:
        ConfigError: an unregistered name (listing the registered ones).
        ValueError: the entry declares a trait this version does not know.
    """
    if isinstance(entry, str):
        entry = DATASETS.get(entry)
    unknown = sorted(set(entry.meta) - _TRAITS)
    if unknown:
        raise ValueError(
            f"data set {entry.name!r} declares unknown trait(s) {unknown}; known: {sorted(_TRAITS)}"
        )
    return DatasetTraits(**dict(entry.meta))
