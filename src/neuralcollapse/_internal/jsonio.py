"""The one JSON policy of the package: strict JSON that every reader accepts.

NaN and infinities are not JSON; Python's ``json`` would write them as bare ``NaN`` /
``Infinity`` tokens that most other readers reject. Everything this package writes
(``metrics.jsonl``, ``summary.json``, ``--json`` outputs, reproduction results) goes
through :func:`to_jsonable`, which writes them as ``null``: a metric that could not be
computed reads as missing. Tensors, NumPy values, tuples and paths become plain JSON
values on the way.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from neuralcollapse._internal.files import atomic_write_text

__all__ = ["dumps", "read_json", "to_jsonable", "write_json"]


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


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path``. Raises ValueError naming the file when it is not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
