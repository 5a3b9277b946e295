"""Atomic file writes: a crash, a kill or a full disk mid-write never leaves a truncated file.

Every write goes to a temporary file in the target's folder (``.<name>.<random>.tmp``),
is flushed and fsync'ed, then renamed over the target in one step (``os.replace``). A
process killed mid-write leaves at most such a temporary file behind;
:func:`remove_stale_temps` deletes them (the run directory calls it under its lock).

Links: the temporary file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW``, so it is
always a new file of this process, and ``os.replace`` replaces a link at the target's name
rather than writing through it. :func:`append_text` opens with ``O_NOFOLLOW`` and refuses
anything but a regular file. Files get the mode ``0o666`` at creation, which the kernel
narrows by the process umask; the umask itself is never changed (a process-wide setting
that other threads would see).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

__all__ = [
    "TEMP_SUFFIX",
    "NotARegularFile",
    "append_text",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_file",
    "is_link",
    "open_regular",
    "remove_stale_temps",
]

TEMP_SUFFIX = ".tmp"
# O_NOFOLLOW and O_CLOEXEC are POSIX; where absent (Windows) the flags are simply not set.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_BINARY = getattr(os, "O_BINARY", 0)
# The names atomic_write gives its temporary files: .<target>.<random>.tmp
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[A-Za-z0-9_]+" + re.escape(TEMP_SUFFIX))


class NotARegularFile(OSError):
    """A path the package writes is a link, a folder, a device or a file with other names."""


def is_link(path: str | Path) -> bool:
    """Whether ``path`` itself is a symbolic link (not followed); False when missing."""
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def open_regular(path: str | Path, flags: int, mode: int = 0o666) -> int:
    """``os.open`` that never follows a link at ``path`` and accepts only a regular file
    with one name (a hard link would let a write reach a file elsewhere). Returns the
    descriptor; ``O_NONBLOCK`` is added so that a FIFO planted at ``path`` cannot block.

    Raises:
        NotARegularFile: ``path`` is a link, a folder, a FIFO, a device or has other names.
        OSError: as ``os.open`` (missing folder, permissions).
    """
    path = Path(path)
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | _NONBLOCK | _BINARY, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) or is_link(path):
            raise NotARegularFile(
                errno.ELOOP,
                "is a symbolic link; remove it (the package never writes through links)",
                str(path),
            ) from None
        if exc.errno == errno.EISDIR:
            raise NotARegularFile(
                errno.EISDIR, "is a folder, not a file; remove it", str(path)
            ) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(errno.EINVAL, "is not a regular file; remove it", str(path))
        if info.st_nlink > 1:
            raise NotARegularFile(
                errno.EMLINK,
                f"has {info.st_nlink} hard links; remove it (a write would reach the other "
                "names too)",
                str(path),
            )
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _create_temp(folder: Path, name: str) -> tuple[int, Path]:
    """A new, empty ``.<name>.<random>.tmp`` in ``folder``, opened for writing."""
    for _ in range(100):
        temp = folder / f".{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(folder))


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Create or replace ``path`` with what ``write(handle)`` writes to a binary handle.

    The parent folder must exist. The file gets the usual permissions (0666 less the
    umask). A link at ``path`` is replaced by the file, never written through. On any
    failure the temporary file is removed and the previous ``path`` (if any) is left
    untouched.
    """
    path = Path(path)
    try:
        handle, temp = _create_temp(path.parent, path.name)
    except OSError as exc:  # name the file asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            # a failed write or flush names no file: name the one being written
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Create or replace ``path`` with ``data``, atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda stream: stream.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Create or replace ``path`` with ``text`` in UTF-8, atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_output_file(path: str | Path, option: str) -> Path:
    """Before slow work: ``path`` can be written as a file (its folder exists and it is not
    a folder); raises :class:`~neuralcollapse.errors.UsageError` naming ``option``."""
    from neuralcollapse.errors import UsageError

    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(
            f"{option} {str(path)!r}: the folder {str(folder)!r} does not exist; create it "
            "first or write elsewhere"
        )
    if path.is_dir():
        raise UsageError(f"{option} {str(path)!r} is a folder; give a file name")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{option} {str(path)!r}: the folder {str(folder)!r} is not writable")
    return path


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` (UTF-8) to ``path`` and fsync, creating it if missing; refuses a
    link or anything but a regular file at ``path`` (see :func:`open_regular`)."""
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "ab") as stream:
        stream.write(text.encode("utf-8"))
        stream.flush()
        os.fsync(stream.fileno())


def remove_stale_temps(folder: str | Path, targets: Iterable[str] | None = None) -> list[Path]:
    """Delete the temporary files that interrupted :func:`atomic_write` calls left in
    ``folder`` (not recursive); returns what was removed.

    Only regular files named ``.<target>.<random>.tmp`` are removed (with ``targets``:
    only for those target names); nothing is followed: a ``folder`` that is a link, and
    links or folders inside it, are left alone. Call it only while no other process
    writes into ``folder``.
    """
    folder = Path(folder)
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return []
        entries = list(os.scandir(folder))
    except OSError:
        return []
    wanted = None if targets is None else set(targets)
    removed = []
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if match is None or (wanted is not None and match["target"] not in wanted):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        Path(entry.path).unlink(missing_ok=True)
        removed.append(Path(entry.path))
    return removed
