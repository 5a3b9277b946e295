"""What every backbone promises: ``forward(x) -> (B, feature_dim)`` features, no classifier."""

from __future__ import annotations

from torch import nn

__all__ = ["Backbone", "count_parameters"]


class Backbone(nn.Module):
    """Base class of the model zoo. Subclasses set ``feature_dim`` (d) and return (B, d)
    features from ``forward``; the classifier head is a separate module (``nc.heads``)."""

    feature_dim: int


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameter entries (only those with ``requires_grad`` by default).

    Buffers, such as a fixed frame stored as a buffer or BatchNorm running statistics, are
    not parameters and are never counted.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
