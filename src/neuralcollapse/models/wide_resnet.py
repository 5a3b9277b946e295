"""Wide ResNets (Zagoruyko & Komodakis 2016) for 32x32 inputs: WRN-depth-k.

Three stages of pre-activation basic blocks with widths 16k, 32k and 64k, n = (depth-4)/6
blocks each, then BN-ReLU and global average pooling; d = 64k. WRN-28-8 (d = 512) is the
backbone [L23] uses on CIFAR-100.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .base import Backbone

__all__ = ["WideResNet", "wide_resnet"]


class _PreActBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.project = (
            nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)
            if stride != 1 or in_ch != out_ch
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        activated = F.relu(self.bn1(x))
        # The projection reads the activated input, as in the original pre-activation design.
        shortcut = x if self.project is None else self.project(activated)
        out = self.conv1(activated)
        out = F.relu(self.bn2(out))
        if self.dropout:
            out = F.dropout(out, self.dropout, self.training)
        return self.conv2(out) + shortcut


class WideResNet(Backbone):
    """WRN-``depth``-``width`` feature extractor: (B, C, 32, 32) -> (B, 64 * width).

    Args:
        depth: 6n + 4 (28 gives n = 4).
        width: the widening factor k.
        dropout: dropout between the convolutions of each block (0 = none).
        in_channels: input channels.
    """

    def __init__(
        self, depth: int = 28, width: int = 8, dropout: float = 0.0, in_channels: int = 3
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or (depth - 4) % 6 or depth < 10:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an integer >= 1, got {width!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        blocks = (depth - 4) // 6
        widths = (16, 16 * width, 32 * width, 64 * width)
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers: list[nn.Module] = []
        for stage, (in_ch, out_ch) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(_PreActBlock(in_ch if i == 0 else out_ch, out_ch, stride, dropout))
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(widths[-1])
        self.feature_dim = widths[-1]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


def wide_resnet(
    depth: int = 28, width: int = 8, dropout: float = 0.0, in_channels: int = 3
) -> WideResNet:
    """WRN-depth-width; ``wide_resnet(28, 8)`` is WRN-28-8 (d = 512)."""
    return WideResNet(depth, width, dropout, in_channels)
