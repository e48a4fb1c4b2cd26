"""Hostile configs through ``yolox-sdk config show FILE [OVERRIDES]``, generated.

Cases: a real config (``examples/bccd_voc.yaml`` and the ``config init`` default) cut at every 10 % of its
length, in characters and in bytes; random bytes and text in other encodings; for every leaf key of the
schema and every option of every installed plugin, values of the wrong type, out of range, non-finite, huge
or very long, written into the file and given as an override; and (Hypothesis, derandomized) random YAML
values at random keys, random text as a file, and random edits of the default config.

Every case must end in the CLI's own words: exit code 2 (or 0 when the input happens to be valid), no
traceback, no "This is a bug" / "Unexpected error" catch-all, an error of bounded length, and well within
``CASE_SECONDS``. A config that is accepted must hold only finite numbers and print YAML that loads back to
the same config. Run with ``-s`` to see how many cases each group had and how many were clean.
"""

from __future__ import annotations

import math
import time
import typing
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolox_sdk.cli.config_commands import default_config_text
from yolox_sdk.cli.main import cli
from yolox_sdk.config.loader import config_to_dict, dump_config, flatten_dict, load_config
from yolox_sdk.config.schema import Config
from yolox_sdk.errors import YoloxSdkError
from yolox_sdk.plugins import get_registry
from yolox_sdk.plugins.kinds import KINDS, NAME_LIST, PLUGIN_KINDS, SINGLE

REPO_ROOT = Path(__file__).resolve().parents[1]
CASE_SECONDS = 5.0  # generous: a case takes milliseconds; this only catches hangs
MAX_ERROR_CHARS = 6000  # a message quotes the bad value, shortened; it never echoes a whole file
FRACTIONS = [step / 10 for step in range(11)]
FUZZ = settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FORBIDDEN = ("Traceback", "This is a bug", "Unexpected error")

# Raw YAML (one line, so it fits a file value and an override alike).
WRONG_TYPES = ["some text", "''", "[]", "[1, 2, 3]", "{}", "{a: 1}", "null", "true", "false", "[[[]]]"]
BAD_NUMBERS = [
    "0",
    "-1",
    "-1e9",
    "1e9",
    "1e-9",
    "0.5",
    "1.5",
    "32",
    "10000000000000000000000",
    "1" + "0" * 400,
    "-" + "9" * 4000,
    ".nan",
    ".inf",
    "-.inf",
    "1.0e+400",
    "[32, 32]",
    "[-32, 1e9]",
    "[.nan, .inf]",
    "[1e300, 1e300]",
]
ODD_YAML = [
    "x" * 10_000,
    '"\\0\\x07\\u202e\\uffff"',
    "'1e5'",
    "0x1F",
    "0o17",
    "1_000",
    "2024-01-01",
    "2024-13-45",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "!!float fast",
    "!!python/name:os.system",
    "&x [1, 2]",
    "*undefined",
    "[&a [1, 2], *a, *a]",
    "{<<: {a: 1}, b: 2}",
    "{[1]: 2}",
    "[1, 2",
    "{a: 1",
    "'unterminated",
    "@reserved",
    "%TAG",
    "---",
]
RAW_VALUES = WRONG_TYPES + BAD_NUMBERS + ODD_YAML

CASES: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _case_summary() -> Iterator[None]:
    yield
    groups = sorted({group for group, _ in CASES})
    total = sum(CASES[(group, "cases")] for group in groups)
    clean = sum(CASES[(group, "clean")] for group in groups)
    print(f"\nconfig fuzz: {total} cases, {clean} clean")
    for group in groups:
        print(f"  {group:<22} {CASES[(group, 'cases')]:>6} cases  {CASES[(group, 'clean')]:>6} clean")


