"""What a registered loss builder is given: :class:`LossContext`.

A loss is added by one decorated function (``neuralcollapse.registry.register_loss``)
that takes a :class:`LossContext` and returns an ``nn.Module``::

    @register_loss("my_loss", reads="logits", options=MyOptions)
    def build_my_loss(ctx: LossContext) -> nn.Module:
        return MyLoss(ctx.num_classes, strength=ctx.options.strength)

``reads="logits"`` losses are called ``loss(logits, targets)`` with (B, K) logits,
``reads="features"`` losses ``loss(h, targets, frame)`` with the head's (B, d) features
and its (K, d) frame (fixed-frame heads only). ``targets`` are (B,) labels or mixup
``(y_a, y_b, lam)``. Metadata the trainer reads besides ``reads``: ``weighted=True`` (the
module has ``set_class_weight``; ``loss.class_weight`` and ``loss.drw_epoch`` apply),
``hierarchy=True`` (the loss needs the class tree; a config without one is refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

    from neuralcollapse.hierarchy import ClassDistances, Hierarchy
    from neuralcollapse.train.config import Config

__all__ = ["LossContext"]


@dataclass(frozen=True)
class LossContext:
    """Everything a loss builder may read.

    Attributes:
        config: the whole run config (built-in losses read their flat ``loss.*`` keys).
        options: the entry's own options dataclass filled from ``loss.options`` (None
            when the entry declares none).
        num_classes: K.
        class_counts: (K,) training samples per class, or None when not known.
        hierarchy: the run's class tree or distances, or None.
        frame: the (K, d) fixed frame of the head, or None for a learnable head.
        class_weight: (K,) class weights from the first epoch (``loss.class_weight``), or
            None; deferred re-weighting sets later weights through ``set_class_weight``.
    """

    config: Config
    options: Any = None
    num_classes: int = 0
    class_counts: Tensor | None = None
    hierarchy: Hierarchy | ClassDistances | None = None
    frame: Tensor | None = None
    class_weight: Tensor | None = None

    @property
    def counts(self) -> Tensor:
        """The (K,) training class counts.

        Raises:
            ValueError: they were not given (the loss needs them).
        """
        if self.class_counts is None:
            raise ValueError(
                f"loss.name={self.config.loss.name!r} needs the training class counts: pass "
                "class_counts=data.train_counts to build_loss"
            )
        return self.class_counts

    @property
    def head_frame(self) -> Tensor:
        """The head's (K, d) frame.

        Raises:
            ValueError: the head is learnable (it has no fixed frame).
        """
        if self.frame is None:
            raise ValueError(
                f"loss.name={self.config.loss.name!r} reads a fixed frame, but the head is "
                "learnable"
            )
        return self.frame
