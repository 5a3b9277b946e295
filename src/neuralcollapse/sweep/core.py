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

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from neuralcollapse.sweep.launchers import InlineLauncher, Launcher
from neuralcollapse.sweep.progress import Progress
from neuralcollapse.sweep.runs import (
    NOT_IDENTITY,
    RESUMED,
    REUSED,
    TRAINED,
    RunResult,
    RunSpec,
    RunsPending,
    execute_run,
    finished_run,
    run_dir_name,
    run_key,
)

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
