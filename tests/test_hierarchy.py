"""Hierarchy: parsing, leaf order, LCA heights against brute force, errors, round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import neuralcollapse as nc
from neuralcollapse.hierarchy import Hierarchy

# A small balanced tree: root -> {animal, plant}; animal -> {cat, dog}; plant -> {oak, fern}
SMALL = [
    ("animal", "root"),
    ("plant", "root"),
    ("cat", "animal"),
    ("dog", "animal"),
    ("oak", "plant"),
    ("fern", "plant"),
]


def brute_force_lca_heights(h: Hierarchy, convention: str = "level") -> np.ndarray:
    """Pair by pair: "height" = the LCA's height, "level" = deepest leaf depth minus the
    LCA's depth (0 for a leaf and itself)."""
    k = h.num_classes
    deepest = max(len(h.ancestors(leaf)) for leaf in h.leaves)
    out = np.zeros((k, k), dtype=np.int64)
    for i, a in enumerate(h.leaves):
        chain_a = [a, *h.ancestors(a)]
        for j, b in enumerate(h.leaves):
            chain_b = {b, *h.ancestors(b)}
            lca = next(node for node in chain_a if node in chain_b)
            if convention == "height":
                out[i, j] = h.height(lca)
            elif i != j:
                out[i, j] = deepest - len(h.ancestors(lca))
    return out


@pytest.fixture(scope="module")
def cifar100(cifar100_hierarchy_file) -> Hierarchy:
    return Hierarchy.from_edges(cifar100_hierarchy_file)


def test_cifar100_tree_counts(cifar100):
    # 134 child-parent edges: 134 non-root nodes plus the root.
    assert len(cifar100.nodes) == 135 and cifar100.root == "root"
    assert cifar100.num_classes == 100 and cifar100.depth == 5 and cifar100.is_balanced
    assert cifar100.leaf_order == "suffix"
    assert cifar100.leaves == tuple(f"L5-{i}" for i in range(100))
    lca = cifar100.lca_heights()
    assert lca.dtype == torch.int64 and lca.shape == (100, 100)
    upper = lca[torch.triu_indices(100, 100, 1).unbind()]
    assert torch.bincount(upper, minlength=6).tolist() == [0, 200, 525, 1050, 900, 2275]
    assert torch.equal(torch.diagonal(lca), torch.zeros(100, dtype=torch.int64))
    np.testing.assert_array_equal(lca.numpy(), brute_force_lca_heights(cifar100))


def test_cifar100_ancestors(cifar100):
    chain = cifar100.ancestors("L5-0")
    assert len(chain) == 5 and chain[-1] == "root" and chain[0].startswith("L4-")


def test_small_tree_queries():
    h = Hierarchy.from_edges(SMALL)
    assert h.leaf_order == "input" and h.leaves == ("cat", "dog", "oak", "fern")
    assert h.lca_heights().tolist() == [[0, 1, 2, 2], [1, 0, 2, 2], [2, 2, 0, 1], [2, 2, 1, 0]]
    assert h.ancestors("cat") == ("animal", "root") and h.ancestors("root") == ()
    assert h.children("animal") == ("cat", "dog") and h.parent("root") is None
    assert h.class_index("oak") == 2
    with pytest.raises(ValueError, match="unknown class 'tree'"):
        h.class_index("tree")
    with pytest.raises(ValueError, match="unknown node 'tree'"):
        h.ancestors("tree")
    assert "6 leaves" not in repr(h) and "4 leaves" in repr(h)


def test_explicit_class_order():
    h = Hierarchy.from_edges(SMALL, classes=["oak", "cat", "fern", "dog"])
    assert h.leaf_order == "classes" and h.leaves == ("oak", "cat", "fern", "dog")
    assert h.lca_heights()[0].tolist() == [0, 2, 1, 2]


