"""The run directory: the one place that knows its file names, writes them and reads them.

Layout of a run directory (``neuralcollapse train --run-dir DIR``)::

    config.yaml            the resolved config (every value, defaults included)
    metrics.jsonl          one strict-JSON object per finished epoch, in epoch order
    summary.json           final and best evaluation, best epoch, wall time, versions
    geometry.npz           test-set class means and classifier rows of the last evaluation
    checkpoints/last.pt    after every epoch (atomic); --resume continues from here
    checkpoints/best.pt    the epoch chosen as best so far
    tensorboard/           TensorBoard event files
    report.html            the HTML report (and report_figures/)
    .lock                  held by the process that trains into the directory

Guarantees:

* **Never mixed.** A process claims a directory before any slow work: a new directory is
  made with one atomic ``mkdir`` (a default name taken in the same second gets a ``-2``,
  ``-3`` ... suffix), and the process holds an exclusive lock on ``.lock`` for the whole
  run. A second process asking for the same directory is refused with the PID holding it;
  a lock left by a killed process is released by the operating system and taken over.
* **Never inconsistent.** On resume, records past the checkpoint's epoch are dropped from
  ``metrics.jsonl`` (they belong to an epoch whose checkpoint was never written), and
  temporary files of interrupted atomic writes are deleted. Readers also de-duplicate by
  epoch, so a file written by an older version still reads correctly.
* **Never lying.** Every file is written atomically; a reader tolerates a missing file or a
  damaged line and says what it skipped.
* **Never outside.** Nothing is written, truncated or deleted through a link: ``.lock`` is
  opened with ``O_NOFOLLOW`` and must be a regular file with one name, and a run directory
  whose own entries (``checkpoints/``, ``metrics.jsonl``, ``tensorboard/``,
  ``report_figures/`` ...) are symbolic links is refused with one line, for a new run, a
  resume and a report alike. A lock whose process died is free (the operating system
  releases it), and the temporary files of writes a kill interrupted are removed (regular
  files of the package's own ``.<name>.<random>.tmp`` pattern only), so such a directory
  can be started again or resumed.

Nothing here imports the model or data code: the report reads a run from its files alone.
"""

from __future__ import annotations

import datetime
import errno
import os
import shutil
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from neuralcollapse._internal.files import (
    NotARegularFile,
    append_text,
    atomic_write,
    atomic_write_text,
    open_regular,
    remove_stale_temps,
)
from neuralcollapse._internal.jsonio import JSONError, dumps, loads, write_json
from neuralcollapse.errors import UsageError

try:  # POSIX advisory locks; on other systems the lock file alone (O_EXCL) guards the run
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["Records", "RunDir", "RunDirBusy", "check_run_dir", "default_run_name"]

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
GEOMETRY = "geometry.npz"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
WANDB = "wandb"  # log.wandb: W&B writes its run here (wandb.init(dir=RUN_DIR))
MLFLOW = "mlruns"  # log.mlflow without log.mlflow_uri: the MLflow file store
REPORT = "report.html"
LOCK = ".lock"
REPORT_FIGURES = "report_figures"  # the figures of the default report.html
# The entries a run writes, by kind: a link or the other kind at any of these is refused.
FILE_ENTRIES = (CONFIG, METRICS, SUMMARY, GEOMETRY, REPORT, LOCK)
FOLDER_ENTRIES = (CHECKPOINTS, TENSORBOARD, WANDB, MLFLOW, REPORT_FIGURES)
CHECKPOINT_FILES = ("last.pt", "best.pt")
# Targets of the temporary files atomic writes leave when killed (see remove_stale_temps).
TEMP_TARGETS = (CONFIG, METRICS, SUMMARY, GEOMETRY, REPORT, *CHECKPOINT_FILES)
# What a start that failed before its first checkpoint can leave behind: such a directory
# is as good as new. Anything else in it (a user's own files) makes it off limits.
START_RESIDUE = frozenset(
    {CONFIG, METRICS, GEOMETRY, CHECKPOINTS, TENSORBOARD, WANDB, MLFLOW, LOCK}
)
RUN_FILES = (CONFIG, METRICS, SUMMARY)


class RunDirBusy(UsageError):
    """Another live process holds the run directory."""


