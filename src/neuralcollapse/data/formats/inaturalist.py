"""iNaturalist 2019 (and the same COCO-like layout of 2018) from its official JSON files.

``train2019.json`` / ``val2019.json`` hold ``images`` (``id``, ``file_name`` relative to
the data root, e.g. ``train_val2019/Plants/400/<hash>.jpg``), ``annotations`` (``image_id``,
``category_id``) and ``categories`` (``id``, ``name`` and the taxonomy ``kingdom``,
``phylum``, ``class``, ``order``, ``family``, ``genus``). Labels are the categories in
increasing ``id`` order; :func:`inaturalist_hierarchy` turns the taxonomy into a tree.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.registry import register_dataset

from ..datasets import DataRequest
from ..files import DataFormatError, confined_path, read_text
from ._common import ImageFiles, PathLike, check_split, image_file_pair

__all__ = ["INATURALIST_RANKS", "inaturalist_hierarchy", "load_inaturalist"]

# taxonomic ranks above the species, top first, as the categories' keys name them
INATURALIST_RANKS = ("kingdom", "phylum", "class", "order", "family", "genus")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(read_text(path, "annotation file"))
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path} is not valid JSON ({err})") from None
    except RecursionError:
        raise DataFormatError(
            f"{path} nests its JSON too deeply to read; an iNaturalist annotation file is "
            "flat lists of objects"
        ) from None
    if not isinstance(content, dict):
        raise DataFormatError(f"{path} holds a {type(content).__name__}, expected an object")
    return content


def _records(content: dict, key: str, fields: tuple[str, ...], path: Path) -> list[dict]:
    records = content.get(key)
    if not isinstance(records, list):
        raise DataFormatError(f"{path} has no {key!r} list")
    for i, record in enumerate(records):
        if not isinstance(record, dict) or any(f not in record for f in fields):
            raise DataFormatError(f"{path}: {key}[{i}] must be an object with {list(fields)}")
    return records


def _categories(content: dict, path: Path) -> list[dict]:
    categories = _records(content, "categories", ("id", "name"), path)
    for i, category in enumerate(categories):
        if isinstance(category["id"], bool) or not isinstance(category["id"], int):
            raise DataFormatError(
                f"{path}: categories[{i}] has id {category['id']!r}, not an integer"
            )
    categories = sorted(categories, key=_id)
    ids = [_id(c) for c in categories]
    if len(set(ids)) != len(ids):
        raise DataFormatError(f"{path}: category ids repeat")
    if not categories:
        raise DataFormatError(f"{path} lists no categories")
    return categories


def _id(record: dict) -> int:
    return record["id"]


def _check_ids(records: list[dict], key: str, fields: tuple[str, ...], path: Path) -> None:
    """Ids must be integers or strings (hashable, comparable), never lists or objects."""
    for i, record in enumerate(records):
        for name in fields:
            value = record[name]
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise DataFormatError(
                    f"{path}: {key}[{i}] has {name} {str(value)[:40]}, not an integer or "
                    "string id; use the official annotation file"
                )


def _class_names(categories: list[dict]) -> list[str]:
    """Category names; a name used by several categories gets its id appended."""
    names = [str(c["name"]).strip() for c in categories]
    counts = Counter(names)
    return [
        n if counts[n] == 1 else f"{n} #{c['id']}" for n, c in zip(names, categories, strict=True)
    ]


def load_inaturalist(
    root: PathLike,
    split: str = "train",
    *,
    year: int = 2019,
    size: int | None = None,
    resize: str = "stretch",
    check_files: bool = True,
    allow_outside_root: bool = False,
) -> ImageFiles:
    """iNaturalist from ``<root>/<split><year>.json`` and the images it names under ``root``.

    Args:
        root: the folder holding ``train2019.json``, ``val2019.json`` and the image folder
            (``train_val2019/``) their ``file_name`` entries start with.
        split: ``"train"`` (265,213 images in 2019) or ``"val"`` (3,030); the test files
            carry no labels.
        year: the edition whose file names to read (2019; 2018 uses the same layout).
        size, resize: decoding size and policy (see :class:`ImageFiles`).
        check_files: check now that every listed image exists (one stat per image).
        allow_outside_root: accept ``file_name`` entries that resolve outside ``root``
            (``..``, absolute paths, symlinks out of it); refused by default.

    Returns:
        :class:`ImageFiles`: labels index the categories sorted by id (1,010 in 2019),
        class names are their ``name``.
    """
    check_split(split, ("train", "val"), "iNaturalist")
    base = Path(root).expanduser()
    path = base / f"{split}{year}.json"
    content = _read_json(path)
    categories = _categories(content, path)
    index = {_id(c): i for i, c in enumerate(categories)}
    images = _records(content, "images", ("id", "file_name"), path)
    annotations = _records(content, "annotations", ("image_id", "category_id"), path)
    _check_ids(images, "images", ("id",), path)
    _check_ids(annotations, "annotations", ("image_id", "category_id"), path)
    label_of: dict[Any, int] = {}
    for i, note in enumerate(annotations):
        category = note["category_id"]
        if category not in index:
            raise DataFormatError(
                f"{path}: annotations[{i}] names category {category!r}, which 'categories' "
                "does not list"
            )
        if label_of.setdefault(note["image_id"], index[category]) != index[category]:
            raise DataFormatError(f"{path}: image {note['image_id']!r} has two categories")
    paths, labels = [], []
    for image in images:
        if image["id"] not in label_of:
            raise DataFormatError(
                f"{path}: image {image['id']!r} has no annotation (a test file has no labels; "
                "use the train or val file)"
            )
        name = image["file_name"]
        if not isinstance(name, str):
            raise DataFormatError(
                f"{path}: image {image['id']!r} has file_name {str(name)[:40]}, not a string"
            )
        where = f"{path} image {image['id']!r}"
        paths.append(confined_path(base, name, allow_outside=allow_outside_root, listed_in=where))
        labels.append(label_of[image["id"]])
    if check_files:
        for file in paths:
            if not file.is_file():
                raise FileNotFoundError(f"image file {file} (listed in {path}) is missing")
    return ImageFiles(
        paths, labels, _class_names(categories), size=size, resize=resize, source=str(path)
    )


def inaturalist_hierarchy(annotation_file: PathLike) -> Hierarchy:
    """The taxonomy of an iNaturalist annotation file as a class tree.

    Leaves are the categories (named and ordered as :func:`load_inaturalist` labels them);
    above each leaf its genus, family, order, class, phylum and kingdom (the ranks every
    category carries), named ``<rank>:<name>`` (``genus:Abies``), under one ``root``. A
    rank name reached by two different paths (a homonym) gets its parent appended so the
    two stay apart.
    """
    path = Path(annotation_file).expanduser()
    categories = _categories(_read_json(path), path)
    ranks = [r for r in INATURALIST_RANKS if all(r in c for c in categories)]
    if not ranks:
        raise DataFormatError(
            f"{path}: the categories carry none of the ranks {INATURALIST_RANKS}, so there is "
            "no taxonomy to build a tree from"
        )
    names = _class_names(categories)
    node_of: dict[tuple[str, ...], str] = {}  # path from the top -> node name
    taken: set[str] = set(names)
    edges: list[tuple[str, str]] = []
    for name, category in zip(names, categories, strict=True):
        parent, lineage = "root", ()
        for rank in ranks:
            lineage = (*lineage, f"{rank}:{str(category[rank]).strip()}")
            node = node_of.get(lineage)
            if node is None:
                node = lineage[-1] if lineage[-1] not in taken else f"{lineage[-1]} ({parent})"
                node_of[lineage] = node
                taken.add(node)
                edges.append((node, parent))
            parent = node
        edges.append((name, parent))
    return Hierarchy.from_edges(edges, classes=names)


def _shipped_tree(request: DataRequest) -> Hierarchy:
    return inaturalist_hierarchy(request.root / f"{request.splits[0]}2019.json")


@register_dataset(
    "inaturalist",
    reads_files=True,
    release=True,
    image_files=True,
    any_size=True,
    default_splits=("train", "val"),
    tree=_shipped_tree,
)
def _inaturalist(request: DataRequest) -> tuple[ImageFiles, ImageFiles]:
    """iNaturalist 2019 from <split>2019.json and the images it names under data.root."""
    cfg = request.config
    return image_file_pair(
        request,
        lambda split: load_inaturalist(
            request.root,
            split,
            size=cfg.image_size,
            resize=cfg.resize,
            allow_outside_root=request.allow_outside_root,
        ),
    )
