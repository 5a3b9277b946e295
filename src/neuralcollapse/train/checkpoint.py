"""Checkpoints: written atomically, read back with a clear error when damaged or foreign.

A checkpoint is a dict saved with ``torch.save`` holding only tensors, numbers, strings and
containers of them, so it loads with ``torch.load(weights_only=True)`` (no arbitrary code).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "neuralcollapse-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` via a temporary file in the same folder and a rename.

    A crash or Ctrl-C mid-write leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as tmp:
            torch.save(payload, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is truncated or corrupt, or not a neuralcollapse checkpoint, or
            from a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        raise ValueError(
            f"checkpoint {str(path)!r} cannot be read (truncated or corrupt: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); resume "
            "from another checkpoint of the run, e.g. checkpoints/best.pt"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a neuralcollapse checkpoint (no '{CHECKPOINT_FORMAT}' "
            "marker); it was written by another program"
        )
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint {str(path)!r} has format version {state['version']}, newer than this "
            f"neuralcollapse reads ({CHECKPOINT_VERSION}): upgrade neuralcollapse"
        )
    return state
