"""What a run tells the world: progress, one line per epoch, trackers, records.

Only the main process (rank 0) logs. With ``log.progress=auto`` a progress bar shows the
steps on a terminal, with the running loss and the latest validation metrics; when stderr
is not a terminal (SLURM, nohup, CI), or with ``log.progress=off``, no bar is drawn and
every epoch prints one plain line instead (epoch, loss, lr, validation top-1 and NC1 of the
training split when measured, elapsed time). ``log.progress=on`` forces the bar. The test
metrics are shown once, at the end (:func:`result_table`): showing them at every evaluated
epoch invites choosing on the test set. The scalars of every epoch also go to the trackers
the ``log.*`` keys switch on (:mod:`neuralcollapse.train.trackers`: TensorBoard, Weights &
Biases, MLflow); ``metrics.jsonl`` keeps every measured split.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neuralcollapse._internal.text import format_percent, format_sci
from neuralcollapse.rundir import RunDir
from neuralcollapse.train.config import Config
from neuralcollapse.train.data import TrainingData
from neuralcollapse.train.distributed import DistContext
from neuralcollapse.train.trackers import Status, Tracker, epoch_scalars, open_trackers

__all__ = ["RunLog", "describe_validation", "result_table", "start_line"]


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
        self.latest: dict[str, str] = {}  # the latest validation metrics, on the bar

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

    def update(self, steps: int = 1) -> None:
        """``steps`` more training steps done (the bar moves)."""
        self.bar.update(steps)

    def set_postfix(self, **values: Any) -> None:
        """Show ``values`` (the running loss ...) on the bar, beside the latest
        validation metrics."""
        self.bar.set_postfix(**values, **self.latest)

    def set_description(self, text: str) -> None:
        self.bar.set_description(text)

    def record(self, record: dict[str, Any]) -> None:
        """Write one finished epoch: ``metrics.jsonl``, the trackers, and a plain line."""
        if self.run is None:
            return
        self.run.append_record(record)
        val = record.get("val")
        if isinstance(val, dict):  # shown beside the running loss until the next one
            self.latest = {"val_top1": f"{format_percent(val.get('top1'))}%"}
            self.bar.set_postfix(**self.latest)
        if self.lines:
            self.echo(self.line(record))
        if self.trackers:
            scalars = epoch_scalars(record)
            for tracker in self.trackers:
                tracker.log_scalars(scalars, record["epoch"])

    def line(self, record: dict[str, Any]) -> str:
        """The plain one-line summary of an epoch's record: ``epoch 3/30  loss 0.0123  lr
        0.1  val top1 92.0%  train nc1 0.21  4.2s`` (what was measured; never the test
        split)."""
        stage = record.get("stage")  # stage-2 epochs continue the numbering
        parts = [
            f"{stage} epoch {record['epoch']}"
            if stage
            else f"epoch {record['epoch']}/{self.config.train.epochs}"
        ]
        if "train_loss" in record:  # a post-hoc stage (tau_norm) trains nothing
            parts += [f"loss {record['train_loss']:.4f}", f"lr {record['lr']:.3g}"]
        val = record.get("val")
        if isinstance(val, dict):
            parts.append(f"val top1 {format_percent(val.get('top1'))}%")
        train = record.get("train")
        collapse = train.get("collapse") if isinstance(train, dict) else None
        if isinstance(collapse, dict) and "nc1" in collapse:
            parts.append(f"train nc1 {format_sci(collapse.get('nc1'))}")
        parts.append(f"{record['elapsed_s']:.1f}s")
        return "  ".join(parts)


def describe_validation(config: Config, samples: int) -> dict[str, Any]:
    """``summary.json``'s ``validation``: its size, where it comes from, and a sentence
    the console prints at the start of a run."""
    data, seed = config.data, config.train.seed
    if data.val_list is not None:
        source = f"data.val_list={data.val_list!r}"
        rule = "the listed samples of the loaded training split"
    elif data.val_fraction > 0:
        source = f"data.val_fraction={data.val_fraction:g}"
        rule = (
            f"a stratified {100 * data.val_fraction:g}% of every class of the loaded "
            f"training split, drawn with train.seed={seed}"
        )
    else:
        return {
            "samples": 0,
            "source": "data.val_fraction=0",
            "rule": "none: no validation split, so no epoch is chosen as best",
        }
    if data.imbalance_ratio > 1:
        rule += ", held out before the long-tailed subset (so it keeps the loaded class balance)"
    return {"samples": samples, "source": source, "rule": rule}


def start_line(
    config: Config,
    data: TrainingData,
    run_dir: Path,
    context: DistContext,
    resumed_at: int | None = None,
) -> str:
    """What a run says as it starts: what it trains, where, on how many samples, and how
    its validation split was drawn; or, resumed (``resumed_at``: the epoch), where it
    continues."""
    epochs = config.train.epochs
    if resumed_at is not None:
        return f"resuming {run_dir} at epoch {resumed_at}/{epochs}"
    processes = f" x {context.world_size} processes" if context.enabled else ""
    val_size = 0 if data.val is None else len(data.val.labels)
    validation = describe_validation(config, val_size)
    return (
        f"training {config.name} into {run_dir}: {data.num_classes} classes, "
        f"{len(data.train)} train / {val_size} validation / {len(data.test)} test samples, "
        f"{epochs} epochs on {context.device}{processes}\n"
        f"validation ({validation['source']}): {validation['rule']}"
    )


def result_table(summary: dict[str, Any]) -> str:
    """The final table of a run: test accuracy overall and by shot group (final, and the
    best epoch's when one was chosen), and the collapse metrics of the final model."""
    final, best = summary["final"], summary["best"]
    lines = [f"{'test set':16}{'top1':>7}{'balanced':>10}{'many':>7}{'medium':>8}{'few':>7}"]
    rows = [("final", final)]
    if best is not None:  # None without a split to choose on (train.select_best_on)
        rows.append((f"best ({best.get('split', 'test')}, {summary['best_epoch']})", best))
    widths = (7, 10, 7, 8, 7)
    for label, row in rows:
        cells = (format_percent(row[key]) for key in ("top1", "balanced", "many", "medium", "few"))
        lines.append(
            f"{label:16}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
        )
    lines += ["", f"{'collapse (final)':16}{'nc1':>10}{'nc2 (ETF dist)':>16}{'nc3':>10}{'nc4':>10}"]
    undefined = []
    for label, report in (
        ("train features", final["train"]["collapse"]),
        ("test features", final["collapse"]),
    ):
        lines.append(
            f"{label:16}{format_sci(report.get('nc1')):>10}"
            f"{format_sci(report.get('nc2_etf_distance_means')):>16}"
            f"{format_sci(report.get('nc3_self_duality')):>10}"
            f"{format_sci(report.get('nc4_ncc_mismatch')):>10}"
        )
        if report.get("undefined"):
            undefined.append(f"{label}: undefined, {report['undefined']}")
    lines += undefined
    severity = final.get("hierarchical")
    if severity is not None:
        shown = ", ".join(
            f"{k} {format_sci(v, digits=4)}" for k, v in severity.items() if k != "num_samples"
        )
        lines += ["", f"hierarchy (test): {shown}"]
    lines.append(
        "(accuracy in %; many > 100, medium 20-100, few < 20 training images; "
        "nc4 = fraction of nearest-class-mean mismatches)"
    )
    return "\n".join(lines)
