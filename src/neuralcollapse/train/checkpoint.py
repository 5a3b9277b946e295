"""Checkpoints: written atomically, read back with a clear error when damaged or foreign.

A checkpoint is a dict saved with ``torch.save`` holding only tensors, numbers, strings and
containers of them, so it loads with ``torch.load(weights_only=True)`` (no arbitrary code).

:class:`BackgroundWriter` runs a run's disk writes (records, checkpoints, geometry) in
order on one background thread, so that their fsyncs overlap the next epoch's training;
:func:`snapshot` copies a state first, so that training on does not change what is written.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from neuralcollapse._internal.files import atomic_write
from neuralcollapse.errors import UsageError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "BackgroundWriter",
    "load_checkpoint",
    "save_checkpoint",
    "snapshot",
]

CHECKPOINT_FORMAT = "neuralcollapse-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, fsync,
    rename): a crash or Ctrl-C mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    try:
        return atomic_write(path, lambda stream: torch.save(payload, stream))
    except RuntimeError as exc:
        # torch.save reports a failed write (full disk, file-size limit, quota) as a
        # RuntimeError of its zip writer; the OSError it came from is its context.
        cause = _os_error_in(exc)
        if cause is None and "write failed" not in str(exc):
            raise
        code = cause.errno if cause is not None and cause.errno else errno.EIO
        reason = (cause.strerror if cause is not None else None) or os.strerror(code)
        raise OSError(code, reason, str(path)) from exc


def _os_error_in(exc: BaseException) -> OSError | None:
    """The first OSError among the causes and contexts of ``exc``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


# What a checkpoint of a training run holds, by type: checked by load_checkpoint(require=).
RUN_ENTRIES: dict[str, type | tuple[type, ...]] = {"epoch": int, "config": dict, "model": dict}


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    *,
    require: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    ``require`` names entries of :data:`RUN_ENTRIES` that must be present with their type
    (a crafted or foreign file is refused in one line rather than failing later).

    Raises:
        FileNotFoundError: no such file.
        UsageError: the file is truncated or corrupt, not a neuralcollapse checkpoint, or
            from a newer format version (one line, naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        # Only the first line: torch's advice to retry with weights_only=False would run
        # arbitrary code from a file the user may not have written.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"checkpoint {str(path)!r} cannot be read as a neuralcollapse checkpoint "
            f"({type(exc).__name__}: {reason[:160]}); it is truncated, corrupt or not a "
            "checkpoint: use another checkpoint of the run, e.g. checkpoints/best.pt"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(
            f"{str(path)!r} is not a neuralcollapse checkpoint (no '{CHECKPOINT_FORMAT}' "
            "marker); it was written by another program"
        )
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise UsageError(
            f"checkpoint {str(path)!r} has format version {state['version']}, newer than this "
            f"neuralcollapse reads ({CHECKPOINT_VERSION}): upgrade neuralcollapse"
        )
    for name in require:
        value = state.get(name)
        if isinstance(value, bool) or not isinstance(value, RUN_ENTRIES[name]):
            raise UsageError(
                f"checkpoint {str(path)!r} has no valid {name!r} entry (got "
                f"{type(value).__name__}); it is damaged or was not written by a training run"
            )
    return state


def snapshot(state: Any) -> Any:
    """A copy of ``state`` whose tensors are detached CPU copies (containers rebuilt,
    other values shared): what training does next leaves it unchanged."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {key: snapshot(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(snapshot(value) for value in state)
    return state


class BackgroundWriter:
    """Runs jobs (disk writes) one at a time, in the order submitted, on one background
    thread.

    A job that raises stops every later job (so a record is never followed by the
    checkpoint that should have come after a write which failed); the error is raised in
    the submitting thread by the next :meth:`submit`, :meth:`wait` or :meth:`close`.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neuralcollapse-io")
        self._pending: list[Future] = []
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._failed = False

    def _run(self, job: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if self._failed:
            return
        try:
            job(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the submitting thread
            with self._lock:
                self._failed, self._error = True, exc

    def _raise(self) -> None:
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        """Queue ``job(*args)`` after the jobs already queued."""
        self._raise()
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(self._pool.submit(self._run, job, args))

    def wait(self) -> None:
        """Block until every queued job has run; raise the first failure."""
        for future in self._pending:
            future.result()
        self._pending.clear()
        self._raise()

    def close(self) -> None:
        """:meth:`wait`, then stop the thread."""
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
