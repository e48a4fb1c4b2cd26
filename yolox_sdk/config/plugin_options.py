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


def validate_plugin_options(config: Config, registry: Registry) -> list[str]:
    """Problems with plugin names and options in ``config``, as ``path: message`` strings."""
    problems = []
    try:
        uses = list(_plugin_uses(config, registry.kinds))
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
