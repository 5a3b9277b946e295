"""nc.export: safetensors + config.json directories, loaded back bit-identically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import neuralcollapse as nc
from neuralcollapse import models
from neuralcollapse.errors import UsageError
from neuralcollapse.export import (
    CONFIG_NAME,
    PREPROCESSOR_NAME,
    WEIGHTS_NAME,
    Preprocessor,
    load_pretrained,
    save_pretrained,
)
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


# --------------------------------------------------------------------------- preprocessing


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default digits job (small CNN, ETF head, DR loss), shortened to 3 epochs."""
    run_dir = tmp_path_factory.mktemp("default") / "run"
    overrides = ["train.epochs=3", "log.tensorboard=false", "log.report=false"]
    trainer = Trainer(load_config(DEFAULT, overrides), run_dir)
    trainer.fit()
    trainer.close()
    return run_dir


def test_raw_test_images_through_preprocess_give_the_runs_own_test_accuracy(tmp_path, default_run):
    save_pretrained(default_run, tmp_path / "exported", checkpoint="last")
    assert (tmp_path / "exported" / PREPROCESSOR_NAME).is_file()
    model, preprocess = load_pretrained(tmp_path / "exported", with_preprocess=True)
    summary = json.loads((default_run / "summary.json").read_text())
    # The raw test split, as the data set stores it (digits: [0, 1] floats, never normalised).
    data, _, _ = assemble(load_config(DEFAULT, ["train.epochs=3"]), torch.device("cpu"))
    images, labels = data.test.images, data.test.labels
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    with torch.no_grad():
        predicted = model(preprocess(images)).argmax(dim=1)
        unnormalised = model(images.float()).argmax(dim=1)
    correct = int((predicted == labels).sum())
    assert correct == round(summary["final"]["top1"] * len(labels))
    assert int((unnormalised == labels).sum()) != correct  # normalisation matters here
    assert preprocess.image_mean == pytest.approx(data.mean, abs=0)
    assert preprocess.class_names == tuple(data.class_names)


def test_preprocess_scales_uint8_checks_shapes_and_crops(tmp_path):
    preprocess = Preprocessor(
        sample_shape=(3, 6, 6),
        input_shape=(3, 4, 4),
        image_mean=(0.5, 0.25, 0.0),
        image_std=(0.5, 0.25, 1.0),
        crop_size=4,
    )
    pixels = torch.full((2, 3, 6, 6), 255, dtype=torch.uint8)
    out = preprocess(pixels)
    assert out.shape == (2, 3, 4, 4) and out.dtype == torch.float32
    assert torch.equal(out[:, :, 0, 0], torch.tensor([[1.0, 3.0, 1.0]] * 2))
    assert torch.equal(preprocess(pixels[0].numpy()), out[:1])  # one sample, numpy
    with pytest.raises(UsageError, match=r"inputs of shape \[3, 5, 5\].*\[3, 6, 6\]"):
        preprocess(torch.zeros(1, 3, 5, 5))
    with pytest.raises(UsageError, match="dtype int32"):
        preprocess(torch.zeros(1, 3, 6, 6, dtype=torch.int32))


