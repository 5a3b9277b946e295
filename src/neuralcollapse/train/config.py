"""Training run configuration: one dataclass per section, read from YAML and overrides.

A config is one :class:`Config` holding a dataclass per section. YAML files name only what
differs from the defaults; every value is checked against its field's type and allowed
range when loaded (by :mod:`neuralcollapse.config`), and impossible combinations are
refused by :func:`check_config`, so typos and impossible settings fail before any
training::

    cfg = load_config("configs/digits_lt.yaml", overrides=["optim.lr=0.05"])
    print(to_yaml(cfg))

Overrides are ``section.key=value`` with the value parsed as YAML 1.2 (``0.05``, ``1e-3``,
``[80, 90]``, ``null``, ``true``, ``off``: see :mod:`neuralcollapse.config`).

What a resumed run may change is decided here too: :data:`RESUMABLE_CHANGES` and
:func:`check_resume_changes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from neuralcollapse._internal.names import BUILTIN_HIERARCHIES, BUILTIN_PREFIX
from neuralcollapse.config import (
    apply_overrides,
    bounded,
    from_dict,
    read_yaml_mapping,
    to_dict,
)
from neuralcollapse.config import to_yaml as _to_yaml
from neuralcollapse.errors import ConfigError
from neuralcollapse.registry import FRAMES, LOSSES, import_modules
from neuralcollapse.train.recipes import read_recipe, resolve_config_path

__all__ = [
    "RESUMABLE_CHANGES",
    "RETIRED_KEYS",
    "RUN_NAME_RULE",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LEARNABLE",
    "HeadConfig",
    "LogConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "best_split",
    "check_config",
    "check_resume_changes",
    "config_from_dict",
    "config_to_dict",
    "has_validation",
    "load_config",
    "read_yaml_mapping",
    "to_yaml",
]

# Keys that older versions wrote and that nothing reads any more: dropped when loading, so
# the config.yaml and checkpoints of earlier runs keep loading.
RETIRED_KEYS = ("data.device_resident",)
# Seeds: the range every generator the package seeds accepts (NumPy's legacy 32-bit one
# is the narrowest); this project's setting.
SEED_MAX = 2**32 - 1

# What a resumed run may change: how long it trains, how often and on how many training
# samples it evaluates, how it logs. A key ending in ".*" covers its whole section.
RESUMABLE_CHANGES = (
    "train.epochs",
    "eval.every",
    "eval.collapse_every",
    "eval.train_subsample",
    "log.*",
)


#: head.kind of the ordinary learnable linear classifier (every other value names a frame
#: of the registry, neuralcollapse.registry.FRAMES).
LEARNABLE = "learnable"

#: data.val_fraction by default (this project's setting): a run holds out a stratified 10%
#: of its training split to choose its best epoch on; data.val_list replaces it.
DEFAULT_VAL_FRACTION = 0.1

_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RUN_NAME_RULE = (
    "1-100 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit (it names "
    "the run directory)"
)


@dataclass
class DataConfig:
    """What to train on. Long-tailed subsets follow ``nc.data.class_counts``."""

    # a data set registered with neuralcollapse.registry.register_dataset (built in: digits,
    # mnist5k, cifar10, cifar100, gaussian, hierarchical, image_folder, list_file, mnist,
    # fashion_mnist, svhn, stl10, cub, fgvc_aircraft, inaturalist)
    name: str = "digits"
    options: dict[str, Any] = field(default_factory=dict)  # a registered data set's own options
    # folder of the data set's official files (CIFAR archive, IDX files, .mat files,
    # stl10_binary, CUB_200_2011, fgvc-aircraft-2013b, iNaturalist JSON), image folder or
    # list-file base
    root: str | None = None
    # files listed by a data file (list files, CUB images.txt, iNaturalist file_name,
    # FGVC-Aircraft image ids) must lie under root once resolved; true allows others
    allow_outside_root: bool = False
    train_list: str | None = None  # list_file: "relative/path label" lines, training set
    test_list: str | None = None  # list_file: same, evaluation set
    # validation split held out of the loaded training split BEFORE the long-tailed subset
    # (so it keeps the loaded split's class proportions): val_fraction of every class
    # (round(f * n_k) samples of class k, stratified, drawn with train.seed), or val_list, a
    # text file of 0-based indices into the loaded training split (one or more per line,
    # "#" comments; it replaces the default fraction). Default DEFAULT_VAL_FRACTION = 0.1:
    # every run chooses its best epoch on held-out data; val_fraction 0 = no validation.
    val_fraction: float = bounded(DEFAULT_VAL_FRACTION, ge=0, lt=1)
    val_list: str | None = None
    # training and evaluation split of the official release; default per data set:
    # [train, test], fgvc_aircraft [trainval, test], inaturalist [train, val]
    splits: list[str] | None = None
    label_level: Literal["variant", "family", "manufacturer"] = "variant"  # fgvc_aircraft
    crop_banner: bool = True  # fgvc_aircraft: drop the 20-pixel banner at the bottom
    # image files (image_folder, list_file, cub, fgvc_aircraft, inaturalist): decoded square
    # size, reached by stretching or by the shorter side then the central square
    image_size: int | None = bounded(None, ge=1)
    resize: Literal["stretch", "center_crop"] = "stretch"
    # image files: decode them all into memory (the device-resident store) or stream them
    # from disk with DataLoader workers; auto = memory when they take <= memory_limit_mb
    store: Literal["auto", "memory", "stream"] = "auto"
    memory_limit_mb: float = bounded(4096.0, gt=0)
    imbalance_ratio: float = bounded(1.0, ge=1)  # n_max / n_min of the training subset
    profile: Literal["exp", "step"] = "exp"
    n_max: int | None = bounded(None, ge=1)  # head-class count; default: smallest loaded
    sampling: Literal["shuffle", "balanced", "sqrt"] = "shuffle"
    # random_resized_crop: ImageNet-style crop of a random area fraction (rrc_scale) and
    # aspect ratio, resized to crop_size, plus a random flip
    augment: Literal["none", "crop_flip", "flip", "random_resized_crop"] = "none"
    crop_padding: int = bounded(4, ge=0)
    # output side of random_resized_crop; evaluation takes the central crop_size square
    # (default: the whole image)
    crop_size: int | None = bounded(None, ge=1)
    rrc_scale: list[float] = bounded(default_factory=lambda: [0.08, 1.0], gt=0, le=1)
    # training images only: random brightness, contrast and saturation changes of up to
    # this fraction, in a random order per image (torchvision's ColorJitter(s, s, s), the
    # ImageNet-LT augmentation of [Y22]); 0 = off
    color_jitter: float = bounded(0.0, ge=0, lt=1)
    num_workers: int = bounded(2, ge=0)  # DataLoader workers for file-backed data
    num_classes: int = bounded(10, ge=2)  # gaussian only
    dim: int = bounded(32, ge=1)  # gaussian only: input dimension
    samples_per_class: int = bounded(200, ge=1)  # gaussian only: before the long-tailed subset
    separation: float = bounded(3.0, gt=0)  # gaussian / hierarchical
    # class tree file (edges CSV, nested JSON or path CSV), "builtin:NAME" for a tree the
    # package ships (builtin:cifar100), "dataset" for the tree the data set ships
    # (fgvc_aircraft: its levels; inaturalist: its taxonomy), or a distance file (.npy,
    # or a making-better-mistakes pickle .pkl / .pkl.xz; classes by name, else file order)
    hierarchy: str | None = None
    # LCA distance of a tree: "level" (depth minus the LCA's depth: the field's distance
    # files, [L23] and making-better-mistakes) or "height" (the LCA's longest way down);
    # identical on balanced trees (docs/theory.md §7)
    lca_convention: Literal["level", "height"] = "level"
    # the most classes a class tree or distance file may have: its (K, K) matrices take
    # 8 K^2 bytes each (10,000 classes: 800 MB; this project's setting)
    max_classes: int = bounded(10_000, ge=2)
    tree_branching: list[int] = bounded(default_factory=lambda: [2, 3, 4], ge=1)
    # hierarchical, without a data.hierarchy file: a balanced synthetic tree with these
    # fan-outs


@dataclass
class ModelConfig:
    """The backbone, built by ``nc.models.build(name, **options)``."""

    name: str = "mlp"
    options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None  # local state-dict file of pretrained backbone weights
    weights_strict: bool = True  # false: load the tensors that match, ignore the others


@dataclass
class HeadConfig:
    """The classifier: ``learnable``, or a fixed frame registered with
    ``neuralcollapse.registry.register_frame`` (built in: ``etf``, ``spread``,
    ``haframe``)."""

    kind: str = "etf"
    # an external frame's own options (its registered options dataclass); the built-in
    # frames read the flat keys below
    options: dict[str, Any] = field(default_factory=dict)
    dim: int | None = bounded(None, ge=1)  # frame dimension d; default: the feature_dim
    # auto: bn_l2 in front of a fixed frame ([Y22]'s CIFAR models), none for a learnable
    # head (the papers' baseline is the plain linear classifier); resolved when loaded.
    neck: Literal["auto", "none", "l2", "bn", "bn_l2", "mlp", "haframe"] = "auto"
    scale: float = bounded(1.0, gt=0)  # logit scale of a fixed-frame head
    bias: bool = True  # learnable head only
    # learnable head only: cosine classifier, logits = <h/||h||, w_k/||w_k||> (Cao et al.'s
    # normalised linear layer for LDAM); needs bias false
    cosine: bool = False
    gamma: float = bounded(2.0, gt=0)  # haframe only
    frame_seed: int | None = bounded(None, ge=0, le=SEED_MAX)  # default: train.seed
    # etf: "random" rotation from the seed, or "none" (the canonical ETF, [Z21]); "auto" is
    # "none" when ReLU features meet the frame with their signs kept (neck none or l2, no
    # projection, d >= K), where a rotated frame can leave classes unreachable, else
    # "random".
    rotation: Literal["auto", "random", "none"] = "auto"
    # a fixed frame that leaves classes out of reach of non-negative features (neck none
    # or l2, no projection) is refused; true trains anyway, with a logged warning
    allow_unreachable: bool = False
    # neck haframe: one PReLU slope per layer ("shared", PyTorch's default) or per feature
    # ("per_channel", [L23]'s official transformation module)
    prelu: Literal["shared", "per_channel"] = "shared"
    # running-statistics momentum of the neck's leading BatchNorm (bn, bn_l2, haframe);
    # [L23]'s CIFAR-100 WideResNet head uses 0.001
    neck_bn_momentum: float = bounded(0.1, gt=0, le=1)


@dataclass
class LossConfig:
    """The loss registered as ``name`` (``neuralcollapse.registry.register_loss``; a loss
    of your own takes its options from ``options``). Built in: ``ce``: cross-entropy on
    the head's logits; ``dr``: dot-regression (fixed frames); ``cosine_frame``: [L23]'s
    CE + cosine regression onto the frame's target Gram; ``soft_ce``: cross-entropy with
    Bertinetto's hierarchy soft labels (needs a hierarchy). Long-tailed baselines on the
    logits (:mod:`neuralcollapse.losses.longtail`): ``logit_adjusted`` (Menon et al.
    2021), ``balanced_softmax`` (Ren et al. 2020), ``ldam`` (Cao et al. 2019), ``focal``
    (Lin et al. 2017); ``class_weight`` and ``drw_epoch`` add class-balanced weights (Cui
    et al. 2019) to the losses that take weights (ce, focal, ldam). The built-in losses
    read the flat keys below."""

    name: str = "dr"
    options: dict[str, Any] = field(default_factory=dict)  # a registered loss's own options
    form: Literal["paper", "reference"] = "paper"  # dr
    feature_budget: float = bounded(1.0, gt=0)  # dr, paper form
    batch_reweight: bool = False  # dr
    norm_penalty: float = bounded(0.0, ge=0)  # dr
    label_smoothing: float = bounded(0.0, ge=0, lt=1)  # ce
    alpha: float = bounded(0.4, ge=0, le=1)  # cosine_frame
    beta: float = bounded(10.0, gt=0)  # soft_ce
    normalize_distances: bool = True  # soft_ce: D / max D before the softmax (their beta)
    # soft_ce: mean over the batch, or over batch x classes (making-better-mistakes' KLDivLoss
    # scale: their learning rates then transfer unchanged)
    soft_reduction: Literal["mean", "elementwise_mean"] = "mean"
    tau: float = bounded(1.0, ge=0)  # logit_adjusted: CE on logits + tau * log prior
    max_margin: float = bounded(0.5, gt=0)  # ldam: margin of the rarest class
    logit_scale: float = bounded(30.0, gt=0)  # ldam: s, logits scaled before the CE
    focal_gamma: float = bounded(2.0, ge=0)  # focal: (1 - p)^gamma
    # focal: softmax (Lin et al.) or sigmoid_cb (Cui et al.'s class-balanced sigmoid focal
    # loss over all K logits, divided by the batch size); docs/theory.md §8
    focal_form: Literal["softmax", "sigmoid_cb"] = "softmax"
    # focal, softmax form: alpha = w_y outside the focusing term (Lin et al.'s
    # alpha-balanced form), cao = Cao et al.'s weighted focal loss, p = exp(-w_y CE)
    focal_weighting: Literal["alpha", "cao"] = "alpha"
    # ce, focal, ldam: class-balanced weights (effective number, cb_beta) from the start
    class_weight: Literal["none", "class_balanced"] = "none"
    cb_beta: float = bounded(0.9999, ge=0, lt=1)  # class_weight / drw_epoch weights
    # what a class-weighted loss divides its weighted sum by: weight_sum (the samples'
    # weights, as nn.CrossEntropyLoss(weight=)), batch (the batch size B, Cui et al.'s
    # code), auto (weight_sum; batch for focal sigmoid_cb and cao, as their code)
    cb_reduction: Literal["auto", "weight_sum", "batch"] = "auto"
    drw_epoch: int | None = bounded(None, ge=0)  # ce, focal, ldam: DRW from this 0-based epoch


@dataclass
class OptimConfig:
    """The optimiser: SGD (with momentum) or AdamW, and what it decays."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = bounded(0.1, gt=0)
    momentum: float = bounded(0.9, ge=0, lt=1)  # sgd
    nesterov: bool = False  # sgd
    betas: list[float] = bounded(default_factory=lambda: [0.9, 0.999], ge=0, lt=1)  # adamw
    weight_decay: float = bounded(5e-4, ge=0)
    no_decay_norm_and_bias: bool = False  # exclude norm layers and biases from decay
    backbone_lr_scale: float = bounded(1.0, gt=0)  # backbone lr = lr * this ([L23]: 0.1)
    grad_clip: float | None = bounded(None, gt=0)  # max global grad norm


