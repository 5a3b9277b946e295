"""The data-set registry (issue 24): every data set is one registered function with its
traits, and a data set registered outside the package trains by name from a YAML config."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
import yaml

from neuralcollapse.cli import main
from neuralcollapse.data import DataRequest, LabeledImages, dataset_traits
from neuralcollapse.errors import ConfigError
from neuralcollapse.registry import DATASETS, register_dataset
from neuralcollapse.train import load_config
from neuralcollapse.train.data import load_training_data

BUILT_IN = {
    "digits",
    "mnist5k",
    "cifar10",
    "cifar100",
    "gaussian",
    "hierarchical",
    "image_folder",
    "list_file",
    "mnist",
    "fashion_mnist",
    "svhn",
    "stl10",
    "cub",
    "fgvc_aircraft",
    "inaturalist",
}


@dataclass
class ToyOptions:
    classes: int = 3
    per_class: int = 20


def _toy(request: DataRequest) -> tuple[LabeledImages, LabeledImages]:
    """Well-separated 4x4 grey blobs, one brightness per class."""
    opts = request.options
    generator = torch.Generator().manual_seed(request.seed)
    labels = torch.arange(opts.classes).repeat_interleave(opts.per_class)
    images = labels.float().view(-1, 1, 1, 1) / opts.classes + 0.05 * torch.randn(
        len(labels), 1, 4, 4, generator=generator
    )
    names = tuple(f"blob{k}" for k in range(opts.classes))
    return LabeledImages(images, labels, names), LabeledImages(images[::2], labels[::2], names)


@pytest.fixture
def toy_data():
    register_dataset("toy_data", options=ToyOptions)(_toy)
    yield "toy_data"
    DATASETS.unregister("toy_data")


def test_every_built_in_data_set_is_registered_with_its_traits():
    assert set(DATASETS.names()) >= BUILT_IN
    assert dataset_traits("fgvc_aircraft").default_splits == ("trainval", "test")
    assert dataset_traits("inaturalist").default_splits == ("train", "val")
    shipping = {n for n in BUILT_IN if dataset_traits(n).tree is not None}
    assert shipping == {"fgvc_aircraft", "inaturalist"}
    assert {n for n in BUILT_IN if dataset_traits(n).any_size} == {
        "cub",
        "fgvc_aircraft",
        "inaturalist",
    }
    assert not dataset_traits("digits").reads_files and dataset_traits("cifar10").reads_files
    assert dataset_traits("hierarchical").default_tree is not None
    for name in BUILT_IN:  # every entry has a one-line summary for listings
        assert DATASETS.get(name).summary


def test_unknown_data_set_is_one_line_listing_the_registered_ones():
    with pytest.raises(
        ConfigError, match=r"data.name='nosuch' is not a registered dataset.*cifar10"
    ):
        load_config(None, ["data.name=nosuch"])


def test_toy_data_set_trains_one_epoch_from_yaml(toy_data, tmp_path, capsys):
    recipe = {
        "data": {"name": toy_data, "options": {"classes": 4, "per_class": 12}},
        "model": {"name": "mlp", "options": {"hidden": [16], "feature_dim": 8}},
        "train": {"epochs": 1, "batch_size": 16},
        "log": {"tensorboard": False, "report": False},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run_dir = tmp_path / "run"
    code = main(["train", "--config", str(path), "--run-dir", str(run_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final"]
    data = load_training_data(load_config(path))
    assert data.class_names == ("blob0", "blob1", "blob2", "blob3")


def test_a_data_sets_options_are_checked_like_config_keys(toy_data):
    with pytest.raises(ConfigError, match=r"data.options.classes"):
        load_config(None, [f"data.name={toy_data}", "data.options={classes: many}"])
    with pytest.raises(ConfigError, match=r"data.options"):
        load_config(None, [f"data.name={toy_data}", "data.options={colour: 1}"])
    with pytest.raises(ConfigError, match=r"'digits' takes no options"):
        load_config(None, ["data.name=digits", "data.options={classes: 3}"])


def test_data_set_traits_drive_the_config_checks():
    with pytest.raises(ConfigError, match="reads files: set data.root"):
        load_config(None, ["data.name=cub"])
    with pytest.raises(ConfigError, match="'list_file' needs data.train_list and data.test_list"):
        load_config(None, ["data.name=list_file", "data.root=."])
    with pytest.raises(ConfigError, match="data.splits names"):
        load_config(None, ["data.splits=[a, b]"])
    with pytest.raises(ConfigError, match=r"data.hierarchy='dataset' is the tree.*fgvc_aircraft"):
        load_config(None, ["data.hierarchy=dataset"])


def test_a_toy_data_set_may_ship_its_tree(tmp_path):
    from neuralcollapse.hierarchy import Hierarchy

    def tree(request: DataRequest) -> Hierarchy:
        return Hierarchy.from_edges(
            [("blob0", "a"), ("blob1", "a"), ("blob2", "root"), ("a", "root")]
        )

    register_dataset("toy_tree", options=ToyOptions, tree=tree)(_toy)
    try:
        config = load_config(None, ["data.name=toy_tree", "data.hierarchy=dataset"])
        data = load_training_data(config)
        assert data.hierarchy.leaves == ("blob0", "blob1", "blob2")
        assert int(data.hierarchy.lca_heights()[0, 1]) == 1
    finally:
        DATASETS.unregister("toy_tree")


def test_unknown_trait_is_refused():
    register_dataset("toy_bad", colour="red")(_toy)
    try:
        with pytest.raises(ValueError, match="unknown trait"):
            dataset_traits("toy_bad")
    finally:
        DATASETS.unregister("toy_bad")