def default_run_name(name: str, now: datetime.datetime | None = None) -> str:
    """``<config name>-<YYYYmmdd-HHMMSS>``; :meth:`RunDir.create` adds a suffix on collision."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return f"{name}-{stamp}"


@dataclass
class Records:
    """The ``metrics.jsonl`` of a run: one record per epoch, in epoch order.

    ``skipped`` counts lines that were not JSON objects (a line cut short by a crash);
    ``duplicates`` counts earlier records of an epoch that a later record replaced.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    duplicates: int = 0


def _parse_records(text: str) -> Records:
    by_epoch: dict[Any, dict[str, Any]] = {}
    result = Records()
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = loads(line)
        except JSONError:
            result.skipped += 1
            continue
        if not isinstance(record, dict):
            result.skipped += 1
            continue
        epoch = record.get("epoch")
        if epoch in by_epoch:
            result.duplicates += 1
        by_epoch[epoch] = record  # a later record of an epoch replaces an earlier one
    numbered = [r for r in by_epoch.values() if isinstance(r.get("epoch"), int)]
    others = [r for r in by_epoch.values() if not isinstance(r.get("epoch"), int)]
    result.records = sorted(numbered, key=lambda r: r["epoch"]) + others
    return result


class RunDir:
    """One run directory: its paths, its lock, and tolerant readers and atomic writers.

    Construct with a path to read an existing run; :meth:`create` claims a new one and
    :meth:`claim` locks an existing one for writing (resume).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.created = False  # whether this object made the directory (see abandon)
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ paths

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def geometry_path(self) -> Path:
        return self.path / GEOMETRY

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    @property
    def report_path(self) -> Path:
        return self.path / REPORT

    def checkpoint(self, which: str) -> Path:
        """``checkpoints/<which>.pt`` (``which`` is ``"last"`` or ``"best"``)."""
        return self.checkpoints / f"{which}.pt"

    def pick_checkpoint(self, which: str = "auto") -> Path:
        """The checkpoint file a reader of the run means: ``"best"``, ``"last"`` or
        ``"auto"`` (best when the run chose a best epoch, else last).

        Raises:
            UsageError: the file is missing, saying why (a run chooses a best epoch only on
                a validation split) and what to pass instead.
        """
        if which not in ("auto", "best", "last"):
            raise UsageError(f"checkpoint must be 'auto', 'best' or 'last', got {which!r}")
        if which == "auto":
            which = "best" if self.checkpoint("best").is_file() else "last"
        path = self.checkpoint(which)
        if path.is_file():
            return path
        if which == "best" and self.checkpoint("last").is_file():
            raise UsageError(
                f"{self.path} has no checkpoints/best.pt: a run chooses a best epoch only on a "
                "validation split (data.val_fraction or data.val_list) or with "
                "train.select_best_on=test; use the last checkpoint (--checkpoint last)"
            )
        raise UsageError(
            f"run directory {str(self.path)!r} has no checkpoints/{which}.pt: it holds no "
            "checkpoint; pass a run directory that finished an epoch"
        )

    # ------------------------------------------------------------------ claiming

    @classmethod
    def create(cls, path: str | Path, *, unique: bool = False) -> RunDir:
        """Claim a directory for a new run and lock it.

        Args:
            path: the run directory. It may already exist only when empty, or when it
                holds nothing but what a failed start leaves (then that is removed).
            unique: for default names: when ``path`` is taken, try ``path-2``, ``path-3``
                ... (each attempt an atomic ``mkdir``), so that runs started in the same
                second never share a directory.

        Raises:
            UsageError: the directory holds a run or other files, is locked by a live
                process, or is a file.
            OSError: it cannot be created (permissions, read-only or full disk).
        """
        base = Path(path)
        if base.exists() and not base.is_dir():
            raise UsageError(f"run directory {str(base)!r} is a file; choose another --run-dir")
        base.parent.mkdir(parents=True, exist_ok=True)
        candidate, attempt, created = base, 1, False
        while True:
            try:
                candidate.mkdir()
                created = True
                break
            except FileExistsError:
                if not unique:
                    break
                attempt += 1
                candidate = base.with_name(f"{base.name}-{attempt}")
        run = cls(candidate)
        run.created = created
        run._lock()
        try:
            run.check_entries()
            run._require_fresh()
        except BaseException:
            run.release()
            raise
        return run

    @classmethod
    def claim(cls, path: str | Path) -> RunDir:
        """Lock an existing run directory to continue it (resume).

        Removes the temporary files of interrupted writes. Raises UsageError when the
        directory or its ``checkpoints/last.pt`` does not exist or another process holds it.
        """
        run = cls(path)
        if not run.path.is_dir():
            raise UsageError(f"cannot resume: run directory {str(run.path)!r} does not exist")
        run._lock()
        try:
            run.check_entries()
        except BaseException:
            run.release()
            raise
        if not run.last_checkpoint.is_file():
            run.release()
            raise UsageError(
                f"cannot resume {str(run.path)!r}: it has no checkpoints/last.pt (the run "
                "stopped before finishing its first epoch); start it again with --run-dir "
                f"{run.path}"
            )
        run.remove_stale_temps()
        return run

    def check_entries(self) -> None:
        """Refuse a run directory whose own entries are symbolic links (a write, a
        truncation or a cleanup would land outside the run) or of the wrong kind.

        Raises:
            UsageError: one line naming the entry and the fix.
        """
        expected = [(name, stat.S_ISREG, "a file") for name in FILE_ENTRIES]
        expected += [(name, stat.S_ISDIR, "a folder") for name in FOLDER_ENTRIES]
        expected += [(f"{CHECKPOINTS}/{name}", stat.S_ISREG, "a file") for name in CHECKPOINT_FILES]
        for name, is_kind, kind in expected:
            try:
                mode = os.lstat(self.path / name).st_mode
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISLNK(mode):
                target = os.readlink(self.path / name)
                raise UsageError(
                    f"run directory {str(self.path)!r}: {name} is a symbolic link (to "
                    f"{target!r}); a run reads and writes only inside its directory: replace "
                    "the link by a real file or folder, or choose another run directory"
                )
            if not is_kind(mode):
                raise UsageError(
                    f"run directory {str(self.path)!r}: {name} is not {kind}; remove or rename "
                    "it, or choose another run directory"
                )

    def _is_start_residue(self) -> bool:
        entries = {p.name for p in self.path.iterdir()}
        return entries <= START_RESIDUE and not self.last_checkpoint.exists()

    def _clear(self, keep: frozenset[str] = frozenset({LOCK})) -> None:
        for entry in self.path.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()  # a link itself, never what it points to

    def _require_fresh(self) -> None:
        # What a start killed mid-write left (.config.yaml.<random>.tmp) is no user file.
        self.remove_stale_temps()
        entries = {p.name for p in self.path.iterdir()}
        if not entries - {LOCK}:
            return
        if self._is_start_residue():
            self._clear()  # a start that failed or was interrupted before its first epoch
            return
        if self.last_checkpoint.exists():
            hint = f"continue it with --resume {self.path}, or choose another --run-dir"
        else:
            hint = "choose another --run-dir (it holds files that are not a run's)"
        raise UsageError(f"run directory {str(self.path)!r} already holds files; {hint}")

    def _lock(self) -> None:
        """Hold an exclusive lock on ``.lock`` and write this process into it.

        ``.lock`` is opened without following links and must be a regular file with one
        name: the file is truncated and written, so it must be the run's own. The lock is
        an ``flock``: the operating system frees it when its process dies (kill -9
        included), so a lock file left by a dead process never blocks.
        """
        lock_path = self.path / LOCK
        try:
            fd = open_regular(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except NotARegularFile as exc:
            raise UsageError(
                f"run directory {str(self.path)!r}: {LOCK} {exc.strerror}; a run directory "
                f"holds its own {LOCK}, never a link or a shared file"
            ) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                owner = _read_owner(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise RunDirBusy(
                    f"run directory {str(self.path)!r} is in use by {owner}; wait for that "
                    "run to end or choose another --run-dir"
                ) from None
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def abandon(self) -> None:
        """After a start that failed before its first checkpoint: remove what it wrote
        (and the directory itself if this object created it), then release the lock. A
        directory that holds a checkpoint is only released."""
        try:
            if self.locked and self.path.is_dir() and self._is_start_residue():
                self._clear(keep=frozenset())
                if self.created:
                    self.path.rmdir()
        finally:
            self.release()

    def release(self) -> None:
        """Give the lock back (also done by the OS when the process ends)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # the descriptor of our own regular file, opened at _lock
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    def remove_stale_temps(self) -> list[Path]:
        """Delete temporary files of interrupted atomic writes (call only under the lock):
        regular files of the package's naming pattern in the directory and in
        ``checkpoints/``, never through a link."""
        removed = []
        for folder in (self.path, self.checkpoints):
            removed += remove_stale_temps(folder, TEMP_TARGETS)
        return removed

    # ------------------------------------------------------------------ writing

    def write_config(self, text: str) -> None:
        atomic_write_text(self.config_path, text)

    def append_record(self, record: dict[str, Any]) -> None:
        """Add one epoch's record (strict JSON, one line) to ``metrics.jsonl``."""
        append_text(self.metrics_path, dumps(record) + "\n")

    def truncate_records(self, last_epoch: int) -> int:
        """Keep only records of epochs <= ``last_epoch`` (one per epoch), rewriting the
        file atomically; returns how many records were dropped."""
        if not self.metrics_path.is_file():
            return 0
        text = self.metrics_path.read_text(encoding="utf-8", errors="replace")
        parsed = _parse_records(text)
        kept = [
            r
            for r in parsed.records
            if isinstance(r.get("epoch"), int) and r["epoch"] <= last_epoch
        ]
        dropped = len(parsed.records) - len(kept) + parsed.duplicates + parsed.skipped
        if dropped:
            atomic_write_text(self.metrics_path, "".join(dumps(r) + "\n" for r in kept))
        return dropped

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.summary_path, summary)

    def write_geometry(
        self, *, class_means: np.ndarray, classifier: np.ndarray, kind: str, epoch: int
    ) -> None:
        """Save the (K, d) centred test-set class means and classifier rows of an epoch, so
        the report draws the class geometry without rebuilding data or model."""

        def write(stream):
            np.savez(
                stream,
                class_means=np.asarray(class_means, dtype=np.float64),
                classifier=np.asarray(classifier, dtype=np.float64),
                kind=np.asarray(kind),
                epoch=np.asarray(epoch, dtype=np.int64),
            )

        atomic_write(self.geometry_path, write)

    # ------------------------------------------------------------------ reading

    def exists(self) -> bool:
        """Whether the path is a directory holding at least one of the run files."""
        return self.path.is_dir() and any((self.path / n).is_file() for n in RUN_FILES)

    def read_config(self) -> dict[str, Any] | None:
        """``config.yaml`` as a mapping, or None when missing or unreadable."""
        try:
            values = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        return values if isinstance(values, dict) else None

    def read_summary(self) -> dict[str, Any] | None:
        """``summary.json``, or None when missing or unreadable."""
        try:
            values = loads(self.summary_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, JSONError):
            return None
        return values if isinstance(values, dict) else None

    def read_records(self) -> Records:
        """``metrics.jsonl``: one record per epoch in order (a later record of an epoch
        wins), damaged lines skipped and counted. Missing file: no records."""
        try:
            text = self.metrics_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return Records()
        return _parse_records(text)

    def read_geometry(self) -> dict[str, Any] | None:
        """``geometry.npz`` as ``{"class_means", "classifier", "kind", "epoch"}``, or None.
        Read with ``allow_pickle=False``: nothing in the file can run code."""
        try:
            with np.load(self.geometry_path, allow_pickle=False) as data:
                return {
                    "class_means": np.array(data["class_means"]),
                    "classifier": np.array(data["classifier"]),
                    "kind": str(data["kind"]),
                    "epoch": int(data["epoch"]),
                }
        except (OSError, KeyError, ValueError):
            return None

    def iter_files(self) -> Iterator[Path]:
        """Every file of the run (for listing and tests)."""
        return (p for p in sorted(self.path.rglob("*")) if p.is_file())