@dataclass
class ScheduleConfig:
    """Linear warm-up over ``warmup_epochs``, then ``multistep``, ``cosine`` or ``constant``."""

    name: Literal["multistep", "cosine", "constant"] = "cosine"
    warmup_epochs: int = bounded(0, ge=0)
    milestones: list[int] = bounded(default_factory=list, ge=1)  # multistep: decay epochs
    gamma: float = bounded(0.1, gt=0)  # multistep: factor per milestone
    min_lr: float = bounded(0.0, ge=0)  # cosine: final learning rate (<= optim.lr)


@dataclass
class TrainConfig:
    """The training loop: length, batch, seed and numerics."""

    epochs: int = bounded(30, ge=1)
    batch_size: int = bounded(64, ge=1)  # global batch (summed over processes under DDP)
    seed: int = bounded(0, ge=0, le=SEED_MAX)
    mixup_alpha: float = bounded(0.0, ge=0)  # 0 = off
    amp: Literal["off", "bf16", "fp16"] = "off"  # CUDA only
    compile: bool = False  # torch.compile the model
    device: str = "auto"  # auto = cuda if available, else cpu (one GPU per torchrun process)
    deterministic: bool = True
    accumulate: int = bounded(1, ge=1)  # micro-batches per optimiser step
    sync_bn: bool = False  # SyncBatchNorm across processes (CUDA, under torchrun)
    ddp_timeout_s: float = bounded(600.0, gt=0)  # a failed or hung rank stops the others
    # torch's intra-op CPU threads during the run (restored afterwards); "auto": 1 thread
    # when one training micro-batch's forward pass is under SMALL_MODEL_MACS
    # multiply-accumulates (thread synchronisation costs more than it saves on such small
    # operations, badly so on a busy machine), torch's own setting otherwise. CPU only.
    num_threads: Literal["auto"] | int = bounded("auto", ge=1)
    # which evaluated epoch checkpoints/best.pt and summary.json's "best" hold: the highest
    # select_best_metric on the validation split ("val", needs data.val_fraction or
    # data.val_list), on the test split ("test": optimistic, test-set selection, named so
    # in summary.json) or none; "auto" = val when a validation split exists, else none
    select_best_on: Literal["auto", "val", "test", "none"] = "auto"
    # top1, or balanced (mean per-class accuracy: a long-tailed split's estimate of the
    # top-1 on a balanced test set)
    select_best_metric: Literal["top1", "balanced"] = "top1"
    # Decoupled classifier learning (Kang et al. 2020) after the main training, learnable
    # heads only (neuralcollapse.train.stage2): crt re-trains the classifier, lws learns
    # per-class scales, tau_norm rescales class vectors (post hoc); backbone frozen.
    stage2: Literal["none", "crt", "lws", "tau_norm"] = "none"
    stage2_epochs: int = bounded(10, ge=1)  # crt, lws
    stage2_lr: float = bounded(0.1, gt=0)  # crt, lws: cosine from this to 0 over the epochs
    stage2_sampling: Literal["balanced", "sqrt", "shuffle"] = "balanced"  # crt, lws
    stage2_tau: float = bounded(1.0, ge=0)  # tau_norm: w_k / ||w_k||^tau
    # crt, lws: the frozen backbone's mode: eval (BatchNorm running statistics fixed, this
    # project's default) or train (Kang et al.'s loop: batch statistics, running statistics
    # moving; docs/theory.md, neuralcollapse.train.stage2)
    stage2_backbone_mode: Literal["eval", "train"] = "eval"