def test_preprocess_decodes_image_files_as_the_loader_did(tmp_path):
    pil = pytest.importorskip("PIL.Image", reason="Pillow (extra images) decodes image files")
    import numpy as np

    array = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    pil.fromarray(array).save(tmp_path / "a.png")
    preprocess = Preprocessor((3, 4, 6), (3, 4, 6), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    out = preprocess(tmp_path / "a.png")
    expected = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(out[0], expected, rtol=0, atol=1e-7)


def test_exports_without_a_known_normalisation_say_so(tmp_path):
    directory = _export(tmp_path)  # a bare head
    with pytest.raises(UsageError, match="has no preprocessor_config.json"):
        load_pretrained(directory, with_preprocess=True)
    config = load_config(DEFAULT, FAST)
    model = build_model(config, 10, (1, 8, 8))
    save_pretrained(model, tmp_path / "m", config=config, input_shape=(1, 8, 8))
    assert not (tmp_path / "m" / PREPROCESSOR_NAME).exists()
    save_pretrained(
        model, tmp_path / "m", config=config, input_shape=(1, 8, 8), mean=(0.3,), std=(0.4,)
    )
    _, preprocess = load_pretrained(tmp_path / "m", with_preprocess=True)
    assert preprocess.image_mean == (0.3,) and preprocess.image_std == (0.4,)
    with pytest.raises(UsageError, match="mean has 3 values but the inputs have 1 channel"):
        save_pretrained(
            model, tmp_path / "m", config=config, input_shape=(1, 8, 8), mean=(0,) * 3, std=(1,) * 3
        )


def test_the_export_command_writes_a_loadable_directory(tmp_path, default_run, capsys):
    from neuralcollapse.cli import main

    assert main(["export", str(default_run), "--out", str(tmp_path / "out")]) == 0
    shown = capsys.readouterr().out
    assert "mean" in shown and "checkpoints" in shown
    model, preprocess = load_pretrained(tmp_path / "out", with_preprocess=True)
    assert preprocess.input_shape == (1, 8, 8) and not model.training
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a run directory nor a checkpoint" in err[0]


# --------------------------------------------------------------------------- refusals (#28)


def _rewrite_weights(directory: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(directory / WEIGHTS_NAME)
    change(tensors)
    save_file(tensors, directory / WEIGHTS_NAME)


def _rewrite_config(directory: Path, change) -> None:
    document = json.loads((directory / CONFIG_NAME).read_text())
    change(document)
    (directory / CONFIG_NAME).write_text(json.dumps(document))


@pytest.mark.parametrize("dtype", [torch.float16, torch.int64, torch.float64])
def test_weights_of_another_dtype_are_refused_not_cast(tmp_path, dtype):
    directory = _export(tmp_path)

    def cast(tensors):
        tensors["neck.0.weight"] = tensors["neck.0.weight"].to(dtype)

    _rewrite_weights(directory, cast)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(UsageError, match=f"neck.0.weight is {name} not float32.*would cast"):
        load_pretrained(directory)


def test_a_float64_model_round_trips_in_float64(tmp_path):
    head = FixedFrameHead(8, simplex_etf(4, 3, seed=0).double()).double()
    save_pretrained(head, tmp_path / "d")
    loaded = load_pretrained(tmp_path / "d")
    assert loaded.frame.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in loaded.parameters())


@pytest.mark.parametrize("version", [-5, 0, True, "1", 1.0])
def test_a_format_version_that_is_not_a_positive_integer_is_refused(tmp_path, version):
    directory = _export(tmp_path)
    _rewrite_config(directory, lambda d: d.update(format_version=version))
    with pytest.raises(UsageError, match="format_version .*positive integer"):
        load_pretrained(directory)


def test_a_fixed_frame_export_without_its_frame_entry_is_refused(tmp_path):
    directory = _export(tmp_path)
    _rewrite_config(directory, lambda d: d.pop("frame"))
    with pytest.raises(UsageError, match="records no frame hash"):
        load_pretrained(directory)
    _rewrite_config(directory, lambda d: d.update(frame={"kind": "etf"}))
    with pytest.raises(UsageError, match="records no frame hash"):
        load_pretrained(directory)


def test_an_unavailable_map_location_is_named_not_called_corrupt(tmp_path):
    directory = _export(tmp_path)
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: map_location='cuda' is valid on this machine")
    with pytest.raises(UsageError, match="map_location='cuda' is not available on this machine"):
        load_pretrained(directory, map_location="cuda")
    with pytest.raises(UsageError, match="map_location='gpu7' is not a device"):
        load_pretrained(directory, map_location="gpu7")


def test_a_huge_head_in_config_json_is_refused_before_allocating(tmp_path):
    directory = _export(tmp_path)

    def grow(document):
        document["architecture"]["head"]["in_features"] = 10**9

    _rewrite_config(directory, grow)
    with pytest.raises(UsageError, match=r"has [\d,]{13} parameters.*above the limit"):
        load_pretrained(directory)
    # Raising the limit reaches the next check, still on the meta device (no allocation).
    with pytest.raises(UsageError, match="of another shape"):
        load_pretrained(directory, max_parameters=10**10)


def test_huge_backbone_widths_in_config_json_are_refused_before_allocating(tmp_path, monkeypatch):
    config = load_config(DEFAULT, FAST)
    model = build_model(config, 10, (1, 8, 8))
    save_pretrained(model, tmp_path / "m", config=config, input_shape=(1, 8, 8))

    def grow(document):
        document["architecture"]["backbone"]["options"]["hidden"] = [200000, 200000]

    _rewrite_config(tmp_path / "m", grow)
    with pytest.raises(UsageError, match=r"has 40,0\d\d,\d{3},\d{3} parameters.*limit of 1,000"):
        load_pretrained(tmp_path / "m")
    monkeypatch.setenv("NEURALCOLLAPSE_MAX_PARAMETERS", "100000000000")
    with pytest.raises(UsageError, match="of another shape"):
        load_pretrained(tmp_path / "m")


def test_eval_of_a_checkpoint_with_huge_widths_exits_2_in_one_line(tmp_path, trained_run, capsys):
    from neuralcollapse.cli import main

    run_dir, _ = trained_run
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    state["config"]["model"]["options"]["hidden"] = [200000, 200000]
    torch.save(state, tmp_path / "crafted.pt")
    assert main(["eval", str(tmp_path / "crafted.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "above the limit of 1,000,000,000" in err[0]


def test_a_deeply_nested_config_json_is_one_error(tmp_path):
    directory = _export(tmp_path)
    (directory / CONFIG_NAME).write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(UsageError, match="nested"):
        load_pretrained(directory)


def test_the_parameter_limit_is_stated_and_raised_only_by_a_positive_integer(monkeypatch):
    from neuralcollapse.models.limits import MAX_PARAMETERS, parameter_limit

    monkeypatch.delenv("NEURALCOLLAPSE_MAX_PARAMETERS", raising=False)
    assert parameter_limit() == MAX_PARAMETERS == 10**9
    assert parameter_limit(5) == 5
    monkeypatch.setenv("NEURALCOLLAPSE_MAX_PARAMETERS", "2_000_000_000")
    assert parameter_limit() == 2 * 10**9
    monkeypatch.setenv("NEURALCOLLAPSE_MAX_PARAMETERS", "lots")
    with pytest.raises(UsageError, match="NEURALCOLLAPSE_MAX_PARAMETERS='lots' is not a positive"):
        parameter_limit()
    with pytest.raises(UsageError, match="max_parameters must be a positive integer"):
        parameter_limit(0)
    # An ordinary model builds; a huge one is refused before any memory is taken.
    monkeypatch.delenv("NEURALCOLLAPSE_MAX_PARAMETERS")
    assert models.build("mlp", in_features=64, hidden=[32], feature_dim=16).feature_dim == 16
    with pytest.raises(UsageError, match=r"model 'mlp' .* has 40,0[\d,]+ parameters"):
        models.build("mlp", in_features=64, hidden=[200000, 200000], feature_dim=16)
