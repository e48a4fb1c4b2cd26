"""Plugin names and plugin options inside the config, checked against the registry (building the
plugins' objects is ``yolox_sdk.plugins.building``'s job).

The config keeps plugin options as plain mappings (``training.optimizer_options``,
``export.options.onnx``); the plugin that owns them declares an attrs options class, and this module
structures the mapping into it, so a typo in a plugin option is reported with its YAML path just like a
typo in a core key.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from yolox_sdk.config.structure import structure_options
from yolox_sdk.config.validators import short_repr
from yolox_sdk.errors import ConfigError, PluginError
from yolox_sdk.plugins.kinds import NAME_LIST, SINGLE, PluginKind

LOGGER = "logger"

if TYPE_CHECKING:
    from yolox_sdk.config.schema import Config
    from yolox_sdk.plugins.registry import Registry


def resolve_options(registry: Registry, kind: str, name: str, raw: Any, path: str) -> Any:
    """Structure ``raw`` into the options class of plugin ``name`` of ``kind``.

    Returns ``None`` for a plugin without options (and then ``raw`` must be empty).
    """
    entry = registry.get(kind, name)
    if entry.options is None:
        if raw:
            raise ConfigError(
                f"Invalid config: {path}: the {kind.replace('_', ' ')} '{name}' takes no options, got {short_repr(raw)}."
            )
        return None
    return structure_options(entry.options, raw, path, "config")


def named_items(items: list[Any], path: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Yield ``(name, options, path)`` for list entries written as ``name`` or ``{name: x, opt: y}``."""
    for index, item in enumerate(items):
        where = f"{path}[{index}]"
        if isinstance(item, str):
            yield item, {}, where
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            yield item["name"], {k: v for k, v in item.items() if k != "name"}, where
        else:
            raise ConfigError(
                f"Invalid config: {where}: expected a plugin name or a mapping with a 'name' key, got {short_repr(item)}."
            )


def _plugin_uses(config: Any, kinds: Iterable[PluginKind]) -> Iterator[tuple[str, str, Any, str, str]]:
    """Every (kind, name, raw options, options path, name path) the config refers to.

    Where each kind's names and options live comes from the kinds table (``PluginKind.config``), so a new
    kind is checked here without an edit.
    """
    for kind in kinds:
        slot = kind.config
        if slot is None:
            continue
        names = _at(config, slot.names)
        if slot.shape == SINGLE:
            if names not in slot.skip:
                yield kind.name, names, _at(config, slot.options), slot.options, slot.names
        elif slot.shape == NAME_LIST:
            options = _at(config, slot.options)
            for name in names:
                yield kind.name, name, options.get(name, {}), slot.options_path(name), slot.names
        else:
            for name, options, where in named_items(names, slot.names):
                yield kind.name, name, options, where, where


def _at(config: Any, dotted: str) -> Any:
    """The value at a dotted path of the (attrs) config: ``training.optimizer``."""
    value = config
    for key in dotted.split("."):
        value = getattr(value, key)
    return value


def configured_loggers(config: Config, registry: Registry) -> list[tuple[str, Any, str]]:
    """``(name, raw options, yaml path)`` of every logger a run opens, in this order: the loggers
    registered ``always_on`` (metrics.csv), those whose ``enabled_by`` key is on
    (``monitoring.tensorboard``, ``monitoring.wandb.enabled``), then ``monitoring.loggers`` with
    ``monitoring.logger_options.<name>``.

    The loggers declare when they are on (``register(..., always_on=True)``, ``enabled_by=...``), so this
    module names none of them.
    """
    chosen = []
    for entry in registry.entries(LOGGER):
        if entry.always_on:
            chosen.append((entry.name, {}, _logger_options_path(entry.name)))
        elif entry.enabled_by is not None:
            value = _switch_value(config, entry.enabled_by)
            if value is True or (isinstance(value, Mapping) and value.get("enabled") is True):
                chosen.append((entry.name, _switch_options(value), entry.enabled_by))
    m = config.monitoring
    chosen.extend((name, m.logger_options.get(name, {}), _logger_options_path(name)) for name in m.loggers)
    return chosen


def _logger_options_path(name: str) -> str:
    return f"monitoring.logger_options.{name}"


def _switch_value(config: Config, dotted: str) -> Any:
    """The value of a plugin's switch key: a boolean, or a mapping with ``enabled`` and options.

    Raises:
        ConfigError: ``dotted`` is not a key of the config (a plugin declared a switch that does not exist).
    """
    try:
        return _at(config, dotted)
    except AttributeError:
        raise ConfigError(
            f"Invalid config: {dotted}: a plugin is switched on by this key, which the config does not have."
        ) from None


def _switch_options(value: Any) -> dict[str, Any]:
    """The options a switch carries: a mapping's keys besides ``enabled``; none for a boolean."""
    if not isinstance(value, Mapping):
        return {}
    return {key: item for key, item in value.items() if key != "enabled"}


def _switch_sections(config: Config, registry: Registry) -> Iterator[tuple[str, str, Any, str, str]]:
    """Plugin uses (as ``_plugin_uses`` yields them) of the installed loggers switched by a mapping
    section, on or off: their options are checked either way, so a typo in a disabled section is still
    reported, as when the section was a class of the core schema."""
    for entry in registry.entries(LOGGER):
        if entry.enabled_by is not None:
            value = _switch_value(config, entry.enabled_by)
            if isinstance(value, Mapping):
                yield LOGGER, entry.name, _switch_options(value), entry.enabled_by, entry.enabled_by


def _unclaimed_switches(config: Config, registry: Registry) -> Iterator[str]:
    """Switch sections (fields with ``plugin_switch`` metadata) set to ``enabled: true`` that no installed
    plugin claims: the plugin is missing, and the schema's hint says how to install it."""
    claimed = {entry.enabled_by for entry in registry.entries(LOGGER)}
    for path, hint in _switch_fields(type(config)):
        value = _at(config, path)
        if path not in claimed and isinstance(value, Mapping) and value.get("enabled") is True:
            yield f"{path}.enabled: {hint}."


def _switch_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted path, install hint)`` of every config field marked as a plugin switch."""
    if not attrs.has(cls):
        return
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        if "plugin_switch" in field.metadata:
            yield f"{prefix}{field.name}", field.metadata["plugin_switch"]
        elif isinstance(hints.get(field.name), type):
            yield from _switch_fields(hints[field.name], f"{prefix}{field.name}.")


def validate_plugin_options(config: Config, registry: Registry) -> list[str]:
    """Problems with plugin names and options in ``config``, as ``path: message`` strings."""
    problems = []
    try:
        uses = [*_plugin_uses(config, registry.kinds), *_switch_sections(config, registry)]
    except ConfigError as error:
        return [str(error).removeprefix("Invalid config: ")]
    for kind, name, raw, where, name_path in uses:
        try:
            resolve_options(registry, kind, name, raw, where)
        except PluginError as error:
            problems.append(f"{name_path}: {error}")
        except ConfigError as error:
            problems.append(str(error).split(": ", 1)[1])
    problems.extend(_unclaimed_switches(config, registry))
    unused = set(config.export.options) - set(config.export.formats)
    for name in sorted(unused):
        problems.append(f"export.options.{name}: options for '{name}', which is not in export.formats.")
    return problems
