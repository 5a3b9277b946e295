"""Number formatting for the tables the CLI and the report print."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["as_finite", "format_percent", "format_sci"]

MISSING = "n/a"


def as_finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (None, NaN, infinities, booleans, non-numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def format_percent(value: Any, *, digits: int = 1, missing: str = MISSING) -> str:
    """A fraction in [0, 1] as a percentage without the sign: ``0.9534 -> "95.3"``."""
    number = as_finite(value)
    return missing if number is None else f"{100 * number:.{digits}f}"


def format_sci(value: Any, *, digits: int = 3, missing: str = MISSING) -> str:
    """A metric value with ``digits`` significant digits: ``0.0012345 -> "0.00123"``."""
    number = as_finite(value)
    return missing if number is None else f"{number:.{digits}g}"
