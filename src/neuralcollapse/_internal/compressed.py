"""Bounded reading of possibly compressed files: a small file that expands to gigabytes
is refused from its stream, never decompressed whole into memory first.

Compression is recognised by the file's magic bytes (gzip ``1f 8b``, xz ``fd 37 7a 58 5a
00``), not its suffix. Every reader takes ``max_bytes``, the most uncompressed bytes it
will hand back; reading stops (and raises) as soon as the stream passes it, so at most
``max_bytes`` plus one chunk is ever held.
"""

from __future__ import annotations

import gzip
import lzma
import zlib
from pathlib import Path
from typing import IO, BinaryIO

__all__ = ["GZIP_MAGIC", "XZ_MAGIC", "TooLarge", "open_maybe_compressed", "read_capped"]

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
_CHUNK = 1 << 20


class TooLarge(ValueError):
    """The (uncompressed) content exceeds the reader's limit."""


def _is_compressed(head: bytes) -> str | None:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(XZ_MAGIC):
        return "xz"
    return None


def open_maybe_compressed(path: Path) -> tuple[BinaryIO | IO[bytes], str | None]:
    """(a binary stream of the uncompressed content, the compression or None).

    The caller closes the stream. Errors of a damaged stream surface on reading as
    ``OSError`` / ``EOFError`` / ``zlib.error`` / ``lzma.LZMAError``.
    """
    with open(path, "rb") as probe:
        kind = _is_compressed(probe.read(6))
    if kind == "gzip":
        return gzip.open(path, "rb"), kind
    if kind == "xz":
        return lzma.open(path, "rb"), kind
    return open(path, "rb"), None


def read_capped(path: str | Path, max_bytes: int, what: str = "file") -> bytes:
    """The whole uncompressed content of ``path`` (gzip / xz / plain), at most
    ``max_bytes`` bytes.

    Raises:
        TooLarge: the content is longer than ``max_bytes`` (found while streaming; the
            message names the file and the limit).
        ValueError: a damaged compressed stream.
    """
    path = Path(path)
    stream, kind = open_maybe_compressed(path)
    parts: list[bytes] = []
    total = 0
    try:
        with stream:
            while chunk := stream.read(min(_CHUNK, max_bytes + 1 - total)):
                parts.append(chunk)
                total += len(chunk)
                if total > max_bytes:
                    raise TooLarge(
                        f"{path}: the {what} holds more than {max_bytes:,} bytes"
                        f"{' once decompressed' if kind else ''}, the most this reader accepts"
                    )
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise ValueError(f"{path}: the {kind or 'file'} data is damaged ({exc})") from None
    return b"".join(parts)
