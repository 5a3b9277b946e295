"""Atomic file writes: a crash, a kill or a full disk mid-write never leaves a truncated file.

Every write goes to a temporary file in the target's folder (``.<name>.<random>.tmp``),
is flushed and fsync'ed, then renamed over the target in one step (``os.replace``). A
process killed mid-write leaves at most such a temporary file behind;
:func:`remove_stale_temps` deletes them (the run directory calls it under its lock).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = [
    "TEMP_SUFFIX",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "remove_stale_temps",
]

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Create or replace ``path`` with what ``write(handle)`` writes to a binary handle.

    The parent folder must exist. The file gets the usual permissions (0666 less the
    umask), not the private 0600 of a temporary file. On any failure the temporary file
    is removed and the previous ``path`` (if any) is left untouched.
    """
    path = Path(path)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Create or replace ``path`` with ``data``, atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda stream: stream.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Create or replace ``path`` with ``text`` in UTF-8, atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files that interrupted :func:`atomic_write` calls left in
    ``folder`` (not recursive); returns what was removed. Call it only while no other
    process writes into ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for candidate in folder.glob(f".*{TEMP_SUFFIX}"):
        if candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed
