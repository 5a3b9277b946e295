"""The training loop: one readable page from a checked config to a finished run directory.

The pieces live elsewhere: the run directory and its files (:mod:`neuralcollapse.rundir`),
data and loaders (:mod:`.data`), model, loss, optimiser and schedule (:mod:`.build`),
evaluation (:mod:`.evaluation`), checkpoints (:mod:`.checkpoint`), logging (:mod:`.log`),
processes and devices (:mod:`.distributed`), and what may change on resume
(:func:`.config.check_resume_changes`).

The loop is deterministic for a given config: the data order and augmentation of epoch e
depend only on (train.seed, e), and every RNG state is checkpointed, so a resumed run
continues exactly as an uninterrupted one.

What each epoch measures follows :func:`.evaluation.eval_plan`: validation and test
accuracy every ``eval.every`` epochs, the collapse metrics (and the training split, on its
``eval.train_subsample``) every ``eval.collapse_every`` epochs, and everything on the whole
training split at the last epoch. Each record says what it holds (``measured``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from neuralcollapse._internal.jsonio import dumps
from neuralcollapse._internal.seeding import derive_generator
from neuralcollapse._internal.threads import torch_threads
from neuralcollapse.data import mixup
from neuralcollapse.errors import RunFailed
from neuralcollapse.rundir import RunDir, default_run_name
from neuralcollapse.train import stage2
from neuralcollapse.train.build import (
    Classifier,
    build_loss,
    build_model,
    build_optimizer,
    build_scheduler,
    run_threads,
)
from neuralcollapse.train.checkpoint import (
    BackgroundWriter,
    load_checkpoint,
    save_checkpoint,
    snapshot,
)
from neuralcollapse.train.config import (
    Config,
    best_split,
    check_resume_changes,
    config_from_dict,
    config_to_dict,
    to_yaml,
)
from neuralcollapse.train.data import Loaders, TrainingData, build_loaders, load_training_data
from neuralcollapse.train.distributed import (
    DistContext,
    broadcast_object,
    check_device_options,
    check_same_frame,
    init_distributed,
)
from neuralcollapse.train.evaluation import eval_plan, evaluate_splits
from neuralcollapse.train.log import SUMMARY_KEYS, RunLog, build_summary

__all__ = ["Trainer", "assemble"]


def _silent(_: str) -> None:
    return None


def _input_shape(data: TrainingData, crop_size: int | None = None) -> tuple[int, ...]:
    """(C, H, W) the model sees: a sample's, or (C, crop, crop) under data.crop_size."""
    images = getattr(data.train, "images", None)
    shape = tuple(images.shape[1:]) if images is not None else tuple(data.train[0][0].shape)
    if crop_size is not None and len(shape) == 3 and crop_size < min(shape[1:]):
        return (shape[0], crop_size, crop_size)
    return shape


def assemble(
    config: Config, context: DistContext | torch.device
) -> tuple[TrainingData, Loaders, Classifier]:
    """Data, loaders and model of ``config`` on this process's device."""
    if isinstance(context, torch.device):
        context = DistContext(device=context)
    data = load_training_data(config)
    loaders = build_loaders(data, config, context)
    model = build_model(
        config, data.num_classes, _input_shape(data, config.data.crop_size), data.hierarchy
    )
    return data, loaders, model.to(context.device)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool, device: torch.device) -> Iterator[None]:
    """``train.deterministic``: deterministic kernels for the duration (and cuBLAS's
    workspace setting that they need on CUDA), restored afterwards."""
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


