"""Turn a checked :class:`Config` into the objects of a run: model, loss, optimiser, schedule."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from neuralcollapse import models
from neuralcollapse._internal.seeding import derive_seed
from neuralcollapse.errors import usage_errors
from neuralcollapse.frames import build_frame, unreachable_classes
from neuralcollapse.heads import NONNEGATIVE_NECKS, FixedFrameHead, LearnableHead
from neuralcollapse.hierarchy import ClassDistances, Hierarchy
from neuralcollapse.losses import LossContext, mixup_loss
from neuralcollapse.losses.longtail import class_balanced_weights, deferred_reweighting
from neuralcollapse.registry import FRAMES, LOSSES
from neuralcollapse.train.config import LEARNABLE, Config, ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "SMALL_MODEL_MACS",
    "Classifier",
    "RunLoss",
    "build_loss",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "forward_macs",
    "run_frame",
    "run_threads",
]

#: ``train.num_threads=auto`` runs on one CPU thread when one training micro-batch's
#: forward pass takes fewer multiply-accumulates than this (the digits default: 3e7;
#: a CIFAR ResNet-32 at batch 128: 9e9). Below it the operations are so small that
#: synchronising two or more threads costs more than it saves, badly so on a busy machine
#: (measured: benchmarks/RESULTS.md, one training epoch of the digits default).
SMALL_MODEL_MACS = 1_000_000_000


class Classifier(nn.Module):
    """Backbone + head: ``forward(x, return_features=False)`` like the heads themselves."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor, return_features: bool = False):
        return self.head(self.backbone(x), return_features=return_features)


def run_frame(
    config: Config,
    num_classes: int,
    feature_dim: int,
    hierarchy: Hierarchy | ClassDistances | None,
) -> Tensor:
    """The fixed frame of a run (:func:`neuralcollapse.frames.build_frame`, the frame
    registered as head.kind with head.options), drawn from head.frame_seed (default
    train.seed); the frame dimension is head.dim, else the backbone's feature dimension
    (for a hierarchy frame: head.dim, else its own choice, the rank of its S).

    When the features meet the frame without a projection through a neck that keeps
    them non-negative (:data:`~neuralcollapse.heads.NONNEGATIVE_NECKS`: ``none``, and
    ``l2``, since normalising a non-negative vector keeps it non-negative) they are
    non-negative (every backbone of the zoo ends in a ReLU), so a class whose decision
    region misses the non-negative orthant could never be predicted: such a frame is
    refused (:func:`neuralcollapse.frames.unreachable_classes`), or with
    ``head.allow_unreachable=true`` logged as a warning.
    """
    head = config.head
    entry = FRAMES.get(head.kind)
    seed = config.train.seed if head.frame_seed is None else head.frame_seed
    tree_frame = entry.meta.get("hierarchy", False)
    dim = head.dim if tree_frame else head.dim or feature_dim
    min_dim = entry.meta.get("min_dim")
    if dim is not None and min_dim is not None and dim < min_dim(num_classes):
        rule = entry.meta.get("min_dim_rule", "its minimum")
        raise ConfigError(
            f"head.kind={head.kind!r} with d={dim} < {rule}={min_dim(num_classes)}: no such "
            f"frame exists; set head.dim >= {min_dim(num_classes)} or head.kind='spread'"
        )
    nonnegative = head.neck in NONNEGATIVE_NECKS and (dim is None or dim == feature_dim)
    canonical = entry.meta.get("canonical", False)
    rotation = head.rotation
    if rotation == "auto":
        reachable = canonical and nonnegative and dim is not None and dim >= num_classes
        rotation = "none" if reachable else "random"
    if rotation == "none" and not canonical:
        raise ConfigError(
            f"head.rotation='none' is the canonical simplex ETF; head.kind={head.kind!r} has "
            "no canonical form: set head.rotation=random (or auto)"
        )
    with usage_errors("head"):
        frame = build_frame(
            head.kind,
            num_classes,
            dim,
            seed=seed,
            hierarchy=hierarchy if tree_frame else None,
            convention=config.data.lca_convention,
            gamma=head.gamma,
            rotate=rotation != "none",
            options=head.options,
        )
    if nonnegative:
        _check_reachable(config, frame, seed)
    return frame


