"""What the dataset readers share: finding the official files, fetching them, small text
annotation files, and the file-backed image set that can be decoded into memory.

Nothing here prints. Errors name the file: :class:`FileNotFoundError` for a missing one,
:class:`~neuralcollapse.data.sources.DataFormatError` for one that does not hold what its
format promises.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from neuralcollapse._internal.files import atomic_write

from ..sources import DataFormatError, LabeledImages, _optional

__all__ = [
    "RESIZE_MODES",
    "ImageFiles",
    "check_md5",
    "check_split",
    "extract_archive",
    "fetch",
    "materialize",
    "read_id_table",
    "read_lines",
]

RESIZE_MODES = ("stretch", "center_crop")
PathLike = str | os.PathLike[str]


def check_split(split: str, allowed: Sequence[str], dataset: str) -> str:
    """``split`` if it is one of ``allowed``, else a ValueError listing them."""
    if split not in allowed:
        raise ValueError(
            f"unknown {dataset} split {split!r}; choose one of {', '.join(map(repr, allowed))}"
        )
    return split


# ----------------------------------------------------------------------------- fetching


def check_md5(path: Path, expected: str, what: str) -> None:
    """Refuse ``path`` unless its md5 is ``expected`` (``what`` names the official file)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise DataFormatError(
            f"md5 of {path} is {digest.hexdigest()}, expected {expected} (the official {what}); "
            "delete the file and download it again"
        )


def fetch(url: str, target: Path, md5: str | None = None) -> Path:
    """Download ``url`` to ``target`` atomically (a partial download never appears under
    the target's name); with ``md5``, a download whose digest differs is discarded."""

    def write(out: IO[bytes]) -> None:
        digest = hashlib.md5()
        with urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if md5 is not None and digest.hexdigest() != md5:
            raise DataFormatError(
                f"the file downloaded from {url} has md5 {digest.hexdigest()}, expected {md5}; "
                "the download was discarded, try again"
            )

    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(target, write)


def extract_archive(archive: Path, into: Path) -> None:
    """Unpack a tar archive into ``into``: into a temporary folder first, whose top-level
    entries are then moved into place, so an interrupted extraction leaves no half folder.
    Members that would land outside the folder, and links, are refused."""
    into.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".extracting-", dir=into))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = [_safe_member(m, archive) for m in tar.getmembers()]
                # the members are checked above; Python's own "data" filter, where it
                # exists, checks them again
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(scratch, members=members, **safe)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataFormatError(f"{archive} is not a readable tar archive ({err})") from err
        for entry in scratch.iterdir():
            destination = into / entry.name
            if not destination.exists():
                entry.replace(destination)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _safe_member(member: tarfile.TarInfo, archive: Path) -> tarfile.TarInfo:
    name = Path(member.name)
    if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
        raise DataFormatError(
            f"{archive}: member {member.name!r} is a link or points outside the archive; "
            "refusing to extract it"
        )
    return member


# ----------------------------------------------------------------------------- text files


def read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines of a UTF-8 text file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path} is not UTF-8 text ({err})") from err
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


_ID_LINE = re.compile(r"^(\S+)\s+(.+)$")


def read_id_table(path: Path, *, integer_keys: bool = True) -> dict[int | str, str]:
    """``key value`` lines (CUB's ``<id> <text>``, FGVC-Aircraft's ``<image> <label with
    spaces>``) as a dict in file order; a repeated key or a line without a value is an error
    naming the line."""
    table: dict[int | str, str] = {}
    for lineno, line in read_lines(path):
        match = _ID_LINE.match(line)
        if match is None:
            raise DataFormatError(f"{path}:{lineno}: expected '<id> <value>', got {line!r}")
        key: int | str = match[1]
        if integer_keys:
            if not match[1].isdigit():
                raise DataFormatError(f"{path}:{lineno}: {match[1]!r} is not a positive integer id")
            key = int(match[1])
        if key in table:
            raise DataFormatError(f"{path}:{lineno}: id {match[1]} is listed twice")
        table[key] = match[2].strip()
    if not table:
        raise DataFormatError(f"{path} is empty; expected '<id> <value>' lines")
    return table


# ----------------------------------------------------------------------------- images


def _decode(
    path: Path, size: int | None, resize: str, trim_bottom: int, listed_in: str
) -> np.ndarray:
    """One image as uint8 (H, W, 3): RGB, bottom rows trimmed, then resized."""
    pil = _optional("PIL.Image", "Pillow", "images", "decoding image files")
    try:
        with pil.open(path) as img:
            img = img.convert("RGB")
            if trim_bottom:
                if img.height <= trim_bottom:
                    raise DataFormatError(
                        f"{path} is {img.height} pixels high, too small to drop its "
                        f"{trim_bottom}-pixel bottom banner"
                    )
                img = img.crop((0, 0, img.width, img.height - trim_bottom))
            if size is not None:
                img = _resize(img, size, resize, pil)
            return np.asarray(img, dtype=np.uint8)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"image file {path} (listed in {listed_in}) is missing") from err
    except (pil.UnidentifiedImageError, OSError) as err:
        raise DataFormatError(f"{path} is not a readable image ({err})") from err


