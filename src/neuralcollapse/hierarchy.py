"""Class hierarchies: a rooted tree whose leaves are the classes.

Build one from child-parent edges, nested JSON or a leaf-to-path table, then ask for the
quantities hierarchy-aware training and evaluation need: the leaves in class-index order,
and the (K, K) matrix of lowest-common-ancestor heights (docs/theory.md §6-7).
:class:`Hierarchy` is the package's only tree type: frames, losses, metrics and the
synthetic data all take one (or its LCA matrix), so a tree means the same classes in the
same order everywhere.

Heights: a leaf has height 0 and an inner node 1 + the largest height among its children,
so in a balanced tree the LCA height of two leaves is the number of levels one climbs from
either leaf to meet the other. Unbalanced trees (leaves at different depths) are allowed;
there the height of a node is its longest way down to a leaf, which keeps heights
well-defined and monotone along every path (a parent is always higher than its child).

Leaf order (``Hierarchy.leaves[i]`` is class ``i``), decided in this order:

1. ``classes=[...]`` given (or, for nested JSON, a top-level ``"classes"`` list): exactly
   that order; every leaf must be listed and every listed class must be a leaf.
2. every leaf name ends in a distinct integer (``L5-17``, ``class_3``): by that integer
   alone, whatever precedes it (``x10``, ``y2`` gives ``y2``, ``x10``).
3. otherwise: the order in which the leaves first appear in the input (``dog``, ``cat``
   stays ``dog``, ``cat``; names are never sorted alphabetically).

"First appearance" per entry point: for edges (a list or a ``child,parent`` CSV) the row
where the leaf is the child; for nested JSON the depth-first document order (a node, then
its children in list order); for a path table the row order. ``Hierarchy.balanced`` names
its leaves ``class0 ..`` in depth-first order, so rules 2 and 3 agree there. ``save`` writes
every format so that ``load`` gives back the same order (nested JSON records it under
``"classes"`` when its tree order alone would not); the one exception is a ``classes=``
order that contradicts distinct integer suffixes, which the CSV formats cannot carry: pass
``classes=`` again to ``load``. ``Hierarchy.leaf_order`` says which rule applied.

LCA conventions (docs/theory.md §7). ``lca_heights(convention=...)`` gives one of two
distances between leaves i and j, identical on balanced trees:

* ``"level"`` (the default): the tree's depth (its deepest leaf's depth) minus the depth
  of the lowest common ancestor, 0 on the diagonal. The distance files of
  making-better-mistakes [Bertinetto 2020] and [L23] hold exactly these numbers, so
  metrics, soft labels and frames built with it reproduce theirs on unbalanced trees.
* ``"height"``: the LCA node's height as defined above (its longest way down).

Shipped trees: ``Hierarchy.builtin("cifar100")`` is [L23]'s height-5 CIFAR-100 tree with
the official CIFAR-100 names (leaves = the 100 fine labels in label order, the level
above = the 20 official superclasses). The trees data sets ship live with their readers:
:func:`neuralcollapse.data.fgvc_aircraft_hierarchy` and
:func:`neuralcollapse.data.inaturalist_hierarchy`.

Distances without a tree: :class:`ClassDistances` holds a (K, K) matrix with class names,
read from a ``.npy`` file or a making-better-mistakes style pickled dict
``{(name_a, name_b): distance}`` (read without running any pickled code).
:func:`distance_matrix` turns a Hierarchy, a ClassDistances or a (K, K) tensor into the
matrix every consumer uses, and :func:`load_hierarchy` reads any of these files (or
``builtin:NAME``).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from neuralcollapse._internal.distance_files import (
    is_distance_file,
    read_distance_pairs,
    read_npy_matrix,
)
from neuralcollapse._internal.files import atomic_write_text
from neuralcollapse._internal.names import (
    BUILTIN_HIERARCHIES,
    BUILTIN_PREFIX,
    CONVENTIONS,
    DEFAULT_CONVENTION,
)

__all__ = [
    "BUILTIN_HIERARCHIES",
    "BUILTIN_PREFIX",
    "CONVENTIONS",
    "MAX_CLASSES",
    "DEFAULT_CONVENTION",
    "ClassDistances",
    "Hierarchy",
    "check_class_count",
    "check_convention",
    "check_distance_matrix",
    "distance_matrix",
    "load_hierarchy",
    "match_classes",
]

_SUFFIX = re.compile(r"(\d+)$")

PathLike = str | Path

# CONVENTIONS (the two LCA distance conventions, docs/theory.md §7), DEFAULT_CONVENTION
# (what every consumer uses unless told otherwise: the numbers of the field's distance
# files), BUILTIN_HIERARCHIES and BUILTIN_PREFIX (the shipped trees) are defined in
# neuralcollapse._internal.names, which the --help pages read without importing torch.


# The most classes a (K, K) class matrix (LCA distances, and the K x K similarity of a
# hierarchy-aware frame) is built for by default: 10,000 classes take 800 MB per float64
# matrix. iNaturalist-2018, the largest tree of the papers, has 8,142 leaves.
MAX_CLASSES = 10_000


def check_class_count(num_classes: int, max_classes: int | None = None, *, what: str) -> int:
    """``num_classes`` if a (K, K) float64 matrix over it is within ``max_classes``
    (default :data:`MAX_CLASSES`), else a ValueError naming the size and the fix."""
    limit = MAX_CLASSES if max_classes is None else max_classes
    if num_classes > limit:
        gigabytes = num_classes * num_classes * 8 / 1e9
        raise ValueError(
            f"the {what} has {num_classes:,} classes: its (K, K) class matrix would take "
            f"{gigabytes:,.1f} GB, over the limit of {limit:,} classes; use a smaller tree "
            "or raise the limit (data.max_classes, or max_classes=)"
        )
    return num_classes


def check_convention(convention: object) -> str:
    """``convention`` if it is one of :data:`CONVENTIONS`, else a ValueError naming it."""
    if not isinstance(convention, str) or convention not in CONVENTIONS:
        raise ValueError(
            f"convention must be 'level' (the field's distance files) or 'height', got "
            f"{convention!r}"
        )
    return convention


def _order_names(names: list[str], classes: Sequence[str] | None) -> tuple[tuple[str, ...], str]:
    """Class order of ``names`` (in input order) by the leaf-order rules of the module
    docstring; returns the order and the rule that gave it."""
    if classes is not None:
        listed = [str(c) for c in classes]
        duplicates = sorted({c for c in listed if listed.count(c) > 1})
        if duplicates:
            raise ValueError(f"classes lists {duplicates[:5]} more than once")
        name_set, class_set = set(names), set(listed)
        missing = [name for name in names if name not in class_set]
        if missing:
            raise ValueError(
                f"leaves {missing[:5]} of the hierarchy are missing from the class list: "
                "every class must be listed"
            )
        unknown = [c for c in listed if c not in name_set]
        if unknown:
            raise ValueError(f"classes {unknown[:5]} are not leaves of the hierarchy")
        return tuple(listed), "classes"
    suffixes = [_SUFFIX.search(name) for name in names]
    if all(suffixes) and len({int(m.group(1)) for m in suffixes}) == len(names):
        ranked = sorted(zip(names, suffixes, strict=True), key=lambda pair: int(pair[1].group(1)))
        return tuple(name for name, _ in ranked), "suffix"
    return tuple(names), "input"


def _read_text(source: PathLike) -> tuple[str, str]:
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"hierarchy file {str(path)!r} does not exist")
    try:
        # utf-8-sig: spreadsheet programs start their CSV exports with a byte-order mark
        return path.read_text(encoding="utf-8-sig"), str(path)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"hierarchy file {str(path)!r} is not UTF-8 text (byte {exc.start}: {exc.reason}); "
            "save it as UTF-8"
        ) from None


def _csv_rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in row]
        for row in csv.reader(io.StringIO(text))
        if row and any(cell.strip() for cell in row)
    ]


class Hierarchy:
    """A rooted tree over class names.

    Prefer the constructors :meth:`from_edges`, :meth:`from_nested`, :meth:`from_paths`.

    Args:
        edges: (child, parent) pairs, in input order; exactly one node has no parent.
        classes: optional explicit class order for the leaves (see module docstring).
    """

    def __init__(
        self, edges: Iterable[tuple[str, str]], *, classes: Sequence[str] | None = None
    ) -> None:
        self._parent: dict[str, str] = {}
        self._children: dict[str, list[str]] = {}
        order: list[str] = []  # every node, in order of first appearance
        seen: set[str] = set()
        for pair in edges:
            child, parent = self._check_edge(pair)
            known = self._parent.get(child)
            if known is not None and known != parent:
                raise ValueError(
                    f"node {child!r} has two parents, {known!r} and {parent!r}: a hierarchy "
                    "is a tree, give each node one parent"
                )
            if known is None:
                self._parent[child] = parent
                self._children.setdefault(parent, []).append(child)
            for name in (parent, child):
                if name not in seen:
                    seen.add(name)
                    order.append(name)
        if not order:
            raise ValueError("the hierarchy has no edges")
        self.root = self._find_root(order)
        self._depth_of = self._check_acyclic(order)
        self.nodes: tuple[str, ...] = tuple(order)
        self._height = self._heights()
        input_leaves = [name for name in order if name not in self._children]
        self.leaves, self.leaf_order = self._order_leaves(input_leaves, classes)
        self._index = {name: i for i, name in enumerate(self.leaves)}
        # the most leaves lca_heights builds its (K, K) matrix for (a run sets
        # data.max_classes here)
        self.max_classes = MAX_CLASSES

    # ----------------------------------------------------------------- construction checks

    @staticmethod
    def _check_edge(pair: object) -> tuple[str, str]:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"each edge must be a (child, parent) pair, got {pair!r}")
        child, parent = (str(x).strip() for x in pair)
        if not child or not parent:
            raise ValueError(f"edge {pair!r} has an empty node name")
        if child == parent:
            raise ValueError(f"node {child!r} is its own parent (a cycle)")
        return child, parent

    def _find_root(self, order: list[str]) -> str:
        roots = [name for name in order if name not in self._parent]
        if len(roots) > 1:
            raise ValueError(
                f"the hierarchy has {len(roots)} roots ({', '.join(map(repr, roots[:5]))}"
                f"{', ...' if len(roots) > 5 else ''}): add one common parent above them"
            )
        if not roots:
            raise ValueError(
                "the hierarchy has no root: every node has a parent, so it has a cycle"
            )
        return roots[0]

    def _check_acyclic(self, order: list[str]) -> dict[str, int]:
        """Depth (edges from the root) of every node; raises on a cycle naming a node in it."""
        depth: dict[str, int] = {self.root: 0}
        for start in order:
            trail: list[str] = []
            node = start
            while node not in depth:
                if node in trail:
                    raise ValueError(f"the hierarchy has a cycle through node {node!r}")
                trail.append(node)
                node = self._parent[node]
            for offset, name in enumerate(reversed(trail), start=1):
                depth[name] = depth[node] + offset
        return depth

    def _heights(self) -> dict[str, int]:
        height: dict[str, int] = {}
        for name in sorted(self.nodes, key=self._depth_of.__getitem__, reverse=True):
            kids = self._children.get(name, ())
            height[name] = 1 + max(height[k] for k in kids) if kids else 0
        return height

    @staticmethod
    def _order_leaves(
        leaves: list[str], classes: Sequence[str] | None
    ) -> tuple[tuple[str, ...], str]:
        return _order_names(leaves, classes)

    # ----------------------------------------------------------------- constructors

    @classmethod
    def from_edges(
        cls,
        source: PathLike | Iterable[tuple[str, str]],
        *,
        classes: Sequence[str] | None = None,
    ) -> Hierarchy:
        """From (child, parent) pairs, or a CSV file with the header ``child,parent``."""
        if not isinstance(source, (str, Path)):
            return cls(source, classes=classes)
        text, name = _read_text(source)
        return cls(cls._edges_from_csv(text, name), classes=classes)

    @staticmethod
    def _edges_from_csv(text: str, name: str) -> list[tuple[str, str]]:
        rows = _csv_rows(text)
        if not rows or [c.lower() for c in rows[0]] != ["child", "parent"]:
            found = rows[0] if rows else "nothing"
            raise ValueError(f"{name}: expected the header 'child,parent', found {found}")
        for line, row in enumerate(rows[1:], start=2):
            if len(row) != 2:
                raise ValueError(f"{name}: row {line} should be 'child,parent', got {row}")
        return [(row[0], row[1]) for row in rows[1:]]

    @classmethod
    def from_nested(
        cls, source: PathLike | Mapping, *, classes: Sequence[str] | None = None
    ) -> Hierarchy:
        """From ``{"name": ..., "children": [...]}`` (a dict, or a JSON file holding one).

        Node names must be unique across the whole document. An optional top-level
        ``"classes"`` list gives the class order (as ``classes=`` does; the argument wins).
        """
        where = "nested hierarchy"
        if isinstance(source, (str, Path)):
            text, where = _read_text(source)
            try:
                source = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc})") from None
            except RecursionError:
                raise ValueError(
                    f"{where}: the JSON nests deeper than it can be read; save a tree this "
                    "deep as an edges CSV ('child,parent' rows) instead"
                ) from None
        if classes is None and isinstance(source, Mapping) and "classes" in source:
            classes = source["classes"]
            if not isinstance(classes, list):
                raise ValueError(f"{where}: 'classes' must be a list of leaf names")
        edges: list[tuple[str, str]] = []
        placed: dict[str, str | None] = {}  # name -> its parent (None for the root)
        stack: list[tuple[object, str | None]] = [(source, None)]
        while stack:
            node, parent = stack.pop()
            if not isinstance(node, Mapping) or "name" not in node:
                raise ValueError(
                    f"{where}: every node must be an object with a 'name', got {node!r}"
                )
            name = str(node["name"]).strip()
            if name in placed:
                first, second = (
                    "the top" if p is None else repr(p) for p in (placed[name], parent)
                )
                raise ValueError(
                    f"{where}: the name {name!r} appears twice (under {first} and under "
                    f"{second}); every node needs its own name"
                )
            placed[name] = parent
            if parent is not None:
                edges.append((name, parent))
            children = node.get("children") or []
            if not isinstance(children, list):
                raise ValueError(f"{where}: 'children' of {name!r} must be a list")
            stack.extend((child, name) for child in reversed(children))
        if not edges:
            raise ValueError(f"{where}: the root has no children")
        return cls(edges, classes=classes)

    @classmethod
    def from_paths(
        cls,
        source: PathLike | Iterable[Sequence[str]],
        *,
        classes: Sequence[str] | None = None,
        root: str = "root",
    ) -> Hierarchy:
        """From a leaf-to-path table: rows ``leaf, level1, level2, ...`` (top level first).

        A CSV file needs a header whose first cell is ``leaf``. Rows may be of different
        lengths (an unbalanced tree). A node called ``root`` is put above the level-1 nodes.
        """
        name = "path table"
        if isinstance(source, (str, Path)):
            text, name = _read_text(source)
            rows = _csv_rows(text)
            if not rows or rows[0][0].lower() != "leaf":
                found = rows[0] if rows else "nothing"
                raise ValueError(f"{name}: expected a header 'leaf,level1,...', found {found}")
            rows = rows[1:]
        else:
            rows = [[str(cell).strip() for cell in row] for row in source]
        edges: list[tuple[str, str]] = []
        leaf_rows: dict[str, int] = {}
        for line, row in enumerate(rows, start=2):
            path = [cell for cell in row[1:] if cell]
            if not row or not row[0]:
                raise ValueError(f"{name}: row {line} has no leaf name")
            if row[0] in leaf_rows:
                raise ValueError(
                    f"{name}: leaf {row[0]!r} is listed twice (rows {leaf_rows[row[0]]} and "
                    f"{line}); give each class one row"
                )
            leaf_rows[row[0]] = line
            chain = [root, *path, row[0]]
            edges.extend(zip(chain[1:], chain[:-1], strict=False))  # (child, parent)
        return cls(edges, classes=classes)

    @classmethod
    def load(cls, path: PathLike, *, classes: Sequence[str] | None = None) -> Hierarchy:
        """Read any of the three file formats: ``.json`` is nested; a CSV whose header starts
        with ``leaf`` is a path table; any other CSV is ``child,parent`` edges."""
        path = Path(path)
        if is_distance_file(path):
            raise ValueError(
                f"{path} is a distance file, not a tree: read it with ClassDistances.load or "
                "load_hierarchy"
            )
        if path.suffix.lower() == ".json":
            return cls.from_nested(path, classes=classes)
        text, _ = _read_text(path)
        header = text.lstrip().split("\n", 1)[0].strip().lower()
        if header.startswith("leaf"):
            return cls.from_paths(path, classes=classes)
        return cls.from_edges(path, classes=classes)

    @classmethod
    def balanced(cls, branching: Sequence[int], *, root: str = "root") -> Hierarchy:
        """A balanced tree: the root has ``branching[0]`` children, each of those
        ``branching[1]``, and so on; leaves ``class0 .. class{K-1}`` in depth-first order,
        which is also their class order (leaf-order rules 2 and 3 agree).

        ``Hierarchy.balanced([2, 3, 4])``: 24 classes, depth 3.
        """
        sizes = [int(b) for b in branching]
        if not sizes or any(b < 1 for b in sizes) or all(b == 1 for b in sizes):
            raise ValueError(f"branching must be positive integers, not all 1, got {branching}")
        level = [root]
        edges: list[tuple[str, str]] = []
        for depth, fan_out in enumerate(sizes, start=1):
            last = depth == len(sizes)
            children = []
            for parent in level:
                for _ in range(fan_out):
                    name = f"class{len(children)}" if last else f"n{depth}_{len(children)}"
                    children.append(name)
                    edges.append((name, parent))
            level = children
        return cls(edges)

    @classmethod
    def builtin(cls, name: str) -> Hierarchy:
        """A tree shipped with the package (:data:`BUILTIN_HIERARCHIES`).

        ``"cifar100"``: [L23]'s height-5 CIFAR-100 tree (2 -> 4 -> 8 -> 20 -> 100; 134
        edges). Leaves are the 100 fine labels named as in CIFAR-100's
        ``fine_label_names`` and in label order (``apple``, ``aquarium_fish``, ``baby``,
        ...); their parents are the 20 official superclasses (``coarse_label_names``);
        the three levels above keep [L23]'s names ``L1-*``, ``L2-*``, ``L3-*``. Provenance:
        docs/theory.md §7.
        """
        if name not in BUILTIN_HIERARCHIES:
            known = ", ".join(sorted(BUILTIN_HIERARCHIES))
            raise ValueError(f"no built-in hierarchy {name!r}; the package ships: {known}")
        file = (
            resources.files("neuralcollapse")
            .joinpath("hierarchies")
            .joinpath(BUILTIN_HIERARCHIES[name])
        )
        text = file.read_text(encoding="utf-8")
        return cls(cls._edges_from_csv(text, f"{BUILTIN_PREFIX}{name}"))

    # ----------------------------------------------------------------- saving

    def save(self, path: PathLike, format: str | None = None) -> Path:
        """Write as ``"edges"`` (CSV), ``"nested"`` (JSON) or ``"paths"`` (CSV).

        ``format=None`` picks ``nested`` for a ``.json`` file and ``edges`` otherwise.
        Every format is written so that :meth:`load` gives back the same class order (see
        the module docstring for the one exception).
        """
        path = Path(path)
        format = format or ("nested" if path.suffix.lower() == ".json" else "edges")
        if format == "edges":
            # Inner nodes first, then one row per leaf in class order: on reading, each
            # leaf first appears in its own row, so rule 3 restores the order.
            inner = [n for n in self.nodes if n != self.root and n in self._children]
            rows = [["child", "parent"], *([n, self._parent[n]] for n in (*inner, *self.leaves))]
            text = self._to_csv(rows)
        elif format == "paths":
            rows = [["leaf", *(f"level{i}" for i in range(1, self.depth))]]
            rows += [[leaf, *reversed(self.ancestors(leaf)[:-1])] for leaf in self.leaves]
            text = self._to_csv(rows)
        elif format == "nested":
            nested = self.to_nested()
            if self._order_leaves(self._tree_leaves(nested), None)[0] != self.leaves:
                nested["classes"] = list(self.leaves)
            try:
                text = json.dumps(nested, indent=1) + "\n"
            except RecursionError:
                raise ValueError(
                    f"the tree is {self.depth} levels deep, too deep for nested JSON: save it "
                    "as edges (a .csv file, format='edges')"
                ) from None
        else:
            raise ValueError(f"format must be 'edges', 'nested' or 'paths', got {format!r}")
        return atomic_write_text(path, text)

    @staticmethod
    def _tree_leaves(nested: Mapping) -> list[str]:
        """Leaf names of a nested tree in depth-first document order."""
        leaves: list[str] = []
        stack = [nested]
        while stack:
            node = stack.pop()
            kids = node.get("children")
            if kids:
                stack.extend(reversed(kids))
            else:
                leaves.append(node["name"])
        return leaves

    @staticmethod
    def _to_csv(rows: list[list[str]]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return buffer.getvalue()

    def to_nested(self) -> dict:
        """The tree as ``{"name": ..., "children": [...]}``, leaves without ``children``.

        Children are listed by the smallest class index below them, so the depth-first
        order of the leaves is the class order whenever the classes of every subtree are
        contiguous (always so for ``balanced`` trees and trees read from nested JSON).
        """
        first: dict[str, int] = {}
        for index, leaf in enumerate(self.leaves):
            for node in (leaf, *self.ancestors(leaf)):
                first.setdefault(node, index)

        # built top-down with an explicit stack: a deep tree must not hit the recursion limit
        top: dict = {"name": self.root}
        stack = [top]
        while stack:
            node = stack.pop()
            kids = sorted(self._children.get(node["name"], ()), key=first.__getitem__)
            if kids:
                node["children"] = [{"name": k} for k in kids]
                stack.extend(node["children"])
        return top

    # ----------------------------------------------------------------- queries

    @property
    def num_classes(self) -> int:
        return len(self.leaves)

    @property
    def depth(self) -> int:
        """Edges on the longest root-to-leaf path (the tree's height)."""
        return self._height[self.root]

    @property
    def is_balanced(self) -> bool:
        """Whether every leaf is at the same depth."""
        return len({self._depth_of[leaf] for leaf in self.leaves}) == 1

    def parent(self, node: str) -> str | None:
        self._check_node(node)
        return self._parent.get(node)

    def children(self, node: str) -> tuple[str, ...]:
        self._check_node(node)
        return tuple(self._children.get(node, ()))

    def height(self, node: str) -> int:
        self._check_node(node)
        return self._height[node]

    def ancestors(self, node: str) -> tuple[str, ...]:
        """From the node's parent up to the root (empty for the root)."""
        self._check_node(node)
        chain = []
        while node in self._parent:
            node = self._parent[node]
            chain.append(node)
        return tuple(chain)

    def class_index(self, name: str) -> int:
        """Class index of the leaf called ``name``."""
        if name not in self._index:
            raise ValueError(f"unknown class {name!r}: not a leaf of this hierarchy")
        return self._index[name]

    def _check_node(self, node: str) -> None:
        if node not in self._height:
            raise ValueError(f"unknown node {node!r}: not in this hierarchy")

    def node_depth(self, node: str) -> int:
        """Edges from the root down to ``node`` (0 for the root)."""
        self._check_node(node)
        return self._depth_of[node]

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        """Every ``(child, parent)`` pair, children in order of first appearance."""
        return tuple((n, self._parent[n]) for n in self.nodes if n in self._parent)

    def reordered(self, classes: Sequence[str]) -> Hierarchy:
        """The same tree with the class order ``classes`` (every leaf exactly once)."""
        return Hierarchy(self.edges, classes=classes)

    def _lca_nodes(self) -> Tensor:
        """(K, K) int64 indices into :attr:`nodes` of the LCA of leaves i and j.

        Vectorised over the levels of the root-to-leaf paths: O(K^2 * depth) tensor work
        but only a few (K, K) tensors in memory at a time, no Python loop over pairs.
        """
        node_id = {name: i for i, name in enumerate(self.nodes)}
        paths = [
            [node_id[n] for n in reversed((leaf, *self.ancestors(leaf)))] for leaf in self.leaves
        ]
        width = max(len(p) for p in paths)
        padded = torch.tensor([p + [-1] * (width - len(p)) for p in paths])  # (K, width)
        k = len(paths)
        # length of the shared root-first prefix (>= 1: the root); its last node is the LCA
        common = torch.zeros(k, k, dtype=torch.int64)
        shared = torch.ones(k, k, dtype=torch.bool)
        for level in range(width):
            column = padded[:, level]
            shared &= (column.unsqueeze(1) == column.unsqueeze(0)) & (column >= 0).unsqueeze(1)
            if not bool(shared.any()):
                break
            common += shared
        return torch.gather(padded, 1, common - 1)

    def lca_heights(
        self, convention: str = DEFAULT_CONVENTION, *, max_classes: int | None = None
    ) -> Tensor:
        """(K, K) int64 tensor D: the LCA distance of leaves i and j, 0 on the diagonal.

        Args:
            convention: ``"level"`` (default): the tree's depth minus the depth of the
                lowest common ancestor, the numbers of the distance files of
                making-better-mistakes and [L23]. ``"height"``: the LCA node's height (its
                longest way down to a leaf). Identical on balanced trees; on unbalanced
                ones "level" >= "height" (docs/theory.md §7). Both are ultrametrics with
                D[i, j] >= 1 for i != j.
            max_classes: the most leaves whose (K, K) matrix is built (default: the
                tree's ``max_classes`` attribute, :data:`MAX_CLASSES` unless set); a
                larger tree is refused before allocating.

        Returns:
            (K, K) int64, symmetric, rows and columns in class order.
        """
        convention = check_convention(convention)
        limit = self.max_classes if max_classes is None else max_classes
        check_class_count(self.num_classes, limit, what="tree")
        lca = self._lca_nodes()
        if convention == "height":
            values = torch.tensor([self._height[n] for n in self.nodes], dtype=torch.int64)
            return values[lca]
        depths = torch.tensor([self._depth_of[n] for n in self.nodes], dtype=torch.int64)
        levels = self.depth - depths[lca]
        levels.fill_diagonal_(0)  # a leaf above the deepest level is still 0 from itself
        return levels

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return (
            f"Hierarchy({len(self.nodes)} nodes, {self.num_classes} leaves, depth {self.depth}, "
            f"root {self.root!r}, leaf order by {self.leaf_order})"
        )


# --------------------------------------------------------------------------- distance matrices


def check_distance_matrix(
    matrix: object,
    *,
    min_classes: int = 1,
    separated: bool = False,
    ultrametric: bool = False,
    what: str = "LCA heights",
) -> Tensor:
    """The one check of a (K, K) class-distance matrix (LCA heights or given distances),
    used by frames, synthetic data, metrics and :class:`ClassDistances`.

    Always: a real square tensor (or array) with at least ``min_classes`` rows, finite,
    >= 0, symmetric, 0 on the diagonal. ``separated``: distinct classes are > 0 apart.
    ``ultrametric``: D[i, j] <= max(D[i, k], D[k, j]) for every k (true of every tree's
    LCA distances, in both conventions).

    Returns:
        The matrix on its device: int64 when every value is an integer, else float64.

    Raises:
        ValueError: the first property that fails, named.
    """
    if isinstance(matrix, np.ndarray):
        matrix = torch.from_numpy(matrix)
    if not isinstance(matrix, Tensor) or matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        shape = tuple(matrix.shape) if isinstance(matrix, Tensor) else type(matrix).__name__
        raise ValueError(f"{what} must be a square (K, K) tensor, got {shape}")
    if matrix.shape[0] < 1 or matrix.dtype == torch.bool or matrix.is_complex():
        raise ValueError(
            f"{what} must be a non-empty real (K, K) tensor, got {matrix.dtype} "
            f"{tuple(matrix.shape)}"
        )
    if matrix.shape[0] < min_classes:
        raise ValueError(f"{what} need at least {min_classes} classes, got {matrix.shape[0]}")
    d = matrix.detach().to(torch.float64)
    if not bool(torch.isfinite(d).all()) or bool((d < 0).any()):
        raise ValueError(f"{what} must be finite and non-negative")
    if not torch.equal(d, d.T):
        raise ValueError(f"{what} must be symmetric: D[i, j] == D[j, i]")
    if bool(torch.diagonal(d).any()):
        raise ValueError(f"{what} must be 0 on the diagonal")
    off_diagonal = d + torch.eye(d.shape[0], dtype=d.dtype, device=d.device)
    if separated and not bool((off_diagonal > 0).all()):
        raise ValueError(
            "two distinct classes have LCA height 0 (D[i, j] = 0 for i != j): every pair "
            "must meet above the leaves"
        )
    if ultrametric:
        _check_ultrametric(d, what)
    return d.to(torch.int64) if torch.equal(d, d.round()) else d


def _check_ultrametric(d: Tensor, what: str) -> None:
    """A tree's LCA distances satisfy D[i, j] <= max(D[i, k], D[k, j]) for every k."""
    for k in range(d.shape[0]):
        bound = torch.maximum(d[:, k, None], d[None, k, :])
        bad = torch.nonzero(d > bound)
        if bad.numel():
            i, j = (int(v) for v in bad[0])
            raise ValueError(
                f"these {what} do not come from a tree: D[{i}, {j}] = {float(d[i, j]):g} "
                f"exceeds max(D[{i}, {k}], D[{k}, {j}]) = {float(bound[i, j]):g}"
            )


def _pairs_matrix(
    pairs: Mapping[tuple[str, str], float], order: Sequence[str], where: str
) -> Tensor:
    """(K, K) matrix of ``pairs`` over the names ``order``; a pair may be given as (a, b),
    (b, a) or both (then equal); pairs of other names are ignored."""
    index = {name: i for i, name in enumerate(order)}
    k = len(order)
    values = np.full((k, k), np.nan)
    np.fill_diagonal(values, 0.0)
    for (a, b), distance in pairs.items():
        i, j = index.get(a), index.get(b)
        if i is None or j is None:
            continue
        if i == j:
            if distance != 0:
                raise ValueError(f"{where}: the distance of {a!r} to itself is {distance}, not 0")
            continue
        known = values[i, j]
        if not np.isnan(known) and known != distance:
            raise ValueError(
                f"{where}: ({a!r}, {b!r}) is {distance} but ({b!r}, {a!r}) is {known:g}; "
                "distances must be symmetric"
            )
        values[i, j] = values[j, i] = distance
    holes = np.argwhere(np.isnan(values))
    if holes.size:
        i, j = (int(v) for v in holes[0])
        raise ValueError(
            f"{where}: no distance between {order[i]!r} and {order[j]!r} ({len(holes) // 2} "
            "pair(s) missing); every pair of classes needs one"
        )
    return check_distance_matrix(torch.from_numpy(values))


class ClassDistances:
    """A (K, K) matrix of distances between named classes, when there is no tree.

    Accepted wherever a :class:`Hierarchy` is (frames, metrics, soft labels, the trainer's
    ``data.hierarchy``) through :func:`distance_matrix`. Its numbers are used as given:
    an LCA ``convention`` applies to trees only (the field's distance files already hold
    "level" numbers, docs/theory.md §7).

    Args:
        matrix: (K, K) distances (tensor or array): finite, >= 0, symmetric, 0 on the
            diagonal.
        classes: K class names in matrix order; default ``"0" .. "K-1"``.
        source: where it was read from (for messages).

    Attributes:
        matrix: (K, K) CPU tensor, int64 when every value is an integer, else float64.
        classes: the K names; class i is ``classes[i]``.
        named: whether the names were given (False for the default ``"0" .. "K-1"``).
    """

    def __init__(
        self,
        matrix: Tensor | np.ndarray,
        classes: Sequence[str] | None = None,
        *,
        source: str | None = None,
    ) -> None:
        self.matrix = check_distance_matrix(matrix).cpu()
        k = self.matrix.shape[0]
        names = tuple(str(i) for i in range(k)) if classes is None else tuple(map(str, classes))
        if len(names) != k:
            raise ValueError(f"classes has {len(names)} names but the matrix is {k} x {k}")
        if len(set(names)) != k:
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"classes lists {twice[:5]} more than once")
        self.classes = names
        self.named = classes is not None
        self.source = source

    @classmethod
    def from_pairs(
        cls,
        pairs: Mapping[tuple[str, str], float],
        classes: Sequence[str] | None = None,
        *,
        source: str | None = None,
        max_classes: int | None = None,
    ) -> ClassDistances:
        """From ``{(name_a, name_b): distance}`` (making-better-mistakes' format).

        ``classes``: the names to take, in class order (a file may also list inner tree
        nodes; those not named are ignored). Default: every name of the pairs, ordered by
        the leaf-order rules of :mod:`neuralcollapse.hierarchy` (distinct integer
        suffixes, else first appearance among the keys). ``max_classes``: the most
        classes whose (K, K) matrix is built (default :data:`MAX_CLASSES`).
        """
        where = source or "distance pairs"
        names: dict[str, None] = {}
        for key in pairs:
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ValueError(f"{where}: key {key!r} is not a (name_a, name_b) pair")
            names.setdefault(str(key[0]))
            names.setdefault(str(key[1]))
        if classes is None:
            order = list(_order_names(list(names), None)[0])
        else:
            order = [str(c) for c in classes]
            if len(set(order)) != len(order):
                twice = sorted({c for c in order if order.count(c) > 1})
                raise ValueError(f"classes lists {twice[:5]} more than once")
            unknown = [c for c in order if c not in names]
            if unknown:
                raise ValueError(
                    f"{where}: classes {unknown[:5]} have no distances ({len(unknown)} of "
                    f"{len(order)} missing)"
                )
        check_class_count(len(order), max_classes, what=f"distance file {where}")
        text_pairs = {(str(a), str(b)): value for (a, b), value in pairs.items()}
        return cls(_pairs_matrix(text_pairs, order, where), order, source=source)

    @classmethod
    def load(
        cls,
        path: PathLike,
        *,
        classes: Sequence[str] | None = None,
        max_classes: int | None = None,
    ) -> ClassDistances:
        """Read a ``.npy`` (K, K) matrix or a pickled ``{(a, b): d}`` dict (``.pkl`` or
        ``.pickle``, optionally ``.xz`` / ``.gz`` compressed, as making-better-mistakes and
        [L23] ship them).

        The pickle is read without running code (only dict, tuple, str, int and float are
        built). ``classes``: for ``.npy`` the K names in matrix order; for a pickle the
        names to take, in class order (see :meth:`from_pairs`).
        """
        path = Path(path)
        if path.suffix.lower() == ".npy":
            return cls(read_npy_matrix(path), classes, source=str(path))
        pairs, _ = read_distance_pairs(path)
        return cls.from_pairs(pairs, classes, source=str(path), max_classes=max_classes)

    def select(self, classes: Sequence[str]) -> ClassDistances:
        """The distances among ``classes`` (names of this matrix), in that order."""
        index = {name: i for i, name in enumerate(self.classes)}
        unknown = [c for c in classes if c not in index]
        if unknown:
            raise ValueError(f"classes {list(unknown)[:5]} are not in these distances")
        rows = torch.tensor([index[c] for c in classes], dtype=torch.int64)
        return ClassDistances(self.matrix[rows][:, rows], classes, source=self.source)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def leaves(self) -> tuple[str, ...]:
        """The class names (as :attr:`Hierarchy.leaves`)."""
        return self.classes

    def __repr__(self) -> str:
        where = f", from {self.source!r}" if self.source else ""
        return f"ClassDistances({self.num_classes} classes, max {self.matrix.max().item()}{where})"


