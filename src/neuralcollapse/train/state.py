"""A run's progress and its checkpoints: what ``last.pt`` and ``best.pt`` hold, and when
they are written.

:class:`RunState` is the progress of a run (epoch, step, time, the best epoch so far, the
stage-2 flag); :class:`Checkpoints` turns it and the model, optimiser, schedule, scaler and
RNG states into a checkpoint, restores one, and writes files of the run directory (rank 0
only), during :meth:`Checkpoints.background` on a background thread so that their fsync
overlaps training.

Inside :meth:`Checkpoints.background` a checkpoint is taken (copied, 0.35 ms for the
default job) whenever asked but written at most once per ``log.checkpoint_interval_s``:
pickling and writing one costs about 2 ms of CPU and holds the GIL against the training
loop, 4% of an epoch of the default job (measured 2026-12-06, benchmarks/
bench_epoch_overhead.py with the interval at 0). The checkpoints held back are written
when the block ends, normally or by an exception (Ctrl-C, a NaN loss): only a hard kill
loses them, and resume then replays those epochs from the last written one.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from neuralcollapse._internal import jsonio
from neuralcollapse._internal.jsonio import dumps
from neuralcollapse.rundir import RunDir
from neuralcollapse.train.checkpoint import BackgroundWriter, save_checkpoint, snapshot
from neuralcollapse.train.config import Config, config_to_dict

__all__ = ["Checkpoints", "RunState"]


class _Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@dataclass
class RunState:
    """Where a run stands.

    Attributes:
        epoch: finished epochs (stage 2 continues the numbering once it has finished).
        global_step: optimiser steps taken.
        elapsed: seconds spent in epochs (training and evaluation), over all sessions.
        best: the evaluation of the best epoch so far (``{split: metrics}``), or None.
        best_epoch: its epoch, or None.
        stage2_done: ``train.stage2`` has finished (its model is in ``last.pt``).
    """

    epoch: int = 0
    global_step: int = 0
    elapsed: float = 0.0
    best: dict[str, Any] | None = None
    best_epoch: int | None = None
    stage2_done: bool = False


class Checkpoints:
    """Checkpoints of one run: ``parts`` (name -> object with ``state_dict`` /
    ``load_state_dict``: model, optimizer, scheduler, scaler) plus ``state`` and the RNGs.

    Args:
        run: the run directory (None on ranks other than 0: nothing is written).
        config: the run's config, stored in every checkpoint.
        parts: what is saved besides the progress.
        state: the run's progress (shared with the Trainer, read at each save).
    """

    def __init__(
        self,
        run: RunDir | None,
        config: Config,
        parts: Mapping[str, _Stateful],
        state: RunState,
    ) -> None:
        self.run, self.config, self.parts, self.state = run, config, dict(parts), state
        self._config_values = config_to_dict(config)  # fixed for the run: built once
        self.saved_epoch: int | None = None  # the epoch the run's last.pt holds
        self._writes: BackgroundWriter | None = None
        self.interval_s = float(config.log.checkpoint_interval_s)
        # Checkpoints taken but not yet written, by name, in the order taken (best.pt
        # before last.pt), and when the last ones were handed to the writer.
        self._held: dict[str, dict[str, Any]] = {}
        self._written_at = -math.inf

    def content(self, copy: bool = False, epoch: int | None = None) -> dict[str, Any]:
        """The checkpoint's content; with ``copy`` its tensors are copies (the rest is
        built afresh anyway), so that it can be written while training goes on.
        ``epoch`` (default ``state.epoch``) is the epoch it says it holds."""
        keep = snapshot if copy else (lambda value: value)
        state = self.state
        content = {name: keep(part.state_dict()) for name, part in self.parts.items()}
        content.update(
            epoch=state.epoch if epoch is None else epoch,
            global_step=state.global_step,
            config=self._config_values,
            rng={
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python": list(random.getstate()[1]),
            },
            best=dumps(state.best),  # JSON text: any nesting loads with weights_only
            best_epoch=state.best_epoch,
            elapsed=state.elapsed,
            stage2_done=state.stage2_done,
        )
        return content

    def restore(self, content: dict[str, Any]) -> None:
        """Load a checkpoint's content into the parts, the RNGs and the progress."""
        for name, part in self.parts.items():
            part.load_state_dict(content[name])
        torch.set_rng_state(content["rng"]["torch"])
        if content["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(content["rng"]["cuda"])
        python_state = random.getstate()
        random.setstate((python_state[0], tuple(content["rng"]["python"]), python_state[2]))
        state = self.state
        state.epoch, state.global_step = content["epoch"], content["global_step"]
        state.best, state.best_epoch = jsonio.loads(content["best"]), content["best_epoch"]
        state.elapsed = content["elapsed"]
        state.stage2_done = bool(content.get("stage2_done", False))
        self.saved_epoch = state.epoch

    def write(self, job: Callable[..., Any], *args: Any) -> None:
        """Run a write into the run directory (rank 0 only): inside :meth:`background`
        queued on its thread, in order; else now."""
        if self.run is None:
            return
        if self._writes is None:
            job(*args)
        else:
            self._writes.submit(job, *args)

    def save(self, name: str, *, epoch: int | None = None) -> None:
        """Checkpoint the current state as the run's ``name`` checkpoint ("last",
        "best"; a snapshot: the write may finish while training goes on), saying it
        holds ``epoch`` (default ``state.epoch``; stage 2 keeps ``state.epoch`` at the
        last checkpointed epoch until it ends)."""
        if self.run is None:
            return
        content = self.content(copy=True, epoch=epoch)
        if self._writes is None or self.interval_s == 0:
            self.write(self._save_now, content, name)
            return
        self._held[name] = content  # a later one of the same name replaces it
        # last.pt is taken once per epoch, after best.pt: its turn decides for both.
        if name == "last" and time.monotonic() - self._written_at >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        """Hand the checkpoints held back to the writer (in the order they were taken)."""
        held, self._held = self._held, {}
        for name, content in held.items():
            self.write(self._save_now, content, name)
        self._written_at = time.monotonic()

    def _save_now(self, content: dict[str, Any], name: str) -> None:
        assert self.run is not None
        save_checkpoint(content, self.run.checkpoint(name))
        if name == "last":
            self.saved_epoch = content["epoch"]

    @contextlib.contextmanager
    def background(self) -> Iterator[None]:
        """Queue the writes inside on a background thread; on the way out wait for them
        (also after an error or Ctrl-C), raising the first failed write."""
        self._writes = BackgroundWriter()
        self._written_at = -math.inf  # the first checkpoint is written at once
        try:
            yield
        finally:
            self.flush()  # each held checkpoint is of a finished epoch: keep it
            writes, self._writes = self._writes, None
            writes.close()

    def saved_state_line(self, run_dir: Path) -> str:
        """What the run directory holds now, for messages."""
        run = RunDir(run_dir)
        last = run.last_checkpoint
        if self.saved_epoch is not None and last.is_file():
            return (
                f"{last.relative_to(run.path).as_posix()} holds epoch {self.saved_epoch}; "
                f"continue with: neuralcollapse train --resume {run_dir}"
            )
        return f"no epoch was saved; start again with --run-dir {run_dir}"
