"""Model zoo: shapes, feature_dim, parameter counts, build() and its errors."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

import neuralcollapse as nc
from neuralcollapse.models import Backbone, available, build, count_parameters


def _features(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize(
    ("name", "options", "shape", "dim"),
    [
        ("resnet32", {}, (2, 3, 32, 32), 64),
        ("resnet32", {"width": 2}, (2, 3, 32, 32), 128),
        ("resnet32", {"shortcut": "B"}, (2, 3, 32, 32), 64),
        ("resnet18", {}, (2, 3, 32, 32), 512),
        ("resnet18", {"feature_dim": 10}, (2, 3, 32, 32), 10),
        ("resnet18", {"stem": "imagenet"}, (2, 3, 64, 64), 512),
        ("resnet50", {"feature_dim": 100}, (1, 3, 16, 16), 100),
        ("mlp", {}, (5, 1, 8, 8), 64),
        ("mlp", {"hidden": (32, 16), "feature_dim": 12}, (5, 64), 12),
        ("small_cnn", {}, (5, 1, 8, 8), 64),
        ("small_cnn", {"in_channels": 3, "feature_dim": 20}, (5, 3, 8, 8), 20),
    ],
)
def test_backbones_return_features_of_feature_dim(name, options, shape, dim):
    model = build(name, **options)
    assert isinstance(model, Backbone) and model.feature_dim == dim
    out = _features(model, torch.randn(*shape))
    assert out.shape == (shape[0], dim)
    assert torch.isfinite(out).all()


def test_nc_models_is_reachable_lazily():
    assert nc.models.build is build
    assert set(available()) == {
        "resnet32",
        "resnet18",
        "resnet50",
        "mlp",
        "small_cnn",
        "wide_resnet",
        "densenet_bc",
    }


def test_resnet50_standard_width_and_imagenet_stem_count():
    model = build("resnet50", stem="imagenet")
    assert model.feature_dim == 2048
    # torchvision's ResNet-50 has 25,557,032 parameters with its Linear(2048, 1000)
    assert count_parameters(model) + 2048 * 1000 + 1000 == 25_557_032


def test_resnet18_parameter_counts_match_z21():
    standard = build("resnet18", stem="imagenet")
    head = nn.Linear(512, 10)  # learnable classifier with bias
    standard_total = count_parameters(standard) + count_parameters(head)
    assert standard_total == 11_181_642  # [Z21]'s count, reproduced exactly

    d_equals_k = build("resnet18", stem="imagenet", feature_dim=10)
    frozen_etf = nn.Linear(10, 10)  # stands in for a fixed frame: weight frozen, bias learnable
    frozen_etf.weight.requires_grad_(False)
    fixed_total = count_parameters(d_equals_k) + count_parameters(frozen_etf)
    assert count_parameters(d_equals_k) == 8_867_432
    assert fixed_total == 8_867_442
    # [Z21] reports 8,867,542 = 8,867,432 + 110, i.e. it also counts the 100 frozen frame
    # entries of a Linear(10, 10): all-parameter count of backbone + Linear(10, 10)
    assert count_parameters(d_equals_k) + count_parameters(frozen_etf, trainable_only=False) == (
        8_867_542
    )
    assert fixed_total <= 0.8 * standard_total  # at least 20% fewer (20.7%)


def test_cifar_stem_d_equals_k_saves_over_20_percent_too():
    standard = count_parameters(build("resnet18")) + 512 * 10 + 10
    fixed = count_parameters(build("resnet18", feature_dim=10)) + 10
    assert (standard, fixed) == (11_173_962, 8_859_762)
    assert fixed <= 0.8 * standard


def test_resnet50_d_equals_k_saves_about_four_percent():
    standard = count_parameters(build("resnet50")) + 2048 * 10 + 10
    fixed = count_parameters(build("resnet50", feature_dim=10)) + 10
    assert 0.04 < 1 - fixed / standard < 0.05


def test_resnet32_sizes():
    assert count_parameters(build("resnet32")) == 463_504
    assert count_parameters(build("resnet32", width=2)) == 1_848_608
    blocks = [m for m in build("resnet32").modules() if type(m).__name__ == "_CifarBlock"]
    assert len(blocks) == 15  # 3 stages of 5 blocks: 1 + 30 + 1 = 32 layers


def test_small_model_sizes():
    assert count_parameters(build("small_cnn")) == 55_904
    assert count_parameters(build("mlp")) == 64 * 128 + 2 * 128 + 128 * 64 + 2 * 64


def test_build_seed_is_reproducible_and_isolated():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = build("small_cnn", seed=3)
    assert torch.equal(state, torch.get_rng_state())
    b = build("small_cnn", seed=3)
    c = build("small_cnn", seed=4)
    wa, wb, wc = (m.net[0].weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_resnet_trains_one_step():
    model = build("resnet32", seed=0)
    head = nn.Linear(model.feature_dim, 10)
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.1)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    loss = nn.functional.cross_entropy(head(model(x)), y)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    opt.step()


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("resnet34", {}, "unknown model 'resnet34'; known models: resnet32, resnet18"),
        ("resnet32", {"depth": 20}, r"no option\(s\) \['depth'\]"),
        ("resnet32", {"width": 0}, "width must be an integer >= 1"),
        ("resnet32", {"shortcut": "C"}, "shortcut"),
        ("resnet18", {"stem": "tiny"}, "stem must be one of"),
        ("resnet18", {"feature_dim": 0}, "feature_dim must be None or a positive integer"),
        ("mlp", {"feature_dim": 0}, "positive integers"),
        ("small_cnn", {"widths": (8,)}, "two positive widths"),
        ("timm:", {}, "give a timm model"),
    ],
)
def test_build_errors(name, options, match):
    with pytest.raises(ValueError, match=match):
        build(name, **options)


def test_mlp_rejects_wrong_input_size():
    with pytest.raises(ValueError, match="built for 64 inputs"):
        build("mlp")(torch.randn(2, 3, 8, 8))


def test_cifar_resnet_depth():
    from neuralcollapse.models import CifarResNet

    assert CifarResNet(depth=20).feature_dim == 64
    with pytest.raises(ValueError, match="6n \\+ 2"):
        CifarResNet(depth=30)


def test_timm_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import of timm now fails
    with pytest.raises(ImportError, match=r"torchvision built for your torch .*pip install timm"):
        build("timm:resnet18")


def _fake_timm():
    """A stand-in module with timm's create_model contract (num_classes=0 -> pooled features)."""

    class Pooled(nn.Module):
        def __init__(self, num_features, in_chans):
            super().__init__()
            self.num_features = num_features
            self.conv = nn.Conv2d(in_chans, num_features, 3)

        def forward(self, x):
            return self.conv(x).mean(dim=(2, 3))

    def create_model(name, pretrained=False, num_classes=1000, in_chans=3):
        if name != "tiny_net":
            raise RuntimeError(f"Unknown model ({name})")
        assert num_classes == 0 and not pretrained
        return Pooled(24, in_chans)

    return types.SimpleNamespace(create_model=create_model)


def test_timm_wrapper_with_a_stand_in_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", _fake_timm())
    model = build("timm:tiny_net", in_chans=1)
    assert model.feature_dim == 24
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 24)
    with pytest.raises(ValueError, match="timm has no model 'nope'"):
        build("timm:nope")


def test_timm_backbone_takes_its_input_channels_from_the_data(monkeypatch):
    # digits are 1-channel: a config naming a timm model needs no model.options for it
    from neuralcollapse.train import load_config
    from neuralcollapse.train.build import build_model
    from neuralcollapse.train.recipes import resolve_config_path

    monkeypatch.setitem(sys.modules, "timm", _fake_timm())
    config = load_config(resolve_config_path("digits_lt"), ["model.name=timm:tiny_net"])
    model = build_model(config, 10, (1, 8, 8))
    logits = model(torch.randn(4, 1, 8, 8))
    assert logits.shape == (4, 10)
    explicit = load_config(
        resolve_config_path("digits_lt"),
        ["model.name=timm:tiny_net", "model.options={in_chans: 1}"],
    )
    assert build_model(explicit, 10, (1, 8, 8))(torch.randn(2, 1, 8, 8)).shape == (2, 10)
