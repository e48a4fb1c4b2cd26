"""Turning plain YAML data into attrs objects, strictly, with errors that name the YAML path.

cattrs on its own is lenient (``bool("no")`` is ``True``, ``int("5")`` is 5); a config that says
``epochs: "ten"`` must fail loudly instead, so the converter here accepts only values of the declared
type (an int where a float is expected is fine). Unknown keys are reported with a did-you-mean before
cattrs runs. Plugins reuse ``structure_options`` for their own options classes.
"""

from __future__ import annotations

import functools
import sys
import typing
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs
from cattrs.cols import list_structure_factory, mapping_structure_factory
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from yolox_sdk.config.validators import FieldError, is_finite_number, short_repr
from yolox_sdk.errors import ConfigError, did_you_mean


def _strict(target: type, accepted: tuple[type, ...]) -> Any:
    def hook(value: Any, _: type) -> Any:
        if isinstance(value, bool) and target is not bool:
            raise TypeError(f"expected {target.__name__}, got the boolean {value!r}")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {target.__name__}, got {_described(value)}")
        return target(value)

    return hook


def _described(value: Any) -> str:
    """``str 'abc'``, ``list [1, 2]``, ``the boolean True``: what a wrong value is, shortened."""
    if isinstance(value, bool):
        return f"the boolean {value!r}"
    return f"{type(value).__name__} {short_repr(value)}"


def _finite_float(value: Any, _: type) -> float:
    """A float field takes ints and floats, never NaN, an infinity or an int beyond the float range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected float, got {_described(value)}")
    if not is_finite_number(value) or (isinstance(value, int) and abs(value) > sys.float_info.max):
        shown = value if isinstance(value, float) else "an integer beyond the range of floats"
        raise ValueError(
            f"expected a finite number, got {shown}; NaN and infinities (also what a number beyond "
            "+-1.8e308 reads as) are not accepted"
        )
    return float(value)


def _bool_or_str(value: Any, _: type) -> Any:
    if isinstance(value, bool | str):
        return value
    raise TypeError(f"expected true, false or a string, got {_described(value)}")


def _fixed_tuple(value: Any, target: type) -> Any:
    items = typing.get_args(target)
    if not isinstance(value, list | tuple) or len(value) != len(items):
        raise TypeError(f"expected a list of {len(items)} values, got {short_repr(value)}")
    return tuple(converter.structure(item, kind) for item, kind in zip(value, items, strict=True))


def _only_lists(target: type, converter: cattrs.Converter) -> Any:
    """cattrs' list hook, refusing what is not a list (it would split ``formats: onnx`` into letters)."""
    structure_items = list_structure_factory(target, converter)

    def hook(value: Any, _: type) -> Any:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {_described(value)}")
        return structure_items(value, target)

    return hook


def _only_mappings(target: type, converter: cattrs.Converter) -> Any:
    """cattrs' mapping hook, refusing what is not a mapping (instead of failing on ``.items``)."""
    structure_items = mapping_structure_factory(target, converter)

    def hook(value: Any, _: type) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping, got {_described(value)}")
        return structure_items(value, target)

    return hook


def _is_list(target: Any) -> bool:
    return typing.get_origin(target) is list


def _is_dict(target: Any) -> bool:
    return typing.get_origin(target) is dict


def _is_fixed_tuple(target: Any) -> bool:
    args = typing.get_args(target)
    return typing.get_origin(target) is tuple and bool(args) and Ellipsis not in args


def make_converter() -> cattrs.Converter:
    """A cattrs converter that refuses values of the wrong type instead of coercing them."""
    result = cattrs.Converter(forbid_extra_keys=True)
    result.register_structure_hook(int, _strict(int, (int,)))
    result.register_structure_hook(float, _finite_float)
    result.register_structure_hook(bool, _strict(bool, (bool,)))
    result.register_structure_hook(str, _strict(str, (str,)))
    result.register_structure_hook(bool | str, _bool_or_str)
    result.register_structure_hook_func(_is_fixed_tuple, _fixed_tuple)
    result.register_structure_hook_factory(_is_list, _only_lists)
    result.register_structure_hook_factory(_is_dict, _only_mappings)
    return result


