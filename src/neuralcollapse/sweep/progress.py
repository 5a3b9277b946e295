"""Progress over a sweep: one line per finished run, with k/N and the time left.

The estimate of the time left is the wall time per run that trained so far (sweep time
since the first run started, divided by the runs that trained or resumed; runs in
parallel share it) times the runs still to have. Reused runs count toward k/N and take
no time. On a terminal the lines go above a tqdm bar (when tqdm is installed); elsewhere
they are plain lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neuralcollapse.sweep.runs import RunResult

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``42 s``, ``7.5 min``, ``3.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Lines about finished runs, through ``echo`` (silent by default).

    Args:
        echo: where lines go (the command line passes ``print``).
        bar: draw a tqdm bar (lines then go through ``tqdm.write``, above it); None: only
            when ``echo`` is given and stderr is a terminal.
        clock: seconds (tests pass a fake one).
    """

    def __init__(
        self,
        echo: Callable[[str], None] | None = None,
        *,
        bar: bool | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.echo, self.clock = echo, clock
        self.total = 0
        self.first_start: float | None = None
        self.worked = 0  # runs that trained or resumed
        self._bar: Any = None
        if echo is not None and (bar or bar is None):
            self._bar = _make_bar(bar is True)

    def add(self, count: int) -> None:
        """``count`` more runs belong to the sweep."""
        self.total += count
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def started(self, in_flight: int) -> None:
        if self.first_start is None and in_flight:
            self.first_start = self.clock()

    def estimate(self, remaining: int) -> float | None:
        """Seconds left for ``remaining`` runs, or None before any run trained."""
        if not self.worked or self.first_start is None:
            return None
        return (self.clock() - self.first_start) / self.worked * remaining

    def line(self, result: RunResult, done: int, remaining: int) -> str:
        how = (
            "reused (finished before)"
            if result.status == "reused"
            else f"{result.status} in {format_duration(result.seconds)}"
        )
        left = self.estimate(remaining)
        tail = (
            "all done"
            if remaining == 0
            else f"~{format_duration(left)} left"
            if left is not None
            else "time left: estimating"
        )
        return f"[{done}/{self.total}] {result.spec.describe()}: {how}; {tail}"

    def finished(self, result: RunResult, *, done: int, remaining: int) -> None:
        if result.status != "reused":
            self.worked += 1
        if self.echo is None:
            return
        self._say(self.line(result, done, remaining), done)

    def reused(self, count: int, *, done: int, remaining: int) -> None:
        """``count`` runs found finished on disk (one line for all of them)."""
        if self.echo is None:
            return
        tail = "all done" if remaining == 0 else f"{remaining} to train"
        self._say(f"[{done}/{self.total}] {count} run(s) reused (finished before); {tail}", done)

    def _say(self, text: str, done: int) -> None:
        if self._bar is not None:
            self._bar.write(text)
            self._bar.n = done
            self._bar.refresh()
        else:
            self.echo(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _make_bar(force: bool) -> Any:
    import sys

    if not force and not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=0, unit="run", desc="runs", dynamic_ncols=True, leave=False)
