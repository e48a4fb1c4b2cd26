"""The one YAML reader (and writer) of the package: safe tags only, bounded work, YAML 1.2 floats.

Every YAML the SDK reads (config files, ``key=value`` overrides, ``--option`` values, a YOLO
``data.yaml``, a run's saved config) comes from a user or a stranger, so parsing it must end quickly and
in bounded memory whatever it holds. PyYAML's ``safe_load`` only refuses unsafe tags; these limits are
added on top:

- **Aliases are counted, not forbidden.** Each ``*alias`` adds the number of nodes its anchor expands to
  (aliases inside it included); a document whose aliases add more than ``MAX_ALIAS_NODES`` nodes is
  refused. Anchors reused a few times, as people do to share options, stay far below the cap, while a
  "billion laughs" bomb (each level aliasing the previous one nine times) exceeds it within a few levels,
  before anything is expanded. An alias to the collection it is inside (a recursive document) is refused
  too: nothing in a config can be infinite.
- **Nesting is limited to ``MAX_DEPTH`` levels**, checked while composing, so a 100k-deep ``[[[[...``
  fails at once instead of exhausting Python's recursion limit. Configs nest about four levels.
- **Files are read up to ``MAX_BYTES``**; anything longer (or an endless device such as ``/dev/zero``) is
  refused without reading the rest.

These failures raise ``YamlLimitError``, a ``yaml.MarkedYAMLError`` with the line and column where the
limit was reached, so callers report them like any other malformed YAML, naming their file.

YAML 1.1 (PyYAML) reads exponent floats without a dot (``1e-4``, ``5E+3``, ``1.0e5``) as strings;
YAML 1.2 and every user read them as numbers, so the loader resolves them as floats and the dumper
quotes strings that look like them (a run name ``1e5`` round-trips as a string). Files that other tools
write with PyYAML (a YOLO ``data.yaml``) are read with ``exponent_floats=False``, as their writer meant:
a class named ``1e5`` stays a string. ``.inf`` and ``.nan``
still parse; validators refuse them where a finite number is needed. Values that match a tag but cannot be
built (``2024-13-45``, an int of 5000 digits) raise a ``yaml.constructor.ConstructorError`` with their
line instead of a bare ``ValueError``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent

MAX_ALIAS_NODES = 10_000
MAX_DEPTH = 50
MAX_BYTES = 4 * 1024 * 1024

# YAML 1.2 core-schema floats that YAML 1.1 misses: those with an exponent, with or without a dot.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)[eE][-+]?[0-9]+$")
_FLOAT_TAG = "tag:yaml.org,2002:float"
_FLOAT_FIRST_CHARS = list("-+.0123456789")


class YamlLimitError(yaml.MarkedYAMLError):
    """A YAML document is refused because reading it would take unbounded time or memory."""

    def __init__(self, problem: str, mark: yaml.Mark | None = None) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class BoundedYamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the alias and depth limits of this module (YAML 1.1 scalars, as PyYAML)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._alias_nodes = 0
        self._expanded_sizes: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(AliasEvent):
            return self._compose_alias(parent, index)
        if self._depth >= MAX_DEPTH:
            raise YamlLimitError(
                f"the document nests deeper than {MAX_DEPTH} levels (configs and data.yaml files need "
                "about 4); flatten it or remove the stray brackets",
                self.peek_event().start_mark,
            )
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._expanded_sizes[id(node)] = 1 + sum(self._expanded_sizes[id(child)] for child in _children(node))
        return node

    def _compose_alias(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        node = super().compose_node(parent, index)
        size = self._expanded_sizes.get(id(node))
        if size is None:
            raise YamlLimitError(
                f"the alias *{event.anchor} refers to a collection that contains it, which would make the "
                "document infinite; write the value out instead",
                event.start_mark,
            )
        self._alias_nodes += size
        if self._alias_nodes > MAX_ALIAS_NODES:
            raise YamlLimitError(
                f"its aliases expand to more than {MAX_ALIAS_NODES} values (an alias bomb, or anchors reused "
                "far more than a config or data.yaml needs; the limit was reached at "
                f"*{event.anchor}); write the values out or use fewer aliases",
                event.start_mark,
            )
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError) as error:
            raise ConstructorError(
                None, None, f"cannot read the value {_excerpt(node)} ({_reason(error)})", node.start_mark
            ) from error


class SafeYamlLoader(BoundedYamlLoader):
    """``BoundedYamlLoader`` that also reads YAML 1.2 exponent floats (``1e-4``) as floats."""


class SafeYamlDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes strings ``SafeYamlLoader`` would read back as floats."""


for _cls in (SafeYamlLoader, SafeYamlDumper):
    _cls.add_implicit_resolver(_FLOAT_TAG, _EXPONENT_FLOAT, _FLOAT_FIRST_CHARS)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _excerpt(node: yaml.Node) -> str:
    text = node.value if isinstance(node, yaml.ScalarNode) else f"<{node.id}>"
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _reason(error: Exception) -> str:
    """The error's own words, without Python's advice to the programmer (``use sys.set_int_max_str_digits``)."""
    return str(error).split(";")[0]


def parse_yaml(text: str, *, exponent_floats: bool = True) -> tuple[Any, yaml.Node | None]:
    """Parse one YAML document; return its data and its node tree (for line numbers; ``None`` if empty).

    ``exponent_floats=False`` keeps PyYAML's YAML 1.1 reading of ``1e5`` as a string, for files other tools
    write with PyYAML (a YOLO ``data.yaml`` naming a class ``1e5``); the limits apply either way.

    Raises:
        yaml.YAMLError: malformed YAML; ``YamlLimitError`` when a limit of this module is reached.
    """
    loader = (SafeYamlLoader if exponent_floats else BoundedYamlLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        try:
            return loader.construct_document(node), node
        except (ValueError, OverflowError, TypeError) as error:
            raise ConstructorError(
                None, None, f"cannot read a value ({_reason(error)})", node.start_mark
            ) from error
    finally:
        loader.dispose()


def read_yaml_text(path: str | Path) -> str:
    """The text of a YAML file, read up to ``MAX_BYTES``.

    Raises:
        OSError: the file cannot be read. UnicodeDecodeError: it is not UTF-8.
        YamlLimitError: it is longer than ``MAX_BYTES``.
    """
    with open(path, "rb") as handle:
        raw = handle.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise YamlLimitError(
            f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB, far more than a config or data.yaml "
            "holds; check that this is the file you meant"
        )
    return raw.decode("utf-8")


def load_yaml_file(path: str | Path, *, exponent_floats: bool = True) -> tuple[Any, yaml.Node | None]:
    """``read_yaml_text`` then ``parse_yaml``: the data of a YAML file and its node tree."""
    return parse_yaml(read_yaml_text(path), exponent_floats=exponent_floats)


def dump_yaml(data: Any, **options: Any) -> str:
    """YAML text for plain data, readable back by ``parse_yaml`` to the same values.

    ``options`` are those of ``yaml.dump`` (``sort_keys``, ``default_flow_style``, ``allow_unicode``).
    """
    return yaml.dump(data, Dumper=SafeYamlDumper, **options)