def distance_matrix(
    source: Hierarchy | ClassDistances | Tensor | np.ndarray,
    *,
    convention: str = DEFAULT_CONVENTION,
) -> Tensor:
    """The (K, K) class-distance matrix of a tree or a given matrix: what frames, metrics
    and soft labels use.

    Args:
        source: a :class:`Hierarchy` (its ``lca_heights(convention)``), a
            :class:`ClassDistances` (its matrix, as given), or a (K, K) tensor / array.
        convention: ``"level"`` or ``"height"`` (docs/theory.md §7); applies to a
            Hierarchy only, checked in every case.

    Returns:
        (K, K) tensor, int64 when integral else float64, on the given tensor's device
        (CPU otherwise); checked finite, >= 0, symmetric, 0 on the diagonal.
    """
    convention = check_convention(convention)
    if isinstance(source, Hierarchy):
        return source.lca_heights(convention)
    if isinstance(source, ClassDistances):
        return source.matrix.clone()
    if isinstance(source, (Tensor, np.ndarray)):
        return check_distance_matrix(source)
    raise ValueError(
        "expected a neuralcollapse.Hierarchy or a (K, K) tensor of LCA heights (or a "
        f"ClassDistances), got {type(source).__name__}; read a file with "
        "neuralcollapse.hierarchy.load_hierarchy(path)"
    )


