"""collect() on models whose classifier is one of this package's heads (issue 18).

The models are "torchvision-style" (a ResNet-like module whose classifier is ``model.fc``),
built by hand: PyPI's torchvision cannot be installed beside the CPU torch 2.13.0 this
project tests with (its operators fail to load), so FX tracing is checked with
``torch.fx.symbolic_trace``, the tracer that torchvision's ``create_feature_extractor``
subclasses; where torchvision is importable, ``create_feature_extractor`` itself is run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.fx
from torch import nn

from neuralcollapse.data import shot_groups
from neuralcollapse.frames import simplex_etf
from neuralcollapse.heads import FixedFrameHead, LearnableHead
from neuralcollapse.metrics import AccuracyCounter, collapse_report, collect
from neuralcollapse.metrics.collect import collect_evaluation

K, FEATURES, DIM = 5, 32, 8


class TinyResNet(nn.Module):
    """torchvision's ResNet layout: conv1, bn1, relu, layer1, avgpool, flatten, fc."""

    def __init__(self, fc: nn.Module) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, FEATURES, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(FEATURES)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(nn.Conv2d(FEATURES, FEATURES, 3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = fc

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(self.relu(self.bn1(self.conv1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x))


def _model(scale: float = 3.0, neck: str = "bn_l2") -> TinyResNet:
    torch.manual_seed(0)
    head = FixedFrameHead(FEATURES, simplex_etf(K, DIM, seed=1), neck=neck, scale=scale)
    model = TinyResNet(head)
    # Give the BN layers non-trivial running statistics, then evaluate in eval mode.
    with torch.no_grad():
        model.train()(torch.randn(64, 3, 6, 6, generator=torch.Generator().manual_seed(5)))
    return model.eval()


def _loader(n: int = 90, batch: int = 30):
    gen = torch.Generator().manual_seed(2)
    y = torch.arange(n) % K
    x = torch.randn(n, 3, 6, 6, generator=gen) + y.view(-1, 1, 1, 1) * 0.5
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)], x, y


def _frame_features(model: TinyResNet, x: torch.Tensor) -> torch.Tensor:
    """Independent of collect: the head's neck applied to the pooled backbone output."""
    with torch.no_grad():
        pooled = model.backbone(x)
        return model.fc.neck(model.fc.projection(pooled))


def _assert_same(expected, got, rtol=1e-6):
    for name, value in expected.to_dict().items():
        other = got.to_dict()[name]
        if isinstance(value, float):
            assert other == pytest.approx(value, rel=rtol, abs=1e-9), name
        else:
            assert other == value, name


def test_collect_measures_the_features_the_frame_sees_and_nc3():
    model = _model()
    loader, x, y = _loader()
    report = collect(model, loader, layer="fc")
    assert report.dim == DIM  # the frame's dimension, not the 32-d backbone output
    h = _frame_features(model, x)
    expected = collapse_report(h, y, classifier=3.0 * model.fc.frame)
    _assert_same(expected, report)
    assert report.nc3_zhu is not None and report.nc3_self_duality is not None
    assert report.nc4_ncc_mismatch is not None
    # NC3 by hand (float64): Zhu et al.'s distance of W M~^T to the normalised centred ETF.
    h64, w = h.double(), 3.0 * model.fc.frame.double()
    means = torch.stack([h64[y == k].mean(0) for k in range(K)])
    centred = means - h64.mean(0)
    product = w @ centred.T
    target = (torch.eye(K) - torch.ones(K, K) / K).double() / np.sqrt(K - 1)
    by_hand = torch.linalg.norm(product / torch.linalg.norm(product) - target)
    assert report.nc3_zhu == pytest.approx(float(by_hand), rel=1e-6)


def test_the_head_as_classifier_argument_equals_the_default():
    model = _model()
    loader, _, _ = _loader()
    assert collect(model, loader, layer="fc", classifier=model.fc) == collect(
        model, loader, layer="fc"
    )


def test_classifier_of_the_wrong_width_names_the_layer_and_the_widths():
    model = _model()
    loader, _, _ = _loader()
    wide = torch.randn(K, FEATURES)
    with pytest.raises(ValueError, match=r"is \(5, 32\).*FixedFrameHead.features\(\).*'fc'.*8-dim"):
        collect(model, loader, layer="fc", classifier=wide)
    with pytest.raises(ValueError, match=r"looks transposed.*W\.T"):
        collect(model, loader, layer="fc", classifier=model.fc.weight.T.contiguous())


def test_errors_name_the_layer_and_what_was_found():
    model = _model()
    loader, _, _ = _loader()
    with pytest.raises(ValueError, match=r"layer 'layer1' \(Sequential\) are \(30, 32, 6, 6\)"):
        collect(model, loader, layer="layer1")
    model.unused = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"layer 'unused' \(Linear\) was not called"):
        collect(model, loader, layer="unused")


