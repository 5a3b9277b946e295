"""Real formats: tiny CIFAR releases in the exact official layout, digits, image folders and
list files. Nothing here touches the network."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from neuralcollapse.data import (
    CIFAR_ARCHIVES,
    DataFormatError,
    ImageFiles,
    ImageFolderDataset,
    ListFileDataset,
    class_counts,
    decode_image,
    load_cifar,
    load_digits,
    make_dataloader,
)

PER_BATCH = 6  # images per tiny batch file


# ----------------------------------------------------------------------------- fixtures


def _cifar_members(name: str, rng: np.random.Generator) -> dict[str, dict]:
    """Pickle payloads keyed by member name, shaped like the official Python-2 pickles
    (bytes keys, bytes strings, uint8 (N, 3072) data, label lists)."""
    fmt = CIFAR_ARCHIVES[name]
    members: dict[str, dict] = {}
    for member in fmt.train_members + fmt.test_members:
        data = rng.integers(0, 256, size=(PER_BATCH, 3072), dtype=np.uint8)
        batch = {
            b"batch_label": member.encode(),
            b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(PER_BATCH)],
        }
        if name == "cifar10":
            batch[b"labels"] = [int(v) for v in rng.integers(0, 10, PER_BATCH)]
        else:
            batch[b"fine_labels"] = [int(v) for v in rng.integers(0, 100, PER_BATCH)]
            batch[b"coarse_labels"] = [int(v) for v in rng.integers(0, 20, PER_BATCH)]
        members[member] = batch
    if name == "cifar10":
        members[fmt.meta_member] = {
            b"label_names": [f"class{i}".encode() for i in range(10)],
            b"num_cases_per_batch": PER_BATCH,
            b"num_vis": 3072,
        }
    else:
        members[fmt.meta_member] = {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        }
    return members


def _write_folder(root, name, members, skip=()):
    folder = root / CIFAR_ARCHIVES[name].folder
    folder.mkdir(parents=True)
    for member, payload in members.items():
        if member not in skip:
            (folder / member).write_bytes(pickle.dumps(payload, protocol=2))
    (folder / "readme.html").write_text("<html></html>")
    return folder


def _write_archive(root, name, members):
    fmt = CIFAR_ARCHIVES[name]
    path = root / fmt.archive
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo(fmt.folder)
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for member, payload in members.items():
            raw = pickle.dumps(payload, protocol=2)
            info = tarfile.TarInfo(f"{fmt.folder}/{member}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


@pytest.fixture(params=["cifar10", "cifar100"])
def cifar_name(request):
    return request.param


@pytest.fixture
def members(cifar_name):
    return _cifar_members(cifar_name, np.random.default_rng(0))


@pytest.fixture
def c10():
    return _cifar_members("cifar10", np.random.default_rng(0))


class _Evil:
    """Unpickling this would call os.getcwd (harmless stand-in for arbitrary code)."""

    def __reduce__(self):
        return (os.getcwd, ())


def _check_split(result, name, members, split):
    fmt = CIFAR_ARCHIVES[name]
    parts = fmt.train_members if split == "train" else fmt.test_members
    data = np.concatenate([members[m][b"data"] for m in parts])
    key = fmt.label_key.encode()
    labels = sum((members[m][key] for m in parts), [])
    assert result.images.dtype == torch.uint8
    assert result.images.shape == (len(data), 3, 32, 32)
    # official layout: each row is the R plane, then G, then B, each 32x32 row-major
    i, c, y, x = 1, 2, 5, 7
    assert int(result.images[i, c, y, x]) == int(data[i, c * 1024 + y * 32 + x])
    assert result.labels.dtype == torch.int64
    assert result.labels.tolist() == labels
    assert len(result.class_names) == fmt.num_classes
    if name == "cifar100":
        coarse = sum((members[m][b"coarse_labels"] for m in parts), [])
        assert result.coarse_labels.tolist() == coarse
        assert result.coarse_names[3] == "coarse3"
        assert result.class_names[7] == "fine7"
    else:
        assert result.coarse_labels is None and result.coarse_names is None
        assert result.class_names[2] == "class2"


# ----------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_cifar_from_extracted_folder(tmp_path, cifar_name, members, split):
    _write_folder(tmp_path, cifar_name, members)
    _check_split(load_cifar(tmp_path, cifar_name, split), cifar_name, members, split)


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_cifar_from_archive(tmp_path, cifar_name, members, split):
    _write_archive(tmp_path, cifar_name, members)
    _check_split(load_cifar(tmp_path, cifar_name, split), cifar_name, members, split)


def test_load_cifar_accepts_folder_or_archive_path_directly(tmp_path, cifar_name, members):
    folder = _write_folder(tmp_path / "a", cifar_name, members)
    archive = _write_archive(tmp_path, cifar_name, members)
    from_folder = load_cifar(folder, cifar_name, "test")
    from_archive = load_cifar(archive, cifar_name, "test")
    assert torch.equal(from_folder.images, from_archive.images)
    assert torch.equal(from_folder.labels, from_archive.labels)


def test_folder_is_preferred_over_archive(tmp_path, c10):
    _write_folder(tmp_path, "cifar10", c10)
    (tmp_path / CIFAR_ARCHIVES["cifar10"].archive).write_bytes(b"not an archive")
    assert len(load_cifar(tmp_path, "cifar10", "test")) == PER_BATCH


def test_labeled_images_helpers(tmp_path, c10):
    _write_folder(tmp_path, "cifar10", c10)
    train = load_cifar(tmp_path, "cifar10")
    assert train.num_classes == 10
    assert int(train.class_counts().sum()) == len(train) == 5 * PER_BATCH
    sub = train.subset(torch.tensor([0, 3]))
    assert torch.equal(sub.images, train.images[[0, 3]])
    assert sub.class_names == train.class_names


def test_load_cifar_unknown_name_and_split(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset name 'cifar1000'"):
        load_cifar(tmp_path, "cifar1000")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load_cifar(tmp_path, "cifar10", "val")


def test_load_cifar_missing_data_names_both_candidates(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_cifar(tmp_path, "cifar100")
    message = str(err.value)
    assert "cifar-100-python" in message and "cifar-100-python.tar.gz" in message
    assert "download=True" in message


def test_load_cifar_missing_member(tmp_path, c10):
    _write_folder(tmp_path, "cifar10", c10, skip={"data_batch_3"})
    with pytest.raises(FileNotFoundError, match="data_batch_3 is missing"):
        load_cifar(tmp_path, "cifar10")
    assert len(load_cifar(tmp_path, "cifar10", "test")) == PER_BATCH


def test_load_cifar_missing_member_in_archive(tmp_path, c10):
    del c10["test_batch"]
    _write_archive(tmp_path, "cifar10", c10)
    with pytest.raises(FileNotFoundError, match="test_batch is missing"):
        load_cifar(tmp_path, "cifar10", "test")


def test_load_cifar_corrupt_archive(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(os.urandom(2048))
    with pytest.raises(DataFormatError, match="not a readable tar archive"):
        load_cifar(tmp_path, "cifar10")


def test_load_cifar_truncated_archive(tmp_path, c10):
    archive = _write_archive(tmp_path, "cifar10", c10)
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(DataFormatError, match=str(archive.name)):
        load_cifar(tmp_path, "cifar10")


def test_load_cifar_corrupt_pickle(tmp_path, c10):
    folder = _write_folder(tmp_path, "cifar10", c10)
    (folder / "test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataFormatError, match="test_batch is not a CIFAR python pickle"):
        load_cifar(tmp_path, "cifar10", "test")


def test_load_cifar_refuses_code_in_pickles(tmp_path, c10):
    folder = _write_folder(tmp_path, "cifar10", c10)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Evil()}))
    with pytest.raises(DataFormatError, match="refusing to load"):
        load_cifar(tmp_path, "cifar10", "test")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda b: b.update({b"labels": b[b"labels"][:-1]}), "has 5 entries but 'data' has 6"),
        (lambda b: b.update({b"labels": [10] * PER_BATCH}), r"expected \[0, 9\]"),
        (lambda b: b.pop(b"labels"), "no 'labels' entry"),
        (lambda b: b.update({b"labels": [b"cat"] * PER_BATCH}), "list of integers"),
        (lambda b: b.update({b"data": b[b"data"][:, :100]}), r"expected \(N, 3072\)"),
        (lambda b: b.update({b"data": b[b"data"].astype(np.float32)}), "uint8"),
    ],
)
def test_load_cifar_mismatched_batches(tmp_path, c10, mutate, match):
    mutate(c10["test_batch"])
    _write_folder(tmp_path, "cifar10", c10)
    with pytest.raises(DataFormatError, match=match) as err:
        load_cifar(tmp_path, "cifar10", "test")
    assert "test_batch" in str(err.value)


def test_load_cifar100_checks_fine_and_coarse(tmp_path):
    members = _cifar_members("cifar100", np.random.default_rng(1))
    members["test"][b"coarse_labels"] = [20] * PER_BATCH
    _write_folder(tmp_path, "cifar100", members)
    with pytest.raises(DataFormatError, match="'coarse_labels' values span"):
        load_cifar(tmp_path, "cifar100", "test")


def test_load_cifar_bad_meta(tmp_path, c10):
    c10["batches.meta"][b"label_names"] = [b"a", b"b"]
    _write_folder(tmp_path, "cifar10", c10)
    with pytest.raises(DataFormatError, match="lists 2 names, expected 10"):
        load_cifar(tmp_path, "cifar10", "test")


def test_load_cifar_meta_not_a_dict(tmp_path, c10):
    folder = _write_folder(tmp_path, "cifar10", c10)
    (folder / "batches.meta").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataFormatError, match="expected a dict"):
        load_cifar(tmp_path, "cifar10", "test")


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_download_fetches_and_verifies(tmp_path, monkeypatch, c10):
    (tmp_path / "server").mkdir()
    served = _write_archive(tmp_path / "server", "cifar10", c10).read_bytes()
    fmt = CIFAR_ARCHIVES["cifar10"]
    monkeypatch.setitem(
        CIFAR_ARCHIVES, "cifar10", dataclasses.replace(fmt, md5=hashlib.md5(served).hexdigest())
    )
    requested = []

    def fake_urlopen(url, timeout):
        requested.append(url)
        return _FakeResponse(served)

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    root = tmp_path / "data"
    result = load_cifar(root, "cifar10", "test", download=True)
    assert requested == [fmt.url]
    assert (root / fmt.archive).read_bytes() == served
    assert len(result) == PER_BATCH
    load_cifar(root, "cifar10", "test", download=True)  # present now: verified, not refetched
    assert len(requested) == 1


def test_download_with_wrong_checksum_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "urllib.request.urlopen", lambda url, timeout: _FakeResponse(b"an html error page")
    )
    with pytest.raises(DataFormatError, match="c58f30108f718f92721af3b95e74349a"):
        load_cifar(tmp_path, "cifar10", download=True)
    assert list(tmp_path.iterdir()) == [], "the bad download is removed"


def test_existing_archive_is_md5_checked_when_download_is_set(tmp_path):
    _write_archive(tmp_path, "cifar100", _cifar_members("cifar100", np.random.default_rng(2)))
    with pytest.raises(DataFormatError, match="delete the file and download it again"):
        load_cifar(tmp_path, "cifar100", download=True)


# ----------------------------------------------------------------------------- digits


def test_load_digits_split_sizes_and_balance():
    split = load_digits()
    assert len(split.test) == 500 and len(split.train) == 1297
    assert split.test.class_counts().tolist() == [50] * 10
    assert split.train.class_counts().tolist() == [128, 132, 127, 133, 131, 132, 131, 129, 124, 130]
    assert split.train.images.shape == (1297, 1, 8, 8)
    assert split.train.images.dtype == torch.float32
    assert float(split.train.images.min()) >= 0.0 and float(split.train.images.max()) == 1.0
    assert split.train is split.train_full


def test_load_digits_is_deterministic_and_seeded():
    a, b, c = load_digits(seed=0), load_digits(seed=0), load_digits(seed=1)
    assert torch.equal(a.test.images, b.test.images)
    assert not torch.equal(a.test.images, c.test.images)


def test_load_digits_train_and_test_are_disjoint():
    split = load_digits()
    flat = lambda s: {tuple(r) for r in (s.images.flatten(1) * 16).round().int().tolist()}  # noqa: E731
    # the digits set contains a few exact duplicate images; count rows, not identity
    assert len(split.train) + len(split.test) == 1797
    assert len(flat(split.train) | flat(split.test)) >= 1797 - 20


def test_load_digits_long_tailed_train_uses_profile_code():
    split = load_digits(imbalance_ratio=10)
    assert split.train.class_counts().tolist() == class_counts(124, 10, 10).tolist()
    assert len(split.train_full) == 1297
    step = load_digits(imbalance_ratio=4, profile="step", n_max=100)
    assert step.train.class_counts().tolist() == [100] * 5 + [25] * 5
    with pytest.raises(ValueError, match="class 0 has 128 samples but 130"):
        load_digits(imbalance_ratio=2, n_max=130)
    with pytest.raises(ValueError, match="test_per_class"):
        load_digits(test_per_class=0)


# ----------------------------------------------------------------------------- files


def _png(path, value, size=(5, 4), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    array = np.full((size[1], size[0], channels), value, dtype=np.uint8).squeeze()
    array[0, 0] = 255 - value  # one distinct pixel to check orientation
    Image.fromarray(array, mode).save(path)


@pytest.fixture
def image_tree(tmp_path):
    for name, count in [("cat", 3), ("ant", 2), ("dog", 1)]:
        for i in range(count):
            _png(tmp_path / "imgs" / name / f"{i}.png", 10 * i + 1)
    (tmp_path / "imgs" / "ant" / "notes.txt").write_text("not an image")
    return tmp_path / "imgs"


def test_image_folder(image_tree):
    ds = ImageFolderDataset(image_tree)
    assert ds.class_names == ("ant", "cat", "dog")
    assert ds.labels.tolist() == [0, 0, 1, 1, 1, 2]
    assert ds.class_counts().tolist() == [2, 3, 1]
    image, label = ds[3]
    assert label == 1 and image.dtype == torch.uint8 and image.shape == (3, 4, 5)
    assert int(image[0, 1, 1]) == 11 and int(image[0, 0, 0]) == 244
    gray = ImageFolderDataset(image_tree, mode="L", size=8, transform=lambda t: t.float() / 255)
    image, _ = gray[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32


def test_image_folder_through_dataloader_with_workers(image_tree):
    ds = ImageFolderDataset(image_tree)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [4, 2]
    assert torch.cat([b[1] for b in batches]).tolist() == ds.labels.tolist()


def test_image_folder_errors(tmp_path, image_tree):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nowhere")
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataFormatError, match="one folder per class"):
        ImageFolderDataset(tmp_path / "flat")
    (image_tree / "empty").mkdir()
    with pytest.raises(DataFormatError, match="empty holds no image"):
        ImageFolderDataset(image_tree)
    (image_tree / "empty").rmdir()
    with pytest.raises(ValueError, match="mode must be 'RGB' or 'L', got 'CMYK'"):
        ImageFolderDataset(image_tree, mode="CMYK")


def test_image_folder_is_the_one_file_backed_set(image_tree):
    """Image folders share ImageFiles' subset, size accounting and in-memory decoding."""
    ds = ImageFolderDataset(image_tree, mode="L", size=(3, 4))
    assert isinstance(ds, ImageFiles) and ds.channels == 1
    assert ds.store_bytes == 6 * 1 * 3 * 4
    memory = ds.to_memory()
    assert memory.images.shape == (6, 1, 3, 4) and memory.nbytes == ds.store_bytes
    assert torch.equal(memory.labels, ds.labels) and memory.class_names == ds.class_names
    for i in range(len(ds)):
        assert torch.equal(memory.images[i], ds[i][0])
    part = ds.subset([5, 0])
    assert part.labels.tolist() == [2, 0] and part.class_names == ds.class_names
    assert torch.equal(part[0][0], ds[5][0]) and torch.equal(part[1][0], ds[0][0])
    scaled = ImageFolderDataset(image_tree, transform=lambda t: t.float() / 255).subset([1])
    assert scaled[0][0].dtype == torch.float32  # the transform survives subsetting
    assert ImageFolderDataset(image_tree).store_bytes is None  # no fixed size


