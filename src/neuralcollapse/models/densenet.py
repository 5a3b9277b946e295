"""DenseNet-BC for 32 x 32 inputs (Huang et al. 2017), [Y22]'s second CIFAR backbone.

Three dense blocks of ``(depth - 4) // 6`` bottleneck layers (BN-ReLU-1x1 conv to
4 * growth channels, BN-ReLU-3x3 conv to ``growth_rate`` channels, concatenated to the
input), joined by transitions (BN-ReLU-1x1 conv to ``floor(compression * channels)``,
2x2 average pooling); a 3x3 stem conv to 2 * growth channels; a final BN-ReLU and global
average pooling. DenseNet-BC-150-12 (``densenet_bc(150, 12)``, [Y22] train.py:148) has
d = 510: 24 -> 312 -> 156 -> 444 -> 222 -> 510 channels, and 1,509,780 parameters
(counted in tests/test_recipes.py from this definition, independently of the module).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Backbone
from .resnet_cifar import _init_weights

__all__ = ["DenseNetBC", "densenet_bc"]


class _Bottleneck(nn.Module):
    def __init__(self, in_ch: int, growth_rate: int) -> None:
        super().__init__()
        inner = 4 * growth_rate
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, inner, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, growth_rate, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class _Transition(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.avg_pool2d(self.conv(self.relu(self.bn(x))), 2)


class DenseNetBC(Backbone):
    """DenseNet-BC returning (B, feature_dim) pooled features.

    Args:
        depth: nominal depth; each block has ``(depth - 4) // 6`` bottleneck layers
            (150: 24, as [Y22]'s code rounds it).
        growth_rate: channels each layer adds (k).
        compression: fraction of the channels a transition keeps (the "C" of BC).
        in_channels: input channels.
    """

    def __init__(
        self,
        depth: int = 150,
        growth_rate: int = 12,
        compression: float = 0.5,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or depth < 10:
            raise ValueError(f"depth must be an integer >= 10 (e.g. 100, 150), got {depth!r}")
        if isinstance(growth_rate, bool) or growth_rate < 1:
            raise ValueError(f"growth_rate must be a positive integer, got {growth_rate!r}")
        if not 0 < compression <= 1:
            raise ValueError(f"compression must be in (0, 1], got {compression!r}")
        # [Y22]'s DenseNet3 takes int((depth - 4) / 6) layers per block, so depth 150 (not
        # of the form 6 n + 4) gives 24 (their models/densenet.py:82-88).
        layers = (depth - 4) // 6
        channels = 2 * growth_rate
        self.stem = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        stages: list[nn.Module] = []
        for block in range(3):
            units = []
            for i in range(layers):
                units.append(_Bottleneck(channels + i * growth_rate, growth_rate))
            stages.append(nn.Sequential(*units))
            channels += layers * growth_rate
            if block < 2:
                reduced = math.floor(channels * compression)
                stages.append(_Transition(channels, reduced))
                channels = reduced
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.feature_dim = channels
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) images -> (B, feature_dim) features."""
        out = self.relu(self.bn(self.stages(self.stem(x))))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)


def densenet_bc(
    depth: int = 150, growth_rate: int = 12, compression: float = 0.5, in_channels: int = 3
) -> DenseNetBC:
    """DenseNet-BC backbone; the defaults are [Y22]'s DenseNet-BC-150-12 (d = 510)."""
    return DenseNetBC(depth, growth_rate, compression, in_channels)