def leaf_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema whose value is not itself a section (``monitoring.wandb.enabled``)."""
    hints = typing.get_type_hints(cls)
    keys = []
    for field in attrs.fields(cls):
        dotted = f"{prefix}{field.name}"
        kind = hints[field.name]
        keys.extend(leaf_keys(kind, f"{dotted}.") if attrs.has(kind) else [dotted])
    return keys


def plugin_option_overrides() -> list[tuple[str, str, list[str]]]:
    """``(plugin, option, overrides with RAW standing for the value)`` for every installed plugin option."""
    registry = get_registry()
    found = []
    configured = {row.name for row in PLUGIN_KINDS if row.config is not None}  # runtimes: chosen by file
    for kind in (kind for kind in KINDS if kind in configured):
        for name in registry.names(kind):
            options = registry.get(kind, name).options
            for field in attrs.fields(options) if options is not None else ():
                found.append((f"{kind}:{name}", field.name, option_overrides(kind, name, field.name)))
    return found


def option_overrides(kind: str, name: str, key: str) -> list[str]:
    """Overrides that select plugin ``name`` and set its option ``key`` to RAW, where the kinds table says
    the config names plugins of ``kind``."""
    slot = next(row for row in PLUGIN_KINDS if row.name == kind).config
    if slot.shape == SINGLE:
        return [f"{slot.names}={name}", f"{slot.options}={{{key}: RAW}}"]
    if slot.shape == NAME_LIST:
        return [f"{slot.names}=[{name}]", f"{slot.options}.{name}={{{key}: RAW}}"]
    return [f"{slot.names}=[{{name: {name}, {key}: RAW}}]"]


def nested_text(dotted: str, raw: str) -> str:
    """``training.lr`` and ``RAW`` as block YAML: ``training:\\n  lr: RAW\\n``."""
    parts = dotted.split(".")
    lines = [f"{'  ' * depth}{part}:" for depth, part in enumerate(parts[:-1])]
    lines.append(f"{'  ' * (len(parts) - 1)}{parts[-1]}: {raw}")
    return "\n".join(lines) + "\n"


def one_line(value: Any) -> str:
    """``value`` as one line of flow YAML."""
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31, allow_unicode=True)
    return text.removesuffix("\n...\n").removesuffix("\n")


def check(group: str, path: Path, content: str | bytes, overrides: list[str] = ()) -> str:
    """Run ``config show`` on ``content`` written to ``path`` (with ``overrides``); record and return a problem."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    CASES[(group, "cases")] += 1
    problem = problem_with(path, list(overrides))
    if not problem:
        CASES[(group, "clean")] += 1
        return ""
    return f"[{group}] {problem}\n  file: {content[:300]!r}\n  overrides: {str(overrides)[:300]}"


def assert_clean(problems: list[str]) -> None:
    found = [problem for problem in problems if problem]
    assert not found, f"{len(found)} unclean cases:\n" + "\n".join(found[:20])


def problem_with(path: Path, overrides: list[str]) -> str:
    """Why ``config show path overrides`` did not end cleanly, or ``""``."""
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["config", "show", str(path), *overrides])
    seconds = time.monotonic() - started
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"uncaught {type(result.exception).__name__}: {result.exception}"
    if any(text in output for text in FORBIDDEN):
        return f"catch-all or traceback: {output[-1500:]}"
    if seconds > CASE_SECONDS:
        return f"took {seconds:.1f} s"
    if result.exit_code == 2:
        if not output.startswith("Error: ") or len(output) > MAX_ERROR_CHARS:
            return f"error of {len(output)} characters: {output[:300]}...{output[-300:]}"
        return ""
    if result.exit_code != 0:
        return f"exit code {result.exit_code}: {output[-1500:]}"
    return round_trip_problem(path.with_suffix(".shown.yaml"), output)


def round_trip_problem(path: Path, shown: str) -> str:
    """An accepted config holds only finite numbers and prints YAML that loads back to the same config."""
    path.write_text(shown, encoding="utf-8")
    try:
        config = load_config(path)
    except YoloxSdkError as error:
        return f"config show printed a config that does not load: {error}"
    for key, value in flatten_dict(config_to_dict(config)).items():
        if not key.startswith(FREE_FORM) and any(not math.isfinite(number) for number in floats_in(value)):
            return f"accepted a non-finite number: {key}: {value}"
    if dump_config(config) != shown:
        return f"config show output does not load back the same: {dump_config(config)[:600]}"
    return ""


