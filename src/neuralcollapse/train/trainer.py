"""The training loop: one readable program from config to run directory.

Run directory layout (``log.run_dir``, default ``runs/<config name>-<timestamp>``)::

    config.yaml            the resolved config (every value, defaults included)
    metrics.jsonl          one JSON object per evaluation (epoch, lr, loss, train/test metrics)
    summary.json           final and best evaluation, best epoch, wall time, versions, seed
    checkpoints/last.pt    after every epoch (atomic); resume from here
    checkpoints/best.pt    the evaluation with the best test top-1 so far
    tensorboard/           TensorBoard event files (log.tensorboard)

The loop is deterministic on CPU for a given config: the data order and augmentation of
epoch e depend only on (train.seed, e), and every RNG state is checkpointed, so a resumed
run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import neuralcollapse
from neuralcollapse.data import mixup, shot_groups, shot_groups_by_index
from neuralcollapse.data.longtail import epoch_generator
from neuralcollapse.losses import SoftLabelCrossEntropy
from neuralcollapse.train.build import (
    Classifier,
    build_loss,
    build_model,
    build_optimizer,
    build_scheduler,
)
from neuralcollapse.train.checkpoint import load_checkpoint, save_checkpoint
from neuralcollapse.train.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    to_yaml,
)
from neuralcollapse.train.data import TrainingData, build_loaders, load_training_data
from neuralcollapse.train.distributed import (
    DistContext,
    check_same_frame,
    init_distributed,
    resolve_device,
)
from neuralcollapse.train.evaluate import evaluate

__all__ = [
    "Trainer",
    "assemble",
    "default_run_dir",
    "evaluate_splits",
    "resolve_device",
    "shot_group_classes",
]

SUMMARY_KEYS = ("top1", "balanced", "many", "medium", "few")
# Scalars of the collapse report worth a TensorBoard curve.
COLLAPSE_SCALARS = (
    "nc1",
    "nc1_cdnv",
    "nc2_etf_distance_means",
    "nc2_equinorm_means",
    "nc3_self_duality",
    "nc4_ncc_mismatch",
    "minority_cosine",
)


def default_run_dir(config: Config) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.name}-{stamp}"


def _silent(_: str) -> None:
    return None


def _input_shape(data: TrainingData) -> tuple[int, ...]:
    images = getattr(data.train, "images", None)
    if images is not None:
        return tuple(images.shape[1:])
    first, _ = data.train[0]
    return tuple(first.shape)


def shot_group_classes(config: Config, data: TrainingData) -> dict[str, torch.Tensor]:
    """Class indices of the many / medium / few groups (``eval.shot_split``)."""
    if config.eval.shot_split == "index":
        k = data.num_classes  # [Y22]'s fixed ranges, 0-36-71-100 on CIFAR-100, scaled to K
        return shot_groups_by_index(k, (round(0.36 * k), round(0.71 * k))).as_dict()
    return shot_groups(data.train_counts, many=config.eval.many, few=config.eval.few).as_dict()


def evaluate_splits(
    model: Classifier,
    loaders: tuple,
    groups: dict[str, torch.Tensor],
    device: torch.device,
    *,
    splits: tuple[str, ...] = ("train", "test"),
    distributed: bool = False,
    lca: torch.Tensor | None = None,
) -> dict[str, Any]:
    """:func:`~neuralcollapse.train.evaluate.evaluate` on the train (no augmentation) and
    test loaders of :func:`assemble`, keyed by split name; ``distributed`` sums the
    statistics of every process's shard."""
    head = model.head
    bias = head.bias.detach() if head.bias is not None else None
    common = dict(
        num_classes=head.num_classes,
        groups=groups,
        classifier=head.weight.detach(),
        bias=bias,
        device=device,
        distributed=distributed,
        lca=lca,
    )
    results = {}
    if "train" in splits:
        results["train"] = evaluate(model, loaders[1], **common)
    if "test" in splits:
        results["test"] = evaluate(model, loaders[2], **common)
    return results


def assemble(
    config: Config, context: DistContext | torch.device
) -> tuple[TrainingData, tuple, Classifier]:
    """Data, loaders (train, train-eval, test-eval) and model of ``config``.

    ``context`` is this process's :class:`DistContext`, or just a device for one process.
    """
    if isinstance(context, torch.device):
        context = DistContext(device=context)
    data = load_training_data(config)
    loaders = build_loaders(data, config, context)
    model = build_model(config, data.num_classes, _input_shape(data), data.hierarchy)
    return data, loaders, model.to(context.device)


