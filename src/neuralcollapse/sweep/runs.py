"""One run of a sweep: its identity (a hash of its config), its spec and result, whether
it already finished, and :func:`execute_run`, what every launcher calls on its worker.

A run is one resolved :class:`~neuralcollapse.train.config.Config` (its seed included).
Its identity is :func:`run_key`: a hash of the config without what does not change the
numbers it produces (:data:`NOT_IDENTITY`: the run's name, its log settings and output
paths, the CPU thread count). It lives in ``<runs_dir>/<name>-seed<s>-<key>``, so the same
run gets the same directory in every invocation, and a changed config gets another one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuralcollapse.rundir import RunDir

if TYPE_CHECKING:
    from neuralcollapse.train.config import Config

__all__ = [
    "NOT_IDENTITY",
    "RunResult",
    "RunSpec",
    "RunsPending",
    "execute_run",
    "finished_run",
    "run_dir_name",
    "run_key",
]

#: Config keys that do not identify a run: its name (a label), how it logs and where it
#: writes (``log.*``), and torch's CPU thread count, which the launcher sets per worker
#: so that parallel runs never ask for more threads than the machine has.
NOT_IDENTITY = ("name", "log", "train.num_threads")
KEY_LENGTH = 12  # hex digits of sha256: 48 bits, no collision in any realistic grid

REUSED, RESUMED, TRAINED = "reused", "resumed", "trained"


def _identity(values: dict[str, Any]) -> dict[str, Any]:
    values = copy.deepcopy(values)
    for dotted in NOT_IDENTITY:
        section, _, key = dotted.partition(".")
        if not key:
            values.pop(section, None)
        elif isinstance(values.get(section), dict):
            values[section].pop(key, None)
    return values


def key_of_values(values: dict[str, Any]) -> str:
    """:func:`run_key` of a config given as its dict (``config_to_dict``, or the
    ``config`` of a ``summary.json``)."""
    canonical = json.dumps(_identity(values), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def run_key(config: Config) -> str:
    """The run's identity: 12 hex digits of the sha256 of its canonical config JSON
    (sorted keys), without :data:`NOT_IDENTITY`. The seed (``train.seed``) is part of it."""
    from neuralcollapse.train.config import config_to_dict

    return key_of_values(config_to_dict(config))


def run_dir_name(config: Config) -> str:
    """``<config name>-seed<s>-<run_key>``: readable, and the same in every invocation."""
    return f"{config.name}-seed{config.train.seed}-{run_key(config)}"


@dataclass(frozen=True)
class RunSpec:
    """One run to have: a checked config (seed included) and the label progress shows."""

    config: Config
    label: str = ""

    @property
    def key(self) -> str:
        return run_key(self.config)

    @property
    def dirname(self) -> str:
        return run_dir_name(self.config)

    def describe(self) -> str:
        return self.label or f"{self.config.name} seed {self.config.train.seed}"


@dataclass
class RunResult:
    """A finished run: its summary, its per-epoch records and how it was obtained
    (``status``: reused, resumed or trained; ``seconds``: wall time it took now, 0 when
    reused)."""

    spec: RunSpec
    run_dir: Path
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    status: str
    seconds: float


class RunsPending(BaseException):
    """Raised by :meth:`Sweep.collect` when some runs are not finished yet (they were
    submitted). A BaseException, so that a caller's ``except Exception`` never hides it."""

    def __init__(self, keys: Sequence[str]) -> None:
        super().__init__(f"{len(keys)} run(s) not finished")
        self.keys = list(keys)


def finished_run(
    run_dir: str | Path, key: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The summary and records of a finished run of identity ``key`` in ``run_dir``, or
    None when it is not one: no readable ``summary.json``, a summary made from another
    config, or ``metrics.jsonl`` damaged (a skipped line) or missing an epoch.

    A run is finished when its summary is written: the trainer writes it last, after the
    last epoch's record and checkpoint."""
    run = RunDir(run_dir)
    summary = run.read_summary()
    if summary is None or not isinstance(summary.get("final"), dict):
        return None
    values = summary.get("config")
    if not isinstance(values, dict) or key_of_values(values) != key:
        return None
    try:
        epochs = int(values["train"]["epochs"])
    except (KeyError, TypeError, ValueError):
        return None
    stages = summary.get("stages") if isinstance(summary.get("stages"), dict) else {}
    extra = stages.get("stage2_epochs", 0) if stages.get("stage2") not in (None, "none") else 0
    parsed = run.read_records()
    numbers = [r.get("epoch") for r in parsed.records]
    total = epochs + int(extra or 0)  # stage-2 epochs continue the numbering
    if parsed.skipped or summary.get("epochs") != total or numbers != list(range(1, total + 1)):
        return None
    return summary, parsed.records


def execute_run(values: dict[str, Any], run_dir: str, threads: int | None = None) -> dict[str, Any]:
    """Reuse, resume or train one run (the function every launcher calls on its worker).

    Args:
        values: the run's config as a dict (``config_to_dict``; plain data travels to
            other processes and machines).
        run_dir: its directory.
        threads: torch's CPU threads for this process when the config leaves them to
            ``auto`` (set by local launchers: cores / jobs); None leaves torch's setting.

    Returns:
        ``{"status", "seconds", "summary", "records"}``.
    """
    from neuralcollapse.train.config import config_from_dict

    started = time.perf_counter()
    key = key_of_values(values)
    done = finished_run(run_dir, key)
    if done is not None:
        return {"status": REUSED, "seconds": 0.0, "summary": done[0], "records": done[1]}
    run = RunDir(run_dir)
    resume = run.last_checkpoint.is_file()
    if resume:
        # The name and thread count are not part of the identity, but a resumed run must
        # keep its checkpoint's (the trainer refuses other changes than log.* and epochs).
        saved = run.read_config() or {}
        values = copy.deepcopy(values)
        values["name"] = saved.get("name", values.get("name"))
        saved_train = saved.get("train") if isinstance(saved.get("train"), dict) else {}
        if "num_threads" in saved_train:
            values["train"]["num_threads"] = saved_train["num_threads"]
    config = config_from_dict(values)
    summary = _train(config, Path(run_dir), resume=resume, threads=threads)
    records = RunDir(run_dir).read_records().records
    return {
        "status": RESUMED if resume else TRAINED,
        "seconds": time.perf_counter() - started,
        "summary": summary,
        "records": records,
    }


def _train(config: Config, run_dir: Path, *, resume: bool, threads: int | None) -> dict[str, Any]:
    """The one place a sweep trains: the Trainer, in this process."""
    import torch

    from neuralcollapse.train.trainer import Trainer

    if threads is not None and config.train.num_threads == "auto":
        torch.set_num_threads(threads)
    trainer = Trainer(config, run_dir, resume=resume)
    try:
        return trainer.fit()
    finally:
        trainer.close()