class Trainer:
    """Train ``config`` into a run directory.

    Args:
        config: a checked :class:`Config`.
        run_dir: the run directory: new or empty (or left by a start that failed before
            its first checkpoint); None picks ``runs/<name>-<time>`` (``log.run_dir`` if
            set), made unique when another run took that name in the same second.
        resume: continue the run in ``run_dir`` from ``checkpoints/last.pt``. ``config``
            may differ from the checkpoint's only where the resume policy allows
            (:data:`~neuralcollapse.train.config.RESUMABLE_CHANGES`: train.epochs, the
            evaluation schedule, log.*); anything else raises ConfigError.
        echo: where progress lines go (the CLI passes ``print``; the default is silent).
        stop_after: stop (with a checkpoint) after this many completed epochs, as an
            interruption would; ``resume`` then finishes the run.
        context: this process's place in a torchrun group (default: joins the group that
            the environment describes, or runs alone). Only rank 0 writes files or prints.

    The run directory is claimed (created and locked) before any data is loaded; a second
    process asking for it is refused until this one ends.
    """

    def __init__(
        self,
        config: Config,
        run_dir: str | Path | None = None,
        *,
        resume: bool = False,
        echo: Callable[[str], None] = _silent,
        stop_after: int | None = None,
        context: DistContext | None = None,
    ) -> None:
        self.config, self.stop_after = config, stop_after
        self.context = context or init_distributed(config.train.device, config.train.ddp_timeout_s)
        self.main, self.device = self.context.is_main, self.context.device
        self.echo = echo if self.main else _silent
        check_device_options(config, self.context)
        self.run = self._claim(run_dir, resume) if self.main else None
        self.run_dir = Path(
            broadcast_object(str(self.run.path) if self.run else None, self.context)
        )
        try:
            self._build(resume)
        except BaseException:
            if self.run is not None:
                self.run.abandon()  # a failed start leaves nothing behind
            raise

    def _claim(self, run_dir: str | Path | None, resume: bool) -> RunDir:
        if resume:
            return RunDir.claim(run_dir)
        if run_dir is None and self.config.log.run_dir is None:
            return RunDir.create(Path("runs") / default_run_name(self.config.name), unique=True)
        return RunDir.create(run_dir if run_dir is not None else self.config.log.run_dir)

    def _build(self, resume: bool) -> None:
        config = self.config
        state = load_checkpoint(self.run_dir / "checkpoints" / "last.pt") if resume else None
        if state is not None:
            saved = config_from_dict(state["config"])
            check_resume_changes(saved, config)
            stage2.check_resume(saved, config, bool(state.get("stage2_done", False)))
        self.data, self.loaders, self.model = assemble(config, self.context)
        shape = _input_shape(self.data, config.data.crop_size)
        self.threads = run_threads(config, self.model, shape, self.device)  # None: torch's
        if config.head.kind != "learnable":
            check_same_frame(self.model.head.frame, self.context)
        counts = self.data.train_counts
        self.loss_fn = build_loss(config, self.model, self.data.hierarchy, counts).to(self.device)
        self.optimizer = build_optimizer(config, self.model)
        steps_per_epoch = math.ceil(len(self.loaders.train) / config.train.accumulate)
        self.scheduler = build_scheduler(config, self.optimizer, steps_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.train.amp == "fp16")
        self.forward = self._wrap(self.model)
        self.epoch, self.global_step, self.elapsed = 0, 0, 0.0
        self.best: dict[str, Any] | None = None
        self.best_epoch: int | None = None
        self.stage2_done = False  # train.stage2 finished (its model is in last.pt)
        self.saved_epoch: int | None = None  # the epoch checkpoints/last.pt holds
        self._writes: BackgroundWriter | None = None  # during fit: run-directory writes
        if state is not None:
            self._restore(state)
        if self.run is not None:
            if state is not None:
                self.run.truncate_records(self.epoch)  # records of epochs never checkpointed
            self.run.write_config(to_yaml(config))

    def close(self) -> None:
        """Release the run directory (also happens when the process ends)."""
        if self.run is not None:
            self.run.release()

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

    # ------------------------------------------------------------------ checkpoints

    def _state(self, copy: bool = False) -> dict[str, Any]:
        """The checkpoint's content; with ``copy`` its tensors are copies (the rest is
        built afresh anyway), so that it can be written while training goes on."""
        keep = snapshot if copy else (lambda value: value)
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "config": config_to_dict(self.config),
            "model": keep(self.model.state_dict()),
            "optimizer": keep(self.optimizer.state_dict()),
            "scheduler": keep(self.scheduler.state_dict()),
            "scaler": keep(self.scaler.state_dict()),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python": list(random.getstate()[1]),
            },
            "best": dumps(self.best),  # JSON text: any nesting loads with weights_only
            "best_epoch": self.best_epoch,
            "elapsed": self.elapsed,
            "stage2_done": self.stage2_done,
        }

    def _restore(self, state: dict[str, Any]) -> None:
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
        self.stage2_done = bool(state.get("stage2_done", False))
        self.saved_epoch = self.epoch

    def _write(self, job: Callable[..., Any], *args: Any) -> None:
        """Run a write into the run directory (rank 0 only): during :meth:`fit` queued on
        its background thread, in order, so that its fsync overlaps training; else now."""
        if self.run is None:
            return
        if self._writes is None:
            job(*args)
        else:
            self._writes.submit(job, *args)

    def _save(self, name: str) -> None:
        """Checkpoint the current state as ``checkpoints/<name>.pt`` (a snapshot: the
        write may finish while training goes on)."""
        if self.run is not None:
            self._write(self._save_now, self._state(copy=True), name)

    def _save_now(self, state: dict[str, Any], name: str) -> None:
        save_checkpoint(state, self.run.checkpoint(name))
        if name == "last":
            self.saved_epoch = state["epoch"]

    def record(self, log: RunLog, record: dict[str, Any]) -> None:
        """Write one epoch's record (``metrics.jsonl``, trackers, the plain line) in order
        with the checkpoints: before the epoch's ``last.pt``."""
        self._write(log.record, record)

    def saved_state_line(self) -> str:
        """What the run directory holds now, for messages."""
        if self.saved_epoch is not None and (self.run_dir / "checkpoints" / "last.pt").is_file():
            return (
                f"checkpoints/last.pt holds epoch {self.saved_epoch}; continue with: "
                f"neuralcollapse train --resume {self.run_dir}"
            )
        return f"no epoch was saved; start again with --run-dir {self.run_dir}"

    # ------------------------------------------------------------------ one epoch

    def _autocast(self) -> contextlib.AbstractContextManager:
        amp = self.config.train.amp
        if amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _micro_step(self, x, targets, sync: bool, scale: float):
        """Forward and backward of one micro-batch; gradients are synchronised across
        processes only on the last micro-batch of an optimiser step."""
        no_sync = getattr(self.forward, "no_sync", None)
        context = contextlib.nullcontext() if sync or no_sync is None else no_sync()
        with context:
            with self._autocast():
                logits, h = self.forward(x, return_features=True)
                frame = getattr(self.model.head, "frame", None)
                loss = self.loss_fn(logits, h, targets, frame)
            self.scaler.scale(loss if scale == 1 else loss * scale).backward()
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

    def _sums(
        self, losses: list[torch.Tensor], correct: list[torch.Tensor], sizes: list[int]
    ) -> torch.Tensor:
        """(3,) float64: the summed loss (per-batch means x batch sizes), correct
        predictions and samples of the micro-batches in the lists, which it empties (so
        each micro-batch is summed once)."""
        weights = torch.tensor(sizes, dtype=torch.float64, device=self.device)
        loss_sum = (torch.stack(losses).double() * weights).sum()
        sums = torch.stack([loss_sum, torch.stack(correct).sum().double(), weights.sum()])
        for pending in (losses, correct, sizes):
            pending.clear()
        return sums

    def _train_epoch(self, log: RunLog) -> dict[str, float]:
        cfg, accumulate, loader = self.config, self.config.train.accumulate, self.loaders.train
        self.model.train()
        loader.set_epoch(self.epoch)
        self.loss_fn.set_epoch(self.epoch)  # deferred re-weighting switches here
        mix_rng = derive_generator(cfg.train.seed, "mixup", self.epoch)
        # Per micro-batch mean losses and hits stay on the device, summed (a sync) every
        # few steps only; the fewer small operations per step, the closer to a bare loop.
        losses: list[torch.Tensor] = []
        correct: list[torch.Tensor] = []
        sizes: list[int] = []
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
            losses.append(loss)
            correct.append((logits.argmax(1) == y).sum())
            sizes.append(y.shape[0])
            if boundary:
                self._optimizer_step()
            log.bar.update(1)
            if index % 20 == 0 or index + 1 == batches:
                totals = totals + self._sums(losses, correct, sizes)
                self._check_finite(totals[0])
                loss_sum, hits, count = totals.tolist()
                lr = self.optimizer.param_groups[0]["lr"]
                log.bar.set_postfix(
                    loss=f"{loss_sum / count:.4f}", acc=f"{hits / count:.3f}", lr=f"{lr:.2e}"
                )
        if self.context.enabled:
            torch.distributed.all_reduce(totals)
        loss_sum, hits, count = totals.tolist()
        return {"loss": loss_sum / max(count, 1), "batch_accuracy": hits / max(count, 1)}

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, *, collapse: bool = True, full: bool = True) -> dict[str, Any]:
        """Evaluate the model now: the validation (when there is one) and test splits, and
        with ``collapse`` the training split too (no augmentation; whole with ``full``,
        else its ``eval.train_subsample``), with every collapse metric; without
        ``collapse`` accuracy only. A collapse evaluation also saves the test-set class
        geometry for the report.

        Returns:
            ``{split: metrics}`` (``collapse`` is ``{}`` for an accuracy-only evaluation)
            and ``measured``: ``splits``, ``collapse``, ``train_samples`` (None when the
            training split was not evaluated) and ``train_size``.
        """
        held_out = ("val", "test") if self.loaders.val is not None else ("test",)
        # the training split only with the collapse metrics (its accuracy alone says little)
        splits = ("train", *held_out) if collapse else held_out
        results = evaluate_splits(
            self.model,
            self.loaders,
            self.data,
            self.config,
            self.device,
            splits=splits,
            train_sample=not full,
            distributed=self.context.enabled,
            collapse=collapse,
        )
        evaluation: dict[str, Any] = {split: result.metrics for split, result in results.items()}
        train_samples = evaluation["train"]["num_samples"] if collapse else None
        if collapse and self.run is not None:
            head = self.config.head.kind
            kind = "learned classifier" if head == "learnable" else "fixed frame"
            geometry = dict(
                class_means=results["test"].class_means.numpy(),
                classifier=self.model.head.weight.detach().double().cpu().numpy(),
                kind=f"{kind} ({head})",
                epoch=self.epoch,
            )
            self._write(lambda: self.run.write_geometry(**geometry))
        evaluation["measured"] = {
            "splits": list(splits),
            "collapse": collapse,
            "train_samples": train_samples,
            "train_size": len(self.data.train.labels),
        }
        return evaluation

    def _track_best(self, evaluation: dict[str, Any]) -> None:
        """Keep (and checkpoint) the evaluation with the highest
        ``train.select_best_metric`` on the ``train.select_best_on`` split (the first of
        equal ones); nothing without such a split."""
        split = best_split(self.config)
        if split is None:
            return
        metric = self.config.train.select_best_metric
        value = evaluation[split].get(metric)
        if value is None:
            return
        if self.best is None or value > (self.best[split].get(metric) or -math.inf):
            self.best, self.best_epoch = evaluation, self.epoch
            self._save("best")

    # ------------------------------------------------------------------ the loop

    @contextlib.contextmanager
    def _background_writes(self) -> Iterator[None]:
        """Queue the run-directory writes inside on a background thread; on the way out
        wait for them (also after an error or Ctrl-C), raising the first failed write."""
        self._writes = BackgroundWriter()
        try:
            yield
        finally:
            writes, self._writes = self._writes, None
            writes.close()

    def fit(self) -> dict[str, Any]:
        """Train to ``train.epochs`` (from the resumed epoch) and return the summary.

        Raises:
            RunFailed: the loss became NaN/inf, or a file could not be written; the
                message says what the run directory holds.
            KeyboardInterrupt: after the last finished epoch was saved.
        """
        cfg = self.config
        last_eval: dict[str, Any] | None = None
        total = max(cfg.train.epochs - self.epoch, 0) * len(self.loaders.train)
        log = RunLog(cfg, self.run, self.echo, total_steps=total, first_epoch=self.epoch)
        try:
            with (
                log,
                torch_threads(self.threads),
                deterministic_algorithms(cfg.train.deterministic, self.device),
                self._background_writes(),
            ):
                while self.epoch < cfg.train.epochs:
                    started = time.perf_counter()
                    log.bar.set_description(f"epoch {self.epoch + 1}/{cfg.train.epochs}")
                    stats = self._train_epoch(log)
                    self.epoch += 1
                    record: dict[str, Any] = {
                        "epoch": self.epoch,
                        "step": self.global_step,
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "train_loss": stats["loss"],
                        "train_batch_accuracy": stats["batch_accuracy"],
                    }
                    plan = eval_plan(cfg, self.epoch, last=self.epoch == cfg.train.epochs)
                    if plan is not None:
                        last_eval = self.evaluate(collapse=plan.collapse, full=plan.full)
                        record.update(last_eval)
                        self._track_best(last_eval)
                    self.elapsed += time.perf_counter() - started
                    record["elapsed_s"] = self.elapsed
                    # The record first, then the checkpoint: a crash in between leaves a
                    # record past the checkpoint, which resume drops.
                    self.record(log, record)
                    self._save("last")
                    if self.stop_after is not None and self.epoch >= self.stop_after:
                        break
                if self.epoch >= cfg.train.epochs and (
                    self.stop_after is None or self.stop_after > cfg.train.epochs
                ):
                    last_eval = stage2.run_stage2(self, log) or last_eval  # train.stage2
                if last_eval is None or not _whole(last_eval):
                    # stopped early, or resumed when done: the final numbers are exact
                    # (the whole training split, every metric), recorded in summary.json
                    last_eval = self.evaluate()
        except KeyboardInterrupt:
            self.echo(f"interrupted in epoch {self.epoch + 1}: {self.saved_state_line()}")
            raise
        except FloatingPointError as exc:
            raise RunFailed(f"{exc}; {self.saved_state_line()}") from exc
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            raise RunFailed(
                f"cannot write{where}: {exc.strerror or exc}; {self.saved_state_line()}"
            ) from exc
        summary = build_summary(
            cfg,
            run_dir=str(self.run_dir),
            epochs=self.epoch,
            final=last_eval,
            best=None,
            best_epoch=self.best_epoch,
            wall_time_s=self.elapsed,
            device=self.device,
            world_size=self.context.world_size,
        )
        self._complete_summary(summary, last_eval)
        summary["stages"] = stage2.stage_summary(cfg, self.best_epoch, self.stage2_done)
        summary["class_names"] = list(self.data.class_names)  # labels the report's points
        if self.run is not None:
            self.run.write_summary(summary)
        return summary

    def _complete_summary(self, summary: dict[str, Any], final: dict[str, Any]) -> None:
        """Add to ``summary`` (of :func:`build_summary`) the validation numbers, the best
        epoch and how it was chosen, the evaluation schedule, the split sizes and the CPU
        threads."""
        cfg = self.config
        parts: dict[str, Any] = {}
        if "val" in final:
            summary["final"]["val"] = _numbers(final["val"])
        split, metric = best_split(cfg), cfg.train.select_best_metric
        best = None
        if split is not None and self.best is not None:
            best = {"split": split, "metric": metric, "epoch": self.best_epoch}
            best.update(_numbers(self.best["test"]))
            for name in ("val", "train"):
                if name in self.best:
                    best[name] = _numbers(self.best[name])
            best["measured"] = self.best.get("measured")
        else:
            parts["best_epoch"] = None
        parts["best"] = best
        parts["best_rule"] = _best_rule(cfg, split)
        held = self.data.val
        parts["splits"] = {
            "train": len(self.data.train.labels),
            "val": 0 if held is None else len(held.labels),
            "test": len(self.data.test.labels),
        }
        parts["evaluation"] = {
            "every": cfg.eval.every,
            "collapse_every": cfg.eval.collapse_every,
            "train_subsample": cfg.eval.train_subsample,
            "final": final.get("measured"),
        }
        parts["num_threads"] = torch.get_num_threads() if self.threads is None else self.threads
        summary.update(parts)


