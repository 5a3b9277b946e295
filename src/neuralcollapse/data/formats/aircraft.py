"""FGVC-Aircraft (2013b) from its official release folder.

Everything lives under ``data/``: ``images/<image id>.jpg``, the class lists
``variants.txt`` (100), ``families.txt`` (70) and ``manufacturers.txt`` (30), one name per
line, and one annotation file per label level and split,
``images_<level>_<split>.txt`` with lines ``<image id> <label name>`` (names may hold
spaces, e.g. ``Cessna 172``). Every image carries a 20-pixel copyright banner at its bottom,
which is dropped by default (as [L23] does).

The three levels form a tree, variant -> family -> manufacturer:
:func:`fgvc_aircraft_hierarchy` reads it from the annotation files.
"""

from __future__ import annotations

from pathlib import Path

from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.registry import register_dataset

from ..datasets import DataRequest
from ..files import (
    DataFormatError,
    confined_path,
    extract_archive,
    fetch,
    read_id_table,
    read_lines,
)
from ._common import ImageFiles, PathLike, check_split, image_file_pair

__all__ = [
    "AIRCRAFT_BANNER_ROWS",
    "AIRCRAFT_LEVELS",
    "AIRCRAFT_SPLITS",
    "fgvc_aircraft_hierarchy",
    "load_fgvc_aircraft",
]

AIRCRAFT_LEVELS = ("variant", "family", "manufacturer")  # fine to coarse
AIRCRAFT_SPLITS = ("train", "val", "trainval", "test")
AIRCRAFT_BANNER_ROWS = 20
_NAMES_FILE = {
    "variant": "variants.txt",
    "family": "families.txt",
    "manufacturer": "manufacturers.txt",
}
_RELEASE = "fgvc-aircraft-2013b"
_URL = f"https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/{_RELEASE}.tar.gz"


def _data_folder(root: Path, download: bool = False) -> Path:
    """The release's ``data/`` folder: ``root/data``, ``root/fgvc-aircraft-2013b/data``, or
    ``root`` itself when it holds the annotation files."""
    for folder in (root / "data", root / _RELEASE / "data", root):
        if (folder / "variants.txt").is_file():
            return folder
    if download:
        archive = fetch(_URL, root / f"{_RELEASE}.tar.gz")  # no checksum is published
        extract_archive(archive, root)
        if (root / _RELEASE / "data" / "variants.txt").is_file():
            return root / _RELEASE / "data"
    raise FileNotFoundError(
        f"no FGVC-Aircraft release at {root}: expected {root / 'data' / 'variants.txt'} (the "
        f"extracted {_RELEASE}.tar.gz), or pass download=True"
    )


def _check_level(level: str) -> str:
    if level not in AIRCRAFT_LEVELS:
        raise ValueError(
            f"unknown FGVC-Aircraft label level {level!r}; choose one of {AIRCRAFT_LEVELS}"
        )
    return level


def _names(data: Path, level: str) -> list[str]:
    path = data / _NAMES_FILE[level]
    names = [line for _, line in read_lines(path)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataFormatError(f"{path} lists {repeated} more than once")
    return names


def _annotations(data: Path, level: str, split: str) -> dict[str, str]:
    return read_id_table(data / f"images_{level}_{split}.txt", integer_keys=False)


def load_fgvc_aircraft(
    root: PathLike,
    split: str = "trainval",
    *,
    level: str = "variant",
    size: int | None = None,
    resize: str = "stretch",
    crop_banner: bool = True,
    check_files: bool = True,
    download: bool = False,
    allow_outside_root: bool = False,
) -> ImageFiles:
    """FGVC-Aircraft as a file-backed image set, labelled at one level of its tree.

    Args:
        root: the folder holding ``data/`` (the extracted ``fgvc-aircraft-2013b``), its
            parent, or ``data/`` itself.
        split: ``"train"`` (3,334 images), ``"val"`` (3,333), ``"trainval"`` (6,667) or
            ``"test"`` (3,333).
        level: ``"variant"`` (100 classes), ``"family"`` (70) or ``"manufacturer"`` (30);
            labels index the names in ``variants.txt`` / ``families.txt`` /
            ``manufacturers.txt``, in file order.
        size, resize: decoding size and policy (see :class:`ImageFiles`).
        crop_banner: drop the 20-pixel copyright banner at the bottom of every image.
        check_files: check now that every listed image exists.
        download: fetch and extract the official archive when the release is absent (no
            checksum is published for it).
        allow_outside_root: accept image ids that resolve outside ``root`` (``..``,
            absolute paths, symlinks out of it); refused by default.

    Returns:
        :class:`ImageFiles` (``labels``, ``class_names``, ``len``, ``to_memory()``).
    """
    check_split(split, AIRCRAFT_SPLITS, "FGVC-Aircraft")
    _check_level(level)
    base = Path(root).expanduser()
    data = _data_folder(base, download)
    names = _names(data, level)
    index = {name: i for i, name in enumerate(names)}
    listing = data / f"images_{level}_{split}.txt"
    paths, labels = [], []
    for image_id, name in _annotations(data, level, split).items():
        if name not in index:
            raise DataFormatError(
                f"{listing}: image {image_id} is labelled {name!r}, which "
                f"{data / _NAMES_FILE[level]} does not list"
            )
        paths.append(
            confined_path(
                base,
                f"{image_id}.jpg",
                allow_outside=allow_outside_root,
                listed_in=f"{listing} image {image_id!r}",
                base=data / "images",
            )
        )
        labels.append(index[name])
    if check_files:
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"image file {path} (listed in {listing}) is missing")
    return ImageFiles(
        paths,
        labels,
        names,
        size=size,
        resize=resize,
        trim_bottom=AIRCRAFT_BANNER_ROWS if crop_banner else 0,
        source=str(listing),
    )


