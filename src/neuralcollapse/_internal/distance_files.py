"""Safe readers for class-distance files: NumPy ``.npy`` matrices and pickled pair dicts.

making-better-mistakes (Bertinetto et al. 2020) and [L23] ship their hierarchical distances
as a pickled Python dict ``{(name_a, name_b): distance}``, often xz-compressed
(``*_distances.pkl.xz``). Unpickling can run arbitrary code, so these files are read with
an unpickler that builds nothing but ``dict``, ``tuple``, ``str``, ``int`` and ``float``:
any other object in the file is refused by name, before it is built. ``.npy`` files are
read with ``allow_pickle=False``.

Nothing here knows about trees; :class:`neuralcollapse.hierarchy.ClassDistances` turns
what these functions return into a (K, K) matrix with class names.
"""

from __future__ import annotations

import io
import math
import numbers
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from neuralcollapse._internal.compressed import read_capped

__all__ = ["is_distance_file", "read_distance_pairs", "read_npy_matrix"]

# the most bytes a distance file may hold once decompressed (this project's setting): the
# official pickles of making-better-mistakes and [L23] take a few MB to ~30 MB
MAX_DISTANCE_BYTES = 256 << 20
_NPY_MAGIC = b"\x93NUMPY"
_COMPRESSED = (".xz", ".gz")
_PICKLE_SUFFIXES = (".pkl", ".pickle")


def _base_suffix(path: Path) -> str:
    """The suffix under any compression suffix: ``d.pkl.xz`` -> ``.pkl``."""
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSED:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def is_distance_file(path: str | Path) -> bool:
    """Whether ``path`` names a distance file by its suffix: ``.npy``, or ``.pkl`` /
    ``.pickle`` (optionally followed by ``.xz`` or ``.gz``)."""
    path = Path(path)
    return path.suffix.lower() == ".npy" or _base_suffix(path) in _PICKLE_SUFFIXES


def _raw_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed (xz / gzip, by magic bytes) as a stream that stops
    at :data:`MAX_DISTANCE_BYTES`: a small file that expands to gigabytes is refused."""
    if not path.is_file():
        raise FileNotFoundError(f"distance file {str(path)!r} does not exist")
    return read_capped(path, MAX_DISTANCE_BYTES, "distance file")


class _Refused(pickle.UnpicklingError):
    """The pickle names a global other than the plain builtins."""


class _PlainDataUnpickler(pickle.Unpickler):
    """Builds only dicts, tuples, strings and numbers: a pickled ``{(a, b): d}`` needs no
    more, and nothing else can run code while loading."""

    _ALLOWED = frozenset(("builtins", name) for name in ("dict", "tuple", "str", "int", "float"))

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise _Refused(
                f"it holds a {module}.{name} object; only plain dict, tuple, str, int and "
                "float values are read (save the distances as a plain dict)"
            )
        return super().find_class(module, name)


def _number(value: object) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return value if isinstance(value, int) else float(value)


def read_distance_pairs(path: str | Path) -> tuple[dict[tuple[str, str], float], list[str]]:
    """The pairs of a pickled ``{(name_a, name_b): distance}`` file and its names.

    Returns:
        ``(pairs, names)``: every key as a ``(str, str)`` tuple with its distance (int or
        float, finite, >= 0), and every name in order of first appearance among the keys.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a pickle, an object other than dict/tuple/str/int/float, or
            entries of another form; the message names the file and the entry.
    """
    path = Path(path)
    raw = _raw_bytes(path)
    try:
        obj = _PlainDataUnpickler(io.BytesIO(raw)).load()
    except _Refused as exc:
        raise ValueError(f"{path}: not read: {exc}") from None
    except Exception as exc:  # truncated or not a pickle at all
        raise ValueError(
            f"{path}: not a pickled dict of distances ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(obj, dict) or not obj:
        kind = "an empty dict" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise ValueError(f"{path}: holds {kind}; expected a dict {{(name_a, name_b): distance}}")
    pairs: dict[tuple[str, str], float] = {}
    names: dict[str, None] = {}
    for key, value in obj.items():
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(n, str) for n in key)):
            raise ValueError(
                f"{path}: key {key!r} is not a pair of class names; expected "
                "{(name_a, name_b): distance}"
            )
        number = _number(value)
        if number is None or not math.isfinite(number) or number < 0:
            raise ValueError(
                f"{path}: the distance of {key!r} is {value!r}; distances must be finite "
                "numbers >= 0"
            )
        pairs[key] = number
        names.setdefault(key[0])
        names.setdefault(key[1])
    return pairs, list(names)


def read_npy_matrix(path: str | Path) -> np.ndarray:
    """The (K, K) real matrix of a ``.npy`` file (read without unpickling)."""
    path = Path(path)
    raw = _raw_bytes(path)
    if not raw.startswith(_NPY_MAGIC):
        raise ValueError(f"{path}: not a NumPy .npy file")
    _check_npy_header(raw, path)
    try:
        matrix = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path}: not read as a numeric .npy array ({exc})") from None
    if matrix.dtype.kind not in "iuf":
        raise ValueError(f"{path}: holds {matrix.dtype} values; expected a numeric (K, K) matrix")
    return matrix


def _check_npy_header(raw: bytes, path: Path) -> None:
    """The shape and type the ``.npy`` header declares must fit the bytes that follow
    (NumPy would allocate the declared size before noticing)."""
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(stream)
    except (ValueError, TypeError, SyntaxError) as exc:
        raise ValueError(f"{path}: not a readable .npy header ({exc})") from None
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared > len(raw) - stream.tell():
        raise ValueError(
            f"{path}: the header declares shape {shape} ({declared:,} bytes) but the file "
            f"holds {len(raw) - stream.tell():,}; the file is truncated or corrupt"
        )