def _whole(evaluation: dict[str, Any]) -> bool:
    """Whether ``evaluation`` measured everything on the whole training split."""
    measured = evaluation.get("measured", {})
    return bool(measured.get("collapse")) and measured.get("train_samples") == measured.get(
        "train_size"
    )


def _numbers(result: dict[str, Any]) -> dict[str, Any]:
    """The summary numbers of one evaluated split (accuracy by shot group, the collapse
    report, the hierarchical metrics when measured)."""
    picked = {key: result.get(key) for key in SUMMARY_KEYS}
    picked["collapse"] = result.get("collapse", {})
    if "hierarchical" in result:
        picked["hierarchical"] = result["hierarchical"]
    return picked


def _best_rule(config: Config, split: str | None) -> str:
    metric = config.train.select_best_metric
    if split == "val":
        return f"highest validation {metric} over the evaluated epochs (the first of equal ones)"
    if split == "test":
        return (
            f"highest TEST {metric} over the evaluated epochs (train.select_best_on=test: "
            "chosen on the test set, an optimistic estimate)"
        )
    return (
        "no validation split to choose on: set data.val_fraction or data.val_list, or "
        "train.select_best_on=test to choose on the test set"
        if config.train.select_best_on == "auto"
        else "none asked for (train.select_best_on=none)"
    )
