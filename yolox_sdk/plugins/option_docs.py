"""What each option of a plugin means, read from its options class: ``yolox-sdk plugins --verbose``.

A plugin's options class is the one place its options are declared (typed attrs fields with defaults),
so the listing is derived from it rather than kept by hand: names, types and defaults from the fields,
meanings from the class docstring's ``Attributes:`` section (Google style, what CONTRIBUTING.md asks of
plugin authors), or from a ``name``: text line where a short class documents its fields inline.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import attrs

_ATTRIBUTE_LINE = re.compile(r"^\s{4}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")
_INLINE = re.compile(r"``(\w+)``:\s*([^.;]*[.;]?)")


@attrs.frozen
class OptionDoc:
    """One option: its key, type as written in the class, default (``repr``) and meaning."""

    name: str
    type: str
    default: str
    meaning: str


def _attributes_section(doc: str) -> dict[str, str]:
    """``name -> text`` from a Google-style ``Attributes:`` section (continuation lines joined)."""
    meanings: dict[str, str] = {}
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return meanings
    current = None
    for line in lines[start + 1 :]:
        if line.strip() and not line.startswith(" "):
            break  # the next section
        match = _ATTRIBUTE_LINE.match(line)
        if match:
            current = match.group(1)
            meanings[current] = match.group(2).strip()
        elif current and line.strip():
            meanings[current] = f"{meanings[current]} {line.strip()}"
    return meanings


def _default(field: attrs.Attribute) -> str:
    default = field.default
    if default is attrs.NOTHING:
        return "(required)"
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        try:
            default = default.factory() if not default.takes_self else "(computed)"
        except Exception:  # noqa: BLE001 - a factory that needs context is shown as such
            return "(computed)"
    return repr(default)


def _type_name(field: attrs.Attribute) -> str:
    kind: Any = field.type
    if kind is None:
        return ""
    return kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))


def option_docs(options_class: type | None) -> list[OptionDoc]:
    """The options of ``options_class`` (an attrs class; ``None``: no options) in declaration order."""
    if options_class is None or not attrs.has(options_class):
        return []
    doc = inspect.cleandoc(options_class.__doc__ or "")
    meanings = _attributes_section(doc)
    inline = {name: text.strip() for name, text in _INLINE.findall(doc)}
    return [
        OptionDoc(
            field.name,
            _type_name(field),
            _default(field),
            meanings.get(field.name) or inline.get(field.name, ""),
        )
        for field in attrs.fields(options_class)
    ]