def test_a_learnable_cosine_head_is_measured_after_its_normalisation():
    torch.manual_seed(0)
    model = TinyResNet(LearnableHead(FEATURES, K, bias=False, cosine=True)).eval()
    loader, x, y = _loader()
    report = collect(model, loader, layer="fc")
    with torch.no_grad():
        h = model.fc.features(model.backbone(x))
    assert torch.allclose(h.norm(dim=1), torch.ones(len(y)))
    _assert_same(collapse_report(h, y, classifier=model.fc.weight), report)


class _CustomHead(nn.Module):
    """Not a package head: any module with features() and a (K, d) weight works."""

    def __init__(self) -> None:
        super().__init__()
        self.reduce = nn.Linear(FEATURES, 6)
        self.rows = nn.Parameter(torch.randn(K, 6, generator=torch.Generator().manual_seed(9)))

    @property
    def weight(self) -> torch.Tensor:
        return 2.0 * self.rows

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.reduce(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x) @ self.weight.T


def test_any_head_with_features_and_weight_is_measured_in_its_own_space():
    torch.manual_seed(0)
    model = TinyResNet(_CustomHead()).eval()
    loader, x, y = _loader()
    report = collect(model, loader, layer="fc")
    with torch.no_grad():
        h = model.fc.features(model.backbone(x))
    assert report.dim == 6
    _assert_same(collapse_report(h, y, classifier=model.fc.weight), report)


def test_fixed_frame_head_traces_with_torch_fx():
    model = _model()
    loader, x, _ = _loader()
    traced = torch.fx.symbolic_trace(model)
    assert torch.equal(traced(x), model(x))
    # The frame-space features are a node of the graph, as create_feature_extractor needs.
    targets = [node for node in traced.graph.nodes if node.target == "fc.neck.0"]
    assert targets, [node.target for node in traced.graph.nodes]
    # A traced bare head with return_features=True gives the same pair as the head.
    head = model.fc
    traced_head = torch.fx.symbolic_trace(head, concrete_args={"return_features": True})
    pooled = model.backbone(x)
    pair = head(pooled, return_features=True)
    for got, expected in zip(traced_head(pooled, True), pair, strict=True):
        assert torch.equal(got, expected)


def test_torchvision_feature_extractor_when_torchvision_is_importable():
    try:
        from torchvision.models.feature_extraction import create_feature_extractor
    except Exception as err:  # noqa: BLE001 - any import failure means "not usable here"
        pytest.skip(f"torchvision is not importable beside this torch ({type(err).__name__})")
    model = _model()
    _, x, _ = _loader()
    extractor = create_feature_extractor(model, {"fc.neck": "h", "fc": "logits"})
    out = extractor(x)
    assert torch.equal(out["logits"], model(x))
    assert torch.equal(out["h"], _frame_features(model, x))


def test_collect_evaluation_adds_shot_group_accuracy_from_the_shot_groups_object():
    model = _model()
    loader, x, y = _loader()
    train_counts = torch.tensor([300, 150, 60, 30, 10])
    groups = shot_groups(train_counts)
    evaluation = collect_evaluation(model, loader, layer="fc", groups=groups)
    with torch.no_grad():
        predictions = model(x).argmax(1)
    per_class = [float((predictions[y == k] == k).double().mean()) for k in range(K)]
    assert evaluation.metrics["top1"] == pytest.approx(float((predictions == y).double().mean()))
    assert evaluation.metrics["many"] == pytest.approx(np.mean(per_class[0:2]))
    assert evaluation.metrics["medium"] == pytest.approx(np.mean(per_class[2:4]))
    assert evaluation.metrics["few"] == pytest.approx(per_class[4])
    assert evaluation.report == collect(model, loader, layer="fc")


def test_accuracy_counter_takes_the_shot_groups_object_at_construction():
    gen = torch.Generator().manual_seed(4)
    logits, labels = torch.randn(50, K, generator=gen), torch.arange(50) % K
    groups = shot_groups(torch.tensor([300, 150, 60, 30, 10]))
    built = AccuracyCounter(K, groups=groups)
    built.update(logits, labels)
    plain = AccuracyCounter(K)
    plain.update(logits, labels)
    assert built.compute() == plain.compute(groups) == plain.compute(groups.as_dict())
    hits = (logits.argmax(1) == labels).double()
    per_class = [float(hits[labels == k].mean()) for k in range(K)]
    assert built.compute()["few"] == pytest.approx(per_class[4])
    assert "many" not in plain.compute()
    # An explicit argument replaces the constructor's groups.
    assert built.compute({"odd": [1, 3]}).keys() == plain.compute({"odd": [1, 3]}).keys()
    with pytest.raises(ValueError, match=r"groups\['medium'\] contains 3, outside the classes"):
        AccuracyCounter(3, groups=groups)