def _check_reachable(config: Config, frame: Tensor, seed: int) -> None:
    """Refuse (or with head.allow_unreachable warn about) a frame that leaves classes
    out of reach of non-negative features."""
    head = config.head
    missing = unreachable_classes(frame, nonnegative=True)
    if not missing:
        return
    message = (
        f"with head.neck={head.neck} the non-negative (ReLU) features meet the frame "
        f"{'directly' if head.neck == 'none' else 'after L2 normalisation (still non-negative)'}"
        f", and this head.kind={head.kind!r} frame (seed {seed}) leaves class(es) {missing} "
        "unreachable: no such feature can predict them. Use head.rotation=none (the "
        "canonical ETF, needs d >= K), or a neck (head.neck=bn or bn_l2), or set "
        "head.allow_unreachable=true to train anyway"
    )
    if not head.allow_unreachable:
        raise ConfigError(message)
    logger.warning("%s (head.allow_unreachable=true: training anyway)", message.split(". Use")[0])


def forward_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one sample's forward pass through the convolution and
    linear layers of ``model`` (the rest is comparatively free), counted on a zero input
    of ``input_shape`` (C, H, W) in eval mode, without gradients; the model's mode is
    restored and nothing else about it changes."""
    total = 0

    def count(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        else:  # convolution: every output value sums in_channels/groups x kernel products
            kernel = math.prod(module.kernel_size)
            total += output.numel() * (module.in_channels // module.groups) * kernel

    layers = (nn.Linear, nn.modules.conv._ConvNd)
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, layers)]
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return total


def run_threads(
    config: Config, model: nn.Module, input_shape: tuple[int, ...], device: torch.device
) -> int | None:
    """The torch CPU threads of a run (``train.num_threads``): the number asked for, or
    under "auto" 1 when a training micro-batch's forward pass takes fewer than
    :data:`SMALL_MODEL_MACS` multiply-accumulates, else None (torch's own setting). None
    off the CPU as well: the accelerator does the work there."""
    wanted = config.train.num_threads
    if device.type != "cpu":
        return None
    if wanted != "auto":
        return int(wanted)
    micro_batch = config.train.batch_size // config.train.accumulate
    return 1 if forward_macs(model, input_shape) * micro_batch < SMALL_MODEL_MACS else None


def _input_options(name: str, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Defaults that follow the data: input channels, or input size for the MLP."""
    if name == "mlp":
        return {"in_features": int(torch.tensor(input_shape).prod())}
    if name.startswith("timm:"):
        return {"in_chans": input_shape[0]}  # timm's name for it (e.g. 1 for MNIST)
    return {"in_channels": input_shape[0]}


def build_model(
    config: Config,
    num_classes: int,
    input_shape: tuple[int, ...],
    hierarchy: Hierarchy | ClassDistances | None = None,
) -> Classifier:
    """Backbone from ``model`` and head from ``head``, initialised from train.seed.

    ``input_shape`` (C, H, W) of one sample fills the backbone's input options unless the
    config sets them. ``model.weights`` fills the backbone from a local state-dict file
    (:func:`neuralcollapse.models.load_weights`; strict unless ``model.weights_strict`` is
    false).
    """
    options = {**_input_options(config.model.name, input_shape), **config.model.options}
    with usage_errors("model.name/model.options", catch=(ValueError, TypeError)):
        backbone = models.build(config.model.name, seed=config.train.seed, **options)
    if config.model.weights is not None:
        key = f"model.weights={config.model.weights!r}"
        try:
            models.load_weights(backbone, config.model.weights, strict=config.model.weights_strict)
        except ValueError as exc:  # file errors are UsageErrors already: name the key too
            raise ConfigError(f"{key}: {exc}") from exc
    feature_dim = backbone.feature_dim
    neck_options = {"prelu": config.head.prelu, "bn_momentum": config.head.neck_bn_momentum}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.train.seed, "head"))  # projection and neck init
        if config.head.kind == LEARNABLE:
            head: nn.Module = LearnableHead(
                feature_dim,
                num_classes,
                bias=config.head.bias,
                neck=config.head.neck,
                cosine=config.head.cosine,
                **neck_options,
            )
        else:
            frame = run_frame(config, num_classes, feature_dim, hierarchy)
            head = FixedFrameHead(
                feature_dim, frame, neck=config.head.neck, scale=config.head.scale, **neck_options
            )
    return Classifier(backbone, head)


