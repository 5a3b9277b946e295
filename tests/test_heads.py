"""Heads: the frame is a fixed, saved buffer; features are what the frame sees."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.fx
from torch import nn

from neuralcollapse.frames import simplex_etf
from neuralcollapse.heads import NECKS, FixedFrameHead, LearnableHead, build_neck, head_from_config


def etf(k: int = 5, d: int = 8, seed: int = 0) -> torch.Tensor:
    return simplex_etf(k, d, seed=seed)


def batch(n: int = 6, width: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


def test_frame_is_a_persistent_buffer_not_a_parameter():
    frame = etf()
    head = FixedFrameHead(8, frame, neck="bn_l2")
    assert "frame" in head.state_dict()
    assert all(p.data_ptr() != head.frame.data_ptr() for p in head.parameters())
    assert torch.equal(head.frame, frame)
    frame.mul_(0)  # the head keeps its own copy
    assert head.frame.abs().sum() > 0


def test_optimiser_steps_never_change_the_frame():
    head = FixedFrameHead(8, etf(), neck="bn_l2", scale=4.0)
    before = head.frame.clone()
    opt = torch.optim.SGD(head.parameters(), lr=1.0, momentum=0.9, weight_decay=0.1)
    for step in range(3):
        loss = nn.functional.cross_entropy(head(batch(seed=step)), torch.arange(6) % 5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(head.frame, before)


def test_state_dict_round_trip_restores_the_frame():
    head = FixedFrameHead(8, etf(seed=1), neck="bn")
    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    buffer.seek(0)
    other = FixedFrameHead(8, etf(seed=2), neck="bn")
    assert not torch.equal(other.frame, head.frame)
    other.load_state_dict(torch.load(buffer))
    assert torch.equal(other.frame, head.frame)
    head.eval()
    other.eval()
    x = batch()
    assert torch.equal(head(x), other(x))


@pytest.mark.parametrize("neck", NECKS)
def test_logits_equal_scaled_features_times_frame(neck):
    torch.manual_seed(0)  # module init only; the library itself never seeds
    head = FixedFrameHead(8, etf(), neck=neck, scale=3.0).double().eval()
    x = batch().double()
    logits, h = head(x, return_features=True)
    assert logits.shape == (6, 5) and h.shape == (6, 8)
    expected = 3.0 * h.detach().numpy() @ head.frame.numpy().T
    np.testing.assert_allclose(logits.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(head(x), logits)
    assert torch.allclose(head.weight, 3.0 * head.frame)
    assert head.bias is None


@pytest.mark.parametrize(
    ("neck", "unit"), [("none", False), ("bn", False), ("l2", True), ("bn_l2", True), ("mlp", True)]
)
def test_features_are_after_the_neck(neck, unit):
    head = FixedFrameHead(8, etf(), neck=neck).eval()
    _, h = head(batch() * 10, return_features=True)
    norms = h.norm(dim=1)
    assert torch.allclose(norms, torch.ones(6), atol=1e-6) == unit


def test_bn_neck_normalises_in_training_mode():
    head = FixedFrameHead(8, etf(), neck="bn").train()
    _, h = head(batch(n=64) * 5 + 3, return_features=True)
    assert torch.allclose(h.mean(0), torch.zeros(8), atol=1e-5)


def test_projection_when_widths_differ():
    head = FixedFrameHead(32, etf(5, 8), neck="bn_l2")
    assert isinstance(head.projection, nn.Linear)
    assert head.projection.weight.shape == (8, 32)
    logits, h = head(batch(width=32), return_features=True)
    assert logits.shape == (6, 5) and h.shape == (6, 8)
    same = FixedFrameHead(8, etf(5, 8))
    assert isinstance(same.projection, nn.Identity)
    mlp = FixedFrameHead(32, etf(5, 8), neck="mlp")
    assert isinstance(mlp.projection, nn.Identity)
    assert mlp(batch(width=32)).shape == (6, 5)


def test_head_moves_with_to_and_follows_dtype():
    head = FixedFrameHead(8, etf()).to(torch.float64)
    assert head.frame.dtype == torch.float64
    assert head(batch().double()).dtype == torch.float64


def test_learnable_head_really_learns():
    # The [Y22] reference's "learnable" CIFAR baseline silently froze its classifier.
    torch.manual_seed(0)
    head = LearnableHead(8, 5)
    assert head.weight.requires_grad and head.bias is not None
    before = head.weight.detach().clone()
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    loss = nn.functional.cross_entropy(head(batch()), torch.arange(6) % 5)
    loss.backward()
    opt.step()
    assert not torch.equal(head.weight.detach(), before)
    assert {name for name, _ in head.named_parameters()} == {"classifier.weight", "classifier.bias"}


def test_learnable_head_forward_signature():
    torch.manual_seed(0)
    head = LearnableHead(8, 5, bias=False, neck="l2").double()
    x = batch().double()
    logits, h = head(x, return_features=True)
    np.testing.assert_allclose(h.norm(dim=1).detach().numpy(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(
        logits.detach().numpy(), h.detach().numpy() @ head.weight.detach().numpy().T, rtol=1e-12
    )
    assert head.bias is None and head.num_classes == 5 and head.dim == 8


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: FixedFrameHead(8, etf(), neck="relu"), "unknown neck 'relu'"),
        (lambda: FixedFrameHead(0, etf()), "in_features must be an integer >= 1"),
        (lambda: FixedFrameHead(8, torch.ones(5)), r"\(K, d\)"),
        (lambda: FixedFrameHead(8, torch.ones(1, 8)), "K >= 2"),
        (lambda: FixedFrameHead(8, torch.full((3, 8), float("nan"))), "finite"),
        (lambda: FixedFrameHead(8, etf(), scale=0.0), "scale must be > 0"),
        (lambda: FixedFrameHead(8, etf(), scale=float("inf")), "scale must be a finite"),
        (lambda: LearnableHead(8, 1), "num_classes must be an integer >= 2"),
        (lambda: LearnableHead(8, 5, neck="nope"), "unknown neck"),
        (lambda: build_neck("bn", 4, 8), "keeps the width"),
    ],
)
def test_heads_reject_bad_configuration(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("head", [FixedFrameHead(8, etf()), LearnableHead(8, 5)])
def test_heads_reject_wrong_input_shape(head):
    with pytest.raises(ValueError, match=r"shape \(batch, 8\), got \(6, 9\)"):
        head(batch(width=9))
    with pytest.raises(ValueError, match=r"got \(2, 4, 8\)"):
        head(torch.zeros(2, 4, 8))


def test_fixed_frame_head_rejects_zero_rows_naming_them():
    frame = etf()
    frame[1] = 0.0
    frame[3] = 0.0
    with pytest.raises(ValueError, match=r"frame rows \[1, 3\] are all zero"):
        FixedFrameHead(8, frame)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_fixed_frame_head_rejects_non_finite_frames_naming_the_rows(bad):
    frame = etf()
    frame[2, 4] = bad
    with pytest.raises(ValueError, match=r"frame must be finite: rows \[2\]"):
        FixedFrameHead(8, frame)


def test_fixed_frame_head_rejects_an_integer_frame():
    with pytest.raises(ValueError, match="floating-point"):
        FixedFrameHead(8, torch.ones(5, 8, dtype=torch.int64))


@pytest.mark.parametrize(
    "head",
    [
        FixedFrameHead(8, etf(5, 4), neck="bn_l2", scale=2.5),
        FixedFrameHead(8, etf(5, 6), neck="mlp"),
        LearnableHead(8, 5, bias=False, neck="l2", cosine=True),
        LearnableHead(8, 5),
    ],
)
def test_head_from_config_rebuilds_the_same_head(head):
    torch.manual_seed(0)
    head.train()(batch(n=16, seed=3))  # move BN running statistics off their defaults
    config = head.get_config()
    frame = head.frame if isinstance(head, FixedFrameHead) else None
    other = head_from_config(config, frame)
    assert type(other) is type(head) and other.get_config() == config
    other.load_state_dict(head.state_dict())
    x = batch(seed=4)
    assert torch.equal(other.eval()(x), head.eval()(x))


def test_head_from_config_rejects_what_it_cannot_build():
    head = FixedFrameHead(8, etf(5, 4))
    with pytest.raises(ValueError, match=r"frame is \(5, 4\).*got NoneType"):
        head_from_config(head.get_config())
    with pytest.raises(ValueError, match=r"got \(5, 6\)"):
        head_from_config(head.get_config(), etf(5, 6))
    with pytest.raises(ValueError, match="type 'Linear'"):
        head_from_config({"type": "Linear"})
    with pytest.raises(ValueError, match=r"lacks \['scale'\]"):
        head_from_config({k: v for k, v in head.get_config().items() if k != "scale"}, etf(5, 4))
    with pytest.raises(ValueError, match="has no frame"):
        head_from_config(LearnableHead(8, 5).get_config(), etf(5, 4))


@pytest.mark.parametrize("head", [FixedFrameHead(8, etf(), scale=3.0), LearnableHead(8, 5)])
def test_heads_trace_with_torch_fx(head):
    # The input check must not break symbolic tracing (torchvision's feature extractor).
    # Traced as the root module, the return_features flag must be fixed (FX cannot branch
    # on a traced bool); inside a model the default (False) is used.
    traced = torch.fx.symbolic_trace(head.eval(), concrete_args={"return_features": False})
    x = batch()
    assert torch.equal(traced(x), head(x))
    model = nn.Sequential(nn.Linear(4, 8), head)
    assert torch.equal(torch.fx.symbolic_trace(model)(x[:, :4]), model(x[:, :4]))


# ----------------------------------------------- [L23]'s official head options (issue 25)


def _prelus(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.PReLU)]


def test_haframe_neck_per_channel_prelu_and_leading_bn_momentum():
    frame = torch.eye(6, 6)
    shared = FixedFrameHead(6, frame, neck="haframe")
    official = FixedFrameHead(6, frame, neck="haframe", prelu="per_channel", bn_momentum=0.001)
    assert [p.weight.numel() for p in _prelus(shared)] == [1, 1, 1, 1]
    assert [p.weight.numel() for p in _prelus(official)] == [6, 6, 6, 6]
    leading = official.neck[0]
    assert isinstance(leading, torch.nn.BatchNorm1d) and leading.momentum == 0.001
    inner = [m.momentum for m in official.neck[1:].modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert inner == [0.1] * 4  # the transformation module's own BatchNorms keep 0.1
    # identical at initialisation (all slopes 0.25): same outputs from the same weights
    official.load_state_dict(
        {
            k: (v.expand_as(official.state_dict()[k]) if "neck" in k and v.numel() == 1 else v)
            for k, v in shared.state_dict().items()
        }
    )
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    shared.eval(), official.eval()
    assert torch.equal(shared(x), official(x))


def test_neck_momentum_moves_running_statistics_at_its_rate():
    head = FixedFrameHead(4, torch.eye(3, 4), neck="bn_l2", bn_momentum=0.001)
    x = 10.0 + torch.randn(32, 4, generator=torch.Generator().manual_seed(1))
    head.train()
    head(x)
    running = head.neck[0].running_mean
    assert torch.allclose(running, 0.001 * x.mean(dim=0), atol=1e-6)


def test_head_options_round_trip_through_get_config():
    head = FixedFrameHead(5, torch.eye(5), neck="haframe", prelu="per_channel", bn_momentum=0.01)
    config = head.get_config()
    assert config["prelu"] == "per_channel" and config["bn_momentum"] == 0.01
    copy = head_from_config(config, frame=head.frame)
    assert [p.weight.numel() for p in _prelus(copy)] == [5, 5, 5, 5]
    older = {k: v for k, v in config.items() if k not in ("prelu", "bn_momentum")}
    assert [p.weight.numel() for p in _prelus(head_from_config(older, frame=head.frame))] == [
        1,
        1,
        1,
        1,
    ]


@pytest.mark.parametrize(
    "kwargs, message",
    [({"prelu": "channel"}, "prelu must be one of"), ({"bn_momentum": 0.0}, "bn_momentum")],
)
def test_bad_neck_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FixedFrameHead(4, torch.eye(4), neck="haframe", **kwargs)


@pytest.mark.parametrize("head_kind", ["fixed", "learnable"])
def test_features_of_another_float_dtype_are_one_clear_error(head_kind):
    head = (
        FixedFrameHead(4, torch.eye(3, 4), neck="bn")
        if head_kind == "fixed"
        else LearnableHead(4, 3, neck="bn")
    )
    with pytest.raises(ValueError, match=r"features are torch.float64 but the head's weights"):
        head(torch.zeros(2, 4, dtype=torch.float64))
    assert head.double()(torch.zeros(2, 4, dtype=torch.float64)).dtype == torch.float64
