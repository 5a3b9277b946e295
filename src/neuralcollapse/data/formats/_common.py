"""What the dataset readers share: finding the official files, fetching them and small text
annotation files. The file-backed image set the image readers return, :class:`ImageFiles`
(with :func:`materialize` and :data:`RESIZE_MODES`), lives in
:mod:`neuralcollapse.data.sources`, beside the image folders and list files built on it,
and is re-exported here.

Nothing here prints. Errors name the file: :class:`FileNotFoundError` for a missing one,
:class:`~neuralcollapse.data.sources.DataFormatError` for one that does not hold what its
format promises.
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
from typing import IO

from neuralcollapse._internal.files import atomic_write

from ..sources import RESIZE_MODES, DataFormatError, ImageFiles, materialize

__all__ = [
    "RESIZE_MODES",
    "ImageFiles",
    "check_md5",
    "check_split",
    "extract_archive",
    "fetch",
    "materialize",
    "read_id_table",
    "read_lines",
]

PathLike = str | os.PathLike[str]


def check_split(split: str, allowed: Sequence[str], dataset: str) -> str:
    """``split`` if it is one of ``allowed``, else a ValueError listing them."""
    if split not in allowed:
        raise ValueError(
            f"unknown {dataset} split {split!r}; choose one of {', '.join(map(repr, allowed))}"
        )
    return split


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


# ----------------------------------------------------------------------------- text files


def read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines of a UTF-8 text file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path} is not UTF-8 text ({err})") from err
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


_ID_LINE = re.compile(r"^(\S+)\s+(.+)$")


def read_id_table(path: Path, *, integer_keys: bool = True) -> dict[int | str, str]:
    """``key value`` lines (CUB's ``<id> <text>``, FGVC-Aircraft's ``<image> <label with
    spaces>``) as a dict in file order; a repeated key or a line without a value is an error
    naming the line."""
    table: dict[int | str, str] = {}
    for lineno, line in read_lines(path):
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
