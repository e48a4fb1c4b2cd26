"""Plugin names and plugin options inside the config, checked against the registry.

The config keeps plugin options as plain mappings (``training.optimizer_options``,
``export.options.onnx``); the plugin that owns them declares an attrs options class, and this module
structures the mapping into it, so a typo in a plugin option is reported with its YAML path just like a
typo in a core key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from yolox_sdk.config.structure import structure_options
from yolox_sdk.config.validators import short_repr
from yolox_sdk.errors import ConfigError, PluginError
from yolox_sdk.plugins.kinds import NAME_LIST, SINGLE, PluginKind

LOGGER = "logger"

if TYPE_CHECKING:
    from yolox_sdk.config.schema import Config
    from yolox_sdk.plugins.registry import Registry

WANDB_HINT = "install it with `pip install ./plugins/yolox-sdk-wandb` (or `pip install yolox-sdk-wandb`)"


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


def build_plugin(registry: Registry, kind: str, name: str, raw: Any, path: str, *args: Any) -> Any:
    """Look up plugin ``name``, structure its options and call its factory with ``(options, *args)``."""
    options = resolve_options(registry, kind, name, raw, path)
    return registry.get(kind, name).factory(options, *args)


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
    registered ``always_on`` (metrics.csv), those whose ``enabled_by`` key is set
    (``monitoring.tensorboard``), then ``monitoring.loggers`` with ``monitoring.logger_options.<name>``.

    The loggers declare when they are on (``register(..., always_on=True)``, ``enabled_by=...``), so this
    module names none of them.
    """
    m = config.monitoring
    listed = [(name, m.logger_options.get(name, {}), _logger_options_path(name)) for name in m.loggers]
    return _switched_loggers(config, registry) + listed


def _switched_loggers(config: Config, registry: Registry) -> list[tuple[str, Any, str]]:
    """The loggers on without being listed in ``monitoring.loggers``."""
    chosen = []
    for entry in registry.entries(LOGGER):
        if entry.always_on:
            chosen.append((entry.name, {}, _logger_options_path(entry.name)))
        elif entry.enabled_by is not None:
            switch = _switch(config, entry.enabled_by)
            if switch is not None:
                chosen.append((entry.name, *switch))
    if config.monitoring.wandb.enabled:
        wandb = config.monitoring.wandb
        chosen.append(("wandb", {"project": wandb.project, "name": wandb.name}, "monitoring.wandb"))
    return chosen


def _logger_options_path(name: str) -> str:
    return f"monitoring.logger_options.{name}"


def _switch(config: Config, dotted: str) -> tuple[Any, str] | None:
    """``(raw options, yaml path)`` when the switch at ``dotted`` is on, else ``None``.

    A boolean switch carries no options; a mapping switch is on when its ``enabled`` is true and its other
    keys are the options.

    Raises:
        ConfigError: ``dotted`` is not a key of the config (a plugin declared a switch that does not exist).
    """
    try:
        value = _at(config, dotted)
    except AttributeError:
        raise ConfigError(
            f"Invalid config: {dotted}: a plugin is switched on by this key, which the config does not have."
        ) from None
    if isinstance(value, Mapping):
        if value.get("enabled") is not True:
            return None
        return {key: item for key, item in value.items() if key != "enabled"}, dotted
    return ({}, dotted) if value is True else None


def validate_plugin_options(config: Config, registry: Registry) -> list[str]:
    """Problems with plugin names and options in ``config``, as ``path: message`` strings."""
    problems = []
    try:
        uses = list(_plugin_uses(config, registry.kinds))
        uses += [
            (LOGGER, name, raw, where, where) for name, raw, where in _switched_loggers(config, registry)
        ]
    except ConfigError as error:
        return [str(error).removeprefix("Invalid config: ")]
    for kind, name, raw, where, name_path in uses:
        try:
            resolve_options(registry, kind, name, raw, where)
        except PluginError as error:
            problems.append(f"{name_path}: {error}")
        except ConfigError as error:
            problems.append(str(error).split(": ", 1)[1])
    if config.monitoring.wandb.enabled and "wandb" not in registry.names("logger"):
        problems.append(f"monitoring.wandb.enabled: the W&B logger plugin is not installed; {WANDB_HINT}.")
    unused = set(config.export.options) - set(config.export.formats)
    for name in sorted(unused):
        problems.append(f"export.options.{name}: options for '{name}', which is not in export.formats.")
    return problems