def load_hierarchy(
    spec: PathLike, *, classes: Sequence[str] | None = None, max_classes: int | None = None
) -> Hierarchy | ClassDistances:
    """A class tree or a distance matrix, from what a user names:

    * ``"builtin:NAME"``: :meth:`Hierarchy.builtin` (e.g. ``builtin:cifar100``);
    * a ``.npy`` file or a pickled distance dict (``.pkl``/``.pickle``, optionally
      ``.xz``/``.gz``): :meth:`ClassDistances.load`;
    * any other file: :meth:`Hierarchy.load` (edges CSV, path CSV or nested JSON).

    ``classes`` sets the class order (for a distance pickle: which names are the classes).
    ``max_classes``: the most classes of a distance pickle, whose (K, K) matrix is built
    as it is read (default :data:`MAX_CLASSES`).
    """
    text = str(spec)
    if text.startswith(BUILTIN_PREFIX):
        tree = Hierarchy.builtin(text[len(BUILTIN_PREFIX) :])
        return tree if classes is None else tree.reordered(classes)
    if is_distance_file(text):
        return ClassDistances.load(text, classes=classes, max_classes=max_classes)
    return Hierarchy.load(text, classes=classes)


def _index_names(count: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(count))


def match_classes(
    tree: Hierarchy | ClassDistances,
    class_names: Sequence[str],
    *,
    source: str = "the hierarchy",
) -> Hierarchy | ClassDistances:
    """The tree (or distances) with its classes in the data set's order, matched by name.

    Every class name of the data set must name a leaf of the tree (a class of the
    distances); a tree over more classes is cut to them (distances) or must have exactly
    them (trees). Two cases take the tree's own order instead, as there is no name to
    match: the data set has no class names (they are ``"0" .. "K-1"``), or the distances
    have none (a ``.npy`` matrix read without ``classes=``); the class counts must agree.

    Raises:
        ValueError: names that do not match (a few of them from each side, and the fix),
            or counts that differ. Names are never matched silently by position.
    """
    names = tuple(str(n) for n in class_names)
    if tree.leaves == names:
        return tree
    named = not isinstance(tree, ClassDistances) or tree.named
    kind = "leaves" if isinstance(tree, Hierarchy) else "classes"
    if not named or names == _index_names(len(names)):
        if tree.num_classes != len(names):
            raise ValueError(
                f"{source} has {tree.num_classes} {kind} but the data set has {len(names)} "
                "classes; give a tree or distance file over exactly these classes"
            )
        return tree
    leaves = set(tree.leaves)
    unmatched = [n for n in names if n not in leaves]
    if unmatched:
        extra = [n for n in tree.leaves if n not in set(names)]
        theirs = f"; its own {kind} include {extra[:3]}" if extra else ""
        raise ValueError(
            f"{len(unmatched)} of the data set's {len(names)} class names are not {kind} of "
            f"{source}: {unmatched[:3]}{theirs}. Classes are matched by name, never by "
            "position: give a file whose names are the data set's class names (or, in "
            "Python, map them with classes=[...] / ClassDistances.select)"
        )
    if isinstance(tree, ClassDistances):
        return tree.select(names)
    if tree.num_classes != len(names):
        extra = [n for n in tree.leaves if n not in set(names)]
        raise ValueError(
            f"{source} has {tree.num_classes} leaves, {len(extra)} of them not classes of the "
            f"data set ({extra[:3]}); give a tree over exactly the data set's classes"
        )
    return tree.reordered(names)
