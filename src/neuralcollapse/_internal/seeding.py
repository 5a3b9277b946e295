"""Derived seeds: every random stream of a run comes from the run seed and a purpose.

``derive_seed(seed, "mixup", epoch)`` gives a 64-bit seed that depends on all of its parts
and collides with no nearby combination (seed 0 epoch 1 and seed 1 epoch 0 differ), unlike
``seed + epoch``-style arithmetic. Purposes are strings (hashed stably with CRC-32, never
Python's salted ``hash``) or non-negative integers.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

__all__ = ["derive_generator", "derive_seed"]


def _entropy(part: int | str) -> int:
    if isinstance(part, str):
        return zlib.crc32(part.encode("utf-8"))
    if isinstance(part, bool) or not isinstance(part, (int, np.integer)) or part < 0:
        raise ValueError(f"seed parts must be non-negative integers or strings, got {part!r}")
    return int(part)


def derive_seed(seed: int, *purpose: int | str) -> int:
    """A 64-bit seed from ``seed`` and ``purpose`` (NumPy's SeedSequence mixing).

    ``derive_seed(s, e)`` with one integer part is the per-epoch seed of the data order.
    """
    parts = [_entropy(seed), *(_entropy(p) for p in purpose)]
    high, low = np.random.SeedSequence(parts).generate_state(2, dtype=np.uint32)
    return int(high) << 32 | int(low)


def derive_generator(
    seed: int, *purpose: int | str, device: torch.device | str = "cpu"
) -> torch.Generator:
    """A torch generator on ``device`` seeded with :func:`derive_seed`."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *purpose))
