"""Hostile and broken data files (issue 28 items 5-7, issue 25 item 5): listed paths stay
under the data root, sizes are checked before allocating, and every refusal is one line."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from neuralcollapse.cli import main
from neuralcollapse.data import (
    DataFormatError,
    ListFileDataset,
    decode_image,
    load_cifar,
    load_cub,
    load_fgvc_aircraft,
    load_inaturalist,
    load_mnist,
    original_worker_errors,
    read_idx,
)
from neuralcollapse.errors import ConfigError, UsageError
from neuralcollapse.hierarchy import Hierarchy, load_hierarchy, match_classes
from neuralcollapse.metrics.hierarchical import HierarchicalCounter, rank_classes
from neuralcollapse.train import load_config
from neuralcollapse.train.data import load_training_data

PIL = pytest.importorskip("PIL.Image", reason="image files need Pillow")


def _png(path: Path, value: int = 128, size: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.new("RGB", (size, size), (value, value, value)).save(path)
    return path


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- layouts
# Each writer lays out a tiny release in its official on-disk form under `root` and lists
# `entry` (a path as the release's annotation file names it) as one training image.


def _list_file(root: Path, entry: str) -> dict:
    _png(root / "ok.png")
    (root / "train.txt").write_text(f"ok.png 0\n{entry} 1\n")
    return {
        "load": lambda allow: ListFileDataset(root, root / "train.txt", allow_outside_root=allow)
    }


def _cub(root: Path, entry: str) -> dict:
    folder = root / "CUB_200_2011"
    _png(folder / "images" / "001.A" / "a.jpg")
    (folder / "images.txt").write_text(f"1 001.A/a.jpg\n2 {entry}\n")
    (folder / "image_class_labels.txt").write_text("1 1\n2 2\n")
    (folder / "train_test_split.txt").write_text("1 1\n2 1\n")
    (folder / "classes.txt").write_text("1 001.A\n2 002.B\n")
    return {"load": lambda allow: load_cub(root, "train", allow_outside_root=allow)}


def _inaturalist(root: Path, entry: str) -> dict:
    _png(root / "train_val2019" / "a.jpg")
    content = {
        "images": [{"id": 1, "file_name": "train_val2019/a.jpg"}, {"id": 2, "file_name": entry}],
        "annotations": [{"image_id": 1, "category_id": 0}, {"image_id": 2, "category_id": 1}],
        "categories": [{"id": 0, "name": "x"}, {"id": 1, "name": "y"}],
    }
    (root / "train2019.json").write_text(json.dumps(content))
    return {"load": lambda allow: load_inaturalist(root, "train", allow_outside_root=allow)}


def _aircraft(root: Path, entry: str) -> dict:
    data = root / "fgvc-aircraft-2013b" / "data"
    _png(data / "images" / "0000001.jpg")
    (data / "variants.txt").write_text("A\nB\n")
    image_id = entry.removesuffix(".jpg")
    (data / "images_variant_trainval.txt").write_text(f"0000001 A\n{image_id} B\n")
    return {"load": lambda allow: load_fgvc_aircraft(root, "trainval", allow_outside_root=allow)}


READERS = {"list_file": _list_file, "cub": _cub, "inaturalist": _inaturalist, "fgvc": _aircraft}


def _entry(form: str, root: Path, reader: str, outside: Path) -> str:
    """The listed entry of each traversal form, relative to where the reader joins it."""
    depth = {"list_file": 0, "cub": 2, "inaturalist": 0, "fgvc": 3}[reader]
    if form == "dotdot":
        return "../" * (depth + 1) + "outside/secret.jpg"
    if form == "absolute":
        return str(outside)
    link = root / "link.jpg"  # inside the root, pointing out of it
    os.symlink(outside, link)
    return "../" * depth + "link.jpg"


@pytest.mark.parametrize("form", ["dotdot", "absolute", "symlink"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_listed_paths_must_stay_under_the_data_root(tmp_path, reader, form):
    outside = _png(tmp_path / "outside" / "secret.jpg", value=7)
    root = tmp_path / "root"
    root.mkdir()
    layout = READERS[reader](root, _entry(form, root, reader, outside))
    with pytest.raises(DataFormatError, match="allow_outside_root") as info:
        layout["load"](False)
    assert "\n" not in str(info.value)
    allowed = layout["load"](True)  # the explicit option reads it
    assert Path(allowed.paths[-1]).resolve() == outside.resolve()


def test_outside_root_refusal_is_one_line_from_the_command_line(tmp_path, capsys):
    outside = _png(tmp_path / "secret.png")
    root = tmp_path / "root"
    _png(root / "a.png")
    (tmp_path / "train.txt").write_text("a.png 0\n../secret.png 1\n")
    (tmp_path / "test.txt").write_text("a.png 0\n")
    code = main(
        [
            "train",
            "data.name=list_file",
            f"data.root={root}",
            f"data.train_list={tmp_path / 'train.txt'}",
            f"data.test_list={tmp_path / 'test.txt'}",
            "data.image_size=6",
            "data.val_fraction=0",
            "train.epochs=1",
            "--run-dir",
            str(tmp_path / "run"),
        ]
    )
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "'../secret.png'" in line and "outside the data root" in line
    assert outside.exists()


# --------------------------------------------------------------------------- list files


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"a.png 999999999\n", "label 999999999 implies 1,000,000,000 classes"),
        (b"a.png -3\n", "label -3 is negative"),
        (b"a.png 0\n\xff\xfe broken 1\n", "not UTF-8 text"),
    ],
)
def test_list_file_labels_and_encoding(tmp_path, content, match):
    _png(tmp_path / "a.png")
    (tmp_path / "list.txt").write_bytes(content)
    with pytest.raises(DataFormatError, match=match):
        ListFileDataset(tmp_path, tmp_path / "list.txt")


def test_list_file_label_against_the_class_count(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "list.txt").write_text("a.png 12\n")
    with pytest.raises(DataFormatError, match="label 12 found but there are 10 classes"):
        ListFileDataset(tmp_path, tmp_path / "list.txt", num_classes=10)


def test_inaturalist_ids_must_be_plain_ids(tmp_path):
    _inaturalist(tmp_path, "train_val2019/a.jpg")
    content = json.loads((tmp_path / "train2019.json").read_text())
    content["images"][1]["id"] = [1, 2]
    (tmp_path / "train2019.json").write_text(json.dumps(content))
    with pytest.raises(DataFormatError, match=r"images\[1\] has id \[1, 2\], not an integer"):
        load_inaturalist(tmp_path, "train")


# --------------------------------------------------------------------------- size bombs


def _idx_gzip_bomb(path: Path, total: int) -> None:
    """An IDX image file whose header honestly declares ``total`` bytes of values, as a
    few-MB gzip of concatenated members (each 64 MB of zeros)."""
    block = 64 << 20
    count = total // (28 * 28)
    header = struct.pack(">BBBBIII", 0, 0, 8, 3, count, 28, 28)
    zeros = gzip.compress(bytes(block), compresslevel=1)
    with open(path, "wb") as out:
        out.write(gzip.compress(header))
        for _ in range(count * 28 * 28 // block):
            out.write(zeros)


def test_gzip_that_expands_to_gigabytes_is_refused_from_its_header(tmp_path):
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    _idx_gzip_bomb(bomb, 3 << 30)
    assert bomb.stat().st_size < 16 << 20
    script = textwrap.dedent(
        f"""
        import resource
        from neuralcollapse.data import DataFormatError, read_idx
        status = open("/proc/self/status").read()
        used = int(next(l for l in status.splitlines() if l.startswith("VmSize")).split()[1])
        limit = used * 1024 + (512 << 20)  # far below the 3 GB the file expands to
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            read_idx({str(bomb)!r})
        except DataFormatError as exc:
            print("REFUSED", exc)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert "REFUSED" in run.stdout, run.stderr
    assert "more than the" in run.stdout and "MemoryError" not in run.stderr


