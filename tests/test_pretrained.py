"""Pretrained backbone weights from a local file: ``nc.models.load_weights`` and the
``model.weights`` / ``model.weights_strict`` config keys. Files are written here with
torch.save; nothing is downloaded."""

from __future__ import annotations

import re

import pytest
import torch

from neuralcollapse import models
from neuralcollapse.cli import main
from neuralcollapse.data import DataFormatError
from neuralcollapse.errors import UsageError
from neuralcollapse.train import load_config
from neuralcollapse.train.trainer import assemble

FAST = [
    "model.name=mlp",
    "model.options={hidden: [32], feature_dim: 16}",
    "log.tensorboard=false",
    "log.report=false",
]


def outputs(backbone: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    backbone.eval()
    with torch.no_grad():
        return backbone(x)


def torchvision_names(state: dict) -> dict:
    """This zoo's ResNet names written the way torchvision names its ResNets."""
    renamed = {}
    for key, value in state.items():
        key = re.sub(r"^stem\.0\.", "conv1.", key)
        key = re.sub(r"^stem\.1\.", "bn1.", key)
        key = re.sub(r"^stages\.(\d)\.(\d+)\.shortcut\.", r"L\1.\2.downsample.", key)
        key = re.sub(r"^stages\.(\d)\.", r"L\1.", key)
        key = re.sub(r"^L(\d)", lambda m: f"layer{int(m[1]) + 1}", key)
        renamed[key] = value
    return renamed


def test_saved_backbone_loads_into_a_fresh_one(tmp_path):
    source = models.build("small_cnn", seed=1, in_channels=3)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    fresh = models.build("small_cnn", seed=2, in_channels=3)
    x = torch.randn(4, 3, 10, 10)
    assert not torch.allclose(outputs(fresh, x), outputs(source, x))
    report = models.load_weights(fresh, path)
    assert torch.equal(outputs(fresh, x), outputs(source, x))
    assert set(report.loaded) == set(source.state_dict()) and not report.missing
    assert not report.unexpected


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: {f"module.{k}": v for k, v in s.items()},  # DataParallel
        lambda s: {"state_dict": {f"module.encoder_q.{k}": v for k, v in s.items()}},  # MoCo
        lambda s: {"epoch": 3, "model": s},  # a checkpoint dict
        lambda s: {
            "model": {**{f"backbone.{k}": v for k, v in s.items()}, "head.w": s["net.0.weight"]}
        },
    ],
    ids=["module-prefix", "moco-checkpoint", "model-entry", "classifier-checkpoint"],
)
def test_wrapped_state_dicts_load(tmp_path, wrap):
    source = models.build("small_cnn", seed=1)
    torch.save(wrap(source.state_dict()), tmp_path / "w.pt")
    fresh = models.build("small_cnn", seed=2)
    models.load_weights(fresh, tmp_path / "w.pt")
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(outputs(fresh, x), outputs(source, x))


def test_torchvision_resnet_names_load_into_the_zoo_resnet(tmp_path):
    source = models.build("resnet18", seed=1, stem="imagenet")
    state = torchvision_names(source.state_dict())
    assert "layer2.0.downsample.0.weight" in state and "conv1.weight" in state
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    torch.save(state, tmp_path / "resnet18.pth")
    fresh = models.build("resnet18", seed=2, stem="imagenet")
    with pytest.raises(DataFormatError, match=r"unexpected \(fc.bias, fc.weight\)"):
        models.load_weights(fresh, tmp_path / "resnet18.pth")
    report = models.load_weights(fresh, tmp_path / "resnet18.pth", strict=False)
    assert report.unexpected == ("fc.bias", "fc.weight") and not report.missing
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(outputs(fresh, x), outputs(source, x))


def test_mismatched_files_list_the_keys(tmp_path):
    source = models.build("small_cnn", seed=1)
    state = source.state_dict()
    del state["net.0.weight"]
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "odd.pt")
    fresh = models.build("small_cnn", seed=2)
    with pytest.raises(DataFormatError) as info:
        models.load_weights(fresh, tmp_path / "odd.pt")
    message = str(info.value)
    assert "\n" not in message and "odd.pt" in message
    assert "1 missing (net.0.weight)" in message and "1 unexpected (extra.weight)" in message
    assert "strict=False (model.weights_strict=false)" in message
    report = models.load_weights(fresh, tmp_path / "odd.pt", strict=False)
    assert report.missing == ("net.0.weight",) and report.unexpected == ("extra.weight",)
    assert torch.equal(fresh.net[1].weight, source.net[1].weight)

    wide = models.build("small_cnn", seed=0, feature_dim=32)
    torch.save(wide.state_dict(), tmp_path / "wide.pt")
    with pytest.raises(DataFormatError, match=r"tensor\(s\) of another shape \(net.6.weight"):
        models.load_weights(fresh, tmp_path / "wide.pt", strict=False)
    torch.save({"a.b": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(DataFormatError, match="none of its 1 tensor names matches"):
        models.load_weights(fresh, tmp_path / "other.pt", strict=False)


def test_unreadable_and_missing_files(tmp_path):
    backbone = models.build("small_cnn", seed=0)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataFormatError, match=r"junk.pt is not a PyTorch weights file"):
        models.load_weights(backbone, tmp_path / "junk.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(DataFormatError, match=r"list.pt holds no state dict"):
        models.load_weights(backbone, tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match=r"nowhere.pt does not exist"):
        models.load_weights(backbone, tmp_path / "nowhere.pt")


def test_model_weights_config_key(tmp_path, capsys):
    config = load_config(None, FAST)
    _, _, first = assemble(config, torch.device("cpu"))
    path = tmp_path / "backbone.pt"
    torch.save(first.backbone.state_dict(), path)
    other = load_config(None, [*FAST, "train.seed=5", f"model.weights={path}"])
    _, _, second = assemble(other, torch.device("cpu"))
    saved, loaded = first.backbone.state_dict(), second.backbone.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    # a file of another width: one line naming the key and the file, exit status 2
    wide = load_config(None, [*FAST, "model.options={hidden: [32], feature_dim: 24}"])
    torch.save(assemble(wide, torch.device("cpu"))[2].backbone.state_dict(), tmp_path / "w.pt")
    with pytest.raises(UsageError, match=r"model.weights='.*w.pt'.*another shape"):
        assemble(
            load_config(None, [*FAST, f"model.weights={tmp_path / 'w.pt'}"]), torch.device("cpu")
        )
    code = main(
        ["train", *FAST, f"model.weights={tmp_path / 'w.pt'}", "--run-dir", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "w.pt" in err and "another shape" in err
