"""MNIST and Fashion-MNIST from their official IDX files, raw or gzipped.

The IDX format: a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in row-major order. The
image files are ``0x00000803`` (uint8, 3 dimensions: N x 28 x 28), the label files
``0x00000801`` (uint8, 1 dimension: N).
"""

from __future__ import annotations

import functools
import lzma
import zlib
from pathlib import Path

import numpy as np
import torch

from neuralcollapse._internal.compressed import open_maybe_compressed
from neuralcollapse.registry import register_dataset

from ..datasets import DataRequest
from ..files import DataFormatError, check_md5, fetch
from ..sources import LabeledImages
from ._common import PathLike, check_split

__all__ = ["FASHION_MNIST_CLASSES", "IDX_FILES", "load_mnist", "read_idx"]

# split -> (images file, labels file), as the official releases name them (each also
# distributed as <name>.gz).
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# md5 of the .gz files: Fashion-MNIST publishes them in its README; the MNIST ones are those
# torchvision checks against its mirror of LeCun's files.
_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

# IDX type code -> big-endian numpy dtype
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# the most value bytes an IDX file may declare by default: 4x the largest official file
# (MNIST's training images, 47 MB)
MAX_IDX_BYTES = 200 << 20
# deflate expands at most ~1032-fold; a gzip declaring more than this per compressed byte
# cannot be honest
_MAX_DEFLATE_RATIO = 1100


