"""What the dataset readers share beyond :mod:`neuralcollapse.data.files`: the split check,
and the file-backed image set the image readers return, :class:`ImageFiles` (with
:func:`materialize` and :data:`RESIZE_MODES`), which lives in
:mod:`neuralcollapse.data.sources` beside the image folders and list files built on it.

Nothing here prints. Errors name the file: :class:`FileNotFoundError` for a missing one,
:class:`~neuralcollapse.data.files.DataFormatError` for one that does not hold what its
format promises.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ..datasets import DataRequest
from ..files import (
    DataFormatError,
    check_md5,
    confined_path,
    extract_archive,
    fetch,
    read_id_table,
    read_lines,
)
from ..sources import RESIZE_MODES, ImageFiles, materialize

__all__ = [
    "RESIZE_MODES",
    "DataFormatError",
    "ImageFiles",
    "check_md5",
    "check_split",
    "confined_path",
    "extract_archive",
    "fetch",
    "image_file_pair",
    "materialize",
    "read_id_table",
    "read_lines",
]

PathLike = str | os.PathLike[str]


def check_split(split: str, allowed: Sequence[str], dataset: str) -> str:
    """``split`` if it is one of ``allowed``, else a ValueError listing them."""
    if split not in allowed:
        raise ValueError(
            f"unknown {dataset} split {split!r}; choose one of {', '.join(map(repr, allowed))}"
        )
    return split


def image_file_pair(
    request: DataRequest, load: Callable[[str], ImageFiles]
) -> tuple[ImageFiles, ImageFiles]:
    """(training split, evaluation split) of an image-file release, ``load(split)`` each
    (``request.splits``); both must name the same classes."""
    first, second = request.splits
    train, test = load(first), load(second)
    if train.class_names != test.class_names:
        raise DataFormatError(
            f"data.splits={[first, second]}: the two splits of {request.root} name different "
            "classes; choose splits of one release"
        )
    return train, test
