"""attrs validators whose errors name the field and say what was expected.

attrs' own validators phrase errors differently from one another; these raise ``FieldError`` so that the
config loader can always print ``training.lr: expected a number > 0, got -1``. Plugins use them for their
options classes too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from yolox_sdk.errors import did_you_mean

Validator = Callable[[Any, attrs.Attribute, Any], None]


class FieldError(ValueError):
    """A field value is invalid; ``field`` is the attribute name, ``expected`` says what would be valid."""

    def __init__(self, field: str, expected: str, value: Any, hint: str = "") -> None:
        super().__init__(f"{field}: expected {expected}, got {value!r}.{hint}")
        self.field = field
        self.expected = expected
        self.value = value
        self.hint = hint


def _make(predicate: Callable[[Any], bool], expected: str, optional: bool = False) -> Validator:
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if optional and value is None:
            return
        if not predicate(value):
            raise FieldError(attribute.name, expected, value)

    return check


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    optional: bool = False,
) -> Validator:
    """A number inside ``[low, high]`` (bounds optional, exclusive when asked)."""

    def inside(value: Any) -> bool:
        above = low is None or (value >= low if low_inclusive else value > low)
        below = high is None or (value <= high if high_inclusive else value < high)
        return above and below

    parts = []
    if low is not None:
        parts.append(f"{'>=' if low_inclusive else '>'} {low}")
    if high is not None:
        parts.append(f"{'<=' if high_inclusive else '<'} {high}")
    return _make(inside, "a number " + " and ".join(parts), optional)


def probability() -> Validator:
    """A number between 0 and 1."""
    return number(0.0, 1.0)


def one_of(choices: Sequence[str]) -> Validator:
    """One of a fixed set of strings, with a did-you-mean in the error."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            hint = did_you_mean(str(value), choices)
            raise FieldError(attribute.name, f"one of {', '.join(choices)}", value, hint)

    return check


def ordered_pair(low: float = 0.0, high: float | None = None) -> Validator:
    """A ``[min, max]`` pair with ``low <= min <= max (<= high)``."""

    def inside(value: Any) -> bool:
        return len(value) == 2 and low <= value[0] <= value[1] and (high is None or value[1] <= high)

    bound = f"{low} <= min <= max" + (f" <= {high}" if high is not None else "")
    return _make(inside, f"[min, max] with {bound}", optional=False)


def image_size() -> Validator:
    """``[height, width]``, both positive multiples of 32 (YOLOX's stride), or ``None``."""

    def valid(value: Any) -> bool:
        return len(value) == 2 and all(int(side) > 0 and int(side) % 32 == 0 for side in value)

    return _make(valid, "[height, width], both positive multiples of 32 (e.g. [416, 416])", optional=True)