def test_decode_image_sizes_crops_and_banner(tmp_path):
    """decode_image against Pillow directly: stretch, centre crop to (H, W), bottom trim."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(6, 10, 3), dtype=np.uint8)  # H 6, W 10
    path = tmp_path / "a.png"
    Image.fromarray(pixels, "RGB").save(path)

    def expected(img):
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)

    original = Image.open(path).convert("RGB")
    assert torch.equal(decode_image(path), expected(original))
    stretched = original.resize((5, 4), Image.Resampling.BILINEAR)  # PIL takes (W, H)
    assert torch.equal(decode_image(path, size=(4, 5)), expected(stretched))
    assert torch.equal(decode_image(path, size=4), decode_image(path, size=(4, 4)))
    # centre crop to H 4, W 3: scale by max(3/10, 4/6) to cover, then the central window
    covered = original.resize((7, 4), Image.Resampling.BILINEAR)  # round(10 * 2/3) = 7
    window = covered.crop((2, 0, 5, 4))  # left = (7 - 3) // 2
    assert torch.equal(decode_image(path, size=(4, 3), resize="center_crop"), expected(window))
    trimmed = decode_image(path, "L", trim_bottom=2)
    grey = np.asarray(original.convert("L"), dtype=np.uint8)[:4]
    assert torch.equal(trimmed, torch.from_numpy(grey.copy()).unsqueeze(0))
    with pytest.raises(DataFormatError, match="too small to drop its 6-pixel bottom banner"):
        decode_image(path, trim_bottom=6)
    with pytest.raises(ValueError, match=r"size must be a positive integer, a pair \(H, W\)"):
        decode_image(path, size=(4, 0))
    with pytest.raises(ValueError, match="resize must be one of"):
        decode_image(path, size=4, resize="pad")
    with pytest.raises(FileNotFoundError, match=r"b.png \(listed in list.txt\) is missing"):
        decode_image(tmp_path / "b.png", listed_in="list.txt")


def test_image_files_checks_its_arguments(tmp_path):
    paths = [tmp_path / "a.png"]
    with pytest.raises(ValueError, match="1 paths but 2 labels"):
        ImageFiles(paths, [0, 1], ["x"])
    with pytest.raises(ValueError, match="trim_bottom must be an integer >= 0"):
        ImageFiles(paths, [0], ["x"], trim_bottom=-1)
    with pytest.raises(ValueError, match="size must be"):
        ImageFiles(paths, [0], ["x"], size=True)
    with pytest.raises(ValueError, match="mode must be 'RGB' or 'L'"):
        ImageFiles(paths, [0], ["x"], mode="P")


def test_corrupt_image_file_names_the_path(tmp_path):
    _png(tmp_path / "imgs" / "a" / "0.png", 3)
    (tmp_path / "imgs" / "a" / "1.png").write_bytes(b"no png here")
    ds = ImageFolderDataset(tmp_path / "imgs")
    with pytest.raises(DataFormatError, match="1.png is not a readable image"):
        ds[1]


@pytest.fixture
def listed(tmp_path):
    for i in range(4):
        _png(tmp_path / "root" / "train" / f"n{i}" / f"img {i}.png", 20 * i)
    lines = [f"train/n{i}/img {i}.png {i % 3}" for i in range(4)]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n\n")
    return tmp_path


def test_list_file(listed):
    ds = ListFileDataset(listed / "root", listed / "train.txt")
    assert len(ds) == 4 and ds.labels.tolist() == [0, 1, 2, 0]
    assert ds.class_names == ("0", "1", "2")
    image, label = ds[2]
    assert label == 2 and int(image[1, 2, 2]) == 40
    named = ListFileDataset(
        listed / "root", listed / "train.txt", num_classes=5, class_names="abcde"
    )
    assert named.num_classes == 5 and named.class_counts().tolist() == [2, 1, 1, 0, 0]
    loader = torch.utils.data.DataLoader(named, batch_size=2, num_workers=2)
    assert sum(b[0].shape[0] for b in loader) == 4


@pytest.mark.parametrize(
    ("text", "kwargs", "error", "match"),
    [
        ("train/n0/img 0.png\n", {}, DataFormatError, r"train.txt:1: expected 'relative/path"),
        ("train/n0/img 0.png 0\nbad line x\n", {}, DataFormatError, r"train.txt:2"),
        ("train/n0/img 0.png -1\n", {}, DataFormatError, "label -1 is negative"),
        ("train/n0/img 0.png 7\n", {"num_classes": 5}, DataFormatError, "label 7 found"),
        ("train/n9/img.png 0\n", {}, FileNotFoundError, "n9/img.png, missing"),
        ("\n\n", {}, DataFormatError, "lists no images"),
        ("train/n0/img 0.png 1\n", {"class_names": ["a"]}, ValueError, "expected 2"),
    ],
)
def test_list_file_errors(listed, text, kwargs, error, match):
    (listed / "train.txt").write_text(text)
    with pytest.raises(error, match=match):
        ListFileDataset(listed / "root", listed / "train.txt", **kwargs)


def test_list_file_missing_paths(listed):
    with pytest.raises(FileNotFoundError, match="list file"):
        ListFileDataset(listed / "root", listed / "val.txt")
    with pytest.raises(FileNotFoundError, match="image root"):
        ListFileDataset(listed / "nope", listed / "train.txt")
    (listed / "train.txt").write_text("train/n9/img.png 0\n")
    ds = ListFileDataset(listed / "root", listed / "train.txt", check_files=False)
    with pytest.raises(FileNotFoundError, match=r"img.png \(listed in .*train.txt\) is missing"):
        ds[0]


def test_make_dataloader_balanced_over_a_list_file(tmp_path):
    lines = []
    for i in range(12):
        label = 0 if i < 10 else 1  # 10 vs 2: a 5:1 imbalance
        _png(tmp_path / "root" / f"{i}.png", i)
        lines.append(f"{i}.png {label}")
    (tmp_path / "list.txt").write_text("\n".join(lines))
    ds = ListFileDataset(tmp_path / "root", tmp_path / "list.txt")
    loader = make_dataloader(
        ds, batch_size=50, sampling="balanced", seed=0, num_samples=400, num_workers=2
    )
    labels = torch.cat([y for _, y in loader])
    assert labels.numel() == 400
    assert abs(float(labels.float().mean()) - 0.5) < 0.1  # balanced, not 2/12
    images, _ = next(iter(loader))
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 4, 5)
    with pytest.raises(ValueError, match="no 'labels' tensor"):
        make_dataloader(torch.utils.data.TensorDataset(torch.zeros(3)), 2)


def test_load_cifar_accepts_python3_pickles_with_str_keys(tmp_path, c10):
    folder = _write_folder(tmp_path, "cifar10", c10)
    batch = {k.decode(): v for k, v in c10["test_batch"].items()}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=4))
    meta = {"label_names": [f"n{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=4))
    result = load_cifar(tmp_path, "cifar10", "test")
    assert result.class_names[4] == "n4"
    assert result.labels.tolist() == c10["test_batch"][b"labels"]
