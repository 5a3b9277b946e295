"""Reading data files safely: the one home of what every reader shares.

* :class:`DataFormatError`: a data file that does not hold what its format promises (a
  :class:`~neuralcollapse.errors.UsageError`, so the command line reports it as one line).
* Finding and fetching official files: :func:`check_md5`, :func:`fetch`,
  :func:`extract_archive` (members outside the folder and links refused).
* Release members read from an extracted folder or straight from its tar archive, with a
  size limit checked against the declared size before anything is read:
  :func:`read_release_members`.
* Text annotation files: :func:`read_text` (UTF-8, a byte-order mark accepted),
  :func:`read_lines`, :func:`read_id_table`.
* Paths listed in annotation files confined to the data root: :func:`confined_path`
  (``..``, absolute paths and symlinks out of the root are refused unless allowed).

Nothing here imports the rest of :mod:`neuralcollapse.data`, so every reader can use it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from neuralcollapse._internal.files import atomic_write
from neuralcollapse._internal.optional import extra_install, optional_import
from neuralcollapse.errors import UsageError

__all__ = [
    "OUTSIDE_ROOT_FIX",
    "DataFormatError",
    "check_md5",
    "check_size",
    "confined_path",
    "extract_archive",
    "fetch",
    "optional_module",
    "read_id_table",
    "read_lines",
    "read_release_members",
    "read_text",
]

PathLike = str | os.PathLike[str]


class DataFormatError(UsageError):
    """A data file exists but does not hold what its format promises (or names a path
    outside the data root); the message names the file and the fix."""


def optional_module(module: str, package: str, extra: str, purpose: str) -> Any:
    """Import ``module`` from an optional extra, or raise an ImportError naming the extra."""
    return optional_import(module, package=package, purpose=purpose, install=extra_install(extra))


def check_size(path: Path, max_bytes: int, what: str) -> int:
    """The size of ``path`` in bytes, refused above ``max_bytes`` before it is read."""
    size = path.stat().st_size
    if size > max_bytes:
        raise DataFormatError(
            f"{path} holds {size:,} bytes, more than the {max_bytes:,} a {what} may take; "
            "the file is not the official one (or raise the reader's max_bytes)"
        )
    return size


# ----------------------------------------------------------------------------- fetching


def check_md5(path: Path, expected: str, what: str) -> None:
    """Refuse ``path`` unless its md5 is ``expected`` (``what`` names the official file)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise DataFormatError(
            f"md5 of {path} is {digest.hexdigest()}, expected {expected} (the official {what}); "
            "delete the file and download it again"
        )


def fetch(url: str, target: Path, md5: str | None = None) -> Path:
    """Download ``url`` to ``target`` atomically (a partial download never appears under
    the target's name); with ``md5``, a download whose digest differs is discarded."""

    def write(out: IO[bytes]) -> None:
        digest = hashlib.md5()
        with urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if md5 is not None and digest.hexdigest() != md5:
            raise DataFormatError(
                f"the file downloaded from {url} has md5 {digest.hexdigest()}, expected {md5}; "
                "the download was discarded, try again"
            )

    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(target, write)


def extract_archive(archive: Path, into: Path) -> None:
    """Unpack a tar archive into ``into``: into a temporary folder first, whose top-level
    entries are then moved into place, so an interrupted extraction leaves no half folder.
    Members that would land outside the folder, and links, are refused."""
    into.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".extracting-", dir=into))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = [_safe_member(m, archive) for m in tar.getmembers()]
                # the members are checked above; Python's own "data" filter, where it
                # exists, checks them again
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(scratch, members=members, **safe)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataFormatError(f"{archive} is not a readable tar archive ({err})") from err
        for entry in scratch.iterdir():
            destination = into / entry.name
            if not destination.exists():
                entry.replace(destination)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _safe_member(member: tarfile.TarInfo, archive: Path) -> tarfile.TarInfo:
    name = Path(member.name)
    if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
        raise DataFormatError(
            f"{archive}: member {member.name!r} is a link or points outside the archive; "
            "refusing to extract it"
        )
    return member


# ----------------------------------------------------------------------------- release members


