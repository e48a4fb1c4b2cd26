"""Durations written by people: ``training.time_budget: 20m``, ``1h30m``, ``90s``, ``1.5h``.

A unit is required on every number: a bare ``20`` could mean seconds or minutes, and guessing wrong
makes a run sixty times too short or too long.
"""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
MAX_DURATION_SECONDS = 366 * 24 * 3600.0  # a year: beyond it the value is a typo


def parse_duration(text: object) -> float | None:
    """Seconds in ``text`` (``"1h30m"``, ``"20m"``, ``"90s"``, ``"1.5h"``), or ``None`` when it is not one.

    Parts go from hours to seconds, each unit at most once; the total must be above zero.
    """
    if not isinstance(text, str):
        return None
    compact = text.strip().lower().replace(" ", "")
    parts = _PART.findall(compact)
    if not parts or "".join(number + unit for number, unit in parts) != compact:
        return None
    units = [unit for _, unit in parts]
    if units != sorted(set(units), key="hms".index):
        return None
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    return seconds if 0 < seconds <= MAX_DURATION_SECONDS else None


def format_duration(seconds: float) -> str:
    """``1h 05m``, ``4m 41s``, ``38s``: a duration for a log line."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