converter = make_converter()


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints``, once per class: it evaluates every annotation string on each call."""
    return typing.get_type_hints(cls)


def unknown_key_errors(data: Any, cls: type, path: str) -> list[str]:
    """Messages for keys of ``data`` that ``cls`` (an attrs class) does not have, recursively."""
    if not isinstance(data, Mapping) or not attrs.has(cls):
        return []
    fields = {field.name: field for field in attrs.fields(cls)}
    hints = _type_hints(cls)
    problems = []
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            problems.append(
                f"unknown key '{where}'.{did_you_mean(str(key), fields)} "
                f"Valid keys{' of ' + path if path else ''}: {', '.join(fields)}."
            )
            continue
        problems.extend(unknown_key_errors(value, hints[key], where))
    return problems


def _validation_messages(error: BaseException, path: str) -> list[str]:
    """Walk a cattrs exception group and name the YAML path of every leaf error."""
    if isinstance(error, ClassValidationError | IterableValidationError):
        with_notes, without_notes = error.group_exceptions()
        messages = []
        for sub_error, note in with_notes:
            if isinstance(note, AttributeValidationNote):
                sub_path = f"{path}.{note.name}" if path else note.name
            else:
                sub_path = f"{path}[{note.index}]"
            messages.extend(_validation_messages(sub_error, sub_path))
        for sub_error in without_notes:
            messages.extend(_validation_messages(sub_error, path))
        return messages
    return [_leaf_message(error, path)]


def _leaf_message(error: BaseException, path: str) -> str:
    if isinstance(error, ForbiddenExtraKeysError):
        return f"{path}: unknown keys {sorted(error.extra_fields)}"
    if isinstance(error, FieldError):
        where = f"{path}.{error.field}" if path else error.field
        return f"{where}: expected {error.expected}, got {short_repr(error.value)}.{error.hint}"
    if isinstance(error, KeyError):  # cattrs' error for a required key that is absent
        return f"{path}: this key is required and missing." if path else f"missing required key {error}."
    return f"{path}: {error}" if path else str(error)


def structure_options(cls: type, data: Any, path: str, source: str = "config") -> Any:
    """Structure ``data`` into the attrs class ``cls`` or raise ``ConfigError`` naming ``path``.

    Args:
        cls: an attrs class (a config section or a plugin's options class).
        data: the YAML mapping (``None`` means all defaults).
        path: the dotted YAML path of ``data``, used in messages (``training.optimizer_options``).
        source: the file or origin of ``data`` for the message.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: '{path}' must be a mapping of options, got {short_repr(data)}.")
    problems = unknown_key_errors(data, cls, path)
    if not problems:
        try:
            return converter.structure(dict(data), cls)
        except (ClassValidationError, ValueError, TypeError) as error:
            problems = _constructor_messages(error, path)
    raise ConfigError(format_problems(source, problems))


def _constructor_messages(error: BaseException, path: str) -> list[str]:
    return _validation_messages(error, path)


MAX_PROBLEMS_SHOWN = 20
MAX_PROBLEM_CHARS = 1000


def format_problems(source: str, problems: list[str]) -> str:
    """One readable paragraph for a list of config problems found in ``source``.

    At most ``MAX_PROBLEMS_SHOWN`` are listed, each cut to ``MAX_PROBLEM_CHARS``: a list of 10000 wrong
    entries should say so in a screenful, not print 10000 lines.
    """
    shown = [_cut(problem) for problem in problems[:MAX_PROBLEMS_SHOWN]]
    if len(problems) == 1:
        return f"Invalid config in {source}: {shown[0]}"
    lines = "\n".join(f"  - {problem}" for problem in shown)
    if len(problems) > len(shown):
        lines += f"\n  - ... and {len(problems) - len(shown)} more like these"
    return f"Invalid config in {source} ({len(problems)} problems):\n{lines}"


def _cut(problem: str) -> str:
    if len(problem) <= MAX_PROBLEM_CHARS:
        return problem
    return f"{problem[: MAX_PROBLEM_CHARS // 2]} ... {problem[-MAX_PROBLEM_CHARS // 4 :]}"
