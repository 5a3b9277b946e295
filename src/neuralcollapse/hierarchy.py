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
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch

from neuralcollapse._internal.files import atomic_write_text

__all__ = ["Hierarchy"]

_SUFFIX = re.compile(r"(\d+)$")

PathLike = str | Path


def _read_text(source: PathLike) -> tuple[str, str]:
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"hierarchy file {str(path)!r} does not exist")
    return path.read_text(encoding="utf-8"), str(path)


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
        if classes is not None:
            listed = [str(c) for c in classes]
            duplicates = sorted({c for c in listed if listed.count(c) > 1})
            if duplicates:
                raise ValueError(f"classes lists {duplicates[:5]} more than once")
            leaf_set, class_set = set(leaves), set(listed)
            missing = [leaf for leaf in leaves if leaf not in class_set]
            if missing:
                raise ValueError(
                    f"leaves {missing[:5]} of the hierarchy are missing from the class list: "
                    "every class must be listed"
                )
            unknown = [c for c in listed if c not in leaf_set]
            if unknown:
                raise ValueError(f"classes {unknown[:5]} are not leaves of the hierarchy")
            return tuple(listed), "classes"
        suffixes = [_SUFFIX.search(leaf) for leaf in leaves]
        if all(suffixes) and len({int(m.group(1)) for m in suffixes}) == len(leaves):
            ranked = sorted(
                zip(leaves, suffixes, strict=True), key=lambda pair: int(pair[1].group(1))
            )
            return tuple(leaf for leaf, _ in ranked), "suffix"
        return tuple(leaves), "input"

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
        rows = _csv_rows(text)
        if not rows or [c.lower() for c in rows[0]] != ["child", "parent"]:
            found = rows[0] if rows else "nothing"
            raise ValueError(f"{name}: expected the header 'child,parent', found {found}")
        for line, row in enumerate(rows[1:], start=2):
            if len(row) != 2:
                raise ValueError(f"{name}: row {line} should be 'child,parent', got {row}")
        return cls([tuple(row) for row in rows[1:]], classes=classes)

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
            text = json.dumps(nested, indent=1) + "\n"
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

        def build(name: str) -> dict:
            kids = sorted(self._children.get(name, ()), key=first.__getitem__)
            return {"name": name, "children": [build(k) for k in kids]} if kids else {"name": name}

        return build(self.root)

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

    def lca_heights(self) -> torch.Tensor:
        """(K, K) int64 tensor: height of the lowest common ancestor of leaves i and j.

        0 on the diagonal. Vectorised over root-to-leaf paths: O(K^2 * depth) tensor work,
        no Python loop over pairs.
        """
        node_id = {name: i for i, name in enumerate(self.nodes)}
        paths = [
            [node_id[n] for n in reversed((leaf, *self.ancestors(leaf)))] for leaf in self.leaves
        ]
        width = max(len(p) for p in paths)
        padded = torch.tensor([p + [-1] * (width - len(p)) for p in paths])  # (K, width)
        valid = padded >= 0
        same = (
            (padded.unsqueeze(1) == padded.unsqueeze(0)) & valid.unsqueeze(1) & valid.unsqueeze(0)
        )
        # Length of the shared root-first prefix (>= 1: the root); its last node is the LCA.
        common = same.to(torch.int64).cumprod(dim=2).sum(dim=2)  # (K, K)
        k = len(paths)
        lca = torch.gather(padded.unsqueeze(1).expand(k, k, width), 2, (common - 1).unsqueeze(2))
        heights = torch.tensor([self._height[name] for name in self.nodes], dtype=torch.int64)
        return heights[lca.squeeze(2)]

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return (
            f"Hierarchy({len(self.nodes)} nodes, {self.num_classes} leaves, depth {self.depth}, "
            f"root {self.root!r}, leaf order by {self.leaf_order})"
        )