def read_release_members(
    source: Path, folder: str, members: Sequence[str], *, max_bytes: int, release: str
) -> dict[str, bytes | None]:
    """The bytes of ``members`` of a release: from the extracted folder ``source`` (read
    file by file) or from its tar archive ``source`` (``<folder>/<member>`` entries, one
    sequential pass that stops once every member is found; nothing is extracted).

    Each member's size (the file's, or the size its tar header declares) is checked
    against ``max_bytes`` before it is read, so a crafted header cannot make the reader
    allocate gigabytes. A member that is absent maps to None.

    Raises:
        DataFormatError: an unreadable archive or a member over ``max_bytes``.
    """
    found: dict[str, bytes | None] = dict.fromkeys(members)
    if source.is_dir():
        for member in members:
            path = source / member
            if path.is_file():
                check_size(path, max_bytes, f"{release} file")
                found[member] = path.read_bytes()
        return found
    wanted = {f"{folder}/{m}": m for m in members}
    try:
        with tarfile.open(source, "r:*") as tar:
            for info in tar:
                if info.name not in wanted or not info.isfile():
                    continue
                if info.size > max_bytes:
                    raise DataFormatError(
                        f"{source}: member {info.name} declares {info.size:,} bytes, more than "
                        f"the {max_bytes:,} a {release} file may take; the archive is not the "
                        "official one"
                    )
                handle = tar.extractfile(info)
                found[wanted[info.name]] = handle.read() if handle else None
                if all(v is not None for v in found.values()):
                    break
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataFormatError(
            f"{source} is not a readable tar archive ({err}); expected the official {release} "
            "archive"
        ) from err
    return found


# ----------------------------------------------------------------------------- text files


def read_text(path: Path, what: str = "text file") -> str:
    """The content of a UTF-8 text file (a leading byte-order mark is dropped).

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: the file is not UTF-8.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} is missing")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataFormatError(
            f"{path} is not UTF-8 text (byte {err.start}: {err.reason}); save the {what} as UTF-8"
        ) from None


def read_lines(path: Path, what: str = "text file") -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines of a UTF-8 text file."""
    text = read_text(path, what)
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


_ID_LINE = re.compile(r"^(\S+)\s+(.+)$")


def read_id_table(path: Path, *, integer_keys: bool = True) -> dict[int | str, str]:
    """``key value`` lines (CUB's ``<id> <text>``, FGVC-Aircraft's ``<image> <label with
    spaces>``) as a dict in file order; a repeated key or a line without a value is an error
    naming the line."""
    table: dict[int | str, str] = {}
    for lineno, line in read_lines(path, "annotation file"):
        match = _ID_LINE.match(line)
        if match is None:
            raise DataFormatError(f"{path}:{lineno}: expected '<id> <value>', got {line!r}")
        key: int | str = match[1]
        if integer_keys:
            if not match[1].isdigit():
                raise DataFormatError(f"{path}:{lineno}: {match[1]!r} is not a positive integer id")
            key = int(match[1])
        if key in table:
            raise DataFormatError(f"{path}:{lineno}: id {match[1]} is listed twice")
        table[key] = match[2].strip()
    if not table:
        raise DataFormatError(f"{path} is empty; expected '<id> <value>' lines")
    return table


# ----------------------------------------------------------------------------- listed paths

OUTSIDE_ROOT_FIX = (
    "move the file under the data root, or set data.allow_outside_root: true "
    "(allow_outside_root=True) to read files outside it"
)


def confined_path(
    root: Path,
    listed: str | PathLike,
    *,
    allow_outside: bool = False,
    listed_in: str = "",
    base: Path | None = None,
) -> Path:
    """The file a data file lists, ``base / listed`` (``base`` defaults to ``root``),
    checked to lie under ``root`` once resolved.

    ``..`` components, absolute paths and symlinks whose target leaves ``root`` are refused
    (one line naming the entry, where it is listed, and the fix) unless ``allow_outside``.

    Raises:
        DataFormatError: the resolved path is outside ``root``.
    """
    text = os.fspath(listed)
    where = f" (listed in {listed_in})" if listed_in else ""
    if "\x00" in text:
        raise DataFormatError(f"{text!r}{where} holds a NUL byte, not a file name")
    candidate = (base if base is not None else root) / text
    if allow_outside:
        return candidate
    if Path(text).is_absolute():
        raise DataFormatError(
            f"{text!r}{where} is an absolute path; listed files must lie under the data root "
            f"{root}: {OUTSIDE_ROOT_FIX}"
        )
    top = root.resolve()
    resolved = candidate.resolve()
    if resolved != top and top not in resolved.parents:
        how = "a symlink out of" if ".." not in Path(text).parts else "'..' leading out of"
        raise DataFormatError(
            f"{text!r}{where} resolves to {resolved}, outside the data root {top} ({how} "
            f"it): {OUTSIDE_ROOT_FIX}"
        )
    return candidate
