"""What a run tells the world: progress, one line per epoch, trackers, records.

Only the main process (rank 0) logs. With ``log.progress=auto`` a progress bar shows the
steps on a terminal; when stderr is not a terminal (SLURM, nohup, CI), or with
``log.progress=off``, no bar is drawn and every epoch prints one plain line instead (epoch,
loss, lr, test top-1 and NC1 when evaluated, validation top-1 when there is a validation
split, elapsed time). ``log.progress=on`` forces the bar. The scalars of every epoch also go
to the trackers the ``log.*`` keys switch on (:mod:`neuralcollapse.train.trackers`:
TensorBoard, Weights & Biases, MLflow).
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from typing import Any

import torch

import neuralcollapse
from neuralcollapse._internal.text import format_percent, format_sci
from neuralcollapse.rundir import RunDir
from neuralcollapse.train.config import Config, config_to_dict
from neuralcollapse.train.trackers import (
    SUMMARY_KEYS,
    Status,
    Tracker,
    epoch_scalars,
    open_trackers,
)

__all__ = ["RunLog", "SUMMARY_KEYS", "build_summary"]


class _NoBar:
    """Stands in for the progress bar when none is shown."""

    def update(self, _: int = 1) -> None:
        return None

    def set_description(self, _: str) -> None:
        return None

    def set_postfix(self, **_: Any) -> None:
        return None

    def close(self) -> None:
        return None


class RunLog:
    """Progress bar or plain lines, the trackers and ``metrics.jsonl`` of one run.

    Args:
        config: the run's config (``log.*`` keys).
        run: the run directory (None on ranks other than 0: nothing is written there).
        echo: where lines go (the CLI passes ``print``).
        total_steps: training steps left, for the progress bar.
        first_epoch: the epoch the run (re)starts from, so trackers continue from there.

    Raises:
        ConfigError: a switched-on tracker's package is missing (the message names the
            extra to install) or the tracker could not start.
    """

    def __init__(
        self,
        config: Config,
        run: RunDir | None,
        echo: Callable[[str], None],
        *,
        total_steps: int,
        first_epoch: int,
    ) -> None:
        self.config, self.run, self.echo = config, run, echo
        main = run is not None
        mode = config.log.progress
        self.bar_enabled = main and (mode == "on" or (mode == "auto" and sys.stderr.isatty()))
        self.lines = main and not self.bar_enabled
        self.trackers: list[Tracker] = (
            open_trackers(config, run, first_epoch=first_epoch) if run is not None else []
        )
        self.bar: Any = self._make_bar(total_steps) if self.bar_enabled else _NoBar()

    @staticmethod
    def _make_bar(total: int) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="step", dynamic_ncols=True, leave=True)

    def close(self, status: Status = "finished") -> None:
        """Close the bar and the trackers (``status``: how the run ended)."""
        self.bar.close()
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            tracker.close(status)

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.close("finished")
        else:
            self.close("killed" if issubclass(kind, KeyboardInterrupt) else "failed")

    def record(self, record: dict[str, Any]) -> None:
        """Write one finished epoch: ``metrics.jsonl``, the trackers, and a plain line."""
        if self.run is None:
            return
        self.run.append_record(record)
        if self.lines:
            self.echo(self.line(record))
        if self.trackers:
            scalars = epoch_scalars(record)
            for tracker in self.trackers:
                tracker.log_scalars(scalars, record["epoch"])

    def line(self, record: dict[str, Any]) -> str:
        """The plain one-line summary of an epoch's record: ``epoch 3/30  loss 0.0123  lr
        0.1  test top1 93.1%  nc1 0.21  val top1 92.0%  4.2s`` (what was measured)."""
        stage = record.get("stage")  # stage-2 epochs continue the numbering
        parts = [
            f"{stage} epoch {record['epoch']}"
            if stage
            else f"epoch {record['epoch']}/{self.config.train.epochs}"
        ]
        if "train_loss" in record:  # a post-hoc stage (tau_norm) trains nothing
            parts += [f"loss {record['train_loss']:.4f}", f"lr {record['lr']:.3g}"]
        test = record.get("test")
        if isinstance(test, dict):
            parts.append(f"test top1 {format_percent(test.get('top1'))}%")
            collapse = test.get("collapse")
            if isinstance(collapse, dict) and collapse.get("nc1") is not None:
                parts.append(f"nc1 {format_sci(collapse.get('nc1'))}")
        val = record.get("val")
        if isinstance(val, dict):
            parts.append(f"val top1 {format_percent(val.get('top1'))}%")
        parts.append(f"{record['elapsed_s']:.1f}s")
        return "  ".join(parts)


def _pick(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    """Test-split summary numbers with the train split's beside them."""
    if evaluation is None:
        return None

    def split(result: dict[str, Any]) -> dict[str, Any]:
        picked = {key: result.get(key) for key in SUMMARY_KEYS}
        picked["collapse"] = result["collapse"]
        if "hierarchical" in result:
            picked["hierarchical"] = result["hierarchical"]
        return picked

    return {**split(evaluation["test"]), "train": split(evaluation["train"])}


def build_summary(
    config: Config,
    *,
    run_dir: str,
    epochs: int,
    final: dict[str, Any],
    best: dict[str, Any] | None,
    best_epoch: int | None,
    wall_time_s: float,
    device: torch.device,
    world_size: int,
) -> dict[str, Any]:
    """The content of ``summary.json`` (see the README's run-directory section)."""
    return {
        "name": config.name,
        "run_dir": run_dir,
        "epochs": epochs,
        "final": _pick(final),
        "best": _pick(best),
        "best_epoch": best_epoch,
        "wall_time_s": wall_time_s,
        "seed": config.train.seed,
        "device": str(device),
        "world_size": world_size,
        "versions": {
            "neuralcollapse": neuralcollapse.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "config": config_to_dict(config),
    }
