"""Reading run directories for the report: config, summary, metric records, class geometry.

Files are read through :class:`neuralcollapse.rundir.RunDir`, the one place that knows their
names; no checkpoint is loaded and no data or model is rebuilt. Everything here tolerates
an incomplete run: an interrupted run has no ``summary.json``, a run whose last write was
cut short has a partial last line in ``metrics.jsonl``. Such gaps become ``notes`` on the
:class:`RunData`, never exceptions; only a path that is no run directory at all raises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuralcollapse.rundir import check_run_dir


@dataclass
class RunData:
    """What a report needs of one run directory.

    Attributes:
        path: the run directory.
        label: the short name shown in legends and tables (unique within a report).
        config: the resolved config (``config.yaml``, else the summary's or checkpoint's).
        summary: ``summary.json``, or None for an interrupted run.
        records: the ``metrics.jsonl`` objects in order, one per evaluated epoch.
        class_means: ``(K, d)`` centred test-set class means of the last evaluation, or None.
        frame: ``(K, d)`` classifier rows (the fixed frame or the learned weights), or None.
        frame_kind: what ``frame`` is, for titles (``"fixed etf frame"``, ``"learned
            classifier"``).
        checkpoint_epoch: the epoch of the evaluation the matrices come from.
        class_names: the name of each class in label order (``summary.json``), or None
            (an interrupted run, or one written before the names were saved).
        notes: one line per thing that could not be read, keyed by section.
    """

    path: Path
    label: str
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    class_means: np.ndarray | None = None
    frame: np.ndarray | None = None
    frame_kind: str = "classifier"
    checkpoint_epoch: int | None = None
    class_names: list[str] | None = None
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def has_hierarchy(self) -> bool:
        return any(isinstance(r.get("test", {}).get("hierarchical"), dict) for r in self.records)


def _walk(record: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """(whether ``record`` holds ``dotted``, its value or None)."""
    value: Any = record
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return False, None
        value = value[key]
    return True, value


def lookup(record: dict[str, Any], dotted: str) -> Any:
    """``record["a"]["b"]`` for ``"a.b"``; None where any step is missing."""
    return _walk(record, dotted)[1]


def has_key(record: dict[str, Any], dotted: str) -> bool:
    """Whether ``record`` holds ``dotted`` at all (even as null): False for a metric that
    was not measured that epoch (``eval.collapse_every``, ``eval.every``)."""
    return _walk(record, dotted)[0]


def latest(records: Sequence[dict[str, Any]], dotted: str) -> Any:
    """The value of ``dotted`` in the last record that holds it, or None."""
    for record in reversed(records):
        if has_key(record, dotted):
            return lookup(record, dotted)
    return None


def as_float(value: Any) -> float:
    """A metric value as a finite float; None, inf, non-numbers and booleans become NaN.

    ``metrics.jsonl`` writes a metric that could not be computed as null (runs written by
    older versions may hold NaN or Infinity); a plot treats them all as gaps.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def series(records: Sequence[dict[str, Any]], dotted: str) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and the values of ``dotted`` over ``records``; missing values are NaN."""
    epochs = np.array([as_float(r.get("epoch")) for r in records], dtype=float)
    values = np.array([as_float(lookup(r, dotted)) for r in records], dtype=float)
    return epochs, values


def has_values(records: Sequence[dict[str, Any]], dotted: str) -> bool:
    """Whether ``dotted`` has at least one finite value over ``records``."""
    return bool(np.isfinite(series(records, dotted)[1]).any())


def unique_labels(paths: Sequence[Path]) -> list[str]:
    """Directory names, widened with their parents (then numbered) until all differ."""
    resolved = [p.resolve() for p in paths]
    for depth in range(1, 4):
        labels = ["/".join(p.parts[-depth:]) for p in resolved]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{label} ({i + 1})" for i, label in enumerate(labels)]


def _undefined_collapse(summary: dict[str, Any] | None) -> str:
    """Why the final collapse metrics of a run's splits are null (``summary.json``
    records ``undefined``: the reason), as one phrase; "" when they were computed."""
    final = (summary or {}).get("final")
    if not isinstance(final, dict):
        return ""
    splits = {"test": final, **{k: final.get(k) for k in ("train", "val")}}
    reasons = [
        f"{name}: {split['collapse']['undefined']}"
        for name, split in splits.items()
        if isinstance(split, dict)
        and isinstance(split.get("collapse"), dict)
        and split["collapse"].get("undefined")
    ]
    return "; ".join(reasons)


def read_run(path: str | Path, label: str | None = None) -> RunData:
    """Config, summary, metric records (one per epoch) and the class geometry of the last
    evaluation (``geometry.npz``) of a run directory, from its files alone."""
    run_dir = check_run_dir(path)
    run = RunData(path=run_dir.path, label=label or run_dir.path.resolve().name)
    run.summary = run_dir.read_summary()
    if run.summary is None:
        run.notes["summary"] = "no readable summary.json: the run was interrupted or is running"
    config = run_dir.read_config()
    if config is None and run.summary is not None:
        config = run.summary.get("config")
    run.config = config if isinstance(config, dict) else {}
    undefined = _undefined_collapse(run.summary)
    if undefined:
        run.notes["collapse"] = f"collapse metrics undefined ({undefined})"
    names = (run.summary or {}).get("class_names")
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        run.class_names = names
    if run_dir.metrics_path.is_file():
        records = run_dir.read_records()
        run.records = records.records
        if records.skipped:
            run.notes["records"] = f"{records.skipped} unreadable line(s) of metrics.jsonl skipped"
    else:
        run.notes["records"] = "no metrics.jsonl: no epoch was evaluated"
    geometry = run_dir.read_geometry()
    if geometry is None:
        run.notes["similarity"] = (
            "no readable geometry.npz (written at every evaluation): no class means or frame"
        )
    else:
        run.class_means = geometry["class_means"]
        run.frame = geometry["classifier"]
        run.frame_kind = geometry["kind"]
        run.checkpoint_epoch = geometry["epoch"]
    return run
