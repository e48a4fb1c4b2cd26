"""Loads plugins from the ``yolox_sdk`` entry-point group and builds the registry.

Built-ins are found the same way as third-party plugins: through entry points declared in the project's
own ``pyproject.toml``. A plugin that fails to import or to register is recorded as broken (distribution,
version, error) and skipped, so one bad plugin never takes down the CLI or the other plugins; that includes
a plugin calling ``sys.exit()`` while it imports or registers (``SystemExit`` is caught like an error).

``YOLOX_SDK_PLUGINS`` (comma-separated entry-point names) restricts which plugins load; useful in tests
and to switch off a misbehaving plugin.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable
from functools import partial
from importlib import metadata

import pluggy

from yolox_sdk.plugins import hookspecs
from yolox_sdk.plugins.registry import KINDS, BrokenPlugin, PluginOrigin, Registry

ENTRY_POINT_GROUP = "yolox_sdk"
PLUGINS_ENV = "YOLOX_SDK_PLUGINS"

_HOOK_FOR_KIND = {
    "dataset_format": "register_dataset_formats",
    "augmentation": "register_augmentations",
    "logger": "register_loggers",
    "optimizer": "register_optimizers",
    "scheduler": "register_schedulers",
    "callback": "register_callbacks",
    "exporter": "register_exporters",
}

_cached: tuple[pluggy.PluginManager, Registry] | None = None


def _origin(entry_point: metadata.EntryPoint) -> PluginOrigin:
    dist = entry_point.dist
    if dist is None:
        return PluginOrigin(entry_point.name)
    return PluginOrigin(entry_point.name, dist.metadata["Name"] or "unknown", dist.version or "")


def _selected_entry_points() -> list[metadata.EntryPoint]:
    wanted = os.environ.get(PLUGINS_ENV)
    found = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    seen: set[tuple[str, str]] = set()
    unique = []
    for entry_point in found:  # the same dist can be visible twice on sys.path
        key = (entry_point.name, entry_point.value)
        if key not in seen:
            seen.add(key)
            unique.append(entry_point)
    if wanted is None:
        return unique
    names = {name.strip() for name in wanted.split(",") if name.strip()}
    return [entry_point for entry_point in unique if entry_point.name in names]


def _load_entry_points(manager: pluggy.PluginManager, broken: list[BrokenPlugin]) -> dict[str, PluginOrigin]:
    origins: dict[str, PluginOrigin] = {}
    for entry_point in _selected_entry_points():
        origin = _origin(entry_point)
        try:
            plugin = entry_point.load()
            manager.register(plugin, name=entry_point.name)
        except (Exception, SystemExit) as error:  # noqa: BLE001 - isolation is the point, sys.exit() included
            broken.append(BrokenPlugin(origin, _one_line(error)))
            continue
        origins[entry_point.name] = origin
    return origins


def _one_line(error: BaseException) -> str:
    last = traceback.format_exception_only(type(error), error)[-1].strip()
    return last


def build_plugin_manager(
    extra_plugins: Iterable[tuple[str, object]] = (),
) -> tuple[pluggy.PluginManager, Registry]:
    """Load every plugin and return the pluggy manager with a filled registry.

    Args:
        extra_plugins: ``(name, module_or_object)`` pairs registered besides the entry points, for
            tests and for applications that embed the SDK with plugins of their own.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    registry = Registry()
    origins = _load_entry_points(manager, registry.broken)
    for name, plugin in extra_plugins:
        manager.register(plugin, name=name)
        origins[name] = PluginOrigin(name, "(registered in code)")
    for kind in KINDS:
        _collect(manager, registry, kind, origins)
    return manager, registry


def _collect(
    manager: pluggy.PluginManager, registry: Registry, kind: str, origins: dict[str, PluginOrigin]
) -> None:
    hook = getattr(manager.hook, _HOOK_FOR_KIND[kind])
    for implementation in hook.get_hookimpls():
        origin = origins.get(implementation.plugin_name, PluginOrigin(implementation.plugin_name))
        try:
            implementation.function(register=partial(registry.add, kind, origin))
        except (Exception, SystemExit) as error:  # noqa: BLE001 - a failing hook must not break the others
            registry.broken.append(BrokenPlugin(origin, f"{hook.name} failed: {_one_line(error)}"))


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (loaded once)."""
    return _load_cached()[0]


def get_registry() -> Registry:
    """The process-wide registry of every installed plugin (loaded once)."""
    return _load_cached()[1]


def reset_plugins() -> None:
    """Forget the loaded plugins so the next lookup re-reads the entry points (tests, notebooks)."""
    global _cached
    _cached = None


def _load_cached() -> tuple[pluggy.PluginManager, Registry]:
    global _cached
    if _cached is None:
        _cached = build_plugin_manager()
    return _cached
