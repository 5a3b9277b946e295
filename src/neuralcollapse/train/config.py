"""Run configuration: typed dataclasses <-> YAML, with dotted command-line overrides.

A config is one :class:`Config` holding a dataclass per section. YAML files name only what
differs from the defaults; every value is checked against its field's type and allowed
values when loaded, so typos and impossible settings fail before any training::

    cfg = load_config("configs/digits_lt.yaml", overrides=["optim.lr=0.05"])
    print(to_yaml(cfg))

Overrides are ``section.key=value`` with the value parsed as YAML (``0.05``, ``[80, 90]``,
``null``, ``true``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "HeadConfig",
    "LogConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "read_yaml_mapping",
    "to_yaml",
]


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key and what is allowed."""


@dataclass
class DataConfig:
    """What to train on. Long-tailed subsets follow ``nc.data.class_counts``."""

    name: Literal[
        "digits", "cifar10", "cifar100", "gaussian", "hierarchical", "image_folder", "list_file"
    ] = "digits"
    root: str | None = None  # folder of the CIFAR archive, image folder or list-file base
    train_list: str | None = None  # list_file: "relative/path label" lines, training set
    test_list: str | None = None  # list_file: same, evaluation set
    image_size: int | None = None  # image_folder / list_file: resize to this square size
    imbalance_ratio: float = 1.0  # n_max / n_min of the training subset; 1 = as loaded
    profile: Literal["exp", "step"] = "exp"
    n_max: int | None = None  # head-class count; default: the smallest class count loaded
    sampling: Literal["shuffle", "balanced", "sqrt"] = "shuffle"
    augment: Literal["none", "crop_flip", "flip"] = "none"
    crop_padding: int = 4
    device_resident: bool = True  # whole set on the training device (tensor data sets)
    num_workers: int = 2  # DataLoader workers for file-backed data
    num_classes: int = 10  # gaussian only
    dim: int = 32  # gaussian only: input dimension
    samples_per_class: int = 200  # gaussian only: before the long-tailed subset
    separation: float = 3.0  # gaussian / hierarchical
    hierarchy: str | None = None  # class tree file (edges CSV, nested JSON or path CSV)
    tree_branching: list[int] = field(default_factory=lambda: [2, 3, 4])  # hierarchical
    # without a data.hierarchy file: a balanced synthetic tree with these fan-outs


@dataclass
class ModelConfig:
    """The backbone, built by ``nc.models.build(name, **options)``."""

    name: str = "mlp"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class HeadConfig:
    """The classifier: a fixed frame (``etf``, ``spread``, ``haframe``) or ``learnable``."""

    kind: Literal["etf", "spread", "haframe", "learnable"] = "etf"
    dim: int | None = None  # frame dimension d; default: the backbone's feature_dim
    neck: Literal["none", "l2", "bn", "bn_l2", "mlp", "haframe"] = "bn_l2"
    scale: float = 1.0  # logit scale of a fixed-frame head
    bias: bool = True  # learnable head only
    gamma: float = 2.0  # haframe only
    frame_seed: int | None = None  # default: train.seed


@dataclass
class LossConfig:
    """``ce``: cross-entropy on the head's logits; ``dr``: dot-regression (fixed frames);
    ``cosine_frame``: [L23]'s CE + cosine regression onto the frame's target Gram;
    ``soft_ce``: cross-entropy with Bertinetto's hierarchy soft labels (needs a hierarchy)."""

    name: Literal["ce", "dr", "cosine_frame", "soft_ce"] = "dr"
    form: Literal["paper", "reference"] = "paper"  # dr
    feature_budget: float = 1.0  # dr, paper form
    batch_reweight: bool = False  # dr
    norm_penalty: float = 0.0  # dr
    label_smoothing: float = 0.0  # ce
    alpha: float = 0.4  # cosine_frame
    beta: float = 10.0  # soft_ce


@dataclass
class OptimConfig:
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    weight_decay: float = 5e-4
    no_decay_norm_and_bias: bool = False  # exclude norm layers and biases from decay
    backbone_lr_scale: float = 1.0  # backbone lr = lr * this ([L23]: 0.1)
    grad_clip: float | None = None  # max global grad norm


