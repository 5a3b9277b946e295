"""MNIST and Fashion-MNIST from their official IDX files, raw or gzipped.

The IDX format: a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in row-major order. The
image files are ``0x00000803`` (uint8, 3 dimensions: N x 28 x 28), the label files
``0x00000801`` (uint8, 1 dimension: N).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from ..sources import DataFormatError, LabeledImages
from ._common import PathLike, check_md5, check_split, fetch

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


def read_idx(path: PathLike) -> tuple[int, np.ndarray]:
    """Read one IDX file (``.gz`` is decompressed on the fly).

    Returns:
        (magic number, array of the declared shape and type, native byte order).

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: a bad magic number, or a size that disagrees with the header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataFormatError(f"{path} is not a readable gzip file ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DataFormatError(
            f"{path} does not start with an IDX magic number (0x0000, type code, "
            f"dimensions); got {raw[:4].hex() or 'nothing'}"
        )
    magic, ndim, dtype = int.from_bytes(raw[:4], "big"), raw[3], _IDX_TYPES[raw[2]]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path}: the file ends inside its {ndim}-dimension header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataFormatError(
            f"{path}: the header promises shape {shape} ({expected} bytes of values) but the "
            f"file holds {len(raw) - header}; the file is truncated or corrupt, fetch it again"
        )
    values = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return magic, values.astype(dtype.newbyteorder("="))


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