# Mappings the config passes on unread: the plugin that uses them (a dataset format picked by ``auto``, a
# logger not in ``monitoring.loggers``, Lookahead's inner optimizer) validates them when it starts.
FREE_FORM = ("data.format_options", "monitoring.logger_options", "training.optimizer_options.inner_options")


def floats_in(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from floats_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from floats_in(item)


@pytest.mark.parametrize("example", ["examples/bccd_voc.yaml", "config init"])
def test_truncated_configs(tmp_path: Path, example: str) -> None:
    text = (
        default_config_text()
        if example == "config init"
        else (REPO_ROOT / example).read_text(encoding="utf-8")
    )
    raw = text.encode("utf-8")
    problems = []
    for fraction in FRACTIONS:
        problems.append(check("truncated text", tmp_path / "config.yaml", text[: int(len(text) * fraction)]))
        problems.append(check("truncated bytes", tmp_path / "config.yaml", raw[: int(len(raw) * fraction)]))
    assert_clean(problems)


def test_other_encodings_and_binary(tmp_path: Path) -> None:
    text = default_config_text() + "data:\n  train_path: données\n"
    variants = [
        text.encode("utf-16"),
        text.encode("utf-32"),
        text.encode("latin-1"),
        b"\xef\xbb\xbf" + default_config_text().encode(),
        b"\x00" * 100,
        b"training:\n  lr: 0.01\x00\n",
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
        bytes(range(256)) * 10,
    ]
    assert_clean([check("encodings", tmp_path / "config.yaml", content) for content in variants])


@given(content=st.binary(max_size=2000))
@FUZZ
def test_random_bytes(tmp_path: Path, content: bytes) -> None:
    assert_clean([check("random bytes", tmp_path / "config.yaml", content)])


@given(content=st.text(max_size=500))
@FUZZ
def test_random_text(tmp_path: Path, content: str) -> None:
    assert_clean([check("random text", tmp_path / "config.yaml", content)])


@given(data=st.data())
@FUZZ
def test_random_edits_of_the_default(tmp_path: Path, data: st.DataObject) -> None:
    text = default_config_text()
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 40)))
    insert = data.draw(st.text(alphabet=":-[]{}&*!|>'\"#%@`, \n\t0123456789.e+ab", max_size=12))
    assert_clean([check("edited default", tmp_path / "config.yaml", text[:start] + insert + text[end:])])


@pytest.mark.parametrize("key", leaf_keys())
def test_every_schema_key_with_hostile_values(tmp_path: Path, key: str) -> None:
    problems = []
    for raw in RAW_VALUES:
        problems.append(check("schema key: file", tmp_path / "config.yaml", nested_text(key, raw)))
        problems.append(check("schema key: override", tmp_path / "config.yaml", "", [f"{key}={raw}"]))
    assert_clean(problems)


@pytest.mark.parametrize("plugin, option, template", plugin_option_overrides(), ids=lambda item: str(item))
def test_every_plugin_option_with_hostile_values(
    tmp_path: Path, plugin: str, option: str, template: list[str]
) -> None:
    overrides = [[part.replace("RAW", raw) for part in template] for raw in RAW_VALUES]
    assert_clean([check("plugin option", tmp_path / "config.yaml", "", each) for each in overrides])


YAML_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(leaf_keys()) | st.from_regex(r"\A[a-z_]{1,8}(\.[a-z_]{1,8}){0,2}\Z")


@given(key=KEYS, value=YAML_VALUES, as_override=st.booleans())
@FUZZ
def test_random_values_at_random_keys(tmp_path: Path, key: str, value: Any, as_override: bool) -> None:
    if as_override:
        problem = check("random value: override", tmp_path / "config.yaml", "", [f"{key}={one_line(value)}"])
    else:
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        problem = check(
            "random value: file", tmp_path / "config.yaml", yaml.safe_dump(nested, allow_unicode=True)
        )
    assert_clean([problem])
