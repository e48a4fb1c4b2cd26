"""Type checks for plain values read from files we do not trust (checkpoints, annotation JSON).

``bool`` is a subclass of ``int`` in Python, and NaN or infinities pass ``isinstance(value, float)``; each
reader of untrusted data needs "a real, finite number" and "a whole number" that rule both out, so they
live here once.
"""

from __future__ import annotations

import math
from typing import Any


def is_finite_number(value: Any) -> bool:
    """An ``int`` or ``float`` (not ``bool``) that is finite."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_whole_number(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)
