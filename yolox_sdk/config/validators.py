"""attrs validators whose errors name the field and say what was expected.

attrs' own validators phrase errors differently from one another; these raise ``FieldError`` so that the
config loader can always print ``training.lr: expected a number > 0, got -1``. Plugins use them for their
options classes too.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from yolox_sdk.errors import did_you_mean

Validator = Callable[[Any, attrs.Attribute, Any], None]


class FieldError(ValueError):
    """A field value is invalid; ``field`` is the attribute name, ``expected`` says what would be valid."""

    def __init__(self, field: str, expected: str, value: Any, hint: str = "") -> None:
        super().__init__(f"{field}: expected {expected}, got {short_repr(value)}.{hint}")
        self.field = field
        self.expected = expected
        self.value = value
        self.hint = hint


def short_repr(value: Any, limit: int = 100) -> str:
    """``repr(value)``, cut to about ``limit`` characters: an error quotes the bad value, not a whole file."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _make(predicate: Callable[[Any], bool], expected: str, optional: bool = False) -> Validator:
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if optional and value is None:
            return
        if not predicate(value):
            raise FieldError(attribute.name, expected, value)

    return check


def is_finite_number(value: Any) -> bool:
    """An int or float that is not a boolean, NaN or an infinity.

    ``.inf`` and ``1.0e+400`` are valid YAML floats; in a learning rate they train a model whose weights are
    all NaN, so no numeric field accepts them.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return isinstance(value, numbers.Integral) or math.isfinite(value)


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    optional: bool = False,
) -> Validator:
    """A finite number inside ``[low, high]`` (bounds optional, exclusive when asked); NaN and inf never."""

    def inside(value: Any) -> bool:
        above = low is None or (value >= low if low_inclusive else value > low)
        below = high is None or (value <= high if high_inclusive else value < high)
        return above and below

    parts = []
    if low is not None:
        parts.append(f"{'>=' if low_inclusive else '>'} {low}")
    if high is not None:
        parts.append(f"{'<=' if high_inclusive else '<'} {high}")
    expected = " ".join(["a number", " and ".join(parts)]).strip()

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if optional and value is None:
            return
        if not is_finite_number(value):
            raise FieldError(attribute.name, expected, value, _NOT_FINITE_HINT if _is_real(value) else "")
        if not inside(value):
            raise FieldError(attribute.name, expected, value)

    return check


_NOT_FINITE_HINT = " NaN and infinities are not accepted: write a finite number."


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


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


def switch_or_one_of(choices: Sequence[str]) -> Validator:
    """``true``, ``false`` or one of a fixed set of strings (``training.amp: bf16``), with a did-you-mean."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or value in choices:
            return
        hint = did_you_mean(str(value), choices) if isinstance(value, str) else ""
        raise FieldError(attribute.name, f"true, false or one of {', '.join(choices)}", value, hint)

    return check


def metric_name() -> Validator:
    """A metric's name: letters, digits, ``_``, ``-``, ``.`` and ``@`` (``mAP50``, ``F1``, ``count_accuracy``);
    which names exist depends on the metric plugins configured, so that is checked with them."""
    return _make(
        lambda value: (
            isinstance(value, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_.@-]{0,63}", value) is not None
        ),
        "a metric name such as mAP, mAP50, mAP75, loss or one a plugin in evaluation.metrics computes",
    )


def duration(optional: bool = True) -> Validator:
    """A duration with units (``20m``, ``1h30m``, ``90s``; ``yolox_sdk.config.durations``)."""
    from yolox_sdk.config.durations import parse_duration

    return _make(
        lambda value: parse_duration(value) is not None,
        "a duration with units such as 90s, 20m, 1h30m or 1.5h (above zero, at most a year)",
        optional,
    )


def boolean() -> Validator:
    """``true`` or ``false`` (YAML input is type-checked when structured; this also guards Python callers)."""
    return _make(lambda value: isinstance(value, bool), "true or false")


def ordered_pair(low: float = 0.0, high: float | None = None) -> Validator:
    """A ``[min, max]`` pair of finite numbers with ``low <= min <= max (<= high)``."""

    def inside(value: Any) -> bool:
        return (
            len(value) == 2
            and all(is_finite_number(item) for item in value)
            and low <= value[0] <= value[1]
            and (high is None or value[1] <= high)
        )

    bound = f"{low} <= min <= max" + (f" <= {high}" if high is not None else "")
    return _make(inside, f"[min, max] with {bound}", optional=False)


MAX_IMAGE_SIDE = 4096


def image_size(max_side: int = MAX_IMAGE_SIDE) -> Validator:
    """``[height, width]``, both positive multiples of 32 (YOLOX's stride) up to ``max_side``, or ``None``.

    The bound keeps an input size that cannot fit in memory (``[320000, 320000]``) from reaching OpenCV.
    """

    def valid(value: Any) -> bool:
        return len(value) == 2 and all(
            is_finite_number(side) and side == int(side) and 0 < side <= max_side and int(side) % 32 == 0
            for side in value
        )

    expected = f"[height, width], both positive multiples of 32 up to {max_side} (e.g. [416, 416])"
    return _make(valid, expected, optional=True)


def index_list(high: int) -> Validator:
    """A list of integer indices in ``[0, high]`` (GPU ids), or ``None``."""

    def valid(value: Any) -> bool:
        return all(
            isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= high for item in value
        )

    return _make(valid, f"a list of indices from 0 to {high}, e.g. [0, 1]", optional=True)


def _freeze_entry_problem(entry: Any, groups: Sequence[str]) -> str | None:
    """Why ``entry`` cannot name parameters to freeze, or ``None`` when it can.

    A parameter name always contains a dot, so a dot-less entry without wildcards can only be a group name;
    anything else is checked against the model's parameter names when the model is built.
    """
    if not isinstance(entry, str) or not entry:
        return f"{short_repr(entry)} is not a non-empty string."
    if entry in groups or "." in entry or any(char in entry for char in "*?["):
        return None
    return f"'{entry}' is neither a group nor a parameter-name pattern.{did_you_mean(entry, groups)}"


def freeze_entries(groups: Sequence[str]) -> Validator:
    """A list of group names (``groups``) or fnmatch patterns over parameter names."""
    expected = f"a list of groups ({', '.join(groups)}) or parameter-name patterns such as 'head.cls_preds.*'"

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        for entry in value:
            problem = _freeze_entry_problem(entry, groups)
            if problem:
                raise FieldError(attribute.name, expected, value, f" {problem}")

    return check


def unfreeze_schedule(groups: Sequence[str]) -> Validator:
    """A mapping ``{epoch: [groups or patterns]}`` with 1-based epochs >= 2 and non-empty lists."""
    expected = (
        "a mapping {epoch: [groups or patterns]} with epochs >= 2 (1-based) and non-empty lists, "
        "e.g. {3: [neck], 5: [backbone]}"
    )

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        for epoch, entries in value.items():
            if epoch < 2:
                hint = f" Epoch {epoch} is not after the first epoch; to train from the start, just don't freeze it."
                raise FieldError(attribute.name, expected, value, hint)
            if not entries:
                raise FieldError(attribute.name, expected, value, f" Epoch {epoch} has an empty list.")
            for entry in entries:
                problem = _freeze_entry_problem(entry, groups)
                if problem:
                    raise FieldError(attribute.name, expected, value, f" Epoch {epoch}: {problem}")

    return check
