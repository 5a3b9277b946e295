"""CUB-200-2011 from its official release folder (``CUB_200_2011/``).

The release lists every image by a 1-based id: ``images.txt`` (``<id> <path under
images/>``), ``image_class_labels.txt`` (``<id> <class id 1..200>``),
``train_test_split.txt`` (``<id> <1 = train, 0 = test>``) and ``classes.txt`` (``<class
id> <name>``, e.g. ``1 001.Black_footed_Albatross``). Labels here are the class id minus
one; class names are taken from ``classes.txt`` as written.
"""

from __future__ import annotations

from pathlib import Path

from neuralcollapse.registry import register_dataset

from ..datasets import DataRequest
from ..files import DataFormatError, confined_path, extract_archive, fetch, read_id_table
from ._common import ImageFiles, PathLike, check_split, image_file_pair

__all__ = ["CUB_FOLDER", "load_cub"]

CUB_FOLDER = "CUB_200_2011"
_URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"
_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")


def _locate(root: Path, download: bool) -> Path:
    for folder in (root, root / CUB_FOLDER):
        if (folder / "images.txt").is_file():
            return folder
    if download:
        archive = fetch(_URL, root / "CUB_200_2011.tgz")  # no checksum is published
        extract_archive(archive, root)
        if (root / CUB_FOLDER / "images.txt").is_file():
            return root / CUB_FOLDER
    raise FileNotFoundError(
        f"no CUB-200-2011 release at {root}: expected {root / CUB_FOLDER / 'images.txt'} (the "
        "extracted CUB_200_2011.tgz), or pass download=True"
    )


def load_cub(
    root: PathLike,
    split: str = "train",
    *,
    size: int | None = None,
    resize: str = "stretch",
    check_files: bool = True,
    download: bool = False,
    allow_outside_root: bool = False,
) -> ImageFiles:
    """CUB-200-2011 (200 bird species) as a file-backed image set.

    Args:
        root: the ``CUB_200_2011`` folder, or the folder holding it.
        split: ``"train"`` (5,994 images) or ``"test"`` (5,794), per ``train_test_split.txt``.
        size: decode every image to ``size x size`` (see :class:`ImageFiles`); None keeps
            the original sizes (then batches cannot be stacked).
        resize: ``"stretch"`` or ``"center_crop"`` (shorter side to ``size``, central square).
        check_files: check now that every listed image exists (one stat per image).
        download: fetch and extract ``CUB_200_2011.tgz`` from CaltechDATA when the release is
            absent (no checksum is published for it).
        allow_outside_root: accept ``images.txt`` entries that resolve outside ``root``
            (``..``, absolute paths, symlinks out of it); refused by default.

    Returns:
        :class:`ImageFiles` with ``labels`` (N,) int64 in [0, 200), ``class_names``,
        ``len``; ``to_memory()`` decodes it into :class:`LabeledImages`.
    """
    check_split(split, ("train", "test"), "CUB-200-2011")
    base = Path(root).expanduser()
    folder = _locate(base, download)
    tables = {name: read_id_table(folder / name) for name in _FILES}
    classes = tables["classes.txt"]
    if sorted(classes) != list(range(1, len(classes) + 1)):
        raise DataFormatError(
            f"{folder / 'classes.txt'}: class ids must be 1..{len(classes)}, each once"
        )
    names = [classes[k] for k in range(1, len(classes) + 1)]
    want = "1" if split == "train" else "0"
    paths, labels = [], []
    for image_id, relative in tables["images.txt"].items():
        label = _lookup(tables, "image_class_labels.txt", image_id, folder)
        flag = _lookup(tables, "train_test_split.txt", image_id, folder)
        if flag not in ("0", "1"):
            raise DataFormatError(
                f"{folder / 'train_test_split.txt'}: image {image_id} has flag {flag!r}, "
                "expected 1 (train) or 0 (test)"
            )
        if not label.isdigit() or not 1 <= int(label) <= len(names):
            raise DataFormatError(
                f"{folder / 'image_class_labels.txt'}: image {image_id} has class {label!r}, "
                f"expected a class id 1..{len(names)} of classes.txt"
            )
        if flag == want:
            listed = f"{folder / 'images.txt'} image {image_id}"
            paths.append(
                confined_path(
                    base,
                    relative,
                    allow_outside=allow_outside_root,
                    listed_in=listed,
                    base=folder / "images",
                )
            )
            labels.append(int(label) - 1)
    if not paths:
        raise DataFormatError(f"{folder / 'train_test_split.txt'} puts no image in {split!r}")
    if check_files:
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(
                    f"image file {path} (listed in {folder / 'images.txt'}) is missing"
                )
    return ImageFiles(
        paths, labels, names, size=size, resize=resize, source=str(folder / "images.txt")
    )


def _lookup(tables: dict, name: str, image_id: int, folder: Path) -> str:
    value = tables[name].get(image_id)
    if value is None:
        raise DataFormatError(
            f"{folder / name} has no line for image {image_id} of {folder / 'images.txt'}"
        )
    return value


@register_dataset("cub", reads_files=True, release=True, image_files=True, any_size=True)
def _cub(request: DataRequest) -> tuple[ImageFiles, ImageFiles]:
    """CUB-200-2011 (200 bird species) from its official release folder under data.root."""
    cfg = request.config
    return image_file_pair(
        request,
        lambda split: load_cub(
            request.root,
            split,
            size=cfg.image_size,
            resize=cfg.resize,
            allow_outside_root=request.allow_outside_root,
        ),
    )
