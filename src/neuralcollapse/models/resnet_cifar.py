"""The CIFAR ResNets of He et al. (2016), depth 6n + 2 (ResNet-32: n = 5), as used by the
CIFAR-LT literature (LDAM, MiSLAS, [Y22]): three stages of widths 16/32/64 times ``width``,
so d = 64 * width (``width=2`` gives the d = 128 model [Y22] uses on CIFAR-100)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Backbone

__all__ = ["CifarResNet", "resnet32"]

SHORTCUTS = ("A", "B")


class _CifarBlock(nn.Module):
    """Two 3x3 convs. Shortcut "A": parameter-free (stride-2 subsample, zero-padded channels),
    the original CIFAR choice; "B": 1x1 conv + BN whenever the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.stride, self.pad = stride, out_ch - in_ch
        self.project: nn.Module | None = None
        if shortcut == "B" and (stride != 1 or in_ch != out_ch):
            self.project = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self._shortcut(x))

    def _shortcut(self, x: Tensor) -> Tensor:
        if self.project is not None:
            return self.project(x)
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x


class CifarResNet(Backbone):
    """CIFAR ResNet backbone. Input (B, in_channels, H, W) (32x32 for CIFAR); output
    (B, 64 * width) features after global average pooling.

    Args:
        depth: 6n + 2 (20, 32, 44, 56, 110, ...).
        width: channel multiplier (integer >= 1).
        in_channels: input channels.
        shortcut: ``"A"`` (parameter-free, default) or ``"B"`` (projection).
    """

    def __init__(
        self, depth: int = 32, width: int = 1, in_channels: int = 3, shortcut: str = "A"
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 56, ...), got {depth}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an integer >= 1, got {width!r}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        if shortcut == "A" and width * 16 % 2:
            raise ValueError("shortcut 'A' needs even channel counts")
        n = (depth - 2) // 6
        widths = [16 * width, 32 * width, 64 * width]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks, in_ch = [], widths[0]
        for stage, out_ch in enumerate(widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(_CifarBlock(in_ch, out_ch, stride, shortcut))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = widths[-1]
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1)


def resnet32(width: int = 1, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """ResNet-32 for CIFAR: d = 64 * width."""
    return CifarResNet(32, width, in_channels, shortcut)


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
