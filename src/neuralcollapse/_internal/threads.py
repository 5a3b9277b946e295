"""Torch's intra-op CPU threads for the duration of a block, restored afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(wanted: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(wanted)`` (None: leave it), then put
    back the previous setting."""
    previous = torch.get_num_threads()
    if wanted is None or wanted == previous:
        yield
        return
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