@dataclass
class ScheduleConfig:
    """Linear warm-up over ``warmup_epochs``, then ``multistep``, ``cosine`` or ``constant``."""

    name: Literal["multistep", "cosine", "constant"] = "cosine"
    warmup_epochs: int = 0
    milestones: list[int] = field(default_factory=list)  # multistep: epochs to decay at
    gamma: float = 0.1  # multistep: factor per milestone
    min_lr: float = 0.0  # cosine: final learning rate


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64  # global batch (summed over processes under DDP)
    seed: int = 0
    mixup_alpha: float = 0.0  # 0 = off
    amp: Literal["off", "bf16", "fp16"] = "off"  # CUDA only
    compile: bool = False  # torch.compile the model
    device: str = "auto"  # auto = cuda if available, else cpu (one GPU per torchrun process)
    deterministic: bool = True
    accumulate: int = 1  # micro-batches per optimiser step (batch_size is per step)
    sync_bn: bool = False  # SyncBatchNorm across processes (CUDA, under torchrun)
    ddp_timeout_s: float = 600.0  # a rank that fails or hangs stops the others after this


@dataclass
class EvalConfig:
    every: int = 1  # evaluate every N epochs (and always after the last)
    batch_size: int = 512
    train_subsample: int | None = None  # collapse metrics on a fixed-seed train subset
    many: int = 100  # shot groups: many > this many training images
    few: int = 20  # few < this many
    shot_split: Literal["count", "index"] = "count"  # index = [Y22]'s fixed ranges


@dataclass
class LogConfig:
    run_dir: str | None = None  # default runs/<config name>-<timestamp>
    tensorboard: bool = True
    progress: Literal["auto", "on", "off"] = "auto"  # auto: only on a terminal
    report: bool = True  # write the HTML report at the end (when available)


@dataclass
class Config:
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)


# --------------------------------------------------------------------------- typing


def _describe_type(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in get_args(annotation))
    if origin is list:
        return f"a list of {_describe_type(get_args(annotation)[0])}"
    if origin is dict:
        return "a mapping"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """``value`` checked against ``annotation``; ints are accepted for floats."""
    origin = get_origin(annotation)
    if origin is Literal:
        if value in get_args(annotation) and not isinstance(value, bool):
            return value
    elif origin in (Union, types.UnionType):
        for option in get_args(annotation):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
    elif origin is list:
        if isinstance(value, (list, tuple)):
            (item,) = get_args(annotation)
            return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
    elif annotation is type(None):
        if value is None:
            return None
    elif annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif annotation is Any:
        return value
    raise ConfigError(f"{key}: expected {_describe_type(annotation)}, got {value!r}")


def _section_fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def _unknown_key(key: str, known: list[str]) -> ConfigError:
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown key {key!r}{hint}; known keys here: {', '.join(known)}")


