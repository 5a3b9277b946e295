"""Runs identified by their config, trained once: reused, resumed or trained, by any launcher.

A run is one resolved :class:`~neuralcollapse.train.config.Config` (its seed included).
Its identity is :func:`run_key`: a hash of the config without what does not change the
numbers it produces (:data:`NOT_IDENTITY`: the run's name, its log settings and output
paths, the CPU thread count). It lives in ``<runs_dir>/<name>-seed<s>-<key>``, so the same
run gets the same directory in every invocation, and a changed config gets another one.

:class:`Sweep` takes run specs, and for each:

* **reuses** a finished run: ``summary.json`` readable, made from this very config (its
  hash is checked), and ``metrics.jsonl`` holding every epoch once, undamaged;
* **resumes** a run that has ``checkpoints/last.pt`` (the trainer's ``resume``: the
  numbers are those of an uninterrupted run);
* **trains** the others, through a launcher (:mod:`neuralcollapse.sweep.launchers`): in
  this process, in N local processes, as Ray tasks or as submitit (SLURM) jobs. Every
  launcher calls :func:`execute_run` on the worker, so the run directories are the same.

Results come back as runs finish (:meth:`Sweep.wait`); an interrupted sweep keeps what
finished, and the same sweep started again trains only what is missing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuralcollapse.rundir import RunDir

if TYPE_CHECKING:
    from neuralcollapse.sweep.launchers import Launcher
    from neuralcollapse.sweep.progress import Progress
    from neuralcollapse.train.config import Config

__all__ = [
    "NOT_IDENTITY",
    "RunResult",
    "RunSpec",
    "RunsPending",
    "Sweep",
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


class Sweep:
    """Runs to have, each trained at most once, by a launcher, results as they finish.

    Args:
        runs_dir: where run directories go (``<runs_dir>/<name>-seed<s>-<key>``).
        launcher: how runs are trained (default: one after another in this process).
        progress: told about every finished run (default: nothing shown).

    Use :meth:`run` for a fixed list of runs, or :meth:`submit` and :meth:`wait` (and
    :meth:`collect`) when what to run next depends on what finished. Use it as a context
    manager: leaving it (an interrupt included) stops what is still in flight; finished
    runs stay on disk, and a running one keeps its last checkpoint.
    """

    def __init__(
        self,
        runs_dir: str | Path,
        launcher: Launcher | None = None,
        *,
        progress: Progress | None = None,
    ) -> None:
        from neuralcollapse.sweep.launchers import InlineLauncher
        from neuralcollapse.sweep.progress import Progress

        self.runs_dir = Path(runs_dir)
        self.launcher = launcher if launcher is not None else InlineLauncher()
        self.progress = progress if progress is not None else Progress()
        self.results: dict[str, RunResult] = {}
        self.specs: dict[str, RunSpec] = {}
        self._queue: list[str] = []
        self._in_flight: set[str] = set()

    def __enter__(self) -> Sweep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop what is in flight and release the launcher's resources."""
        self.progress.close()
        self.launcher.close()

    # ------------------------------------------------------------------ bookkeeping

    def run_dir(self, spec: RunSpec) -> Path:
        return self.runs_dir / spec.dirname

    @property
    def counts(self) -> dict[str, int]:
        """How many runs were reused, resumed and trained so far."""
        statuses = [r.status for r in self.results.values()]
        return {s: statuses.count(s) for s in (REUSED, RESUMED, TRAINED)}

    @property
    def total(self) -> int:
        return len(self.specs)

    @property
    def unfinished(self) -> int:
        return len(self.specs) - len(self.results)

    # ------------------------------------------------------------------ submitting

    def submit(self, specs: Iterable[RunSpec]) -> list[str]:
        """Ask for runs (each key once); finished ones are reused at once, the others
        queued for the launcher. Returns the keys, in order."""
        keys, new = [], []
        for spec in specs:
            key = spec.key
            keys.append(key)
            if key not in self.specs:
                self.specs[key] = spec
                new.append(key)
        self.progress.add(len(new))
        reused = 0
        for key in new:
            done = finished_run(self.run_dir(self.specs[key]), key)
            if done is None:
                self._queue.append(key)
                continue
            payload = {"status": REUSED, "seconds": 0.0, "summary": done[0]}
            self._finish(key, {**payload, "records": done[1]}, quiet=True)
            reused += 1
        if reused:
            self.progress.reused(reused, done=len(self.results), remaining=self.unfinished)
        return keys

    def _finish(self, key: str, payload: dict[str, Any], *, quiet: bool = False) -> RunResult:
        spec = self.specs[key]
        # where the run is now (a reused run's summary names where it was trained)
        summary = {**payload["summary"], "run_dir": str(self.run_dir(spec))}
        result = RunResult(
            spec,
            self.run_dir(spec),
            summary,
            payload["records"],
            payload["status"],
            float(payload["seconds"]),
        )
        self.results[key] = result
        self._in_flight.discard(key)
        if not quiet:
            self.progress.finished(result, done=len(self.results), remaining=self.unfinished)
        return result

    def _dispatch(self) -> None:
        from neuralcollapse.train.config import config_to_dict

        room = self.launcher.capacity
        free = len(self._queue) if room is None else max(room - len(self._in_flight), 0)
        batch, self._queue = self._queue[:free], self._queue[free:]
        if not batch:
            return
        items = []
        for key in batch:
            spec = self.specs[key]
            items.append((key, config_to_dict(spec.config), str(self.run_dir(spec))))
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.launcher.submit(items)
        self._in_flight.update(batch)
        self.progress.started(len(self._in_flight))

    # ------------------------------------------------------------------ waiting

    def wait(self) -> list[RunResult]:
        """Block until at least one submitted run finishes; returns those that did
        (empty when nothing is queued or in flight). A failed run raises its error."""
        self._dispatch()
        if not self._in_flight:
            return []
        finished = [self._finish(key, payload) for key, payload in self.launcher.wait()]
        self._dispatch()
        return finished

    def collect(self, specs: Sequence[RunSpec]) -> list[RunResult]:
        """The results of ``specs`` in order, when all are finished; otherwise submits
        the missing ones and raises :class:`RunsPending` (nothing waits)."""
        keys = self.submit(specs)
        missing = [k for k in keys if k not in self.results]
        if missing:
            raise RunsPending(missing)
        return [self.results[k] for k in keys]

    def run(
        self,
        specs: Sequence[RunSpec],
        on_result: Callable[[RunResult], None] | None = None,
    ) -> list[RunResult]:
        """Have every run of ``specs``; returns their results in the order of ``specs``.
        ``on_result`` sees each as it finishes (reused ones first)."""
        keys = self.submit(specs)
        if on_result is not None:
            for key in dict.fromkeys(keys):
                if key in self.results:
                    on_result(self.results[key])
        while any(k not in self.results for k in keys):
            finished = self.wait()
            if not finished and not self._in_flight and not self._queue:
                raise RuntimeError("sweep: runs missing with nothing in flight")  # a bug
            if on_result is not None:
                for result in finished:
                    on_result(result)
        return [self.results[k] for k in keys]