def test_gzip_longer_than_its_header_says_is_refused(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    header = struct.pack(">BBBBI", 0, 0, 8, 1, 4)
    path.write_bytes(gzip.compress(header + bytes(4 + (1 << 20))))
    with pytest.raises(DataFormatError, match="holds more than 4"):
        read_idx(path)


def _write_idx(folder: Path, name: str, array: np.ndarray) -> None:
    dims = b"".join(struct.pack(">I", n) for n in array.shape)
    code = 3 if array.ndim == 3 else 1
    (folder / name).write_bytes(bytes([0, 0, 8, code]) + dims + array.astype(np.uint8).tobytes())


def test_mnist_with_5x5_training_images_is_refused(tmp_path):
    _write_idx(tmp_path, "train-images-idx3-ubyte", np.zeros((4, 5, 5)))
    _write_idx(tmp_path, "train-labels-idx1-ubyte", np.zeros(4))
    _write_idx(tmp_path, "t10k-images-idx3-ubyte", np.zeros((4, 28, 28)))
    _write_idx(tmp_path, "t10k-labels-idx1-ubyte", np.zeros(4))
    assert load_mnist(tmp_path, "test").images.shape == (4, 1, 28, 28)
    with pytest.raises(DataFormatError, match=r"5 x 5 images; the MNIST format is 28 x 28"):
        load_mnist(tmp_path, "train")


def test_cifar_member_declaring_gigabytes_is_refused_before_reading(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
    info.size = 3 << 30  # declared in the header; the archive holds a few bytes only
    archive.write_bytes(gzip.compress(info.tobuf() + bytes(1024)))
    with pytest.raises(DataFormatError, match="declares 3,221,225,472 bytes"):
        load_cifar(archive, "cifar10", "train")


def test_cifar_pickle_payload_is_one_line(tmp_path, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    payload = b"cos\nsystem\n(S'echo pwned'\ntR."  # protocol 0: calls os.system
    for member in ["batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / member).write_bytes(payload)
    code = main(
        ["train", "data.name=cifar10", f"data.root={tmp_path}", "--run-dir", str(tmp_path / "r")]
    )
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "refusing to load" in line and "system" in line


def _png_header_only(path: Path, width: int, height: int) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [10_000, 40_000])  # above Pillow's warning / error limit
def test_decompression_bombs_are_refused_before_decoding(tmp_path, side):
    bomb = _png_header_only(tmp_path / "bomb.png", side, side)
    assert bomb.stat().st_size < 1000
    with pytest.raises(DataFormatError, match="decompression bomb"):
        decode_image(bomb, size=8)


# --------------------------------------------------------------------------- workers


class _Broken(Dataset):
    labels = torch.zeros(4, dtype=torch.int64)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        raise DataFormatError(f"/data/img{index}.png is not a readable image; replace it")


def test_worker_errors_keep_their_original_message():
    loader = DataLoader(_Broken(), batch_size=2, num_workers=1)
    with pytest.raises(DataFormatError) as info, original_worker_errors():
        next(iter(loader))
    assert str(info.value) == "/data/img0.png is not a readable image; replace it"


def test_decode_error_in_streamed_mode_is_one_line(tmp_path, capsys):
    for split in ("train", "test"):
        for cls in ("a", "b"):
            for i in range(3):
                _png(tmp_path / split / cls / f"{i}.png", value=40 * i)
    (tmp_path / "train" / "b" / "1.png").write_bytes(b"not an image at all")
    code = main(
        [
            "train",
            "data.name=image_folder",
            f"data.root={tmp_path}",
            "data.image_size=6",
            "data.store=stream",
            "data.num_workers=1",
            "data.val_fraction=0",
            "data.imbalance_ratio=1",
            "model.name=mlp",
            "model.options={hidden: [8], feature_dim: 4}",
            "train.epochs=1",
            "log.tensorboard=false",
            "log.report=false",
            "--run-dir",
            str(tmp_path / "run"),
        ]
    )
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "1.png" in line and "is not a readable image" in line
    assert "DataLoader worker" not in line


# --------------------------------------------------------------------------- trees


def test_a_tree_of_100000_leaves_is_refused_before_its_matrix():
    tree = Hierarchy.balanced([100_000])
    with pytest.raises(ValueError, match=r"100,000 classes.*80.0 GB.*data.max_classes"):
        tree.lca_heights()
    small = Hierarchy.balanced([2, 3])
    small.max_classes = 4
    with pytest.raises(ValueError, match="over the limit of 4 classes"):
        small.lca_heights()
    assert small.lca_heights(max_classes=6).shape == (6, 6)


def test_the_class_limit_is_a_config_option(tmp_path):
    base = ["data.name=hierarchical", "data.val_fraction=0", "data.samples_per_class=2"]
    with pytest.raises(UsageError, match=r"24 classes.*limit of 20 classes") as info:
        load_training_data(load_config(None, [*base, "data.max_classes=20"]))
    assert "\n" not in str(info.value)
    assert load_training_data(load_config(None, base)).num_classes == 24


def test_hierarchy_csv_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "tree.csv"
    path.write_bytes("\ufeffchild,parent\na,root\nb,root\n".encode())
    assert Hierarchy.load(path).leaves == ("a", "b")


def test_json_nested_5000_deep_is_one_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"name": "n", "children": [' * 5000 + '{"name": "leaf"}' + "]}" * 5000)
    with pytest.raises(ValueError, match="nests deeper than it can be read") as info:
        Hierarchy.load(path)
    assert not isinstance(info.value, RecursionError) and "\n" not in str(info.value)


def test_a_deep_tree_saves_as_edges_and_nested_json(tmp_path):
    chain = [(f"n{i + 1}", f"n{i}") for i in range(3000)] + [("leaf2", "n0")]
    tree = Hierarchy(chain)
    assert Hierarchy.load(tree.save(tmp_path / "deep.csv")).leaves == tree.leaves
    assert tree.to_nested()["name"] == "n0"
    with pytest.raises(ValueError, match="too deep for nested JSON"):
        tree.save(tmp_path / "deep.json")


def test_distance_file_header_larger_than_its_data_is_refused(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.zeros((3, 3)))
    raw = path.read_bytes().replace(b"(3, 3)", b"(9999999, 9999999)".ljust(6)[:18])
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="declares shape|not a readable .npy"):
        load_hierarchy(path)


# --------------------------------------------------------------------------- class names


def _pairs_file(path: Path, names: list[str]) -> Path:
    tree = Hierarchy.from_edges(
        [(n, f"g{i // 2}") for i, n in enumerate(names)]
        + [(f"g{j}", "root") for j in range((len(names) + 1) // 2)]
    )
    lca = tree.lca_heights()
    pairs = {
        (a, b): int(lca[i, j]) for i, a in enumerate(tree.leaves) for j, b in enumerate(tree.leaves)
    }
    path.write_bytes(pickle.dumps(pairs))
    return path


def test_a_permuted_distance_file_is_matched_by_name(tmp_path):
    classes = ["cat", "dog", "eel", "fox"]
    path = _pairs_file(tmp_path / "d.pkl", ["fox", "eel", "dog", "cat"])
    matched = match_classes(load_hierarchy(path), classes)
    assert matched.classes == tuple(classes)
    assert int(matched.matrix[2, 3]) == 1 and int(matched.matrix[0, 2]) == 2  # eel-fox, cat-eel


def test_a_permutation_plus_an_unknown_name_is_an_error(tmp_path):
    path = _pairs_file(tmp_path / "d.pkl", ["fox", "eel", "yak", "cat"])  # dog -> yak
    with pytest.raises(
        ValueError, match=r"1 of the data set's 4 class names.*\['dog'\].*\['yak'\]"
    ):
        match_classes(load_hierarchy(path), ["cat", "dog", "eel", "fox"])


def test_the_trainer_refuses_a_mismatched_distance_file(tmp_path):
    from test_train import write_cifar_standin

    write_cifar_standin(tmp_path / "c", "cifar10", per_class=2)  # classes c0 .. c9
    names = [f"c{i}" for i in range(10)][::-1]
    names[3] = "unknown"
    path = _pairs_file(tmp_path / "d.pkl", names)
    config = load_config(
        None,
        [
            "data.name=cifar10",
            f"data.root={tmp_path / 'c'}",
            f"data.hierarchy={path}",
            "data.val_fraction=0",
            "head.kind=learnable",
            "loss.name=ce",
        ],
    )
    with pytest.raises(ConfigError, match=r"'c6'.*never by position"):
        load_training_data(config)


# --------------------------------------------------------------------------- top-k ties


def test_top_k_tie_breaking_rules():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0]])
    assert rank_classes(scores, 3).tolist() == [[1, 2, 4]]  # ties: the lower index first
    topk = rank_classes(scores, 3, ties="topk")
    assert topk.tolist() == torch.topk(scores, 3, dim=1).indices.tolist()
    lca = torch.tensor(
        [[0, 1, 2, 2, 2], [1, 0, 2, 2, 2], [2, 2, 0, 1, 1], [2, 2, 1, 0, 1], [2, 2, 1, 1, 0]]
    )
    counter = HierarchicalCounter(lca, ks=(1, 2), ties="topk")
    counter.update(scores, torch.tensor([0]))
    assert counter.compute()["num_samples"] == 1
    with pytest.raises(ValueError, match="ties must be one of"):
        rank_classes(scores, 2, ties="random")


def test_a_distance_pickle_over_too_many_classes_is_refused_before_its_matrix(tmp_path):
    pairs = {(f"a{i}", f"b{i}"): 1 for i in range(6000)}  # 12,000 names: a 1.2 GB matrix
    path = tmp_path / "many.pkl"
    path.write_bytes(pickle.dumps(pairs))
    with pytest.raises(ValueError, match=r"12,000 classes.*limit of 10,000"):
        load_hierarchy(path)
