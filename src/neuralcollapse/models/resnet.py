"""ResNet-18 and ResNet-50 backbones with a CIFAR or ImageNet stem and [Z21]'s ``feature_dim``
option: the last block of the last stage outputs ``feature_dim`` channels (its shortcut
becomes a 1x1 conv + BN), so a fixed d = K frame needs no extra layer and the big final block
shrinks (ResNet-18, K = 10: about 2.3 M fewer parameters)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Backbone
from .resnet_cifar import _init_weights

__all__ = ["ResNet", "resnet18", "resnet50"]

STEMS = ("cifar", "imagenet")


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _projection(in_ch, out_ch, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class _Bottleneck(nn.Module):
    """torchvision's "v1.5" bottleneck: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _projection(in_ch, out_ch, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.shortcut is None else self.shortcut(x)))


def _projection(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class ResNet(Backbone):
    """ResNet backbone returning (B, feature_dim) pooled features.

    Args:
        block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50/101).
        layers: blocks per stage, e.g. (2, 2, 2, 2).
        stem: ``"cifar"`` (3x3 conv, stride 1, no max-pool: for 32x32 inputs) or
            ``"imagenet"`` (7x7 conv stride 2 + 3x3 max-pool).
        feature_dim: None keeps the standard width (512 * expansion); an int makes the last
            block output that many channels ([Z21]'s d = K backbone).
        in_channels: input channels.
    """

    def __init__(
        self,
        block: str,
        layers: tuple[int, ...],
        stem: str = "cifar",
        feature_dim: int | None = None,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        unit = {"basic": _Basic, "bottleneck": _Bottleneck}.get(block)
        if unit is None:
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        if feature_dim is not None and (isinstance(feature_dim, bool) or feature_dim < 1):
            raise ValueError(f"feature_dim must be None or a positive integer, got {feature_dim!r}")
        self.stem = _stem(stem, in_channels)
        stages, in_ch = [], 64
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            blocks = []
            for j in range(count):
                out_ch = planes * unit.expansion
                if feature_dim is not None and i == len(layers) - 1 and j == count - 1:
                    out_ch = feature_dim
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(unit(in_ch, planes, stride, out_ch))
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.feature_dim = in_ch
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        out = self.stages(self.stem(x))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)


def _stem(kind: str, in_channels: int) -> nn.Sequential:
    if kind == "cifar":
        conv = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        return nn.Sequential(conv, nn.BatchNorm2d(64), nn.ReLU(inplace=True))
    conv = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    pool = nn.MaxPool2d(3, 2, 1)
    return nn.Sequential(conv, nn.BatchNorm2d(64), nn.ReLU(inplace=True), pool)


def resnet18(stem: str = "cifar", feature_dim: int | None = None, in_channels: int = 3) -> ResNet:
    """ResNet-18 backbone; d = 512, or ``feature_dim``."""
    return ResNet("basic", (2, 2, 2, 2), stem, feature_dim, in_channels)


def resnet50(stem: str = "cifar", feature_dim: int | None = None, in_channels: int = 3) -> ResNet:
    """ResNet-50 backbone; d = 2048, or ``feature_dim``."""
    return ResNet("bottleneck", (3, 4, 6, 3), stem, feature_dim, in_channels)