def fgvc_aircraft_hierarchy(root: PathLike, *, level: str = "variant") -> Hierarchy:
    """FGVC-Aircraft's class tree, read from the release's annotation files.

    The leaves are the classes of ``level`` (named and ordered as in its names file, so
    leaf i is label i of :func:`load_fgvc_aircraft` at that level); above them the coarser
    levels, named ``family:<name>`` and ``manufacturer:<name>`` (the levels share some
    names, e.g. the variant and the family ``DC-3``), under one ``root``. Which family a
    variant (and which manufacturer a family) belongs to is read from the per-image
    annotations of the ``trainval`` and ``test`` splits.

    Raises:
        DataFormatError: a class with two parents, or a listed class no image carries.
    """
    _check_level(level)
    data = _data_folder(Path(root).expanduser())
    levels = AIRCRAFT_LEVELS[AIRCRAFT_LEVELS.index(level) :]
    parents: list[dict[str, str]] = [{} for _ in levels[1:]]
    for split in ("trainval", "test"):
        per_level = [_annotations(data, lv, split) for lv in levels]
        for image_id, label in per_level[0].items():
            chain = [label]
            for lv, table in zip(levels[1:], per_level[1:], strict=True):
                if image_id not in table:
                    raise DataFormatError(
                        f"{data / f'images_{lv}_{split}.txt'} has no line for image {image_id}"
                    )
                chain.append(table[image_id])
            for depth, (child, parent) in enumerate(zip(chain, chain[1:], strict=False)):
                known = parents[depth].setdefault(child, parent)
                if known != parent:
                    raise DataFormatError(
                        f"{data}: {levels[depth]} {child!r} is filed under {levels[depth + 1]} "
                        f"{known!r} and {parent!r}; a tree needs one parent per class"
                    )
    names = _names(data, level)
    unused = [n for n in names if n not in parents[0]] if parents else []
    if unused:
        raise DataFormatError(
            f"{data / _NAMES_FILE[level]} lists {unused[:5]} that no annotated image carries"
        )
    edges: list[tuple[str, str]] = []
    for name in names:
        child, node = name, name
        for depth, lv in enumerate(levels[1:]):
            parent = f"{lv}:{parents[depth][node]}"
            edges.append((child, parent))
            child, node = parent, parents[depth][node]
        edges.append((child, "root"))
    return Hierarchy.from_edges(_unique(edges), classes=names)


def _unique(edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(edges))


def _shipped_tree(request: DataRequest) -> Hierarchy:
    return fgvc_aircraft_hierarchy(request.root, level=request.config.label_level)


@register_dataset(
    "fgvc_aircraft",
    reads_files=True,
    release=True,
    image_files=True,
    any_size=True,
    default_splits=("trainval", "test"),
    tree=_shipped_tree,
)
def _fgvc_aircraft(request: DataRequest) -> tuple[ImageFiles, ImageFiles]:
    """FGVC-Aircraft (2013b) at data.label_level, from its official release under data.root."""
    cfg = request.config
    return image_file_pair(
        request,
        lambda split: load_fgvc_aircraft(
            request.root,
            split,
            level=cfg.label_level,
            size=cfg.image_size,
            resize=cfg.resize,
            crop_banner=cfg.crop_banner,
            allow_outside_root=request.allow_outside_root,
        ),
    )
