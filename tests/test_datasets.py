"""The papers' data sets in their official formats.

Each test writes a tiny release in the exact on-disk layout (IDX bytes raw and gzipped, a
MATLAB file written by scipy, STL-10's column-major binaries, CUB's and FGVC-Aircraft's
text files with JPEG / PNG images, iNaturalist's JSON), reads it back and compares images,
labels, class names, split sizes and trees with what was written; corrupt and missing files
must give one error naming the file. Then every new recipe trains one epoch on the tiny
releases through the command line. Nothing touches the network.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neuralcollapse.cli import main
from neuralcollapse.data import (
    FASHION_MNIST_CLASSES,
    DataFormatError,
    ImageFiles,
    LabeledImages,
    center_crop,
    dataset_traits,
    fgvc_aircraft_hierarchy,
    inaturalist_hierarchy,
    load_cub,
    load_fgvc_aircraft,
    load_inaturalist,
    load_mnist,
    load_stl10,
    load_svhn,
    long_tailed_subset,
    random_resized_crop,
    read_idx,
    shot_groups,
)
from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.train import load_config
from neuralcollapse.train.config import ConfigError
from neuralcollapse.train.data import load_training_data
from neuralcollapse.train.recipes import RECIPE_DIR, available_recipes

scipy_io = pytest.importorskip("scipy.io", reason="SVHN's .mat files need scipy (svhn extra)")

# ----------------------------------------------------------------------------- writers


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file: 0x0000, type code, number of dimensions, big-endian sizes, values."""
    header = bytes([0, 0, type_code, array.ndim])
    header += b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(">u1").tobytes()


def write_mnist(root: Path, per_class: int, test_per_class: int, gz: bool, seed: int = 0):
    """The four IDX files; returns {split: (images (N, 28, 28), labels (N,))}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, stem, n in (("train", "train", per_class), ("test", "t10k", test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(10), n)).astype(np.uint8)
        images = rng.integers(0, 256, (labels.size, 28, 28), dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            raw = idx_bytes(array)
            name = f"{stem}-{kind}-ubyte"
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (root / name).write_bytes(raw)
        written[split] = (images, labels)
    return written


def write_svhn(root: Path, per_class: int, test_per_class: int, seed: int = 0):
    """train_32x32.mat / test_32x32.mat: X 32 x 32 x 3 x N, y N x 1 with 10 for the digit 0.
    Returns {split: (images (N, 3, 32, 32), digits (N,))}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", per_class), ("test", test_per_class)):
        digits = rng.permutation(np.repeat(np.arange(10), n))
        images = rng.integers(0, 256, (digits.size, 3, 32, 32), dtype=np.uint8)
        mat_labels = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
        scipy_io.savemat(
            root / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": mat_labels}
        )
        written[split] = (images, digits)
    return written


STL_NAMES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


