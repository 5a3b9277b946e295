"""Facts about frames that torch-free code (config checks, ``--help`` pages) needs too."""

from __future__ import annotations

__all__ = ["ETF_MIN_DIM_RULE", "etf_min_dim"]

#: How :func:`etf_min_dim` reads in messages.
ETF_MIN_DIM_RULE = "K-1"


def etf_min_dim(num_classes: int) -> int:
    """The smallest feature dimension d that holds a simplex ETF of ``num_classes`` = K
    unit vectors: K - 1 (their centred coordinates span K - 1 dimensions; docs/theory.md
    §1). Every check of that condition goes through here."""
    return num_classes - 1
