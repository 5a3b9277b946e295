"""Registries: a loss and a frame defined here, outside the package, are usable by name
from a YAML config; unknown names, duplicates and ``imports:``."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuralcollapse._internal.names import FRAME_KINDS
from neuralcollapse.errors import ConfigError
from neuralcollapse.frames import FrameRequest, build_frame
from neuralcollapse.losses import LossContext
from neuralcollapse.registry import FRAMES, LOSSES, register_frame, register_loss
from neuralcollapse.train.build import build_loss, build_model, build_optimizer
from neuralcollapse.train.config import load_config

# --------------------------------------------------------------------------- toy entries


@dataclass
class ToyLossOptions:
    temperature: float = 1.0


class ToyLoss(nn.Module):
    """Cross-entropy on logits / temperature."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits / self.temperature, labels)


@dataclass
class ToyFrameOptions:
    length: float = 1.0


def toy_frame_rows(k: int, d: int, length: float) -> torch.Tensor:
    """The first K coordinate axes of R^d, scaled: every class reachable by h >= 0."""
    return length * torch.eye(k, d)


@pytest.fixture
def toys():
    @register_loss("toy_loss", reads="logits", options=ToyLossOptions)
    def build_toy_loss(ctx: LossContext) -> nn.Module:
        """A toy loss from a test module."""
        return ToyLoss(ctx.options.temperature)

    @register_frame("toy_frame", options=ToyFrameOptions)
    def build_toy_frame(request: FrameRequest) -> torch.Tensor:
        """A toy frame from a test module."""
        k, d = request.sizes("toy_frame")
        return toy_frame_rows(k, d, request.options.length).to(request.dtype)

    yield
    LOSSES.unregister("toy_loss")
    FRAMES.unregister("toy_frame")


TOY_YAML = """\
name: toy
model: {name: mlp, options: {hidden: [32], feature_dim: 16}}
head:
  kind: toy_frame
  neck: none
  options: {length: 2.5}
loss:
  name: toy_loss
  options: {temperature: 3.0}
train: {epochs: 1, batch_size: 64}
log: {tensorboard: false, report: false, progress: "off"}
"""


def test_a_toy_loss_and_frame_train_by_name_from_yaml(toys, tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_YAML)
    config = load_config(path)
    assert (config.loss.name, config.head.kind) == ("toy_loss", "toy_frame")
    counts = torch.full((10,), 20)
    model = build_model(config, 10, (1, 8, 8))
    torch.testing.assert_close(model.head.frame, toy_frame_rows(10, 16, 2.5))
    loss_fn = build_loss(config, model, None, counts)
    assert isinstance(loss_fn.inner, ToyLoss) and loss_fn.inner.temperature == 3.0
    assert not loss_fn.reads_features
    optimizer = build_optimizer(config, model)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 8, 8, generator=g), torch.arange(32) % 10
    before = [p.detach().clone() for p in model.parameters()]
    logits, h = model(x, return_features=True)
    loss = loss_fn(logits, h, y, model.head.frame)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_toy_loss_and_frame_run_a_whole_trainer_epoch(toys, tmp_path):
    from neuralcollapse.train import Trainer

    path = tmp_path / "toy.yaml"
    path.write_text(TOY_YAML)
    Trainer(load_config(path), tmp_path / "run").fit()
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "toy_loss" in saved and "toy_frame" in saved and "temperature: 3.0" in saved
    assert (tmp_path / "run" / "summary.json").is_file()


def test_toy_options_are_checked_like_every_key(toys):
    base = ["head.kind=toy_frame", "model.options={hidden: [8], feature_dim: 16}"]
    with pytest.raises(ConfigError, match=r"loss.options.tempreature"):
        load_config(None, [*base, "loss.name=toy_loss", "loss.options={tempreature: 2}"])
    with pytest.raises(ConfigError, match=r"head.options.length"):
        load_config(None, [*base, "loss.name=toy_loss", "head.options={length: abc}"])
    with pytest.raises(ConfigError, match="'ce' takes no options"):
        load_config(None, ["loss.name=ce", "loss.options={temperature: 2}"])


def test_unknown_names_are_one_line_errors_listing_the_registered_ones():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["loss.name=nosuch"])
    message = str(info.value)
    assert "\n" not in message and "loss.name='nosuch'" in message
    for name in LOSSES.names():
        assert name in message
    with pytest.raises(ConfigError) as info:
        load_config(None, ["head.kind=nosuch"])
    message = str(info.value)
    assert "\n" not in message and "head.kind='nosuch'" in message
    for name in ("learnable", *FRAMES.names()):
        assert name in message
    with pytest.raises(ValueError, match="not a registered frame"):
        build_frame("nosuch", 3, 3)


def test_duplicate_and_reserved_names_are_refused(toys):
    with pytest.raises(ValueError, match="'ce' is already registered"):
        register_loss("ce", reads="logits")(lambda ctx: nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="'toy_frame' is already registered"):
        register_frame("toy_frame")(lambda request: torch.eye(2))
    with pytest.raises(ValueError, match="reserved"):
        register_frame("learnable")
    assert isinstance(LOSSES.get("ce").build, type(test_duplicate_and_reserved_names_are_refused))


def test_imports_key_registers_a_users_module(tmp_path, monkeypatch):
    module = "nc_test_user_plugin"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            import torch.nn as nn
            from neuralcollapse.registry import register_loss

            @register_loss("plugin_ce", reads="logits")
            def build(ctx):
                '''Plain cross-entropy from a user module.'''
                return nn.CrossEntropyLoss()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config_file = tmp_path / "plugin.yaml"
    config_file.write_text(
        f"imports: [{module}]\nhead: {{kind: learnable}}\nloss: {{name: plugin_ce}}\n"
    )
    try:
        with pytest.raises(ConfigError, match="plugin_ce"):
            load_config(None, ["head.kind=learnable", "loss.name=plugin_ce"])
        config = load_config(config_file)
        assert config.imports == [module] and config.loss.name == "plugin_ce"
        model = build_model(config, 10, (1, 8, 8))
        assert isinstance(build_loss(config, model, None).inner, nn.CrossEntropyLoss)
    finally:
        LOSSES.unregister("plugin_ce")
        sys.modules.pop(module, None)
    with pytest.raises(ConfigError, match=r"imports: cannot import 'no_such_module_xyz'"):
        load_config(None, ["imports=[no_such_module_xyz]"])


def test_the_cli_frame_names_are_the_registered_builtin_frames():
    builtin = tuple(
        entry.name
        for entry in FRAMES.entries()
        if entry.build.__module__ == "neuralcollapse.frames"
    )
    assert tuple(sorted(FRAME_KINDS)) == builtin


def test_loss_metadata_replaces_the_old_name_tuples():
    reads = {entry.name: entry.meta["reads"] for entry in LOSSES.entries()}
    assert reads == {
        "balanced_softmax": "logits",
        "ce": "logits",
        "cosine_frame": "features",
        "dr": "features",
        "focal": "logits",
        "ldam": "logits",
        "logit_adjusted": "logits",
        "soft_ce": "logits",
    }
    weighted = sorted(e.name for e in LOSSES.entries() if e.meta.get("weighted"))
    assert weighted == ["ce", "focal", "ldam"]
    with pytest.raises(ConfigError, match="weight the classes of ce, focal, ldam"):
        load_config(None, ["loss.name=dr", "loss.class_weight=class_balanced"])
    with pytest.raises(ConfigError, match="needs a fixed frame"):
        load_config(None, ["head.kind=learnable", "loss.name=dr"])