def test_unbalanced_tree_uses_longest_way_down():
    edges = [("a", "root"), ("b", "root"), ("a1", "a"), ("a2", "a"), ("a11", "a1"), ("a12", "a1")]
    h = Hierarchy.from_edges(edges)  # leaves b (depth 1), a2 (depth 2), a11, a12 (depth 3)
    assert not h.is_balanced and h.depth == 3
    assert (h.height("a1"), h.height("a"), h.height("root")) == (1, 2, 3)
    lca = h.lca_heights(convention="height").numpy()
    np.testing.assert_array_equal(lca, brute_force_lca_heights(h, "height"))
    # every inner node here lies on a deepest path, so "level" equals "height"
    np.testing.assert_array_equal(h.lca_heights().numpy(), brute_force_lca_heights(h, "level"))
    np.testing.assert_array_equal(h.lca_heights().numpy(), lca)


@st.composite
def random_trees(draw):
    size = draw(st.integers(3, 30))
    parents = [draw(st.integers(0, i - 1)) for i in range(1, size)]
    return [(f"n{i}", f"n{p}") for i, p in enumerate(parents, start=1)]


@given(edges=random_trees())
@settings(max_examples=60)
def test_property_lca_matches_brute_force_and_is_an_ultrametric(edges):
    h = Hierarchy.from_edges(edges)
    for convention in ("level", "height"):
        lca = h.lca_heights(convention).numpy()
        np.testing.assert_array_equal(lca, brute_force_lca_heights(h, convention))
        assert (lca == lca.T).all()
        # ultrametric: D(i, k) <= max(D(i, j), D(j, k)) for all triples
        assert (lca[:, None, :] <= np.maximum(lca[:, :, None], lca[None, :, :])).all()
    # "level" is never below "height"; they agree exactly when the tree is balanced
    level, height = h.lca_heights("level"), h.lca_heights("height")
    assert bool((level >= height).all())
    if h.is_balanced:
        assert torch.equal(level, height)


@pytest.mark.parametrize(
    ("fmt", "suffix"), [("edges", ".csv"), ("nested", ".json"), ("paths", ".csv")]
)
def test_save_and_load_round_trip(tmp_path, fmt, suffix):
    h = Hierarchy.from_edges(SMALL + [("moss", "plant")])
    path = h.save(tmp_path / f"tree{suffix}", format=fmt)
    loader = {
        "edges": Hierarchy.from_edges,
        "nested": Hierarchy.from_nested,
        "paths": Hierarchy.from_paths,
    }[fmt]
    again = loader(path, classes=h.leaves)
    assert torch.equal(again.lca_heights(), h.lca_heights())
    assert again.leaves == h.leaves


def test_save_infers_format_from_suffix(tmp_path):
    h = Hierarchy.from_edges(SMALL)
    assert json.loads(h.save(tmp_path / "t.json").read_text())["name"] == "root"
    assert h.save(tmp_path / "t.csv").read_text().startswith("child,parent\n")
    with pytest.raises(ValueError, match="format must be"):
        h.save(tmp_path / "t.txt", format="yaml")


def test_nested_dict_and_path_rows():
    nested = {
        "name": "root",
        "children": [{"name": "x", "children": [{"name": "c0"}, {"name": "c1"}]}, {"name": "c2"}],
    }
    h = Hierarchy.from_nested(nested)
    assert h.leaves == ("c0", "c1", "c2") and h.leaf_order == "suffix"
    rows = [["c0", "x"], ["c1", "x"], ["c2"]]
    assert torch.equal(Hierarchy.from_paths(rows).lca_heights(), h.lca_heights())


def test_top_level_export():
    assert nc.Hierarchy is Hierarchy


@pytest.mark.parametrize(
    ("edges", "match"),
    [
        ([("a", "root"), ("a", "b"), ("b", "root")], "node 'a' has two parents"),
        ([("a", "b"), ("b", "c"), ("c", "a"), ("d", "root")], "cycle through node"),
        ([("a", "a")], "'a' is its own parent"),
        ([("a", "r1"), ("b", "r2")], "2 roots .'r1', 'r2'."),
        ([("a", "b"), ("b", "a")], "no root"),
        ([], "no edges"),
        ([("a", "")], "empty node name"),
        ([("a", "b", "c")], "pair"),
    ],
)
def test_malformed_trees_name_the_node(edges, match):
    with pytest.raises(ValueError, match=match):
        Hierarchy.from_edges(edges)