def read_idx(path: PathLike, *, max_bytes: int = MAX_IDX_BYTES) -> tuple[int, np.ndarray]:
    """Read one IDX file (gzip / xz compressed or raw, told apart by its magic bytes).

    The header is read first and the size it declares checked before any value is read:
    against ``max_bytes``, against the file's size (raw files; for gzip the size the
    stream may expand to), and the stream must end exactly where the header says. A small
    file declaring gigabytes is refused without decompressing it.

    Returns:
        (magic number, array of the declared shape and type, native byte order).

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: a bad magic number, a declared size over ``max_bytes`` or
            disagreeing with the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    stored = path.stat().st_size
    try:
        stream, kind = open_maybe_compressed(path)
        with stream:
            magic, shape, dtype, header = _idx_header(stream, path)
            expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
            _check_idx_size(path, shape, expected, header, stored, kind, max_bytes)
            raw = stream.read(expected)
            trailing = stream.read(1)
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as err:
        raise DataFormatError(f"{path} is not a readable IDX file ({err})") from None
    if len(raw) != expected or trailing:
        found = f"{len(raw)}" if len(raw) != expected else f"more than {expected}"
        raise DataFormatError(
            f"{path}: the header promises shape {shape} ({expected} bytes of values) but the "
            f"file holds {found}; the file is truncated or corrupt, fetch it again"
        )
    values = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return magic, values.astype(dtype.newbyteorder("="))


def _idx_header(stream, path: Path) -> tuple[int, tuple[int, ...], np.dtype, int]:
    head = stream.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES or head[3] == 0:
        raise DataFormatError(
            f"{path} does not start with an IDX magic number (0x0000, type code, "
            f"dimensions); got {head[:4].hex() or 'nothing'}"
        )
    ndim = head[3]
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataFormatError(f"{path}: the file ends inside its {ndim}-dimension header")
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
    return int.from_bytes(head, "big"), shape, _IDX_TYPES[head[2]], 4 + 4 * ndim


def _check_idx_size(
    path: Path,
    shape: tuple[int, ...],
    expected: int,
    header: int,
    stored: int,
    kind: str | None,
    max_bytes: int,
) -> None:
    if expected > max_bytes:
        raise DataFormatError(
            f"{path}: the header declares shape {shape} ({expected:,} bytes), more than the "
            f"{max_bytes:,} an IDX file may hold here; not an official file (or raise "
            "max_bytes)"
        )
    if kind is None and stored != header + expected:
        raise DataFormatError(
            f"{path}: the header promises shape {shape} ({expected} bytes of values) but the "
            f"file holds {stored - header}; the file is truncated or corrupt, fetch it again"
        )
    if kind is not None and header + expected > _MAX_DEFLATE_RATIO * stored:
        raise DataFormatError(
            f"{path}: the header declares {expected:,} bytes, more than a {stored:,}-byte "
            f"{kind} file can hold; the file is corrupt, fetch it again"
        )


def _locate(root: Path, name: str, fashion: bool) -> Path | None:
    """The raw or gzipped file in ``root`` or in torchvision's ``<Name>/raw`` layout."""
    folders = [root, root / ("FashionMNIST" if fashion else "MNIST") / "raw"]
    for folder in folders:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def load_mnist(
    root: PathLike, split: str = "train", *, fashion: bool = False, download: bool = False
) -> LabeledImages:
    """MNIST (or Fashion-MNIST with ``fashion=True``) from the official IDX files.

    ``root`` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or as the
    distributed ``.gz`` (torchvision's ``MNIST/raw`` / ``FashionMNIST/raw`` sub-folder is
    also searched). The two data sets use the same file names, so each needs its own folder.

    Args:
        root: the folder of the four files.
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        fashion: read Fashion-MNIST (class names ``T-shirt/top`` .. ``Ankle boot``) instead
            of MNIST (class names ``"0"`` .. ``"9"``).
        download: fetch missing ``.gz`` files into ``root`` (md5-checked); ``.gz`` files
            already present are md5-checked too.

    Returns:
        :class:`LabeledImages`: uint8 images (N, 1, 28, 28) and int64 labels in [0, 9].
    """
    check_split(split, tuple(IDX_FILES), "Fashion-MNIST" if fashion else "MNIST")
    base = Path(root).expanduser()
    checksums, url = (_FASHION_MD5, _FASHION_URL) if fashion else (_MNIST_MD5, _MNIST_URL)
    paths = []
    for name in IDX_FILES[split]:
        path = _locate(base, name, fashion)
        if path is None and download:
            path = fetch(url + f"{name}.gz", base / f"{name}.gz", checksums[f"{name}.gz"])
        elif path is not None and download and path.suffix == ".gz":
            check_md5(path, checksums[path.name], "release file")
        if path is None:
            raise FileNotFoundError(
                f"{base / name} (or {name}.gz) is missing; the folder must hold the official "
                f"IDX files (or pass download=True to fetch them from {url})"
            )
        paths.append(path)
    image_magic, images = read_idx(paths[0])
    label_magic, labels = read_idx(paths[1])
    if image_magic != IMAGES_MAGIC or images.dtype != np.uint8:
        raise DataFormatError(
            f"{paths[0]}: magic number {image_magic:#010x}, expected {IMAGES_MAGIC:#010x} "
            "(uint8 images, 3 dimensions)"
        )
    if label_magic != LABELS_MAGIC or labels.dtype != np.uint8:
        raise DataFormatError(
            f"{paths[1]}: magic number {label_magic:#010x}, expected {LABELS_MAGIC:#010x} "
            "(uint8 labels, 1 dimension)"
        )
    if images.shape[1:] != (28, 28):
        raise DataFormatError(
            f"{paths[0]} holds {images.shape[1]} x {images.shape[2]} images; the "
            f"{'Fashion-MNIST' if fashion else 'MNIST'} format is 28 x 28 (use the official files)"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataFormatError(
            f"{paths[0]} holds {images.shape[0]} images but {paths[1]} holds "
            f"{labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) > 9:
        raise DataFormatError(f"{paths[1]}: label {int(labels.max())} found, expected 0-9")
    names = FASHION_MNIST_CLASSES if fashion else tuple(str(d) for d in range(10))
    return LabeledImages(
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
        names,
    )


def _mnist_sets(request: DataRequest, fashion: bool) -> tuple[LabeledImages, LabeledImages]:
    first, second = request.splits
    load = functools.partial(load_mnist, request.root, fashion=fashion)
    return load(first), load(second)


@register_dataset("mnist", reads_files=True, release=True)
def _mnist(request: DataRequest) -> tuple[LabeledImages, LabeledImages]:
    """MNIST from its official IDX files (raw or .gz) in data.root."""
    return _mnist_sets(request, fashion=False)


@register_dataset("fashion_mnist", reads_files=True, release=True)
def _fashion_mnist(request: DataRequest) -> tuple[LabeledImages, LabeledImages]:
    """Fashion-MNIST from its official IDX files (raw or .gz) in data.root."""
    return _mnist_sets(request, fashion=True)