class Trainer:
    """Train ``config`` into ``run_dir``.

    Args:
        config: a checked :class:`Config`.
        run_dir: the run directory; must be new or empty unless ``resume``.
        resume: continue the run in ``run_dir`` from ``checkpoints/last.pt``.
        echo: where progress lines go (the CLI passes ``print``; the default is silent).
        stop_after: stop (with a checkpoint) after this many completed epochs, as an
            interruption would; ``resume`` then finishes the run.
        context: this process's place in a torchrun group (default: joins the group that
            the environment describes, or runs alone). Only rank 0 writes files or prints.
    """

    def __init__(
        self,
        config: Config,
        run_dir: str | Path,
        *,
        resume: bool = False,
        echo: Callable[[str], None] = _silent,
        stop_after: int | None = None,
        context: DistContext | None = None,
    ) -> None:
        self.config, self.run_dir = config, Path(run_dir)
        self.stop_after = stop_after
        self.context = context or init_distributed(config.train.device, config.train.ddp_timeout_s)
        self.main = self.context.is_main
        self.echo = echo if self.main else _silent
        self.device = self.context.device
        self._check_device_options()
        if self.main:
            self._check_run_dir(resume)
        self.data, self.loaders, self.model = assemble(config, self.context)
        if config.head.kind != "learnable":
            check_same_frame(self.model.head.frame, self.context)
        self.loss_fn = build_loss(config, self.model, self.data.hierarchy).to(self.device)
        self.optimizer = build_optimizer(config, self.model)
        steps_per_epoch = math.ceil(len(self.loaders[0]) / config.train.accumulate)
        self.scheduler = build_scheduler(config, self.optimizer, steps_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.train.amp == "fp16")
        self.forward = self._wrap(self.model)
        self.groups = shot_group_classes(config, self.data)
        self.epoch = 0
        self.global_step = 0
        self.best: dict[str, Any] | None = None
        self.best_epoch: int | None = None
        self.elapsed = 0.0
        self.report_path: Path | None = None
        if resume:
            self._restore(load_checkpoint(self.run_dir / "checkpoints" / "last.pt"))
        elif self.main:  # only now that everything has been built: a failed start leaves no files
            (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(to_yaml(config), encoding="utf-8")

    # ------------------------------------------------------------------ set-up

    def _check_device_options(self) -> None:
        amp = self.config.train.amp
        if amp != "off" and self.device.type != "cuda":
            raise ConfigError(
                f"train.amp={amp!r} needs a CUDA device, but training runs on "
                f"{self.device.type}; set train.amp=off"
            )
        if self.config.train.sync_bn and self.context.enabled and self.device.type != "cuda":
            raise ConfigError(
                "train.sync_bn=true needs CUDA devices (SyncBatchNorm has no CPU kernel); set "
                "train.sync_bn=false for gloo/CPU runs"
            )

    def _wrap(self, model: Classifier) -> nn.Module:
        """What the training step calls: DDP (and SyncBatchNorm) under torchrun, compiled
        if asked. ``self.model`` stays the plain module (checkpoints, evaluation)."""
        forward: nn.Module = model
        if self.context.enabled:
            if self.config.train.sync_bn:
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
                self.model = model
            ids = [self.device.index] if self.device.type == "cuda" else None
            forward = DistributedDataParallel(model, device_ids=ids)
        return torch.compile(forward) if self.config.train.compile else forward

    def _check_run_dir(self, resume: bool) -> None:
        if resume:
            if not (self.run_dir / "checkpoints" / "last.pt").is_file():
                raise FileNotFoundError(
                    f"cannot resume: {self.run_dir / 'checkpoints' / 'last.pt'} does not exist"
                )
            return
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise ValueError(
                f"run directory {str(self.run_dir)!r} already holds files; resume it with "
                "--resume, or choose another --run-dir"
            )

    # ------------------------------------------------------------------ checkpoints

    def _state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "config": config_to_dict(self.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python": list(random.getstate()[1]),
            },
            "best": json.dumps(self.best),
            "best_epoch": self.best_epoch,
            "elapsed": self.elapsed,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        saved = config_from_dict(state["config"])
        if config_to_dict(saved)["model"] != config_to_dict(self.config)["model"] or (
            config_to_dict(saved)["head"] != config_to_dict(self.config)["head"]
        ):
            raise ValueError("the checkpoint's model/head config differs from the run's config")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        python_state = random.getstate()
        random.setstate((python_state[0], tuple(state["rng"]["python"]), python_state[2]))
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        self.best, self.best_epoch = json.loads(state["best"]), state["best_epoch"]
        self.elapsed = state["elapsed"]

    def _save(self, name: str) -> None:
        if self.main:
            save_checkpoint(self._state(), self.run_dir / "checkpoints" / name)

    # ------------------------------------------------------------------ one epoch

    def _autocast(self):
        amp = self.config.train.amp
        if amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _loss(self, logits, h, targets) -> torch.Tensor:
        if isinstance(self.loss_fn, nn.CrossEntropyLoss):
            if isinstance(targets, tuple):
                y_a, y_b, lam = targets
                return lam * self.loss_fn(logits, y_a) + (1 - lam) * self.loss_fn(logits, y_b)
            return self.loss_fn(logits, targets)
        if isinstance(self.loss_fn, SoftLabelCrossEntropy):
            return self.loss_fn(logits, targets)
        return self.loss_fn(h, targets, self.model.head.frame)

    def _micro_step(self, x, targets, sync: bool, scale: float):
        """Forward and backward of one micro-batch; gradients are synchronised across
        processes only on the last micro-batch of an optimiser step."""
        no_sync = getattr(self.forward, "no_sync", None)
        context = contextlib.nullcontext() if sync or no_sync is None else no_sync()
        with context:
            with self._autocast():
                logits, h = self.forward(x, return_features=True)
                loss = self._loss(logits, h, targets)
            self.scaler.scale(loss * scale).backward()
        return loss.detach(), logits.detach()

    def _optimizer_step(self) -> None:
        if self.config.optim.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.global_step += 1

    def _check_finite(self, loss_sum: torch.Tensor) -> None:
        if not bool(torch.isfinite(loss_sum)):
            raise FloatingPointError(
                f"the training loss became {float(loss_sum)} in epoch {self.epoch + 1} (step "
                f"{self.global_step}): lower optim.lr or set optim.grad_clip"
            )

    def _train_epoch(self, progress) -> dict[str, float]:
        cfg, accumulate = self.config, self.config.train.accumulate
        self.model.train()
        loader = self.loaders[0]
        loader.set_epoch(self.epoch)
        mix_rng = epoch_generator(cfg.train.seed + 7919, self.epoch)
        # Running sums stay on the device; reading them (a sync) happens every few steps only.
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss, correct, seen
        batches = len(loader)
        self.optimizer.zero_grad(set_to_none=True)
        for index, (x, y) in enumerate(loader):
            targets: Any = y
            if cfg.train.mixup_alpha > 0:
                x, y_a, y_b, lam = mixup(x, y, cfg.train.mixup_alpha, mix_rng)
                targets = (y_a, y_b, lam)
            boundary = (index + 1) % accumulate == 0 or index + 1 == batches
            loss, logits = self._micro_step(x, targets, sync=boundary, scale=1 / accumulate)
            totals += torch.stack(
                [
                    loss.double() * y.shape[0],
                    (logits.argmax(1) == y).sum().double(),
                    torch.tensor(float(y.shape[0]), device=self.device),
                ]
            )
            if boundary:
                self._optimizer_step()
            progress.update(1)
            if index % 20 == 0 or index + 1 == batches:
                loss_sum, correct, seen = totals.tolist()
                self._check_finite(totals[0])
                progress.set_postfix(
                    loss=f"{loss_sum / seen:.4f}",
                    acc=f"{correct / seen:.3f}",
                    lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                    refresh=False,
                )
        if self.context.enabled:
            torch.distributed.all_reduce(totals)
        loss_sum, correct, seen = totals.tolist()
        return {"loss": loss_sum / max(seen, 1), "batch_accuracy": correct / max(seen, 1)}

    # ------------------------------------------------------------------ evaluation

    def evaluate(self) -> dict[str, Any]:
        """Train-set (no augmentation; optionally subsampled) and test-set metrics."""
        tree = self.data.hierarchy
        return evaluate_splits(
            self.model,
            self.loaders,
            self.groups,
            self.device,
            distributed=self.context.enabled,
            lca=None if tree is None else tree.lca_heights(),
        )

    # ------------------------------------------------------------------ the loop

    def fit(self) -> dict[str, Any]:
        """Train to ``train.epochs`` (from the resumed epoch) and return the summary."""
        cfg = self.config
        writer = self._tensorboard()
        progress = self._progress_bar()
        last_eval: dict[str, Any] | None = None
        try:
            with progress:
                while self.epoch < cfg.train.epochs:
                    started = time.perf_counter()
                    progress.set_description(f"epoch {self.epoch + 1}/{cfg.train.epochs}")
                    train_stats = self._train_epoch(progress)
                    self.epoch += 1
                    record: dict[str, Any] = {
                        "epoch": self.epoch,
                        "step": self.global_step,
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "train_loss": train_stats["loss"],
                        "train_batch_accuracy": train_stats["batch_accuracy"],
                    }
                    if self.epoch % cfg.eval.every == 0 or self.epoch == cfg.train.epochs:
                        last_eval = self.evaluate()
                        record.update(last_eval)
                        self._track_best(last_eval)
                    self.elapsed += time.perf_counter() - started
                    record["elapsed_s"] = self.elapsed
                    self._log(record, writer)
                    self._save("last.pt")
                    if self.stop_after is not None and self.epoch >= self.stop_after:
                        break
        except KeyboardInterrupt:
            self.echo(
                f"interrupted in epoch {self.epoch + 1}: checkpoints/last.pt holds the end of "
                f"epoch {self.epoch}; continue with --resume {self.run_dir}"
            )
            raise
        finally:
            if writer is not None:
                writer.close()
        if last_eval is None:
            last_eval = self.evaluate()
        summary = self._summary(last_eval)
        if self.main:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        self.report_path = self._write_report()
        return summary

    def _write_report(self) -> Path | None:
        """The HTML report of the finished run (rank 0, ``log.report``). The run is already
        saved, so a report that fails is reported and skipped, never fatal."""
        if not (self.main and self.config.log.report):
            return None
        from neuralcollapse.report import write_report

        try:
            return write_report([self.run_dir])
        except Exception as exc:  # noqa: BLE001 - any failure here must not lose the run
            self.echo(
                f"the HTML report could not be written ({type(exc).__name__}: {exc}); "
                f"try: neuralcollapse report {self.run_dir}"
            )
            return None

    def _track_best(self, evaluation: dict[str, Any]) -> None:
        top1 = evaluation["test"]["top1"]
        if self.best is None or top1 > self.best["test"]["top1"]:
            self.best, self.best_epoch = evaluation, self.epoch
            self._save("best.pt")

    def _log(self, record: dict[str, Any], writer) -> None:
        if not self.main:
            return
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, allow_nan=True) + "\n")
        if writer is None:
            return
        step = record["epoch"]
        writer.add_scalar("train/loss", record["train_loss"], step)
        writer.add_scalar("train/lr", record["lr"], step)
        for split in ("train", "test"):
            if split not in record:
                continue
            for key in SUMMARY_KEYS:
                value = record[split].get(key)
                if value is not None and not math.isnan(value):
                    writer.add_scalar(f"{split}/{key}", value, step)
            for key in COLLAPSE_SCALARS:
                value = record[split]["collapse"].get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    writer.add_scalar(f"{split}/collapse/{key}", value, step)
            for key, value in record[split].get("hierarchical", {}).items():
                if key != "num_samples" and math.isfinite(value):
                    writer.add_scalar(f"{split}/hierarchical/{key}", value, step)

    def _tensorboard(self):
        if not (self.config.log.tensorboard and self.main):
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=self.epoch + 1)

    def _progress_bar(self):
        from tqdm.auto import tqdm

        mode = self.config.log.progress
        enabled = self.main and (mode == "on" or (mode == "auto" and sys.stderr.isatty()))
        total = (self.config.train.epochs - self.epoch) * len(self.loaders[0])
        return tqdm(total=total, disable=not enabled, unit="step", dynamic_ncols=True, leave=False)

    def _summary(self, final: dict[str, Any]) -> dict[str, Any]:
        def pick(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
            if evaluation is None:
                return None

            def split(result: dict[str, Any]) -> dict[str, Any]:
                picked = {key: result[key] for key in SUMMARY_KEYS}
                picked["collapse"] = result["collapse"]
                if "hierarchical" in result:
                    picked["hierarchical"] = result["hierarchical"]
                return picked

            return {**split(evaluation["test"]), "train": split(evaluation["train"])}

        return {
            "name": self.config.name,
            "run_dir": str(self.run_dir),
            "epochs": self.epoch,
            "final": pick(final),
            "best": pick(self.best),
            "best_epoch": self.best_epoch,
            "best_rule": "highest test top-1 over the evaluated epochs",
            "wall_time_s": self.elapsed,
            "seed": self.config.train.seed,
            "device": str(self.device),
            "world_size": self.context.world_size,
            "versions": {
                "neuralcollapse": neuralcollapse.__version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
            "config": yaml.safe_load(to_yaml(self.config)),
        }