def test_class_list_errors():
    with pytest.raises(ValueError, match=r"leaves \['fern'\].*missing from the class list"):
        Hierarchy.from_edges(SMALL, classes=["cat", "dog", "oak"])
    with pytest.raises(ValueError, match=r"classes \['animal'\] are not leaves"):
        Hierarchy.from_edges(SMALL, classes=["cat", "dog", "oak", "fern", "animal"])
    with pytest.raises(ValueError, match="more than once"):
        Hierarchy.from_edges(SMALL, classes=["cat", "cat", "dog", "oak", "fern"])


def test_file_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        Hierarchy.from_edges(tmp_path / "missing.csv")
    bad_header = tmp_path / "h.csv"
    bad_header.write_text("node,up\na,root\n")
    with pytest.raises(ValueError, match=r"h.csv: expected the header 'child,parent'"):
        Hierarchy.from_edges(bad_header)
    bad_row = tmp_path / "r.csv"
    bad_row.write_text("child,parent\na,root,extra\n")
    with pytest.raises(ValueError, match="row 2"):
        Hierarchy.from_edges(bad_row)
    bad_json = tmp_path / "t.json"
    bad_json.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Hierarchy.from_nested(bad_json)
    with pytest.raises(ValueError, match="'name'"):
        Hierarchy.from_nested({"children": []})
    no_header = tmp_path / "p.csv"
    no_header.write_text("c0,x\n")
    with pytest.raises(ValueError, match="header 'leaf,level1"):
        Hierarchy.from_paths(no_header)


# --------------------------------------------------------------------------- one leaf order


def _nested_from_edges(edges):
    """The nested document a person would write for ``edges``: children in edge order."""
    children: dict[str, list[str]] = {}
    parents = {child for child, _ in edges}
    for child, parent in edges:
        children.setdefault(parent, []).append(child)
    (root,) = {parent for _, parent in edges if parent not in parents}

    def build(name):
        kids = children.get(name)
        return {"name": name, "children": [build(k) for k in kids]} if kids else {"name": name}

    return build(root)


def _write_by_hand(tmp_path, edges, tree):
    """The same tree written as each file format, by hand (not through ``save``)."""
    edges_csv = tmp_path / "edges.csv"
    edges_csv.write_text("child,parent\n" + "".join(f"{c},{p}\n" for c, p in edges))
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps(_nested_from_edges(edges)))
    paths = tmp_path / "paths.csv"
    rows = [",".join([leaf, *reversed(tree.ancestors(leaf)[:-1])]) for leaf in tree.leaves]
    paths.write_text("leaf,level1,level2\n" + "\n".join(rows) + "\n")
    return {"edges": edges_csv, "nested": nested, "paths": paths}


ORDER_CASES = {
    "dog-cat": ([("dog", "root"), ("cat", "root")], ("dog", "cat"), "input"),
    "x10-y2": ([("x10", "root"), ("y2", "root")], ("y2", "x10"), "suffix"),
    "small": (SMALL, ("cat", "dog", "oak", "fern"), "input"),
    "two-level-suffix": (
        [("g", "root"), ("h", "root"), ("x10", "g"), ("y2", "h"), ("z7", "g")],
        ("y2", "z7", "x10"),
        "suffix",
    ),
}


@pytest.mark.parametrize("case", ORDER_CASES)
def test_same_edges_same_class_order_from_every_entry_point(tmp_path, case):
    edges, order, rule = ORDER_CASES[case]
    tree = Hierarchy.from_edges(edges)
    assert tree.leaves == order and tree.leaf_order == rule
    for fmt, path in _write_by_hand(tmp_path, edges, tree).items():
        loaded = Hierarchy.load(path)
        assert loaded.leaves == order, fmt
        assert torch.equal(loaded.lca_heights(), tree.lca_heights()), fmt
        saved = tree.save(tmp_path / f"saved_{fmt}{path.suffix}", format=fmt)
        assert Hierarchy.load(saved).leaves == order, f"{fmt} round trip"
    assert nc.data.hierarchical_mixture(edges, dim=4, n_per_class=1).classes == order


def test_balanced_trees_keep_their_order_through_every_format(tmp_path):
    tree = Hierarchy.balanced([2, 3, 2])
    assert tree.leaves == tuple(f"class{i}" for i in range(12))
    for fmt, suffix in (("edges", ".csv"), ("nested", ".json"), ("paths", ".csv")):
        again = Hierarchy.load(tree.save(tmp_path / f"t_{fmt}{suffix}", format=fmt))
        assert again.leaves == tree.leaves and torch.equal(again.lca_heights(), tree.lca_heights())


