"""Turn a checked :class:`Config` into the objects of a run: model, loss, optimiser, schedule."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from neuralcollapse import models
from neuralcollapse.frames import (
    hierarchy_aware_frame,
    hierarchy_similarity,
    simplex_etf,
    spread_frame,
)
from neuralcollapse.heads import FixedFrameHead, LearnableHead
from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.losses import CosineFrameLoss, DotRegressionLoss, SoftLabelCrossEntropy
from neuralcollapse.train.config import Config, ConfigError

__all__ = ["Classifier", "build_loss", "build_model", "build_optimizer", "build_scheduler"]


class Classifier(nn.Module):
    """Backbone + head: ``forward(x, return_features=False)`` like the heads themselves."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor, return_features: bool = False):
        return self.head(self.backbone(x), return_features=return_features)


def build_frame(
    config: Config, num_classes: int, feature_dim: int, hierarchy: Hierarchy | None
) -> Tensor:
    """The fixed frame of a run, drawn from head.frame_seed (default train.seed)."""
    head = config.head
    seed = config.train.seed if head.frame_seed is None else head.frame_seed
    if head.kind == "haframe":
        return hierarchy_aware_frame(hierarchy, gamma=head.gamma, dim=head.dim, seed=seed)
    dim = head.dim or feature_dim
    if head.kind == "etf":
        if dim < num_classes - 1:
            raise ConfigError(
                f"head.kind='etf' with d={dim} < K-1={num_classes - 1}: no simplex ETF exists; "
                f"set head.dim >= {num_classes - 1} or head.kind='spread'"
            )
        return simplex_etf(num_classes, dim, seed=seed)
    return spread_frame(num_classes, dim, seed=seed)


def _input_options(name: str, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Defaults that follow the data: input channels, or input size for the MLP."""
    if name == "mlp":
        return {"in_features": int(torch.tensor(input_shape).prod())}
    if name.startswith("timm:"):
        return {}
    return {"in_channels": input_shape[0]}


def build_model(
    config: Config,
    num_classes: int,
    input_shape: tuple[int, ...],
    hierarchy: Hierarchy | None = None,
) -> Classifier:
    """Backbone from ``model`` and head from ``head``, initialised from train.seed.

    ``input_shape`` (C, H, W) of one sample fills the backbone's input options unless the
    config sets them.
    """
    options = {**_input_options(config.model.name, input_shape), **config.model.options}
    backbone = models.build(config.model.name, seed=config.train.seed, **options)
    feature_dim = backbone.feature_dim
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed + 1)  # head init (projection, neck), reproducible
        if config.head.kind == "learnable":
            head: nn.Module = LearnableHead(
                feature_dim, num_classes, bias=config.head.bias, neck=config.head.neck
            )
        else:
            frame = build_frame(config, num_classes, feature_dim, hierarchy)
            head = FixedFrameHead(
                feature_dim, frame, neck=config.head.neck, scale=config.head.scale
            )
    return Classifier(backbone, head)


def build_loss(config: Config, model: Classifier, hierarchy: Hierarchy | None) -> nn.Module:
    """The training loss. Logit losses (``ce``, ``soft_ce``) take ``(logits, targets)``;
    frame losses (``dr``, ``cosine_frame``) take ``(h, targets, frame)``."""
    cfg = config.loss
    if cfg.name == "ce":
        return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if cfg.name == "soft_ce":
        return SoftLabelCrossEntropy(hierarchy.lca_heights(), beta=cfg.beta)
    if cfg.name == "dr":
        return DotRegressionLoss(
            form=cfg.form,
            feature_budget=cfg.feature_budget,
            batch_reweight=cfg.batch_reweight,
            norm_penalty=cfg.norm_penalty,
        )
    frame = model.head.frame.to(torch.float64)
    if config.head.kind == "haframe":
        similarity = hierarchy_similarity(hierarchy, gamma=config.head.gamma).matrix
    else:
        unit = frame / frame.norm(dim=1, keepdim=True)
        similarity = unit @ unit.T  # the frame's own Gram: pull features onto it
    return CosineFrameLoss(similarity.float(), alpha=cfg.alpha)


def _parameter_groups(config: Config, model: Classifier) -> list[dict]:
    """Optimiser groups: backbone vs head (the backbone's lr scaled by
    ``optim.backbone_lr_scale``), each split into decayed and non-decayed parameters when
    ``optim.no_decay_norm_and_bias`` is set (norm layers and biases get no weight decay)."""
    cfg = config.optim
    norm_types = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
    groups = []
    for part, lr in ((model.backbone, cfg.lr * cfg.backbone_lr_scale), (model.head, cfg.lr)):
        decay, no_decay = [], []
        for module in part.modules():
            for name, param in module.named_parameters(recurse=False):
                if not param.requires_grad:
                    continue
                exempt = cfg.no_decay_norm_and_bias and (
                    isinstance(module, norm_types) or name == "bias"
                )
                (no_decay if exempt else decay).append(param)
        for params, weight_decay in ((decay, cfg.weight_decay), (no_decay, 0.0)):
            if params:
                groups.append({"params": params, "weight_decay": weight_decay, "lr": lr})
    return groups


def build_optimizer(config: Config, model: Classifier) -> torch.optim.Optimizer:
    cfg = config.optim
    groups = _parameter_groups(config, model)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def lr_factor(config: Config, step: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based).

    Linear warm-up over ``schedule.warmup_epochs`` (step 0 already takes a 1/warm-up-steps
    share), then per epoch: ``multistep`` multiplies by ``gamma`` at every milestone passed,
    ``cosine`` decays smoothly (per step) to ``min_lr`` at the end of training.
    """
    sched, epochs = config.schedule, config.train.epochs
    steps = max(steps_per_epoch, 1)
    warmup_steps = sched.warmup_epochs * steps
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    epoch = step / steps
    if sched.name == "multistep":
        return sched.gamma ** sum(1 for m in sched.milestones if epoch >= m)
    if sched.name == "cosine":
        total = max(epochs * steps - warmup_steps, 1)
        t = min((step - warmup_steps) / total, 1.0)
        floor = sched.min_lr / config.optim.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


def build_scheduler(
    config: Config, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LambdaLR following :func:`lr_factor` (its state goes into checkpoints)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(config, step, steps_per_epoch)
    )
