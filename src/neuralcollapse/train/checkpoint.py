"""Checkpoints: written atomically, read back with a clear error when damaged or foreign.

A checkpoint is a dict saved with ``torch.save`` holding only tensors, numbers, strings and
containers of them, so it loads with ``torch.load(weights_only=True)`` (no arbitrary code).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from neuralcollapse._internal.files import atomic_write
from neuralcollapse.errors import UsageError

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "neuralcollapse-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, fsync,
    rename): a crash or Ctrl-C mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    return atomic_write(path, lambda stream: torch.save(payload, stream))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: no such file.
        UsageError: the file is truncated or corrupt, not a neuralcollapse checkpoint, or
            from a newer format version (one line, naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        # Only the first line: torch's advice to retry with weights_only=False would run
        # arbitrary code from a file the user may not have written.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"checkpoint {str(path)!r} cannot be read as a neuralcollapse checkpoint "
            f"({type(exc).__name__}: {reason[:160]}); it is truncated, corrupt or not a "
            "checkpoint: use another checkpoint of the run, e.g. checkpoints/best.pt"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(
            f"{str(path)!r} is not a neuralcollapse checkpoint (no '{CHECKPOINT_FORMAT}' "
            "marker); it was written by another program"
        )
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise UsageError(
            f"checkpoint {str(path)!r} has format version {state['version']}, newer than this "
            f"neuralcollapse reads ({CHECKPOINT_VERSION}): upgrade neuralcollapse"
        )
    return state
