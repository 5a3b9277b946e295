"""The training loop: one readable page from a checked config to a finished run directory.

The pieces live elsewhere: the run directory and its files (:mod:`neuralcollapse.rundir`),
data, loaders and model (:mod:`.assembly`), loss, optimiser and schedule (:mod:`.build`),
the training step (:mod:`.step`), evaluation and its schedule (:mod:`.evaluation`), the
best epoch (:mod:`.selection`), progress and checkpoints (:mod:`.state`), logging
(:mod:`.log`), ``summary.json`` (:mod:`.summary`), processes and devices
(:mod:`.distributed`), and what may change on resume (:func:`.config.check_resume_changes`).
Stage 2 (:mod:`.stage2`) runs through the public hooks :meth:`Trainer.conclude_epoch` and
:meth:`Trainer.save`.

The loop is deterministic for a given config: the data order and augmentation of epoch e
depend only on (train.seed, e), and every RNG state is checkpointed, so a resumed run
continues exactly as an uninterrupted one.

What each epoch measures follows :func:`.evaluation.eval_plan`: validation and test
accuracy every ``eval.every`` epochs, the collapse metrics (and the training split, on its
``eval.train_subsample``) every ``eval.collapse_every`` epochs, and everything on the whole
training split at the last epoch. Each record says what it holds (``measured``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from neuralcollapse._internal.threads import torch_threads
from neuralcollapse.errors import RunFailed
from neuralcollapse.rundir import RunDir, default_run_name
from neuralcollapse.train import stage2
from neuralcollapse.train.assembly import (
    assemble,
    deterministic_algorithms,
    input_shape,
    wrap_for_training,
)
from neuralcollapse.train.build import build_loss, build_optimizer, build_scheduler, run_threads
from neuralcollapse.train.checkpoint import load_checkpoint
from neuralcollapse.train.config import Config, check_resume_changes, config_from_dict, to_yaml
from neuralcollapse.train.distributed import (
    DistContext,
    broadcast_object,
    check_device_options,
    check_same_frame,
    init_distributed,
)
from neuralcollapse.train.evaluation import EvalPlan, eval_plan, evaluate_splits
from neuralcollapse.train.log import RunLog, result_table, start_line
from neuralcollapse.train.selection import improves
from neuralcollapse.train.state import Checkpoints, RunState
from neuralcollapse.train.step import TrainStep
from neuralcollapse.train.summary import build_summary

__all__ = ["Trainer", "assemble"]


def _silent(_: str) -> None:
    return None


class Trainer:
    """Train ``config`` into a run directory.

    Args:
        config: a checked :class:`Config`.
        run_dir: the run directory: new or empty (or left by a start that failed before
            its first checkpoint); None picks ``runs/<name>-<time>`` (``log.run_dir`` if
            set), made unique when another run took that name in the same second.
        resume: continue the run in ``run_dir`` from its last checkpoint. ``config``
            may differ from the checkpoint's only where the resume policy allows
            (:data:`~neuralcollapse.train.config.RESUMABLE_CHANGES`: train.epochs, the
            evaluation schedule, log.*); anything else raises ConfigError.
        echo: where progress lines go (the CLI passes ``print``; the default is silent).
        stop_after: stop (with a checkpoint) after this many completed epochs, as an
            interruption would; ``resume`` then finishes the run.
        context: this process's place in a torchrun group (default: joins the group that
            the environment describes, or runs alone). Only rank 0 writes files or prints.

    :meth:`fit` writes everything the config asks for (records, checkpoints, trackers,
    ``summary.json`` and, with ``log.report``, the HTML report), from Python as from the
    command line. The run directory is claimed (created and locked) before any data is
    loaded; a second process asking for it is refused until this one ends.
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
        self.config, self.stop_after, self.resumed = config, stop_after, resume
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
        saved = load_checkpoint(RunDir(self.run_dir).last_checkpoint) if resume else None
        if saved is not None:
            before = config_from_dict(saved["config"])
            check_resume_changes(before, config)
            stage2.check_resume(before, config, bool(saved.get("stage2_done", False)))
        self.data, self.loaders, model = assemble(config, self.context)
        shape = input_shape(self.data, config.data.crop_size)
        self.threads = run_threads(config, model, shape, self.device)  # None: torch's
        if config.head.kind != "learnable":
            check_same_frame(model.head.frame, self.context)
        counts = self.data.train_counts
        loss_fn = build_loss(config, model, self.data.hierarchy, counts).to(self.device)
        optimizer = build_optimizer(config, model)
        steps_per_epoch = math.ceil(len(self.loaders.train) / config.train.accumulate)
        scheduler = build_scheduler(config, optimizer, steps_per_epoch)
        scaler = torch.amp.GradScaler("cuda", enabled=config.train.amp == "fp16")
        self.model, forward = wrap_for_training(model, config, self.context)
        self.step = TrainStep(
            config,
            self.model,
            forward,
            loss_fn,
            optimizer,
            scheduler,
            scaler,
            distributed=self.context.enabled,
        )
        self.state = RunState()
        parts = dict(model=self.model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
        self.checkpoints = Checkpoints(self.run, config, parts, self.state)
        if saved is not None:
            self.checkpoints.restore(saved)
        if self.run is not None:
            if saved is not None:
                self.run.truncate_records(self.epoch)  # records of epochs never checkpointed
            self.run.write_config(to_yaml(config))

    @property
    def epoch(self) -> int:
        """Finished epochs (stage 2 continues the numbering once it has finished)."""
        return self.state.epoch

    @property
    def global_step(self) -> int:
        return self.state.global_step

    def close(self) -> None:
        """Release the run directory (also happens when the process ends)."""
        if self.run is not None:
            self.run.release()

    # ------------------------------------------------------------------ hooks (stage 2)

    def evaluate(
        self, *, collapse: bool = True, full: bool = True, epoch: int | None = None
    ) -> dict[str, Any]:
        """Evaluate the model now: the validation (when there is one) and test splits, and
        with ``collapse`` the training split too (no augmentation; whole with ``full``,
        else its ``eval.train_subsample``), with every collapse metric; without
        ``collapse`` accuracy only. A collapse evaluation also saves the test-set class
        geometry for the report, as of ``epoch`` (default: the finished epochs).

        Returns:
            ``{split: metrics}`` (``collapse`` is ``{}`` for an accuracy-only evaluation,
            null metrics and ``undefined`` when they could not be computed) and
            ``measured``: ``splits``, ``collapse``, ``train_samples`` (None when the
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
        if collapse and self.run is not None:
            head = self.config.head.kind
            kind = "learned classifier" if head == "learnable" else "fixed frame"
            geometry = dict(
                class_means=results["test"].class_means.numpy(),
                classifier=self.model.head.weight.detach().double().cpu().numpy(),
                kind=f"{kind} ({head})",
                epoch=self.state.epoch if epoch is None else epoch,
            )
            self.checkpoints.write(lambda: self.run.write_geometry(**geometry))
        evaluation["measured"] = {
            "splits": list(splits),
            "collapse": collapse,
            "train_samples": evaluation["train"]["num_samples"] if collapse else None,
            "train_size": len(self.data.train.labels),
        }
        return evaluation

    def conclude_epoch(
        self,
        log: RunLog,
        record: dict[str, Any],
        plan: EvalPlan | None,
        started: float,
        *,
        epoch: int,
    ) -> dict[str, Any] | None:
        """Finish the record of ``epoch`` (started at ``time.perf_counter()`` value
        ``started``): evaluate as ``plan`` says (not at all when None), keep the best epoch
        (and checkpoint it), add the elapsed time and write the record (``metrics.jsonl``,
        trackers, the plain line) in order with the checkpoints. Returns the evaluation."""
        evaluation = None
        if plan is not None:
            evaluation = self.evaluate(collapse=plan.collapse, full=plan.full, epoch=epoch)
            record.update(evaluation)
            if improves(self.config, self.state.best, evaluation):
                self.state.best, self.state.best_epoch = evaluation, epoch
                self.checkpoints.save("best", epoch=epoch)
        self.state.elapsed += time.perf_counter() - started
        record["elapsed_s"] = self.state.elapsed
        self.checkpoints.write(log.record, record)
        return evaluation

    def save(self, name: str = "last") -> None:
        """Checkpoint the run now as its ``name`` checkpoint (during :meth:`fit` written
        in the background, at most once per ``log.checkpoint_interval_s``)."""
        self.checkpoints.save(name)

    # ------------------------------------------------------------------ the loop

    def _train_epoch(self, log: RunLog) -> dict[str, float]:
        state = self.state
        stats = self.step.train_epoch(
            self.loaders.train, state.epoch, log, first_step=state.global_step
        )
        state.global_step += int(stats["steps"])
        return stats

    def _stage1(self, log: RunLog) -> dict[str, Any] | None:
        """The training epochs left (up to ``stop_after``); the last evaluation."""
        cfg, state, last = self.config, self.state, None
        while state.epoch < cfg.train.epochs:
            started = time.perf_counter()
            log.set_description(f"epoch {state.epoch + 1}/{cfg.train.epochs}")
            stats = self._train_epoch(log)
            state.epoch += 1
            record = {
                "epoch": state.epoch,
                "step": state.global_step,
                "lr": self.step.lr,
                "train_loss": stats["loss"],
                "train_batch_accuracy": stats["batch_accuracy"],
            }
            plan = eval_plan(cfg, state.epoch, last=state.epoch == cfg.train.epochs)
            last = self.conclude_epoch(log, record, plan, started, epoch=state.epoch) or last
            # The record first, then the checkpoint: a crash in between leaves a record
            # past the checkpoint, which resume drops.
            self.save("last")
            if self.stop_after is not None and state.epoch >= self.stop_after:
                break
        return last

    def fit(self) -> dict[str, Any]:
        """Train to ``train.epochs`` (from the resumed epoch) and return the summary.

        Raises:
            RunFailed: the loss became NaN/inf, or a file could not be written; the
                message says what the run directory holds.
            KeyboardInterrupt: after the last finished epoch was saved.
        """
        cfg, state = self.config, self.state
        total = max(cfg.train.epochs - state.epoch, 0) * len(self.loaders.train)
        log = RunLog(cfg, self.run, self.echo, total_steps=total, first_epoch=state.epoch)
        resumed_at = state.epoch if self.resumed else None
        self.echo(start_line(cfg, self.data, self.run_dir, self.context, resumed_at))
        try:
            with (
                log,
                torch_threads(self.threads),
                deterministic_algorithms(cfg.train.deterministic, self.device),
                self.checkpoints.background(),
            ):
                final = self._stage1(log)
                stopped = self.stop_after is not None and self.stop_after <= cfg.train.epochs
                if state.epoch >= cfg.train.epochs and not stopped:
                    self.checkpoints.flush()  # stage 1 finished: on disk before stage 2
                    final = stage2.run_stage2(self, log) or final  # train.stage2
                if final is None or not _whole(final):
                    # stopped early, or resumed when done: the final numbers are exact
                    # (the whole training split, every metric)
                    final = self.evaluate()
        except KeyboardInterrupt:
            self.echo(f"interrupted in epoch {state.epoch + 1}: {self._saved_line()}")
            raise
        except FloatingPointError as exc:
            raise RunFailed(f"{exc}; {self._saved_line()}") from exc
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            raise RunFailed(
                f"cannot write{where}: {exc.strerror or exc}; {self._saved_line()}"
            ) from exc
        return self._finish(final)

    def _finish(self, final: dict[str, Any]) -> dict[str, Any]:
        """Write ``summary.json`` and (``log.report``) the HTML report; show the test
        metrics, once."""
        num_threads = torch.get_num_threads() if self.threads is None else self.threads
        summary = build_summary(
            self.config,
            run_dir=str(self.run_dir),
            state=self.state,
            final=final,
            data=self.data,
            device=self.device,
            world_size=self.context.world_size,
            num_threads=num_threads,
        )
        if self.run is None:
            return summary
        self.run.write_summary(summary)
        if self.state.epoch < self.config.train.epochs:
            self.echo(f"stopped after epoch {self.state.epoch}; {self._saved_line()}")
        self.echo(result_table(summary))
        if self.config.log.report:
            self.echo(_write_report(self.run_dir))
        return summary

    def _saved_line(self) -> str:
        return self.checkpoints.saved_state_line(self.run_dir)


def _whole(evaluation: dict[str, Any]) -> bool:
    """Whether ``evaluation`` measured everything on the whole training split."""
    measured = evaluation.get("measured", {})
    return bool(measured.get("collapse")) and measured.get("train_samples") == measured.get(
        "train_size"
    )


def _write_report(run_dir: Path) -> str:
    """The HTML report of the finished run, as a line to show. The run is already saved,
    so a report that cannot be written (e.g. matplotlib missing) is reported and skipped,
    never fatal."""
    try:
        from neuralcollapse.report import write_report

        return f"report: {write_report([run_dir])}"
    except Exception as exc:  # noqa: BLE001 - any failure here must not lose the run
        return (
            f"the HTML report could not be written ({type(exc).__name__}: {exc}); "
            f"try: neuralcollapse report {run_dir}"
        )
