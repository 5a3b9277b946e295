"""Any timm model as a feature backbone (``pip install timm`` after the torchvision that
matches your torch: timm is no extra of this package, see its ImportError)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from neuralcollapse._internal.optional import optional_import

from .base import Backbone

__all__ = ["TimmBackbone"]


class TimmBackbone(Backbone):
    """``timm.create_model(name, num_classes=0, ...)``: timm's own classifier is removed, so
    ``forward`` returns its pooled (B, num_features) features; ``feature_dim = num_features``.

    Args:
        name: a timm model name (``timm.list_models()``).
        pretrained: load timm's pretrained weights (downloads them; needs internet).
        **kwargs: passed to ``timm.create_model`` (e.g. ``in_chans``, ``drop_rate``).
    """

    def __init__(self, name: str, pretrained: bool = False, **kwargs: Any) -> None:
        super().__init__()
        timm = optional_import(
            "timm",
            package="timm",
            purpose=f"model 'timm:{name}'",
            install=(
                "timm requires torchvision, whose every release pins one torch release: first "
                f"install the torchvision built for your torch {torch.__version__} (or pip "
                "replaces torch), then pip install timm"
            ),
        )
        try:
            self.model = timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
        except RuntimeError as err:
            if "unknown model" not in str(err).lower():
                raise
            raise ValueError(f"timm has no model {name!r}; see timm.list_models()") from err
        self.feature_dim = int(self.model.num_features)
        self.name = name

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        if out.dim() != 2:
            raise ValueError(
                f"timm model {self.name!r} returned shape {tuple(out.shape)}, expected pooled "
                f"(B, {self.feature_dim}) features"
            )
        return out
