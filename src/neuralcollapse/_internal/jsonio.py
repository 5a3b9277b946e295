"""The one JSON policy of the package: strict JSON that every reader accepts.

NaN and infinities are not JSON; Python's ``json`` would write them as bare ``NaN`` /
``Infinity`` tokens that most other readers reject. Everything this package writes
(``metrics.jsonl``, ``summary.json``, ``--json`` outputs, reproduction results) goes
through :func:`to_jsonable`, which writes them as ``null``: a metric that could not be
computed reads as missing. Tensors, NumPy values, tuples and paths become plain JSON
values on the way.

Reading: :func:`loads` and :func:`read_json` are the one way the package reads JSON. Any
damage (not JSON, not UTF-8, nesting deeper than :data:`MAX_DEPTH`, a number too long to
convert) is a :class:`JSONError` (a ``ValueError``) of one line, never a RecursionError.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

from neuralcollapse._internal.files import atomic_write_text

__all__ = ["MAX_DEPTH", "JSONError", "dumps", "loads", "read_json", "to_jsonable", "write_json"]

# Deeper nesting than any file of the package holds (a hierarchy is a few levels, an export
# config two): this project's setting, far below Python's recursion limit.
MAX_DEPTH = 200


class JSONError(ValueError):
    """JSON text that cannot be read; the message names the source and the reason."""


def to_jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as None, tensors and arrays as (nested) lists,
    NumPy and 0-d tensor scalars as Python numbers, tuples as lists and paths as strings."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    tolist = getattr(value, "tolist", None)  # torch.Tensor, numpy arrays and scalars
    if callable(tolist):
        return to_jsonable(tolist())
    raise TypeError(f"cannot write a {type(value).__name__} as JSON: {value!r}")


def dumps(value: Any, *, indent: int | None = None) -> str:
    """Strict JSON text of ``value`` after :func:`to_jsonable`."""
    return json.dumps(to_jsonable(value), indent=indent, allow_nan=False)


def write_json(path: str | Path, value: Any, *, indent: int | None = 2) -> Path:
    """Write ``value`` as strict JSON (plus a final newline) to ``path``, atomically."""
    return atomic_write_text(path, dumps(value, indent=indent) + "\n")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (brackets inside strings are
    skipped), found without recursion and at C speed for large files."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def loads(text: str | bytes, source: str | Path | None = None) -> Any:
    """The JSON value in ``text``; ``source`` names it in messages (a file, a field).

    Raises:
        JSONError: not JSON, not UTF-8, nested deeper than :data:`MAX_DEPTH` or holding a
            number Python refuses to convert; one line.
    """
    where = f"{source}: " if source is not None else ""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONError(f"{where}not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if text.count("[") + text.count("{") > MAX_DEPTH:
        deepest = _depth(text)
        if deepest > MAX_DEPTH:
            raise JSONError(
                f"{where}JSON nested {deepest} levels deep, more than the {MAX_DEPTH} this "
                "package reads; it is not a file the package wrote or documents"
            )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JSONError(f"{where}not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of 5,000 digits
        reason = " ".join(str(exc).split())[:160]
        raise JSONError(f"{where}JSON that cannot be read ({reason})") from None


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path``. Raises :class:`JSONError` (a ValueError) naming the file
    when it is not readable JSON (see :func:`loads`)."""
    path = Path(path)
    return loads(path.read_bytes(), path)
