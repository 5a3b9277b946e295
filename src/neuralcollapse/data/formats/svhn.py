"""SVHN cropped digits ("format 2") from the official MATLAB files.

``train_32x32.mat`` / ``test_32x32.mat`` / ``extra_32x32.mat`` each hold ``X``, uint8
32 x 32 x 3 x N (height, width, channel, image), and ``y``, N x 1 labels in 1..10 where
**10 stands for the digit 0**: this reader maps it to label 0, so label k is the digit k.
Reading ``.mat`` files needs scipy: ``pip install 'neuralcollapse[svhn]'``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neuralcollapse.registry import register_dataset

from ..datasets import DataRequest
from ..files import DataFormatError, check_md5, check_size, fetch, optional_module
from ..sources import LabeledImages
from ._common import PathLike, check_split

__all__ = ["SVHN_FILES", "SVHN_SPLITS", "load_svhn"]

_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
# split -> (file, md5); the md5s are those torchvision checks the official files against.
SVHN_FILES = {
    "train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
    "extra": ("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7"),
}
SVHN_SPLITS = ("train", "test", "extra", "train+extra")
# the largest official file, extra_32x32.mat, takes 1.3 GB
_MAX_FILE_BYTES = 2 << 30


def load_svhn(root: PathLike, split: str = "train", *, download: bool = False) -> LabeledImages:
    """SVHN cropped digits from the official ``<split>_32x32.mat`` files in ``root``.

    Args:
        root: the folder holding the ``.mat`` files.
        split: ``"train"`` (73,257 digits), ``"test"`` (26,032), ``"extra"`` (531,131) or
            ``"train+extra"`` (both, train first: what [Y22]'s SVHN-LT code trains on).
        download: fetch missing files from the SVHN site (md5-checked); files already
            present are md5-checked too.

    Returns:
        :class:`LabeledImages`: uint8 images (N, 3, 32, 32) and int64 labels 0..9 (label k
        is the digit k; the files' label 10 is the digit 0). Class names ``"0"`` .. ``"9"``.
    """
    check_split(split, SVHN_SPLITS, "SVHN")
    base = Path(root).expanduser()
    parts = [_read_split(base, part, download) for part in split.split("+")]
    images = torch.cat([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = torch.cat([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return LabeledImages(images, labels, tuple(str(d) for d in range(10)))


def _read_split(base: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    name, md5 = SVHN_FILES[split]
    path = base / name
    if not path.is_file():
        if not download:
            raise FileNotFoundError(
                f"{path} is missing; put the official {name} there (or pass download=True to "
                f"fetch it from {_SVHN_URL})"
            )
        fetch(_SVHN_URL + name, path, md5)
    elif download:
        check_md5(path, md5, name)
    check_size(path, _MAX_FILE_BYTES, "SVHN .mat file")
    sio = optional_module("scipy.io", "scipy", "svhn", "reading SVHN .mat files")
    try:
        content = sio.loadmat(path)
    except Exception as err:  # scipy raises several types for a bad file
        raise DataFormatError(
            f"{path} is not a readable MATLAB file ({type(err).__name__}: {err})"
        ) from err
    x, y = content.get("X"), content.get("y")
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
        raise DataFormatError(f"{path}: 'X' must be a uint8 array 32 x 32 x 3 x N")
    if x.shape[:3] != (32, 32, 3):
        raise DataFormatError(f"{path}: 'X' has shape {x.shape}, expected 32 x 32 x 3 x N")
    n = x.shape[3]
    if not isinstance(y, np.ndarray) or y.size != n or (y.ndim == 2 and y.shape[1] != 1):
        found = "nothing" if not isinstance(y, np.ndarray) else f"shape {y.shape}"
        raise DataFormatError(f"{path}: 'y' must hold {n} labels (N x 1), got {found}")
    labels = y.reshape(-1).astype(np.int64)
    if n and (labels.min() < 1 or labels.max() > 10):
        raise DataFormatError(
            f"{path}: labels span [{labels.min()}, {labels.max()}], expected 1..10 "
            "(10 = the digit 0)"
        )
    labels[labels == 10] = 0
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # (N, 3, H, W)
    return torch.from_numpy(images), torch.from_numpy(labels)


@register_dataset("svhn", reads_files=True, release=True)
def _svhn(request: DataRequest) -> tuple[LabeledImages, LabeledImages]:
    """SVHN cropped digits from the official <split>_32x32.mat files in data.root."""
    first, second = request.splits
    return load_svhn(request.root, first), load_svhn(request.root, second)