@dataclass
class EvalConfig:
    """When and how the run is evaluated, and the shot groups of the accuracy table."""

    # accuracy (top-1, balanced, shot groups) of the validation and test splits every N
    # epochs, one forward pass per split (a test split as large as a long-tailed training
    # set costs about a quarter of a training epoch per pass)
    every: int = bounded(5, ge=1)
    # collapse metrics (NC1-NC4, class geometry) of every evaluated split, and the training
    # split (without augmentation), every N epochs; the last epoch always gets everything
    collapse_every: int = bounded(10, ge=1)
    batch_size: int = bounded(512, ge=1)
    # the training split is evaluated on a fixed stratified subsample of this many samples
    # (drawn once with train.seed, at least one per class), except at the last epoch, which
    # always evaluates the whole split; null = always the whole split
    train_subsample: int | None = bounded(10000, ge=1)
    many: int = bounded(100, ge=0)  # shot groups: many > this many training images
    few: int = bounded(20, ge=0)  # few < this many
    shot_split: Literal["count", "index"] = "count"  # index = [Y22]'s fixed ranges
    # post-hoc logit adjustment (Menon et al. 2021): evaluate logits - tau * log prior
    logit_adjust_tau: float = bounded(0.0, ge=0)


@dataclass
class LogConfig:
    """Where the run is written and what is shown while it trains."""

    run_dir: str | None = None  # default runs/<config name>-<timestamp>
    tensorboard: bool = True
    progress: Literal["auto", "on", "off"] = "auto"  # auto: only on a terminal
    report: bool = True  # write the HTML report at the end (when available)
    # During fit(), checkpoints/last.pt and best.pt are taken after every epoch but
    # written at most once per this many seconds (the first epoch's at once; the held
    # ones at the end, at stop_after, before stage 2, on Ctrl-C and on errors), so a
    # hard kill loses at most this much training. 0 = write after every epoch.
    checkpoint_interval_s: float = bounded(30.0, ge=0)
    # Trackers besides TensorBoard (neuralcollapse.train.trackers; extras wandb, mlflow).
    wandb: bool = False  # a Weights & Biases run under RUN_DIR/wandb
    wandb_project: str = "neuralcollapse"
    wandb_mode: Literal["offline", "online"] = "offline"  # offline: upload with wandb sync
    mlflow: bool = False  # an MLflow run: SQLite store RUN_DIR/mlruns/mlflow.db, or mlflow_uri
    mlflow_uri: str | None = None  # tracking URI: http://host:5000, file:///..., sqlite:///...
    mlflow_experiment: str = "neuralcollapse"


