"""Small backbones sized for the embedded 8x8 digits (1 channel, 64 pixels)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import Backbone

__all__ = ["MLP", "SmallCNN"]


class MLP(Backbone):
    """Flatten, then (Linear -> BatchNorm1d -> ReLU) per width; d = ``feature_dim``.

    Args:
        in_features: input size after flattening (64 for 8x8 digits).
        hidden: widths of the hidden layers before the feature layer.
        feature_dim: width of the last layer, whose output are the features.
    """

    def __init__(
        self, in_features: int = 64, hidden: Sequence[int] = (128,), feature_dim: int = 64
    ) -> None:
        super().__init__()
        widths = [in_features, *hidden, feature_dim]
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"layer widths must be positive integers, got {widths}")
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        self.in_features = in_features
        self.feature_dim = feature_dim

    def forward(self, x: Tensor) -> Tensor:
        if x[0].numel() != self.in_features:
            raise ValueError(
                f"MLP built for {self.in_features} inputs per sample, got shape {tuple(x.shape)}"
            )
        return self.net(x)


class SmallCNN(Backbone):
    """Three 3x3 conv -> BN -> ReLU layers (the second with stride 2), global average pool;
    55,904 parameters with the defaults. Input (B, in_channels, H, W), H, W >= 2.

    Args:
        in_channels: 1 for digits.
        widths: channels of the first two conv layers.
        feature_dim: channels of the last conv layer = d.
    """

    def __init__(
        self, in_channels: int = 1, widths: Sequence[int] = (32, 64), feature_dim: int = 64
    ) -> None:
        super().__init__()
        chans = [in_channels, *widths, feature_dim]
        if len(widths) != 2 or any(not isinstance(c, int) or c < 1 for c in chans):
            raise ValueError(f"need two positive widths and positive channels, got {chans}")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:], strict=True)):
            conv = nn.Conv2d(a, b, 3, 2 if i == 1 else 1, 1, bias=False)
            layers += [conv, nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        self.feature_dim = feature_dim

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.net(x), 1), 1)
