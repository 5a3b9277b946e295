"""STL-10 from the official binary release (``stl10_binary/``).

``train_X.bin`` / ``test_X.bin`` hold uint8 images of 3 x 96 x 96 values each, stored
**column-major** (the MATLAB layout: within a channel, column after column), one image
after the other; ``train_y.bin`` / ``test_y.bin`` one uint8 label in 1..10 per image
(mapped here to 0..9); ``class_names.txt`` the ten names, one per line. The unlabeled split
(``unlabeled_X.bin``) and the predefined folds are not used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neuralcollapse.registry import register_dataset

from ..datasets import DataRequest
from ..files import DataFormatError, check_md5, fetch, read_release_members
from ..sources import LabeledImages
from ._common import PathLike, check_split

__all__ = ["STL10_FOLDER", "load_stl10"]

STL10_FOLDER = "stl10_binary"
_ARCHIVE = "stl10_binary.tar.gz"
_URL = "http://ai.stanford.edu/~acoates/stl10/" + _ARCHIVE
_MD5 = "91f7769df0f17e558f3565bffb0c7dfb"  # of the archive, as torchvision checks it
_SIDE = 96
_IMAGE_BYTES = 3 * _SIDE * _SIDE
# the largest member read, test_X.bin, takes 221 MB (8,000 images)
_MAX_MEMBER_BYTES = 512 << 20


def load_stl10(root: PathLike, split: str = "train", *, download: bool = False) -> LabeledImages:
    """STL-10's labelled images from the official binary release.

    ``root`` may be the extracted ``stl10_binary`` folder, the ``stl10_binary.tar.gz``
    archive (read in place, nothing is extracted: one sequential pass, slow for this 2.6 GB
    archive, so extract it once for repeated use), or a folder holding either (the folder
    is preferred).

    Args:
        root: see above.
        split: ``"train"`` (5,000 images, 500 per class) or ``"test"`` (8,000).
        download: fetch the archive into ``root`` when neither folder nor archive is there
            (md5-checked); an archive already present is md5-checked too.

    Returns:
        :class:`LabeledImages`: uint8 images (N, 3, 96, 96) in the usual row-major
        orientation, int64 labels 0..9 (the files' 1..10 minus one) and the names of
        ``class_names.txt``.
    """
    check_split(split, ("train", "test"), "STL-10")
    source = _locate(Path(root).expanduser(), download)
    wanted = [f"{split}_X.bin", f"{split}_y.bin", "class_names.txt"]
    raw = _read_members(source, wanted)
    where = {m: _where(source, m) for m in wanted}
    names = _class_names(raw["class_names.txt"], where["class_names.txt"])
    images = _images(raw[wanted[0]], where[wanted[0]])
    labels = np.frombuffer(raw[wanted[1]], dtype=np.uint8).astype(np.int64)
    if labels.size != images.shape[0]:
        raise DataFormatError(
            f"{where[wanted[1]]} holds {labels.size} labels but {where[wanted[0]]} holds "
            f"{images.shape[0]} images"
        )
    if labels.size and (labels.min() < 1 or labels.max() > len(names)):
        raise DataFormatError(
            f"{where[wanted[1]]}: labels span [{labels.min()}, {labels.max()}], expected "
            f"1..{len(names)}"
        )
    return LabeledImages(torch.from_numpy(images), torch.from_numpy(labels - 1), names)


def _locate(root: Path, download: bool) -> Path:
    if root.is_dir() and root.name == STL10_FOLDER:
        return root
    if root.is_file():
        if download:
            check_md5(root, _MD5, _ARCHIVE)
        return root
    folder, archive = root / STL10_FOLDER, root / _ARCHIVE
    if folder.is_dir():
        return folder
    if archive.is_file():
        if download:
            check_md5(archive, _MD5, _ARCHIVE)
        return archive
    if not download:
        raise FileNotFoundError(
            f"no STL-10 data at {root}: expected the folder {folder} or the archive {archive} "
            f"(or pass download=True to fetch {_URL})"
        )
    return fetch(_URL, archive, _MD5)


def _where(source: Path, member: str) -> str:
    return f"{source}/{STL10_FOLDER}/{member}" if source.is_file() else str(source / member)


def _read_members(source: Path, members: list[str]) -> dict[str, bytes]:
    found = read_release_members(
        source, STL10_FOLDER, members, max_bytes=_MAX_MEMBER_BYTES, release=_ARCHIVE
    )
    for member, content in found.items():
        if content is None:
            raise FileNotFoundError(
                f"{_where(source, member)} is missing; an STL-10 release holds train_X.bin, "
                "train_y.bin, test_X.bin, test_y.bin and class_names.txt"
            )
    return found  # type: ignore[return-value]


def _class_names(raw: bytes, where: str) -> tuple[str, ...]:
    try:
        names = tuple(line.strip() for line in raw.decode("utf-8").splitlines() if line.strip())
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{where} is not UTF-8 text ({err})") from err
    if not names:
        raise DataFormatError(f"{where} lists no class names; expected one name per line")
    return names


def _images(raw: bytes, where: str) -> np.ndarray:
    if len(raw) % _IMAGE_BYTES:
        raise DataFormatError(
            f"{where} holds {len(raw)} bytes, not a whole number of 3 x 96 x 96 images "
            f"({_IMAGE_BYTES} bytes each); the file is truncated or corrupt"
        )
    columns = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3, _SIDE, _SIDE)
    # column-major storage: the third axis runs over columns, the last over rows
    return np.ascontiguousarray(columns.transpose(0, 1, 3, 2))


@register_dataset("stl10", reads_files=True, release=True)
def _stl10(request: DataRequest) -> tuple[LabeledImages, LabeledImages]:
    """STL-10's labelled images from the official binary release under data.root."""
    first, second = request.splits
    return load_stl10(request.root, first), load_stl10(request.root, second)
