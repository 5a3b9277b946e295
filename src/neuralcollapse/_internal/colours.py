"""The one colour palette of every figure the package draws (the report and the UFM plots).

Okabe and Ito's colour-blind-safe palette (distinguishable under the common colour-vision
deficiencies), in an order that keeps the first colours far apart; yellow, poor on white,
last.
"""

from __future__ import annotations

__all__ = ["OKABE_ITO"]

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