def _resize(img, size: int, mode: str, pil):
    bilinear = pil.Resampling.BILINEAR
    if mode == "stretch":
        return img.resize((size, size), bilinear)
    scale = size / min(img.width, img.height)
    width = max(size, round(img.width * scale))
    height = max(size, round(img.height * scale))
    img = img.resize((width, height), bilinear)
    left, top = (width - size) // 2, (height - size) // 2
    return img.crop((left, top, left + size, top + size))


class ImageFiles(Dataset):
    """Labelled image files named by a data set's annotation files, decoded with Pillow
    when an item is read (so it works with ``DataLoader`` workers).

    Items are ``(image, label)``: image uint8 (3, H, W) (RGB), resized to ``size x size``
    when ``size`` is given, so that batches stack. ``labels`` holds every label without
    decoding anything (for long-tailed subsets and class-aware samplers).

    Args:
        paths: N image files.
        labels: N class indices in [0, K).
        class_names: K names, index = label.
        size: square side in pixels, or None to keep each image's own size.
        resize: ``"stretch"`` (to size x size, aspect ratio not kept) or ``"center_crop"``
            (shorter side to ``size``, then the central square).
        trim_bottom: rows removed from the bottom of every image before resizing
            (FGVC-Aircraft's 20-pixel copyright banner).
        source: the annotation file, named in errors about a listed image.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Sequence[int] | Tensor,
        class_names: Sequence[str],
        *,
        size: int | None = None,
        resize: str = "stretch",
        trim_bottom: int = 0,
        source: str = "",
    ) -> None:
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        if size is not None and (isinstance(size, bool) or int(size) < 1):
            raise ValueError(f"size must be a positive integer or None, got {size!r}")
        _optional("PIL.Image", "Pillow", "images", "reading image files")  # fail early
        self.paths = list(paths)
        self.labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        if self.labels.numel() != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {self.labels.numel()} labels")
        self.class_names = tuple(class_names)
        self.size = None if size is None else int(size)
        self.resize, self.trim_bottom, self.source = resize, trim_bottom, source

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> Tensor:
        """(K,) int64 images per class."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        array = _decode(self.paths[index], self.size, self.resize, self.trim_bottom, self.source)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(), int(self.labels[index])

    def subset(self, indices: Tensor | Sequence[int]) -> ImageFiles:
        """The images at ``indices`` (same classes, size and policies)."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        return ImageFiles(
            [self.paths[int(i)] for i in idx],
            self.labels[idx],
            self.class_names,
            size=self.size,
            resize=self.resize,
            trim_bottom=self.trim_bottom,
            source=self.source,
        )

    @property
    def store_bytes(self) -> int | None:
        """Bytes the decoded uint8 set takes in memory (N x 3 x size x size), or None
        without a fixed ``size``."""
        return None if self.size is None else len(self) * 3 * self.size * self.size

    def to_memory(self, *, num_workers: int = 0, batch_size: int = 64) -> LabeledImages:
        """Decode every image into one uint8 (N, 3, size, size) tensor (needs ``size``);
        ``num_workers`` DataLoader processes decode in parallel."""
        if self.size is None:
            raise ValueError("to_memory needs a fixed image size: build the set with size=...")
        return materialize(self, self.class_names, num_workers=num_workers, batch_size=batch_size)


def materialize(
    dataset: Dataset,
    class_names: Iterable[str],
    *,
    num_workers: int = 0,
    batch_size: int = 64,
) -> LabeledImages:
    """Decode a file-backed set whose items are ``(uint8 (C, H, W), label)`` of one shape
    into an in-memory :class:`LabeledImages` (items in order; ``num_workers`` processes
    decode in parallel).

    Returns:
        LabeledImages with uint8 images (N, C, H, W); ``nbytes`` of its images is N*C*H*W.
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("the data set is empty: nothing to decode")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    images: Tensor | None = None
    labels = torch.empty(n, dtype=torch.int64)
    start = 0
    for batch, batch_labels in loader:
        if images is None:
            images = torch.empty((n, *batch.shape[1:]), dtype=batch.dtype)
        images[start : start + batch.shape[0]] = batch
        labels[start : start + batch.shape[0]] = batch_labels
        start += batch.shape[0]
    return LabeledImages(images, labels, tuple(class_names))
