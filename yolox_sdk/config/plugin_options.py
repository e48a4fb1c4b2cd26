"""Plugin names and plugin options inside the config, checked against the registry.

The config keeps plugin options as plain mappings (``training.optimizer_options``,
``export.options.onnx``); the plugin that owns them declares an attrs options class, and this module
structures the mapping into it, so a typo in a plugin option is reported with its YAML path just like a
typo in a core key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from yolox_sdk.config.structure import structure_options
from yolox_sdk.config.validators import short_repr
from yolox_sdk.errors import ConfigError, PluginError

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


def _plugin_uses(config: Config) -> Iterator[tuple[str, str, Any, str]]:
    """Every (kind, name, raw options, yaml path) the config refers to."""
    if config.data.format != "auto":
        yield "dataset_format", config.data.format, config.data.format_options, "data.format_options"
    yield (
        "optimizer",
        config.training.optimizer,
        config.training.optimizer_options,
        "training.optimizer_options",
    )
    yield (
        "scheduler",
        config.training.scheduler,
        config.training.scheduler_options,
        "training.scheduler_options",
    )
    for name, options, where in named_items(config.augmentation.custom, "augmentation.custom"):
        yield "augmentation", name, options, where
    for name, options, where in named_items(config.training.callbacks, "training.callbacks"):
        yield "callback", name, options, where
    for name in config.monitoring.loggers:
        where = f"monitoring.logger_options.{name}"
        yield "logger", name, config.monitoring.logger_options.get(name, {}), where
    for name in config.export.formats:
        yield "exporter", name, config.export.options.get(name, {}), f"export.options.{name}"


def validate_plugin_options(config: Config, registry: Registry) -> list[str]:
    """Problems with plugin names and options in ``config``, as ``path: message`` strings."""
    problems = []
    try:
        uses = list(_plugin_uses(config))
    except ConfigError as error:
        return [str(error).removeprefix("Invalid config: ")]
    for kind, name, raw, where in uses:
        try:
            resolve_options(registry, kind, name, raw, where)
        except PluginError as error:
            problems.append(f"{_name_path(kind, where)}: {error}")
        except ConfigError as error:
            problems.append(str(error).split(": ", 1)[1])
    if config.monitoring.wandb.enabled and "wandb" not in registry.names("logger"):
        problems.append(f"monitoring.wandb.enabled: the W&B logger plugin is not installed; {WANDB_HINT}.")
    unused = set(config.export.options) - set(config.export.formats)
    for name in sorted(unused):
        problems.append(f"export.options.{name}: options for '{name}', which is not in export.formats.")
    return problems


def _name_path(kind: str, options_path: str) -> str:
    name_keys = {
        "data.format_options": "data.format",
        "training.optimizer_options": "training.optimizer",
        "training.scheduler_options": "training.scheduler",
    }
    if options_path in name_keys:
        return name_keys[options_path]
    if options_path.startswith("export.options."):
        return "export.formats"
    if options_path.startswith("monitoring.logger_options."):
        return "monitoring.loggers"
    return options_path
