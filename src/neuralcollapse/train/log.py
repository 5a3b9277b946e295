"""What a run tells the world: progress, one line per epoch, TensorBoard scalars, records.

Only the main process (rank 0) logs. With ``log.progress=auto`` a progress bar shows the
steps on a terminal; when stderr is not a terminal (SLURM, nohup, CI), or with
``log.progress=off``, no bar is drawn and every epoch prints one plain line instead (epoch,
loss, lr, test top-1 and NC1 when evaluated, elapsed time). ``log.progress=on`` forces the bar.
"""

from __future__ import annotations

import math
import platform
import sys
from collections.abc import Callable
from typing import Any

import torch

import neuralcollapse
from neuralcollapse._internal.text import format_percent, format_sci
from neuralcollapse.rundir import RunDir
from neuralcollapse.train.config import Config, config_to_dict

__all__ = ["RunLog", "SUMMARY_KEYS", "build_summary"]

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


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
    """Progress bar or plain lines, TensorBoard and ``metrics.jsonl`` of one run.

    Args:
        config: the run's config (``log.*`` keys).
        run: the run directory (None on ranks other than 0: nothing is written there).
        echo: where lines go (the CLI passes ``print``).
        total_steps: training steps left, for the progress bar.
        first_epoch: the epoch the run (re)starts from, so TensorBoard drops later events.
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
        self.bar: Any = self._make_bar(total_steps) if self.bar_enabled else _NoBar()
        self.writer = None
        if main and config.log.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run.tensorboard), purge_step=first_epoch + 1)

    @staticmethod
    def _make_bar(total: int) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="step", dynamic_ncols=True, leave=True)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, record: dict[str, Any]) -> None:
        """Write one finished epoch: ``metrics.jsonl``, TensorBoard, and a plain line."""
        if self.run is None:
            return
        self.run.append_record(record)
        if self.lines:
            self.echo(self._line(record))
        if self.writer is not None:
            self._scalars(record)

    def _line(self, record: dict[str, Any]) -> str:
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
            parts.append(f"nc1 {format_sci(test.get('collapse', {}).get('nc1'))}")
        parts.append(f"{record['elapsed_s']:.1f}s")
        return "  ".join(parts)

    def _scalars(self, record: dict[str, Any]) -> None:
        writer, step = self.writer, record["epoch"]
        if "train_loss" in record:
            writer.add_scalar("train/loss", record["train_loss"], step)
            writer.add_scalar("train/lr", record["lr"], step)
        for split in ("train", "test"):
            result = record.get(split)
            if not isinstance(result, dict):
                continue
            for key in SUMMARY_KEYS:
                if _finite(result.get(key)):
                    writer.add_scalar(f"{split}/{key}", result[key], step)
            for key in COLLAPSE_SCALARS:
                value = result["collapse"].get(key)
                if _finite(value):
                    writer.add_scalar(f"{split}/collapse/{key}", value, step)
            for key, value in result.get("hierarchical", {}).items():
                if key != "num_samples" and _finite(value):
                    writer.add_scalar(f"{split}/hierarchical/{key}", value, step)


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
        "best_rule": "highest test top-1 over the evaluated epochs",
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