@pytest.mark.parametrize("fmt", ["edges", "nested", "paths"])
def test_save_keeps_an_interleaved_input_order(tmp_path, fmt):
    # cat and dog share a parent but oak comes between them: no tree order gives this
    edges = [("cat", "animal"), ("oak", "plant"), ("dog", "animal")]
    edges += [("animal", "root"), ("plant", "root")]
    tree = Hierarchy.from_edges(edges)
    assert tree.leaves == ("cat", "oak", "dog")
    path = tree.save(tmp_path / ("t.json" if fmt == "nested" else "t.csv"), format=fmt)
    assert Hierarchy.load(path).leaves == tree.leaves
    if fmt == "nested":  # only recorded when the tree order alone would lose it
        assert json.loads(path.read_text())["classes"] == ["cat", "oak", "dog"]


@pytest.mark.parametrize("fmt", ["edges", "nested", "paths"])
def test_save_keeps_an_explicit_class_order(tmp_path, fmt):
    tree = Hierarchy.from_edges(SMALL, classes=["oak", "cat", "fern", "dog"])
    path = tree.save(tmp_path / ("t.json" if fmt == "nested" else "t.csv"), format=fmt)
    assert Hierarchy.load(path).leaves == ("oak", "cat", "fern", "dog")


def test_nested_without_a_needed_class_list_stays_plain(tmp_path):
    path = Hierarchy.from_edges(SMALL).save(tmp_path / "t.json")
    assert "classes" not in json.loads(path.read_text())


def test_nested_classes_key_and_argument():
    nested = _nested_from_edges(SMALL)
    nested["classes"] = ["fern", "oak", "dog", "cat"]
    assert Hierarchy.from_nested(nested).leaves == ("fern", "oak", "dog", "cat")
    assert Hierarchy.from_nested(nested).leaf_order == "classes"
    explicit = ["cat", "dog", "oak", "fern"]
    assert Hierarchy.from_nested(nested, classes=explicit).leaves == tuple(explicit)
    nested["classes"] = "fern"
    with pytest.raises(ValueError, match="'classes' must be a list"):
        Hierarchy.from_nested(nested)


# --------------------------------------------------------------------------- duplicate names


@pytest.mark.parametrize(
    ("nested", "match"),
    [
        (  # siblings: silently merged before
            {"name": "root", "children": [{"name": "a"}, {"name": "a"}, {"name": "b"}]},
            r"the name 'a' appears twice \(under 'root' and under 'root'\)",
        ),
        (  # cousins
            {
                "name": "root",
                "children": [
                    {"name": "x", "children": [{"name": "leaf"}, {"name": "y"}]},
                    {"name": "z", "children": [{"name": "leaf"}]},
                ],
            },
            r"the name 'leaf' appears twice \(under 'x' and under 'z'\)",
        ),
        (  # the root's name again below it
            {"name": "root", "children": [{"name": "root"}, {"name": "b"}]},
            r"the name 'root' appears twice \(under the top and under 'root'\)",
        ),
    ],
)
def test_nested_duplicate_names_are_errors_naming_the_name(nested, match):
    with pytest.raises(ValueError, match=match):
        Hierarchy.from_nested(nested)


def test_nested_duplicate_names_in_a_file_name_the_file(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text(json.dumps({"name": "r", "children": [{"name": "a"}, {"name": "a"}]}))
    with pytest.raises(ValueError, match=r"dup.json: the name 'a' appears twice"):
        Hierarchy.load(path)


def test_path_table_lists_each_leaf_once(tmp_path):
    with pytest.raises(ValueError, match=r"leaf 'c0' is listed twice \(rows 2 and 4\)"):
        Hierarchy.from_paths([["c0", "x"], ["c1", "x"], ["c0", "x"]])
    path = tmp_path / "p.csv"
    path.write_text("leaf,level1\nc0,x\nc1,x\nc1,y\n")
    with pytest.raises(ValueError, match=r"p.csv: leaf 'c1' is listed twice \(rows 3 and 4\)"):
        Hierarchy.load(path)