def write_stl10(root: Path, per_class: int, test_per_class: int, seed: int = 0):
    """stl10_binary/ with column-major image files; returns {split: (images, labels 0..9)}."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", per_class), ("test", test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(10), n))
        images = rng.integers(0, 256, (labels.size, 3, 96, 96), dtype=np.uint8)
        # column-major: within a channel, column after column
        (folder / f"{split}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
        (folder / f"{split}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
        written[split] = (images, labels)
    (folder / "unlabeled_X.bin").write_bytes(b"\x07" * 3 * 96 * 96)  # ignored
    (folder / "class_names.txt").write_text("\n".join(STL_NAMES) + "\n")
    return written


def colour(i: int) -> tuple[int, int, int]:
    """A distinct solid colour per image, far from its neighbours (JPEG keeps it)."""
    return (40 * (i % 6) + 20, 40 * ((i // 6) % 6) + 20, 40 * ((i // 36) % 6) + 20)


def solid(path: Path, rgb: tuple[int, int, int], size: tuple[int, int], banner: int = 0) -> None:
    """A solid image (width, height), optionally with a white banner of ``banner`` rows at
    the bottom; the format follows the suffix."""
    array = np.empty((size[1], size[0], 3), dtype=np.uint8)
    array[:] = rgb
    if banner:
        array[-banner:] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if path.suffix == ".jpg" else {}
    Image.fromarray(array).save(path, **options)


CUB_CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross")


def write_cub(root: Path, per_class: int = 4):
    """CUB_200_2011/ with images.txt, image_class_labels.txt, train_test_split.txt,
    classes.txt and images/ (JPEG, PNG for the last class). Half of each class is train.
    Returns {split: [(image colour, label)]} in file order."""
    folder = root / "CUB_200_2011"
    images, labels, split_flags = [], [], []
    written = {"train": [], "test": []}
    for k, name in enumerate(CUB_CLASSES):
        for j in range(per_class):
            i = len(images) + 1
            suffix = ".png" if k == 2 else ".jpg"
            relative = f"{name}/{name.split('.', 1)[1]}_{j:04d}{suffix}"
            solid(folder / "images" / relative, colour(i), (20 + 4 * j, 16 + 2 * k))
            train = j < per_class // 2
            images.append(f"{i} {relative}")
            labels.append(f"{i} {k + 1}")
            split_flags.append(f"{i} {int(train)}")
            written["train" if train else "test"].append((colour(i), k))
    (folder / "images.txt").write_text("\n".join(images) + "\n")
    (folder / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (folder / "train_test_split.txt").write_text("\n".join(split_flags) + "\n")
    (folder / "classes.txt").write_text(
        "\n".join(f"{k + 1} {n}" for k, n in enumerate(CUB_CLASSES)) + "\n"
    )
    return written


# variant -> (family, manufacturer); "DC-3" and "Cessna 172" name a variant and a family
AIRCRAFT = {
    "707-320": ("Boeing 707", "Boeing"),
    "737-200": ("Boeing 737", "Boeing"),
    "737-300": ("Boeing 737", "Boeing"),
    "DC-3": ("DC-3", "Douglas Aircraft Company"),
    "Cessna 172": ("Cessna 172", "Cessna"),
}
AIRCRAFT_SPLIT_OF = ("train", "val", "test", "test")  # per image index within a variant


def write_aircraft(root: Path):
    """fgvc-aircraft-2013b/data/ with the names files, images_<level>_<split>.txt for every
    level and split (trainval = train + val), and JPEG images with a 20-row banner.
    Returns {split: [(image id, variant, colour)]}."""
    data = root / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True)
    families = list(dict.fromkeys(f for f, _ in AIRCRAFT.values()))
    makers = list(dict.fromkeys(m for _, m in AIRCRAFT.values()))
    (data / "variants.txt").write_text("\n".join(AIRCRAFT) + "\n")
    (data / "families.txt").write_text("\n".join(families) + "\n")
    (data / "manufacturers.txt").write_text("\n".join(makers) + "\n")
    written: dict[str, list] = {s: [] for s in ("train", "val", "trainval", "test")}
    n = 0
    for variant in AIRCRAFT:
        for split in AIRCRAFT_SPLIT_OF:
            n += 1
            image_id = f"{n:07d}"
            solid(data / "images" / f"{image_id}.jpg", colour(n), (48, 60), banner=20)
            written[split].append((image_id, variant, colour(n)))
            if split in ("train", "val"):
                written["trainval"].append((image_id, variant, colour(n)))
    for split, rows in written.items():
        for level, pick in (("variant", 0), ("family", 1), ("manufacturer", 2)):
            lines = [f"{i} {[v, *AIRCRAFT[v]][pick]}" for i, v, _ in rows]
            (data / f"images_{level}_{split}.txt").write_text("\n".join(lines) + "\n")
    return written


# category id -> (name, kingdom, phylum, class, order, family, genus); two genera "Morus"
INAT_CATEGORIES = {
    2: ("Morus alba", "Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Moraceae", "Morus"),
    0: ("Abies concolor", "Plantae", "Tracheophyta", "Pinopsida", "Pinales", "Pinaceae", "Abies"),
    3: ("Morus bassanus", "Animalia", "Chordata", "Aves", "Suliformes", "Sulidae", "Morus"),
    1: ("Abies grandis", "Plantae", "Tracheophyta", "Pinopsida", "Pinales", "Pinaceae", "Abies"),
}
RANKS = ("kingdom", "phylum", "class", "order", "family", "genus")


def write_inaturalist(root: Path, per_class: int = 3, val_per_class: int = 1):
    """train2019.json / val2019.json (categories listed out of id order) and the images
    under train_val2019/. Returns {split: [(colour, category id)]}."""
    categories = [
        {"id": cid, "name": values[0], **dict(zip(RANKS, values[1:], strict=True))}
        for cid, values in INAT_CATEGORIES.items()
    ]
    written: dict[str, list] = {"train": [], "val": []}
    counter = 0
    for split, n in (("train", per_class), ("val", val_per_class)):
        images, annotations = [], []
        for cid, values in INAT_CATEGORIES.items():
            for _ in range(n):
                counter += 1
                name = f"train_val2019/{values[1]}/{cid}/{counter:032x}.jpg"
                solid(root / name, colour(counter), (30, 22))
                images.append({"id": 1000 + counter, "file_name": name, "width": 30})
                annotations.append({"id": counter, "image_id": 1000 + counter, "category_id": cid})
                written[split].append((colour(counter), cid))
        content = {"images": images, "annotations": annotations, "categories": categories}
        (root / f"{split}2019.json").write_text(json.dumps(content))
    return written


# ----------------------------------------------------------------------------- checks


def assert_colours(images: torch.Tensor, colours: list, tolerance: int = 6) -> None:
    """Every image (N, 3, H, W) is the solid colour written for it."""
    assert images.shape[0] == len(colours)
    for image, rgb in zip(images, colours, strict=True):
        centre = image.reshape(3, -1).float().mean(1)
        assert torch.allclose(centre, torch.tensor(rgb, dtype=torch.float32), atol=tolerance), (
            centre,
            rgb,
        )


# ----------------------------------------------------------------------------- MNIST


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("fashion", [False, True])
def test_mnist_idx_files_read_back(tmp_path, gz, fashion):
    written = write_mnist(tmp_path, per_class=3, test_per_class=2, gz=gz)
    for split, (images, labels) in written.items():
        data = load_mnist(tmp_path, split, fashion=fashion)
        assert isinstance(data, LabeledImages)
        assert data.images.dtype == torch.uint8 and data.images.shape == (len(labels), 1, 28, 28)
        assert torch.equal(data.images[:, 0], torch.from_numpy(images))
        assert torch.equal(data.labels, torch.from_numpy(labels.astype(np.int64)))
        assert data.nbytes == len(labels) * 28 * 28
    names = load_mnist(tmp_path, "test", fashion=fashion).class_names
    assert names == (FASHION_MNIST_CLASSES if fashion else tuple("0123456789"))
    assert len(load_mnist(tmp_path, "train")) == 30


def test_mnist_torchvision_raw_layout_and_generic_idx(tmp_path):
    write_mnist(tmp_path / "FashionMNIST" / "raw", per_class=1, test_per_class=1, gz=True)
    assert len(load_mnist(tmp_path, "train", fashion=True)) == 10
    values = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "cube").write_bytes(idx_bytes(values))
    magic, back = read_idx(tmp_path / "cube")
    assert magic == 0x0803 and np.array_equal(back, values)


def test_mnist_bad_files_name_the_file(tmp_path):
    write_mnist(tmp_path, per_class=2, test_per_class=1, gz=False)
    labels = tmp_path / "train-labels-idx1-ubyte"
    images = tmp_path / "train-images-idx3-ubyte"
    shutil.copy(labels, tmp_path / "saved")
    labels.write_bytes(images.read_bytes())  # an image file where labels belong
    with pytest.raises(DataFormatError, match=r"train-labels-idx1-ubyte: magic number 0x00000803"):
        load_mnist(tmp_path, "train")
    shutil.copy(tmp_path / "saved", labels)
    images.write_bytes(images.read_bytes()[:-5])  # truncated
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte: the header promises"):
        load_mnist(tmp_path, "train")
    images.write_bytes(b"\x12\x34\x08\x03")
    with pytest.raises(DataFormatError, match="does not start with an IDX magic number"):
        load_mnist(tmp_path, "train")
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(
        DataFormatError, match=r"t10k-images-idx3-ubyte.gz does not start with an IDX magic"
    ):
        load_mnist(tmp_path, "test")
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte \(or .*\.gz\) is missing"):
        load_mnist(tmp_path, "test")
    with pytest.raises(ValueError, match="unknown MNIST split 'val'"):
        load_mnist(tmp_path, "val")


# ----------------------------------------------------------------------------- SVHN


def test_svhn_mat_files_read_back_with_ten_as_zero(tmp_path):
    written = write_svhn(tmp_path, per_class=3, test_per_class=2)
    for split, (images, digits) in written.items():
        data = load_svhn(tmp_path, split)
        assert data.images.dtype == torch.uint8 and data.images.shape == (len(digits), 3, 32, 32)
        assert torch.equal(data.images, torch.from_numpy(images))
        assert torch.equal(data.labels, torch.from_numpy(digits))
        assert data.class_names == tuple("0123456789")
    assert int((load_svhn(tmp_path, "train").labels == 0).sum()) == 3  # the 10s became 0
    shutil.copy(tmp_path / "train_32x32.mat", tmp_path / "extra_32x32.mat")
    both = load_svhn(tmp_path, "train+extra")
    assert len(both) == 60 and torch.equal(both.images[30:], both.images[:30])


def test_svhn_bad_files_name_the_file(tmp_path):
    write_svhn(tmp_path, per_class=1, test_per_class=1)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB? no.")
    with pytest.raises(DataFormatError, match=r"test_32x32.mat is not a readable MATLAB file"):
        load_svhn(tmp_path, "test")
    scipy_io.savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(DataFormatError, match=r"test_32x32.mat: 'y' must hold 2 labels"):
        load_svhn(tmp_path, "test")
    scipy_io.savemat(
        tmp_path / "test_32x32.mat",
        {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [3]], np.uint8)},
    )
    with pytest.raises(DataFormatError, match=r"labels span \[0, 3\], expected 1..10"):
        load_svhn(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match=r"extra_32x32.mat is missing"):
        load_svhn(tmp_path, "extra")


# ----------------------------------------------------------------------------- STL-10


def test_stl10_column_major_binaries_read_back(tmp_path):
    written = write_stl10(tmp_path, per_class=2, test_per_class=1)
    for split, (images, labels) in written.items():
        for root in (tmp_path, tmp_path / "stl10_binary"):
            data = load_stl10(root, split)
            assert data.images.shape == (len(labels), 3, 96, 96)
            assert torch.equal(data.images, torch.from_numpy(images))
            assert torch.equal(data.labels, torch.from_numpy(labels))
            assert data.class_names == STL_NAMES
    # the official archive, read in place
    archive = tmp_path / "packed" / "stl10_binary.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "stl10_binary", arcname="stl10_binary")
    from_archive = load_stl10(archive.parent, "test")
    assert torch.equal(from_archive.images, torch.from_numpy(written["test"][0]))


def test_stl10_bad_files_name_the_file(tmp_path):
    write_stl10(tmp_path, per_class=1, test_per_class=1)
    folder = tmp_path / "stl10_binary"
    x = folder / "train_X.bin"
    x.write_bytes(x.read_bytes()[:-1])
    with pytest.raises(DataFormatError, match=r"train_X.bin holds \d+ bytes, not a whole number"):
        load_stl10(tmp_path, "train")
    (folder / "test_y.bin").write_bytes(bytes([0] * 10))
    with pytest.raises(DataFormatError, match=r"test_y.bin: labels span \[0, 0\], expected 1..10"):
        load_stl10(tmp_path, "test")
    (folder / "class_names.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"stl10_binary/class_names.txt is missing"):
        load_stl10(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="no STL-10 data at"):
        load_stl10(tmp_path / "elsewhere", "test")


# ----------------------------------------------------------------------------- CUB


def test_cub_release_reads_back(tmp_path):
    written = write_cub(tmp_path)
    for split, rows in written.items():
        data = load_cub(tmp_path, split, size=8)
        assert isinstance(data, ImageFiles) and len(data) == len(rows) == 6
        assert data.class_names == CUB_CLASSES
        assert data.labels.tolist() == [label for _, label in rows]
        assert data.store_bytes == 6 * 3 * 8 * 8
        memory = data.to_memory()
        assert memory.images.shape == (6, 3, 8, 8) and memory.nbytes == data.store_bytes
        assert torch.equal(memory.labels, data.labels)
        assert_colours(memory.images, [rgb for rgb, _ in rows])
    test = load_cub(tmp_path, "test", size=8)
    part = test.subset(long_tailed_subset(test.labels, imbalance_ratio=2, seed=0))
    assert part.class_counts().tolist() == [2, 1, 1] and part.class_names == CUB_CLASSES
    raw = load_cub(tmp_path / "CUB_200_2011", "train")  # the folder itself; own sizes
    image, label = raw[0]
    assert image.shape == (3, 16, 20) and label == 0
    centre = load_cub(tmp_path, "test", size=6, resize="center_crop")[0][0]
    assert centre.shape == (3, 6, 6)


def test_cub_bad_files_name_the_file(tmp_path):
    write_cub(tmp_path)
    folder = tmp_path / "CUB_200_2011"
    labels = folder / "image_class_labels.txt"
    labels.write_text(labels.read_text().replace("\n5 2\n", "\n5 999\n"))
    with pytest.raises(DataFormatError, match=r"image_class_labels.txt: image 5 has class '999'"):
        load_cub(tmp_path, "train")
    labels.write_text(labels.read_text().replace("\n5 999\n", "\n5 2\n5 2\n"))
    with pytest.raises(DataFormatError, match=r"image_class_labels.txt:\d+: id 5 is listed twice"):
        load_cub(tmp_path, "train")
    labels.write_text(labels.read_text().replace("\n5 2\n5 2\n", "\n5 2\n"))
    victim = next((folder / "images").rglob("*_0000.jpg"))
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{victim.name} \(listed in .*images.txt\)"):
        load_cub(tmp_path, "train")
    victim.write_bytes(b"\xff\xd8 broken jpeg")
    data = load_cub(tmp_path, "train", size=8)
    with pytest.raises(
        DataFormatError, match=rf"{victim.name} \(listed in .*\) is not a readable image"
    ):
        data.to_memory()
    (folder / "classes.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"classes.txt is missing"):
        load_cub(tmp_path, "train")


# ----------------------------------------------------------------------------- FGVC-Aircraft


@pytest.mark.parametrize("split", ["train", "val", "trainval", "test"])
def test_fgvc_aircraft_release_reads_back(tmp_path, split):
    written = write_aircraft(tmp_path)
    data = load_fgvc_aircraft(tmp_path, split)
    rows = written[split]
    assert len(data) == len(rows) and data.class_names == tuple(AIRCRAFT)
    assert data.labels.tolist() == [list(AIRCRAFT).index(v) for _, v, _ in rows]
    image, _ = data[0]
    assert image.shape == (3, 40, 48)  # the 20-row banner is gone
    assert_colours(torch.stack([data[i][0] for i in range(len(data))]), [c for *_, c in rows])
    with_banner = load_fgvc_aircraft(tmp_path, split, crop_banner=False)[0][0]
    assert with_banner.shape == (3, 60, 48) and with_banner[:, -5:].float().mean() > 240
    family = load_fgvc_aircraft(tmp_path, split, level="family", size=10)
    assert family.class_names == ("Boeing 707", "Boeing 737", "DC-3", "Cessna 172")
    assert family.labels.tolist() == [family.class_names.index(AIRCRAFT[v][0]) for _, v, _ in rows]
    assert family[0][0].shape == (3, 10, 10)


def test_fgvc_aircraft_tree(tmp_path):
    write_aircraft(tmp_path)
    tree = fgvc_aircraft_hierarchy(tmp_path / "fgvc-aircraft-2013b")
    assert tree.leaves == tuple(AIRCRAFT)
    assert tree.parent("DC-3") == "family:DC-3" and tree.parent("family:DC-3") == (
        "manufacturer:Douglas Aircraft Company"
    )
    assert tree.parent("manufacturer:Boeing") == "root"
    heights = tree.lca_heights()
    names = list(AIRCRAFT)
    assert heights[names.index("737-200"), names.index("737-300")] == 1  # same family
    assert heights[names.index("707-320"), names.index("737-200")] == 2  # same maker
    assert heights[names.index("707-320"), names.index("DC-3")] == 3
    families = fgvc_aircraft_hierarchy(tmp_path, level="family")
    assert families.leaves == ("Boeing 707", "Boeing 737", "DC-3", "Cessna 172")
    assert families.depth == 2


def test_fgvc_aircraft_bad_files_name_the_file(tmp_path):
    write_aircraft(tmp_path)
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    listing = data / "images_variant_test.txt"
    listing.write_text(listing.read_text().replace("DC-3", "DC-4", 1))
    with pytest.raises(DataFormatError, match=r"images_variant_test.txt: image \d+ is labelled"):
        load_fgvc_aircraft(tmp_path, "test")
    families = data / "images_family_trainval.txt"
    families.write_text(families.read_text().replace("Boeing 737", "Boeing 707", 1))
    with pytest.raises(DataFormatError, match=r"variant '737-200' is filed under family"):
        fgvc_aircraft_hierarchy(tmp_path)
    (data / "images_variant_val.txt").write_text("0000002\n")
    with pytest.raises(DataFormatError, match=r"images_variant_val.txt:1: expected '<id> <value>'"):
        load_fgvc_aircraft(tmp_path, "val")
    with pytest.raises(ValueError, match="unknown FGVC-Aircraft label level 'model'"):
        load_fgvc_aircraft(tmp_path, "train", level="model")
    with pytest.raises(FileNotFoundError, match="no FGVC-Aircraft release at"):
        load_fgvc_aircraft(tmp_path / "nothing", "train")


# ----------------------------------------------------------------------------- iNaturalist


def test_inaturalist_json_reads_back_with_its_taxonomy(tmp_path):
    written = write_inaturalist(tmp_path)
    order = sorted(INAT_CATEGORIES)  # labels follow the category ids
    for split, rows in written.items():
        data = load_inaturalist(tmp_path, split, size=5)
        assert len(data) == len(rows)
        assert data.class_names == tuple(INAT_CATEGORIES[c][0] for c in order)
        assert data.labels.tolist() == [order.index(cid) for _, cid in rows]
        assert_colours(data.to_memory().images, [rgb for rgb, _ in rows])
    tree = inaturalist_hierarchy(tmp_path / "train2019.json")
    assert tree.leaves == tuple(INAT_CATEGORIES[c][0] for c in order)
    assert tree.depth == 7
    assert tree.ancestors("Abies concolor")[:2] == ("genus:Abies", "family:Pinaceae")
    plant, bird = tree.parent("Morus alba"), tree.parent("Morus bassanus")
    assert plant != bird and {plant, bird} >= {"genus:Morus"}  # the homonym kept apart
    heights = tree.lca_heights()
    assert heights[0, 1] == 1 and heights[0, 2] == 5 and heights[2, 3] == 7  # phylum, root


def test_inaturalist_bad_files_name_the_file(tmp_path):
    write_inaturalist(tmp_path)
    val = tmp_path / "val2019.json"
    content = json.loads(val.read_text())
    content["annotations"] = content["annotations"][1:]
    val.write_text(json.dumps(content))
    with pytest.raises(DataFormatError, match=r"val2019.json: image \d+ has no annotation"):
        load_inaturalist(tmp_path, "val")
    val.write_text("{not json")
    with pytest.raises(DataFormatError, match=r"val2019.json is not valid JSON"):
        load_inaturalist(tmp_path, "val")
    first = json.loads((tmp_path / "train2019.json").read_text())["images"][0]["file_name"]
    (tmp_path / first).unlink()
    with pytest.raises(FileNotFoundError, match=r"\(listed in .*train2019.json\) is missing"):
        load_inaturalist(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match=r"train2019.json is missing"):
        inaturalist_hierarchy(tmp_path / "elsewhere" / "train2019.json")


# ----------------------------------------------------------------------------- crops


def test_random_resized_crop_and_centre_crop():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    out = random_resized_crop(images, 5, generator=gen)
    again = random_resized_crop(images, 5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 5, 5) and torch.equal(out, again)
    assert float(out.min()) >= float(images.min()) and float(out.max()) <= float(images.max())
    # the whole image at full scale and ratio 1, no flip: an identity resampling
    whole = random_resized_crop(images, 8, scale=(1, 1), ratio=(1, 1), flip=False)
    assert torch.allclose(whole, images, atol=1e-4)
    uint8 = random_resized_crop(images.to(torch.uint8), 4, generator=gen)
    assert uint8.dtype == torch.float32
    assert torch.equal(center_crop(images, 4), images[..., 2:6, 2:6])
    with pytest.raises(ValueError, match="scale must satisfy"):
        random_resized_crop(images, 4, scale=(0.5, 0.1))


# ----------------------------------------------------------------------------- the trainer


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, Path]:
    """One tiny release per data set, shared by the trainer tests."""
    base = tmp_path_factory.mktemp("releases")
    write_mnist(base / "mnist", per_class=6, test_per_class=2, gz=True)
    write_mnist(base / "fashion_mnist", per_class=6, test_per_class=2, gz=False, seed=1)
    write_svhn(base / "svhn", per_class=200, test_per_class=3)  # ratio 200 leaves 1 image
    write_stl10(base / "stl10", per_class=20, test_per_class=1)
    write_cub(base / "cub")
    write_aircraft(base / "fgvc_aircraft")
    write_inaturalist(base / "inaturalist")
    tiered = base / "tiered"
    lines = []
    for k in range(4):
        for j in range(3):
            solid(tiered / "img" / f"{k}_{j}.png", colour(3 * k + j), (14, 12))
            lines.append(f"img/{k}_{j}.png {k}")
    (tiered / "train.txt").write_text("\n".join(lines) + "\n")
    (tiered / "test.txt").write_text("\n".join(lines[::3]) + "\n")
    Hierarchy.balanced([2, 2]).save(tiered / "tree.csv")
    return {"tiered": tiered, **{p.name: p for p in base.iterdir() if p.name != "tiered"}}


def _on_releases(recipe: str) -> bool:
    """The recipes tests/test_train.py leaves to this file: official-release data sets, or
    a start from pretrained weights."""
    config = load_config(RECIPE_DIR / f"{recipe}.yaml")
    return dataset_traits(config.data.name).release or config.model.weights is not None


RELEASE_RECIPES = [r for r in available_recipes() if _on_releases(r)]
SMALL_MODEL = [
    "model.name=small_cnn",
    "model.options={widths: [8, 8], feature_dim: 16}",
    "model.weights=null",
    "train.amp=off",
    "data.num_workers=0",
    "data.val_fraction=0",
    "log.tensorboard=false",
    "log.report=false",
]


def recipe_overrides(recipe: str, releases: dict[str, Path]) -> list[str]:
    config = load_config(RECIPE_DIR / f"{recipe}.yaml")
    if config.data.name == "list_file":
        root = releases["tiered"]
        extra = [
            f"data.root={root}",
            f"data.train_list={root / 'train.txt'}",
            f"data.test_list={root / 'test.txt'}",
            f"data.hierarchy={root / 'tree.csv'}",
        ]
    else:
        extra = [f"data.root={releases[config.data.name]}"]
    if config.data.image_size is not None:
        extra += ["data.image_size=12"]
        if config.data.crop_size is not None:
            extra += ["data.crop_size=10"]
    if config.head.kind == "haframe":
        extra += ["head.dim=null"]
    if config.data.name == "stl10" and config.data.imbalance_ratio > 1:
        extra += ["data.imbalance_ratio=10"]  # 20 images per class: ratio 100 leaves none
    return [*SMALL_MODEL, *extra]


def test_every_release_recipe_is_listed():
    assert {
        "mnist_papyan",
        "fashion_mnist_papyan",
        "svhn_papyan",
        "stl10_papyan",
        "cub_etf_ce",
        "fgvc_aircraft_haframe",
        "fgvc_aircraft_learnable_ce",
        "inaturalist19_haframe",
        "tiered_imagenet_h_haframe",
    } <= set(RELEASE_RECIPES)
    for data in ("svhn", "stl10"):
        for ratio in (200, 100, 50):
            for variant in ("etf_dr", "learnable_ce"):
                assert f"{data}_lt_r{ratio}_{variant}" in RELEASE_RECIPES


@pytest.mark.parametrize("recipe", RELEASE_RECIPES)
def test_release_recipe_trains_one_epoch(recipe, releases, tmp_path, capsys):
    overrides = recipe_overrides(recipe, releases)
    run_dir = tmp_path / "run"
    code = main(
        [
            "train",
            "--config",
            str(RECIPE_DIR / f"{recipe}.yaml"),
            *overrides,
            "train.epochs=1",
            "--run-dir",
            str(run_dir),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"training {recipe} into {run_dir}" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == 1 and 0 <= summary["final"]["top1"] <= 1
    # the recipe's reader fed every test image of the stand-in release through the model,
    # and the collapse metrics saw every class of it
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    test = json.loads(lines[-1])["test"]
    assert test["num_samples"] == summary["splits"]["test"] > 0
    assert test["collapse"]["num_classes"] == len(test["per_class"]) >= 2


def test_svhn_lt_profile_on_the_training_split_and_balanced_test(releases):
    config = load_config(
        RECIPE_DIR / "svhn_lt_r100_etf_dr.yaml",
        [f"data.root={releases['svhn']}", "data.val_fraction=0"],
    )
    data = load_training_data(config)
    counts = data.train_counts.tolist()
    assert counts[0] == 200 and counts[-1] == 2 and counts == sorted(counts, reverse=True)
    assert data.test.class_counts().tolist() == [3] * 10
    groups = shot_groups(data.train_counts)
    assert groups.many.tolist() == [0, 1]  # more than 100 training images: 200, 119
    expected = long_tailed_subset(
        load_svhn(releases["svhn"], "train").labels, imbalance_ratio=100, seed=0
    )
    assert len(data.train) == expected.numel()


def test_image_files_in_memory_or_streamed_give_the_same_batches(releases):
    base = [
        f"data.root={releases['fgvc_aircraft']}",
        "data.image_size=12",
        "data.hierarchy=dataset",
        "data.num_workers=0",
        "data.val_fraction=0",
    ]
    memory = load_training_data(load_config(RECIPE_DIR / "fgvc_aircraft_haframe.yaml", base))
    stream = load_training_data(
        load_config(RECIPE_DIR / "fgvc_aircraft_haframe.yaml", [*base, "data.store=stream"])
    )
    assert isinstance(memory.train, LabeledImages) and not isinstance(stream.train, LabeledImages)
    assert memory.train.nbytes == len(stream.train) * 3 * 12 * 12
    streamed = torch.stack([stream.train[i][0] for i in range(len(stream.train))])
    assert torch.equal(memory.train.images, streamed)
    assert memory.hierarchy.leaves == memory.class_names == tuple(AIRCRAFT)
    small = load_config(
        RECIPE_DIR / "fgvc_aircraft_haframe.yaml", [*base, "data.memory_limit_mb=0.001"]
    )
    assert not isinstance(load_training_data(small).train, LabeledImages)  # too big: streamed


def test_release_config_errors_name_the_key(releases):
    with pytest.raises(ConfigError, match="set data.image_size"):
        load_config(None, ["data.name=cub", "data.root=x"])
    with pytest.raises(ConfigError, match="data.hierarchy='dataset' is the tree a data set ships"):
        load_config(None, ["data.name=mnist", "data.root=x", "data.hierarchy=dataset"])
    with pytest.raises(ConfigError, match="data.splits names"):
        load_config(None, ["data.name=mnist", "data.root=x", "data.splits=[train]"])
    with pytest.raises(ConfigError, match="set data.root"):
        load_config(None, ["data.name=svhn"])
    config = load_config(None, ["data.name=mnist", f"data.root={releases['svhn']}"])
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_training_data(config)