@dataclass
class Config:
    """A whole training run: its name, the modules to import first and one dataclass per
    section."""

    name: str = "run"
    # modules imported before the names are checked, so that the losses, frames and data
    # sets they register (neuralcollapse.registry) can be named below
    imports: list[str] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)


# --------------------------------------------------------------------------- public API


def config_from_dict(values: dict[str, Any] | None) -> Config:
    """A checked :class:`Config` from nested dicts (missing keys take their defaults;
    :data:`RETIRED_KEYS` are ignored)."""
    config = from_dict(Config, values or {}, retired=RETIRED_KEYS)
    import_modules(config.imports)
    if config.head.neck == "auto":
        config.head.neck = "none" if config.head.kind == LEARNABLE else "bn_l2"
    check_config(config)
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dicts (YAML/JSON-ready) of every value, defaults included."""
    return to_dict(config)


def to_yaml(config: Config) -> str:
    """The YAML text of every value of ``config`` (reads back to the same config)."""
    return _to_yaml(config)


def _default_name(path: Path) -> str:
    """A valid run name from a file's stem: other characters become ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem)
    name = re.sub(r"^[^A-Za-z0-9]+", "", name)[:100]
    return name or "run"


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config or packaged recipe (or start from the defaults), apply
    overrides, check everything.

    ``path`` is a file, or the name of a packaged recipe (``"digits_lt"``, as the command
    line's ``--config`` takes it). A recipe's ``base:`` files are merged in first
    (:func:`neuralcollapse.train.recipes.read_recipe`). The config's ``name`` defaults to
    the file's stem (characters a run name cannot hold replaced by ``_``).

    Raises:
        FileNotFoundError: ``path`` is neither a file nor a packaged recipe.
        ConfigError: invalid YAML, an unknown key or base, a cycle of bases, a bad value or
            combination.
    """
    values: dict[str, Any] = {}
    if path is not None:
        file = resolve_config_path(path)
        values = read_recipe(file).values
        values.setdefault("name", _default_name(file))
    return config_from_dict(apply_overrides(values, overrides or []))


# --------------------------------------------------------------------------- combinations


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def check_config(config: Config) -> None:
    """Impossible or meaningless combinations, named by key, before anything is built.

    (Each value's type and range was checked when the config was built.)
    """
    c = config
    _require(
        _RUN_NAME.fullmatch(c.name) is not None,
        f"name must be {RUN_NAME_RULE}; got {c.name!r}",
    )
    traits = _data_traits(c)
    has_tree = c.data.hierarchy is not None or traits.default_tree is not None
    _check_registered(c, has_tree)
    builtin = (c.data.hierarchy or "").removeprefix(BUILTIN_PREFIX)
    _require(
        not (c.data.hierarchy or "").startswith(BUILTIN_PREFIX) or builtin in BUILTIN_HIERARCHIES,
        f"data.hierarchy={c.data.hierarchy!r} names no shipped tree; the package ships "
        f"{', '.join(BUILTIN_PREFIX + name for name in BUILTIN_HIERARCHIES)}",
    )
    _require(
        c.train.batch_size % c.train.accumulate == 0,
        f"train.batch_size={c.train.batch_size} must be a multiple of train.accumulate="
        f"{c.train.accumulate}",
    )
    _require(len(c.optim.betas) == 2, f"optim.betas must have 2 values, got {c.optim.betas}")
    # A warm-up longer than a (shortened, smoke-test) run is allowed: the run stays in it.
    _require(
        c.schedule.min_lr <= c.optim.lr,
        f"schedule.min_lr={c.schedule.min_lr} must be <= optim.lr={c.optim.lr}",
    )
    milestones = c.schedule.milestones
    _require(
        all(a < b for a, b in zip(milestones, milestones[1:], strict=False)),
        f"schedule.milestones must be positive and strictly increasing, got {milestones}",
    )
    _require(
        c.eval.few <= c.eval.many,
        f"eval.few={c.eval.few} must not exceed eval.many={c.eval.many}",
    )
    _require(
        traits.default_tree is None
        or c.data.hierarchy is not None
        or (len(c.data.tree_branching) >= 1 and any(b > 1 for b in c.data.tree_branching)),
        "data.tree_branching must list at least one fan-out > 1 (entries >= 1), got "
        f"{c.data.tree_branching}",
    )
    _require(
        not traits.reads_files or c.data.root is not None,
        f"data.name={c.data.name!r} reads files: set data.root to their folder",
    )
    missing = [key for key in traits.requires if getattr(c.data, key, None) in (None, "")]
    _require(
        not missing,
        f"data.name={c.data.name!r} needs {' and '.join('data.' + k for k in missing)}",
    )
    _check_longtail_keys(c)
    _check_dataset_keys(c, traits)
    _check_validation_keys(c)
    _check_log_keys(c)


def _check_registered(c: Config, has_tree: bool) -> None:
    """loss.name and head.kind against the registries (neuralcollapse.registry), their
    options against the entries' options dataclasses, and what the entries need."""
    loss = LOSSES.get(c.loss.name)
    loss.parse_options(c.loss.options, "loss.options")
    fixed = c.head.kind != LEARNABLE
    if fixed:
        frame = FRAMES.get(c.head.kind)
        frame.parse_options(c.head.options, "head.options")
        _require(
            not frame.meta.get("hierarchy", False) or has_tree,
            f"head.kind={c.head.kind!r} needs a class hierarchy: set data.hierarchy to its "
            "file (or builtin:cifar100, or a distance file)",
        )
    else:
        _require(
            not c.head.options,
            "head.options are a registered frame's options, but head.kind='learnable': "
            "drop them or name the frame",
        )
    _require(
        fixed or loss.meta.get("reads", "logits") == "logits",
        f"loss.name={c.loss.name!r} needs a fixed frame, but head.kind='learnable': use "
        f"head.kind in {{{', '.join(map(repr, FRAMES.names()))}}} or loss.name='ce'",
    )
    _require(
        not loss.meta.get("hierarchy", False) or has_tree,
        f"loss.name={c.loss.name!r} needs a class hierarchy: set data.hierarchy to its file "
        "(or builtin:cifar100, or a distance file)",
    )


def _check_log_keys(c: Config) -> None:
    """Tracker names W&B and MLflow would refuse, caught before training starts."""
    project = c.log.wandb_project
    _require(
        0 < len(project) <= 128 and not set(project) & set("/\\#?%:"),
        f"log.wandb_project must be 1-128 characters without / \\ # ? % :, got {project!r}",
    )
    _require(
        c.log.mlflow_experiment.strip() != "",
        "log.mlflow_experiment must name an experiment, got an empty string",
    )
    _require(
        c.log.mlflow_uri is None or c.log.mlflow_uri.strip() != "",
        "log.mlflow_uri must be a tracking URI or null (the SQLite store RUN_DIR/mlruns/mlflow.db)",
    )


def has_validation(config: Config) -> bool:
    """Whether the run holds out a validation split (data.val_fraction or data.val_list)."""
    return config.data.val_fraction > 0 or config.data.val_list is not None


def best_split(config: Config) -> str | None:
    """The split ``train.select_best_on`` chooses the best epoch on: "val", "test" or None
    (no best epoch: "none", or "auto" without a validation split)."""
    choice = config.train.select_best_on
    if choice == "auto":
        return "val" if has_validation(config) else None
    return None if choice == "none" else choice


def _check_validation_keys(c: Config) -> None:
    """The validation split and what chooses the best epoch."""
    # a val_list replaces the default fraction; another fraction beside it is ambiguous
    fraction = c.data.val_fraction
    _require(
        c.data.val_list is None or fraction in (0.0, DEFAULT_VAL_FRACTION),
        f"data.val_fraction={fraction} and data.val_list={c.data.val_list!r} both name a "
        "validation split: set only one of them",
    )
    _require(
        c.train.select_best_on != "val" or has_validation(c),
        "train.select_best_on='val' needs a validation split: set data.val_fraction (e.g. "
        "0.1) or data.val_list, or choose train.select_best_on=auto/test/none",
    )


def _data_traits(c: Config) -> Any:
    """The registered data set's traits (neuralcollapse.data.datasets.DatasetTraits), its
    ``data.options`` checked against its options dataclass."""
    # imported here: the data package imports torch, which --help pages must not
    from neuralcollapse.data.datasets import dataset_traits
    from neuralcollapse.registry import DATASETS

    entry = DATASETS.get(c.data.name)
    entry.parse_options(c.data.options, "data.options")
    return dataset_traits(entry)


def _check_dataset_keys(c: Config, traits: Any) -> None:
    """The data set's keys against what it declares: splits, decoding size, crops, trees."""
    from neuralcollapse.registry import DATASETS

    d = c.data
    releases = [e.name for e in DATASETS.entries() if e.meta.get("release", False)]
    _require(
        d.splits is None or (len(d.splits) == 2 and traits.release),
        f"data.splits names [training split, evaluation split] of an official release "
        f"({', '.join(releases)}); got {d.splits} for data.name={d.name!r}",
    )
    _require(
        not traits.any_size or d.image_size is not None,
        f"data.name={d.name!r} decodes image files of many sizes: set data.image_size (e.g. "
        "224) so they stack into batches",
    )
    _require(
        d.resize == "stretch" or traits.any_size,
        f"data.resize={d.resize!r} applies to data sets of images of many sizes, not "
        f"data.name={d.name!r}; image folders and list files are stretched to data.image_size",
    )
    _require(
        d.crop_size is None or d.image_size is None or d.crop_size <= d.image_size,
        f"data.crop_size={d.crop_size} must not exceed data.image_size={d.image_size}",
    )
    _require(
        len(d.rrc_scale) == 2 and d.rrc_scale[0] <= d.rrc_scale[1],
        f"data.rrc_scale must be [low, high] with 0 < low <= high <= 1, got {d.rrc_scale}",
    )
    shipping = [e.name for e in DATASETS.entries() if e.meta.get("tree") is not None]
    _require(
        d.hierarchy != "dataset" or traits.tree is not None,
        f"data.hierarchy='dataset' is the tree a data set ships ({', '.join(shipping)}); "
        f"data.name={d.name!r} has none: give a tree file",
    )


def _check_longtail_keys(c: Config) -> None:
    """The long-tailed baselines' keys: class weights, cosine head, stage 2."""
    weighted = c.loss.class_weight != "none" or c.loss.drw_epoch is not None
    takes_weights = [e.name for e in LOSSES.entries() if e.meta.get("weighted", False)]
    _require(
        not weighted or c.loss.name in takes_weights,
        f"loss.class_weight / loss.drw_epoch weight the classes of {', '.join(takes_weights)}, "
        f"not loss.name={c.loss.name!r}: unset them or choose one of those losses",
    )
    _require(
        c.loss.focal_form == "softmax" or c.loss.focal_weighting == "alpha",
        "loss.focal_weighting='cao' is Cao et al.'s softmax focal loss; "
        "loss.focal_form='sigmoid_cb' weights each sample by w_y: set one of them back",
    )
    _require(
        c.loss.class_weight == "none" or c.loss.drw_epoch is None,
        f"loss.class_weight={c.loss.class_weight!r} weights every epoch and loss.drw_epoch="
        f"{c.loss.drw_epoch} defers the weights: set only one of them",
    )
    _require(
        not (weighted and c.loss.name == "ce" and c.loss.label_smoothing > 0),
        "class-weighted ce has no label smoothing: set loss.label_smoothing=0 or drop "
        "loss.class_weight / loss.drw_epoch",
    )
    _require(
        not c.head.cosine or c.head.kind == LEARNABLE,
        f"head.cosine=true is a learnable cosine classifier, but head.kind={c.head.kind!r}: "
        "set head.kind=learnable or head.cosine=false",
    )
    _require(
        not (c.head.cosine and c.head.bias),
        "head.cosine=true compares unit vectors and has no bias: set head.bias=false",
    )
    if c.train.stage2 != "none":
        _require(
            c.head.kind == LEARNABLE and not c.head.cosine,
            f"train.stage2={c.train.stage2!r} re-balances a learnable linear classifier, but "
            f"head.kind={c.head.kind!r}{' with head.cosine=true' if c.head.cosine else ''}: "
            "use head.kind=learnable head.cosine=false, or train.stage2=none",
        )


# --------------------------------------------------------------------------- resuming


def _flatten(values: dict[str, Any]) -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` as ``{"optim.lr": 0.1}`` (sections only: a mapping
    value such as ``model.options`` stays one value)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "name":
            flat.update({f"{key}.{inner}": v for inner, v in value.items()})
        else:
            flat[key] = value
    return flat


def _resumable(key: str) -> bool:
    return any(
        key.startswith(allowed[:-1]) if allowed.endswith(".*") else key == allowed
        for allowed in RESUMABLE_CHANGES
    )


_UNSET = object()


def _show(value: Any) -> str:
    if value is _UNSET:
        return "unset"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def check_resume_changes(saved: Config, requested: Config) -> None:
    """Refuse a resumed run whose config differs from its checkpoint's outside
    :data:`RESUMABLE_CHANGES`.

    Args:
        saved: the config the run was started with (its checkpoint's).
        requested: the config asked for now (the saved one with the new overrides).

    Raises:
        ConfigError: naming every key that differs, with its checkpoint and requested
            value: ``optim.lr cannot change when resuming (checkpoint 0.1, requested
            0.05); only train.epochs, eval.every, ..., log.* can``.
    """
    old, new = _flatten(config_to_dict(saved)), _flatten(config_to_dict(requested))
    keys = list(old) + [k for k in new if k not in old]
    changed = [
        key for key in keys if not _resumable(key) and old.get(key, _UNSET) != new.get(key, _UNSET)
    ]
    if changed:
        parts = [
            f"{key} cannot change when resuming (checkpoint {_show(old.get(key, _UNSET))}, "
            f"requested {_show(new.get(key, _UNSET))})"
            for key in changed
        ]
        raise ConfigError(f"{'; '.join(parts)}; only {', '.join(RESUMABLE_CHANGES)} can")