def _build(cls: type, values: Any, prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {values!r}")
    fields = _section_fields(cls)
    kwargs = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise _unknown_key(path, list(fields))
        _, annotation = fields[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = _build(annotation, value if value is not None else {}, f"{path}.")
        else:
            kwargs[key] = _coerce(value, annotation, path)
    return cls(**kwargs)


# --------------------------------------------------------------------------- public API


def config_from_dict(values: dict[str, Any]) -> Config:
    """A checked :class:`Config` from nested dicts (missing keys take their defaults)."""
    config = _build(Config, values or {}, "")
    check_config(config)
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dicts (YAML/JSON-ready) of every value, defaults included."""
    return dataclasses.asdict(config)


def to_yaml(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: cannot parse the value ({exc})") from None
    return key.strip().split("."), value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Nested dict ``values`` with each ``a.b=value`` override set (checked later)."""
    result = _deep_copy(values)
    for text in overrides:
        parts, value = _parse_override(text)
        target = result
        for part in parts[:-1]:
            node = target.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            target = node
        target[parts[-1]] = value
    return result


def _deep_copy(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in values.items()}


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (empty file: {}), with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(loaded).__name__}")
    return loaded or {}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from the defaults), apply overrides, check everything.

    The config's ``name`` defaults to the file's stem.
    """
    values: dict[str, Any] = {}
    if path is not None:
        values = read_yaml_mapping(path)
        values.setdefault("name", Path(path).stem)
    return config_from_dict(apply_overrides(values, overrides or []))


# --------------------------------------------------------------------------- combinations


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def check_config(config: Config) -> None:
    """Impossible or meaningless combinations, named by key, before anything is built."""
    c = config
    fixed = c.head.kind != "learnable"
    _require(
        fixed or c.loss.name in ("ce", "soft_ce"),
        f"loss.name={c.loss.name!r} needs a fixed frame, but head.kind='learnable': use "
        "head.kind in {'etf', 'spread', 'haframe'} or loss.name='ce'",
    )
    _require(
        c.head.kind != "haframe" or c.data.hierarchy is not None or c.data.name == "hierarchical",
        "head.kind='haframe' needs a class hierarchy: set data.hierarchy to its file",
    )
    has_tree = c.data.hierarchy is not None or c.data.name == "hierarchical"
    _require(
        c.loss.name != "soft_ce" or has_tree,
        "loss.name='soft_ce' needs a class hierarchy: set data.hierarchy to its file",
    )
    _require(c.loss.beta > 0, f"loss.beta must be > 0, got {c.loss.beta}")
    _require(c.optim.backbone_lr_scale > 0, "optim.backbone_lr_scale must be > 0")
    _require(c.train.epochs >= 1, f"train.epochs must be >= 1, got {c.train.epochs}")
    _require(c.train.accumulate >= 1, f"train.accumulate must be >= 1, got {c.train.accumulate}")
    _require(
        c.train.batch_size % c.train.accumulate == 0,
        f"train.batch_size={c.train.batch_size} must be a multiple of train.accumulate="
        f"{c.train.accumulate}",
    )
    _require(c.train.ddp_timeout_s > 0, "train.ddp_timeout_s must be > 0")
    _require(c.train.batch_size >= 1, f"train.batch_size must be >= 1, got {c.train.batch_size}")
    _require(c.eval.every >= 1, f"eval.every must be >= 1, got {c.eval.every}")
    _require(c.eval.batch_size >= 1, f"eval.batch_size must be >= 1, got {c.eval.batch_size}")
    _require(c.optim.lr > 0, f"optim.lr must be > 0, got {c.optim.lr}")
    _require(c.optim.weight_decay >= 0, "optim.weight_decay must be >= 0")
    _require(len(c.optim.betas) == 2, f"optim.betas must have 2 values, got {c.optim.betas}")
    _require(
        c.optim.grad_clip is None or c.optim.grad_clip > 0, "optim.grad_clip must be > 0 or null"
    )
    # A warm-up longer than a (shortened, smoke-test) run is allowed: the run stays in it.
    _require(c.schedule.warmup_epochs >= 0, "schedule.warmup_epochs must be >= 0")
    _require(c.schedule.gamma > 0, f"schedule.gamma must be > 0, got {c.schedule.gamma}")
    _require(c.schedule.min_lr >= 0, "schedule.min_lr must be >= 0")
    _require(c.train.mixup_alpha >= 0, "train.mixup_alpha must be >= 0 (0 turns mixup off)")
    _require(c.data.imbalance_ratio >= 1, "data.imbalance_ratio must be >= 1 (1 = as loaded)")
    _require(c.head.scale > 0, f"head.scale must be > 0, got {c.head.scale}")
    _require(c.head.gamma > 0, f"head.gamma must be > 0, got {c.head.gamma}")
    _require(c.head.dim is None or c.head.dim >= 1, "head.dim must be >= 1 or null")
    _require(0 <= c.loss.alpha <= 1, f"loss.alpha must be in [0, 1], got {c.loss.alpha}")
    _require(0 <= c.loss.label_smoothing < 1, "loss.label_smoothing must be in [0, 1)")
    _require(c.loss.feature_budget > 0, "loss.feature_budget must be > 0")
    _require(c.loss.norm_penalty >= 0, "loss.norm_penalty must be >= 0")
    _require(
        c.eval.few <= c.eval.many,
        f"eval.few={c.eval.few} must not exceed eval.many={c.eval.many}",
    )
    _require(
        c.data.name not in ("cifar10", "cifar100", "image_folder", "list_file")
        or c.data.root is not None,
        f"data.name={c.data.name!r} reads files: set data.root to their folder",
    )
    _require(
        c.data.name != "list_file" or (c.data.train_list and c.data.test_list),
        "data.name='list_file' needs data.train_list and data.test_list",
    )
