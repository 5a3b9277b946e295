"""nc.export: safetensors + config.json directories, loaded back bit-identically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import neuralcollapse as nc
from neuralcollapse import models
from neuralcollapse.errors import UsageError
from neuralcollapse.export import CONFIG_NAME, WEIGHTS_NAME, load_pretrained, save_pretrained
from neuralcollapse.frames import simplex_etf
from neuralcollapse.heads import FixedFrameHead, LearnableHead
from neuralcollapse.train import Trainer, load_checkpoint, load_config
from neuralcollapse.train.build import Classifier, build_model
from neuralcollapse.train.config import config_to_dict
from neuralcollapse.train.recipes import resolve_config_path
from neuralcollapse.train.trainer import assemble

DEFAULT = resolve_config_path(None)  # digits_lt: 10 classes of (1, 8, 8) images
FAST = [
    "model.name=mlp",
    "model.options={hidden: [32], feature_dim: 16}",
    "train.batch_size=64",
    "log.tensorboard=false",
    "log.report=false",
]


def _settle(model: torch.nn.Module, shape: tuple[int, ...], seed: int = 0) -> None:
    """Move BatchNorm running statistics off their defaults (a forward in train mode)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.train()(torch.randn(32, *shape, generator=gen))
    model.eval()


def _assert_same_model(saved, loaded, x: torch.Tensor) -> None:
    assert not loaded.training
    for (name, a), (other, b) in zip(
        saved.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert name == other and a.dtype == b.dtype and torch.equal(a, b), name
    saved.eval()
    with torch.no_grad():
        for a, b in zip(
            saved(x, return_features=True), loaded(x, return_features=True), strict=True
        ):
            assert torch.equal(a, b)


def test_a_bare_fixed_frame_head_round_trips_bit_identically(tmp_path):
    torch.manual_seed(0)
    head = FixedFrameHead(12, simplex_etf(6, 5, seed=3), neck="bn_l2", scale=7.5)
    _settle(head, (12,))
    assert save_pretrained(head, tmp_path / "head") == tmp_path / "head"
    loaded = nc.load_pretrained(tmp_path / "head")
    assert isinstance(loaded, FixedFrameHead) and torch.equal(loaded.frame, head.frame)
    _assert_same_model(head, loaded, torch.randn(9, 12))
    document = json.loads((tmp_path / "head" / CONFIG_NAME).read_text())
    assert document["format"] == "neuralcollapse-pretrained" and document["model_type"] == "head"
    assert document["frame"]["shape"] == [6, 5] and document["frame"]["scale"] == 7.5
    assert document["frame"]["dtype"] == "float32" and len(document["frame"]["sha256"]) == 64
    assert document["num_classes"] == 6 and "training_config" not in document


def test_a_learnable_cosine_head_round_trips(tmp_path):
    torch.manual_seed(0)
    head = LearnableHead(12, 4, bias=False, neck="bn", cosine=True)
    _settle(head, (12,))
    save_pretrained(head, tmp_path / "head")
    loaded = load_pretrained(tmp_path / "head")
    assert loaded.get_config() == head.get_config()
    _assert_same_model(head, loaded, torch.randn(9, 12))
    assert "frame" not in json.loads((tmp_path / "head" / CONFIG_NAME).read_text())


def test_a_classifier_with_its_config_keeps_a_frame_that_no_seed_would_give(tmp_path):
    config = load_config(DEFAULT, FAST)
    model = build_model(config, 10, (1, 8, 8))
    # A frame the config cannot regenerate: the loaded one must come from the file.
    frame = torch.randn(10, 16, generator=torch.Generator().manual_seed(11))
    model.head = FixedFrameHead(16, frame, neck="bn_l2", scale=2.0)
    _settle(model, (1, 8, 8))
    names = [f"digit {k}" for k in range(10)]
    save_pretrained(model, tmp_path / "m", config=config, input_shape=(1, 8, 8), class_names=names)
    loaded = load_pretrained(tmp_path / "m")
    assert isinstance(loaded, Classifier) and torch.equal(loaded.head.frame, frame)
    _assert_same_model(model, loaded, torch.randn(5, 1, 8, 8))
    document = json.loads((tmp_path / "m" / CONFIG_NAME).read_text())
    assert document["architecture"]["backbone"] == {
        "name": "mlp",
        "options": {"in_features": 64, "hidden": [32], "feature_dim": 16},
    }
    assert document["training_config"] == json.loads(json.dumps(config_to_dict(config)))
    assert document["class_names"] == names and document["input_shape"] == [1, 8, 8]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One epoch of the fast digits variant: a run directory and its (closed) Trainer."""
    run_dir = tmp_path_factory.mktemp("export") / "run"
    trainer = Trainer(load_config(DEFAULT, [*FAST, "train.epochs=1"]), run_dir)
    trainer.fit()
    trainer.close()
    return run_dir, trainer


def _checkpoint_model(path: Path):
    state = load_checkpoint(path)
    config = load_config(DEFAULT, FAST)
    data, _, model = assemble(config, torch.device("cpu"))
    model.load_state_dict(state["model"])
    return model.eval(), data


@pytest.mark.parametrize("which", [None, "last"])
def test_a_run_directory_exports_its_checkpoint(tmp_path, trained_run, which):
    run_dir, _ = trained_run
    save_pretrained(run_dir, tmp_path / "exported", checkpoint=which)
    loaded = load_pretrained(tmp_path / "exported")
    # Without a selected best.pt, the default is last.pt.
    best = run_dir / "checkpoints" / "best.pt"
    name = which or ("best" if best.is_file() else "last")
    checkpoint = run_dir / "checkpoints" / f"{name}.pt"
    model, data = _checkpoint_model(checkpoint)
    x = data.test.images[:20].float() if hasattr(data.test, "images") else None
    x = x if x is not None else torch.stack([data.test[i][0] for i in range(20)])
    _assert_same_model(model, loaded, x)
    document = json.loads((tmp_path / "exported" / CONFIG_NAME).read_text())
    state = load_checkpoint(checkpoint)
    assert document["training_config"] == json.loads(json.dumps(state["config"]))
    assert document["source"] == {"checkpoint": str(checkpoint), "epoch": state["epoch"]}
    assert document["class_names"] == list(data.class_names)
    assert document["frame"]["kind"] == "etf"


def test_a_trainer_exports_the_same_weights_as_its_run(tmp_path, trained_run):
    run_dir, trainer = trained_run
    save_pretrained(trainer, tmp_path / "from_trainer")
    save_pretrained(run_dir, tmp_path / "from_run", checkpoint="last")
    a = (tmp_path / "from_trainer" / WEIGHTS_NAME).read_bytes()
    b = (tmp_path / "from_run" / WEIGHTS_NAME).read_bytes()
    assert a == b


def _export(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    save_pretrained(FixedFrameHead(8, simplex_etf(4, 3)), tmp_path / "ok")
    return tmp_path / "ok"


def test_damaged_or_missing_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_pretrained(tmp_path / "empty")

    directory = _export(tmp_path)
    config_path, weights = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    original_config, original_weights = config_path.read_text(), weights.read_bytes()

    config_path.write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON.*save it again"):
        load_pretrained(directory)
    config_path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(UsageError, match="not a neuralcollapse export"):
        load_pretrained(directory)
    newer = {**json.loads(original_config), "format_version": 99}
    config_path.write_text(json.dumps(newer))
    with pytest.raises(UsageError, match="format version 99.*upgrade"):
        load_pretrained(directory)
    config_path.write_text(original_config)

    weights.write_bytes(original_weights[: len(original_weights) // 2])
    with pytest.raises(UsageError, match="cannot be read as safetensors.*truncated or corrupt"):
        load_pretrained(directory)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="lacks its weights"):
        load_pretrained(directory)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    directory = _export(tmp_path)
    torch.manual_seed(1)
    save_pretrained(FixedFrameHead(8, simplex_etf(4, 3, seed=5)), tmp_path / "other")
    (directory / WEIGHTS_NAME).write_bytes((tmp_path / "other" / WEIGHTS_NAME).read_bytes())
    with pytest.raises(UsageError, match="frame .* differs from the one its config.json records"):
        load_pretrained(directory)
    save_pretrained(LearnableHead(8, 4), tmp_path / "learnable")
    (directory / WEIGHTS_NAME).write_bytes((tmp_path / "learnable" / WEIGHTS_NAME).read_bytes())
    with pytest.raises(UsageError, match="no 'frame' tensor"):
        load_pretrained(directory)
    save_pretrained(FixedFrameHead(8, simplex_etf(4, 3), neck="none"), tmp_path / "no_bn")
    (directory / WEIGHTS_NAME).write_bytes((tmp_path / "no_bn" / WEIGHTS_NAME).read_bytes())
    with pytest.raises(UsageError, match=r"tensors 5 missing \(neck.0.bias"):
        load_pretrained(directory)


def test_save_pretrained_refuses_what_it_cannot_describe(tmp_path):
    config = load_config(DEFAULT, FAST)
    model = build_model(config, 10, (1, 8, 8))
    with pytest.raises(UsageError, match="needs config= .* and input_shape="):
        save_pretrained(model, tmp_path / "x")
    with pytest.raises(UsageError, match="does not build this model's backbone"):
        save_pretrained(model, tmp_path / "x", config=config, input_shape=(3, 8, 8))
    with pytest.raises(UsageError, match="cannot export a Linear"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path / "x")
    with pytest.raises(UsageError, match="class_names has 2 names but the model has 10"):
        save_pretrained(
            model, tmp_path / "x", config=config, input_shape=(1, 8, 8), class_names=["a", "b"]
        )
    with pytest.raises(UsageError, match="neither a run directory nor a checkpoint"):
        save_pretrained(tmp_path / "missing-run", tmp_path / "x")
    (tmp_path / "run").mkdir()
    with pytest.raises(UsageError, match=r"has no checkpoints/last.pt: it holds no checkpoint"):
        save_pretrained(tmp_path / "run", tmp_path / "x")
    with pytest.raises(UsageError, match=r"has no checkpoints/best.pt"):
        save_pretrained(tmp_path / "run", tmp_path / "x", checkpoint="best")
    assert not (tmp_path / "x").exists()
    # A backbone built with other options than the config's is refused before writing.
    other = Classifier(models.build("mlp", in_features=64, feature_dim=16), model.head)
    with pytest.raises(UsageError, match=r"differing tensors: \[\('net.1.weight', \(32, 64\)\)"):
        save_pretrained(other, tmp_path / "y", config=config, input_shape=(1, 8, 8))
    assert not (tmp_path / "y").exists()