def check_run_dir(path: str | Path) -> RunDir:
    """A :class:`RunDir` for reading, or a clear error when ``path`` is no run directory."""
    run = RunDir(path)
    if not run.path.exists():
        raise UsageError(f"run directory {str(run.path)!r} does not exist")
    if not run.path.is_dir():
        raise UsageError(f"{str(run.path)!r} is a file; give the run directory that holds it")
    if not run.exists():
        raise UsageError(
            f"{str(run.path)!r} is not a run directory: it has none of {', '.join(RUN_FILES)} "
            "(written by 'neuralcollapse train')"
        )
    run.check_entries()
    return run


def _read_owner(fd: int) -> str:
    """What the holder of a lock wrote into it (``pid N on HOST``), for messages."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        owner = os.read(fd, 200).decode("utf-8", "replace").strip()
    except OSError:
        owner = ""
    if not owner:
        return "another process"
    words = owner.split()
    ours = len(words) == 4 and words[0] == "pid" and words[2] == "on" and words[1].isdigit()
    if ours and words[3] == socket.gethostname() and not _alive(int(words[1])):
        # flock follows the open file: a forked child (a DataLoader worker) of a killed
        # run holds it until it notices and exits, within seconds.
        return f"{owner} (ended; a child process still holds the lock: wait a few seconds)"
    return owner


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True