class RunLoss(nn.Module):
    """The run's loss behind one call, ``loss(logits, h, targets, frame)``.

    What the configured loss reads is decided once, here, from its registry entry
    (``reads``): logit losses (``ce``, ``soft_ce`` and the long-tailed baselines) read the
    logits, frame losses (``dr``, ``cosine_frame``) the head's features ``h`` and its
    frame. ``targets`` are labels or mixup ``(y_a, y_b, lam)``. ``epoch_weights(epoch)``,
    when given, sets the inner loss's class weights at the start of each epoch
    (:meth:`set_epoch`; deferred re-weighting).
    """

    def __init__(
        self,
        inner: nn.Module,
        *,
        reads_features: bool,
        epoch_weights: Callable[[int], Tensor | None] | None = None,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.reads_features = reads_features
        self.epoch_weights = epoch_weights

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before 0-based epoch ``epoch`` trains."""
        if self.epoch_weights is not None:
            self.inner.set_class_weight(self.epoch_weights(epoch))

    def forward(self, logits: Tensor, h: Tensor, targets, frame: Tensor | None) -> Tensor:
        if self.reads_features:
            return self.inner(h, targets, frame)
        if isinstance(self.inner, nn.CrossEntropyLoss):  # torch's own: no mixup targets
            return mixup_loss(self.inner, logits, targets)
        return self.inner(logits, targets)


def build_loss(
    config: Config,
    model: Classifier | None,
    hierarchy: Hierarchy | ClassDistances | None,
    class_counts: Tensor | None = None,
) -> RunLoss:
    """The training loss of ``config``: the loss registered as ``loss.name`` (its options
    from ``loss.options``), built from a :class:`~neuralcollapse.losses.LossContext`
    (see :class:`RunLoss`). Losses that take class weights get ``loss.class_weight``'s
    weights from the start, or ``loss.drw_epoch``'s per epoch; those and the long-tailed
    baselines need the (K,) training ``class_counts``.

    Raises:
        ConfigError: an unregistered name or bad options; UsageError: a bad value the
            loss refuses (a class without training samples, ...).
    """
    cfg = config.loss
    entry = LOSSES.get(cfg.name)
    options = entry.parse_options(cfg.options, "loss.options")
    head = None if model is None else model.head
    frame = getattr(head, "frame", None)
    with usage_errors("loss"):
        counts = None if class_counts is None else torch.as_tensor(class_counts)
        weight, epoch_weights = _class_weights(config, entry.meta.get("weighted", False), counts)
        ctx = LossContext(
            config=config,
            options=options,
            num_classes=_num_classes(head, counts),
            class_counts=counts,
            hierarchy=hierarchy,
            frame=frame,
            class_weight=weight,
        )
        inner = entry.build(ctx)
    reads = entry.meta.get("reads", "logits")
    return RunLoss(inner, reads_features=reads == "features", epoch_weights=epoch_weights)


def _num_classes(head: nn.Module | None, counts: Tensor | None) -> int:
    """K from the head (both heads have ``num_classes``), else from the counts."""
    if head is not None:
        return int(head.num_classes)
    return 0 if counts is None else int(counts.numel())


def _class_weights(
    config: Config, weighted: bool, counts: Tensor | None
) -> tuple[Tensor | None, Callable[[int], Tensor | None] | None]:
    """The first epoch's class weights (``loss.class_weight``) and, with
    ``loss.drw_epoch``, the per-epoch weights (deferred re-weighting, Cao et al. 2019)."""
    cfg = config.loss
    if not weighted or (cfg.class_weight == "none" and cfg.drw_epoch is None):
        return None, None
    if counts is None:
        raise ValueError(
            f"loss.name={cfg.name!r} with class weights needs the training class counts: "
            "pass class_counts=data.train_counts to build_loss"
        )
    weights = class_balanced_weights(counts, cfg.cb_beta)  # checked now, not at a switch
    if cfg.drw_epoch is None:
        return weights, None
    schedule = functools.partial(
        deferred_reweighting, counts, start_epoch=cfg.drw_epoch, beta=cfg.cb_beta
    )
    return None, schedule


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
