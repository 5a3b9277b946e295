"""Reading run directories for the report: config, summary, metric records, class means.

Everything here tolerates an incomplete run: an interrupted run has no ``summary.json``, a
run whose last write was cut short has a partial last line in ``metrics.jsonl``, a run
whose data files have moved cannot be re-evaluated. Such gaps become ``notes`` on the
:class:`RunData`, never exceptions; only a path that is no run directory at all raises.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json")


@dataclass
class RunData:
    """What a report needs of one run directory.

    Attributes:
        path: the run directory.
        label: the short name shown in legends and tables (unique within a report).
        config: the resolved config (``config.yaml``, else the summary's or checkpoint's).
        summary: ``summary.json``, or None for an interrupted run.
        records: the ``metrics.jsonl`` objects in order, one per evaluated epoch.
        class_means: ``(K, d)`` centred test-set class means of the last checkpoint, or None.
        frame: ``(K, d)`` classifier rows (the fixed frame or the learned weights), or None.
        frame_kind: what ``frame`` is, for titles (``"fixed etf frame"``, ``"learned
            classifier"``).
        checkpoint_epoch: the epoch of the checkpoint the matrices come from.
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
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def has_hierarchy(self) -> bool:
        return any(isinstance(r.get("test", {}).get("hierarchical"), dict) for r in self.records)


def lookup(record: dict[str, Any], dotted: str) -> Any:
    """``record["a"]["b"]`` for ``"a.b"``; None where any step is missing."""
    value: Any = record
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def as_float(value: Any) -> float:
    """A metric value as a finite float; None, inf, non-numbers and booleans become NaN.

    ``metrics.jsonl`` is written with ``allow_nan``, so NaN and Infinity may appear; a
    plot treats them all as gaps.
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


def read_records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of ``metrics.jsonl`` and how many lines were unreadable.

    A line cut short by an interruption is skipped rather than failing the whole report.
    """
    records: list[dict[str, Any]] = []
    bad = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return records, bad


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _read_yaml(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def check_run_dir(path: str | Path) -> Path:
    """``path`` as a Path, or a clear error when it is no run directory."""
    run_dir = Path(path)
    if not run_dir.exists():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir} is a file; give the run directory that holds it")
    if not any((run_dir / name).is_file() for name in RUN_FILES):
        raise FileNotFoundError(
            f"{run_dir} is not a run directory: it has none of {', '.join(RUN_FILES)} "
            "(written by 'neuralcollapse train')"
        )
    return run_dir


def unique_labels(paths: Sequence[Path]) -> list[str]:
    """Directory names, widened with their parents (then numbered) until all differ."""
    resolved = [p.resolve() for p in paths]
    for depth in range(1, 4):
        labels = ["/".join(p.parts[-depth:]) for p in resolved]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{label} ({i + 1})" for i, label in enumerate(labels)]


def read_run(path: str | Path, label: str | None = None) -> RunData:
    """Config, summary and metric records of a run directory (no checkpoint, no data)."""
    run_dir = check_run_dir(path)
    run = RunData(path=run_dir, label=label or run_dir.resolve().name)
    run.summary = _read_json(run_dir / "summary.json")
    if run.summary is None:
        run.notes["summary"] = "no readable summary.json: the run was interrupted or is running"
    config = _read_yaml(run_dir / "config.yaml")
    if config is None and run.summary is not None:
        config = run.summary.get("config")
    run.config = config if isinstance(config, dict) else {}
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        run.records, bad = read_records(metrics)
        if bad:
            run.notes["records"] = f"{bad} unreadable line(s) of metrics.jsonl skipped"
    else:
        run.notes["records"] = "no metrics.jsonl: no epoch was evaluated"
    return run


def _frame_from_state(state_dict: dict[str, Any]) -> tuple[np.ndarray | None, str]:
    """The classifier rows stored in a model state dict, and what they are."""
    frame = state_dict.get("head.frame")
    if frame is not None:
        return frame.detach().double().cpu().numpy(), "fixed frame"
    weight = state_dict.get("head.classifier.weight")
    if weight is not None:
        return weight.detach().double().cpu().numpy(), "learned classifier"
    return None, "classifier"


def evaluate_class_means(state: dict[str, Any]) -> np.ndarray:
    """``(K, d)`` globally centred class means ``mu_k - mu_G`` of a checkpoint's test features.

    ``mu_G`` is the sample-weighted global mean, as NC2 uses it: neural collapse is a
    statement about centred means (uncentred ReLU features all point one way, so their
    cosines say little). Rows of classes absent from the test set are NaN.

    Rebuilds the data and model of the checkpoint's config and runs the test loader once;
    raises whatever loading the data raises (missing files, an unknown dataset).
    """
    import torch

    from neuralcollapse.metrics import CollapseStats
    from neuralcollapse.train.config import config_from_dict
    from neuralcollapse.train.trainer import assemble

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _, loaders, model = assemble(config_from_dict(state["config"]), device)
    model.load_state_dict(state["model"])
    model.eval()
    head = model.head
    stats = CollapseStats(head.num_classes, head.dim, device=device)
    with torch.no_grad():
        for x, y in loaders[2]:
            _, h = model(x.to(device), return_features=True)
            stats.update(h, y.to(device))
    means = stats.class_means()
    counts = stats.class_counts.to(means.dtype)
    present = counts > 0
    global_mean = counts[present] @ means[present] / counts.sum()
    return (means - global_mean).cpu().numpy()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def load_matrices(run: RunData, *, recompute: bool = True) -> None:
    """Fill ``run.frame`` from ``checkpoints/last.pt`` and, with ``recompute``, the test-set
    ``run.class_means`` (one pass over the test data); gaps become notes."""
    path = run.path / "checkpoints" / "last.pt"
    if not path.is_file():
        run.notes["similarity"] = "no checkpoints/last.pt, so no class means or frame"
        return
    from neuralcollapse.train import load_checkpoint

    try:
        state = load_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - a bad checkpoint drops a section, not the report
        run.notes["similarity"] = f"checkpoints/last.pt could not be read: {_one_line(exc)}"
        return
    run.checkpoint_epoch = state.get("epoch")
    run.frame, run.frame_kind = _frame_from_state(state.get("model", {}))
    if not recompute:
        run.notes["similarity"] = "class means not recomputed (recompute is off)"
        return
    try:
        run.class_means = evaluate_class_means(state)
    except Exception as exc:  # noqa: BLE001 - moved or missing data must not fail the report
        run.notes["similarity"] = f"test data could not be re-evaluated: {_one_line(exc)}"
