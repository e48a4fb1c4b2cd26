"""Reading a config: YAML file, then ``key=value`` overrides, then the training recipe's defaults for the
keys still unset (``recipes``), then strict structuring and plugin checks.

Every problem ends in a ``ConfigError`` that names the file, the YAML path and (where the key is in the
file) its line, with what was expected and a did-you-mean for misspelt keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import cattrs
import yaml

from yolox_sdk.config.plugin_options import validate_plugin_options
from yolox_sdk.config.recipes import apply_recipe
from yolox_sdk.config.schema import Config
from yolox_sdk.config.structure import format_problems, structure_options
from yolox_sdk.config.validators import short_repr
from yolox_sdk.errors import ConfigError
from yolox_sdk.plugins.registry import Registry
from yolox_sdk.yaml_files import YamlLimitError, dump_yaml, load_yaml_file, parse_yaml

# Dotted keys of letters, digits, ``_`` and ``-`` (plugin names such as ``onnx-int8`` are keys under
# ``export.options``), each starting with a letter or ``_``.
_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")
_PATH_IN_MESSAGE = re.compile(r"^(?:unknown key ')?([A-Za-z_][\w.]*)")


def read_yaml(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    """Parse a YAML file into a mapping, plus its node tree for line numbers.

    The file goes through ``yolox_sdk.yaml_files``, so alias bombs, absurd nesting and huge files are
    refused quickly instead of exhausting memory.
    """
    try:
        data, node = load_yaml_file(path)
    except FileNotFoundError:
        raise ConfigError(
            f"Config file {path} does not exist. Create one with `yolox-sdk config init {path}`."
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"Config file {path} is a directory; give the path of a YAML file.") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"Cannot read config file {path}: it is not UTF-8 text (byte {error.start} is invalid). "
            "Save it as UTF-8 YAML, e.g. from `yolox-sdk config init`."
        ) from error
    except OSError as error:
        raise ConfigError(f"Cannot read config file {path}: {error.strerror or error}.") from error
    except YamlLimitError as error:
        raise ConfigError(f"{path} is refused{_where(error)}: {error.problem}.") from error
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(
            f"{path} is not valid YAML{_where(error)}: {problem}. Fix the syntax there."
        ) from error
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must contain a mapping of sections (model:, data:, ...), got {type(data).__name__}."
        )
    return data, node


def _where(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``training.lr=0.005`` into ``(["training", "lr"], 0.005)``; values are parsed as YAML.

    Values go through the same safe reader as files (``1e-4`` is a float; aliases and nesting bounded).
    """
    key, separator, raw_value = text.partition("=")
    key = key.strip()
    if not separator or not _KEY_PATTERN.match(key):
        raise ConfigError(
            f"Bad override '{text}': expected section.key=value with a dotted key of letters, digits, "
            "underscores and hyphens, e.g. training.lr=0.005 or model.input_size=[320,320]."
        )
    try:
        value = parse_yaml(raw_value)[0] if raw_value.strip() else None
    except YamlLimitError as error:
        raise ConfigError(
            f"Bad override '{_shorten(text)}': the value is refused: {error.problem}."
        ) from error
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(
            f"Bad override '{_shorten(text)}': the value is not valid YAML ({problem})."
        ) from error
    return key.split("."), value


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key=value`` override set at its dotted path."""
    result = _deep_copy(data)
    for text in overrides:
        keys, value = parse_override(text)
        target = result
        for depth, key in enumerate(keys[:-1]):
            child = target.setdefault(key, {})
            if not isinstance(child, dict):
                where = ".".join(keys[: depth + 1])
                raise ConfigError(
                    f"Bad override '{_shorten(text)}': '{where}' is a value ({short_repr(child)}), not a section."
                )
            target = child
        target[keys[-1]] = value
    return result


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _deep_copy(value) if isinstance(value, Mapping) else value for key, value in data.items()}


def _line_of(node: yaml.Node | None, dotted: str) -> int | None:
    line = None
    for key in dotted.split("."):
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == key), None)
        if match is None:
            break
        line = match[0].start_mark.line + 1
        node = match[1]
    return line


def _with_lines(error: ConfigError, node: yaml.Node | None) -> ConfigError:
    if node is None:
        return error
    out = []
    for line_text in str(error).splitlines():
        body = line_text.removeprefix("  - ")
        head, _, problem = body.partition(": ") if body.startswith("Invalid config in") else ("", "", body)
        match = _PATH_IN_MESSAGE.match(problem)
        line = _line_of(node, match.group(1)) if match else None
        out.append(f"{line_text} (line {line})" if line else line_text)
    return ConfigError("\n".join(out))


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    registry: Registry | None = None,
) -> Config:
    """Load and validate a config.

    Args:
        path: a YAML file; ``None`` starts from the defaults.
        overrides: ``section.key=value`` strings applied after the file (values parsed as YAML).
        registry: the plugin registry used to check plugin names and options; ``None`` uses the
            installed plugins.

    Raises:
        ConfigError: naming the file, the YAML path and line, and what was expected.
    """
    source = str(path) if path is not None else "the default config"
    data, node = read_yaml(Path(path)) if path is not None else ({}, None)
    data = apply_recipe(apply_overrides(data, list(overrides)))
    try:
        config = structure_options(Config, data, "", source)
    except ConfigError as error:
        raise _with_lines(error, node) from None
    if registry is None:
        from yolox_sdk.plugins.manager import get_registry

        registry = get_registry()
    problems = validate_plugin_options(config, registry)
    if problems:
        raise _with_lines(ConfigError(format_problems(source, problems)), node)
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """The config as plain data (lists, dicts, scalars), e.g. to save it beside a run."""
    return cattrs.unstructure(config)


def flatten_dict(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``training.optimizer_options.betas``), e.g. for loggers and diffs.

    Lists stay values; an empty mapping stays ``{}`` so its key is not lost.
    """
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_dict(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def dump_config(config: Config) -> str:
    """The config as YAML text, sections in schema order."""
    return dump_yaml(config_to_dict(config), sort_keys=False, default_flow_style=None)
