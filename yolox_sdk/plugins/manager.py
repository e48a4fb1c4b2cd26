"""Loads plugins from the ``yolox_sdk`` entry-point group and builds the registry.

Built-ins are found the same way as third-party plugins: through entry points declared in the project's
own ``pyproject.toml``. A plugin that fails to import or to register is recorded as broken (distribution,
version, error) and skipped, so one bad plugin never takes down the CLI or the other plugins; that includes
a plugin calling ``sys.exit()`` while it imports or registers (``SystemExit`` is caught like an error).

Which hook fills which kind comes from the kinds table (``yolox_sdk.plugins.kinds``). A plugin that
implements a function the hook specs do not declare (``register_dataset_format`` without the ``s``) would
be silently ignored by pluggy; it is reported as broken instead, naming the closest real hook (its other,
correctly named hooks still register).

``YOLOX_SDK_PLUGINS`` (comma-separated entry-point names) restricts which plugins load; useful in tests
and to switch off a misbehaving plugin.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable, Sequence
from functools import partial
from importlib import metadata

import pluggy

from yolox_sdk.errors import PluginError, did_you_mean
from yolox_sdk.plugins import hookspecs
from yolox_sdk.plugins.kinds import PLUGIN_KINDS, PluginKind
from yolox_sdk.plugins.registry import BrokenPlugin, PluginOrigin, Registry

ENTRY_POINT_GROUP = "yolox_sdk"
PLUGINS_ENV = "YOLOX_SDK_PLUGINS"

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
    kinds: Sequence[PluginKind] = PLUGIN_KINDS,
    specs: Iterable[object] = (),
) -> tuple[pluggy.PluginManager, Registry]:
    """Load every plugin and return the pluggy manager with a filled registry.

    Args:
        extra_plugins: ``(name, module_or_object)`` pairs registered besides the entry points, for
            tests and for applications that embed the SDK with plugins of their own.
        kinds: the plugin kinds to collect; the table of ``yolox_sdk.plugins.kinds`` by default.
        specs: modules or classes with hook specs besides ``yolox_sdk.plugins.hookspecs`` (the hooks
            of kinds added to ``kinds``).

    Raises:
        PluginError: a kind's hook has no hook spec (a programming error in the table, not a plugin's).
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    for spec in specs:
        manager.add_hookspecs(spec)
    _check_table(manager, kinds)
    registry = Registry(kinds)
    origins = _load_entry_points(manager, registry.broken)
    for name, plugin in extra_plugins:
        manager.register(plugin, name=name)
        origins[name] = PluginOrigin(name, "(registered in code)")
    registry.broken.extend(unknown_hooks(manager, origins))
    for kind in kinds:
        _collect(manager, registry, kind, origins)
    return manager, registry


def _check_table(manager: pluggy.PluginManager, kinds: Sequence[PluginKind]) -> None:
    for kind in kinds:
        hook = getattr(manager.hook, kind.hook, None)
        if hook is None or not hook.has_spec():
            raise PluginError(
                f"The plugin kind '{kind.name}' names the hook '{kind.hook}', which has no hook spec. "
                "Declare it in yolox_sdk/plugins/hookspecs.py (or pass its spec to build_plugin_manager)."
            )


def unknown_hooks(manager: pluggy.PluginManager, origins: dict[str, PluginOrigin]) -> list[BrokenPlugin]:
    """Plugins implementing hooks that no spec declares (what pluggy's ``check_pending()`` refuses).

    pluggy calls only declared hooks, so a misspelt one (``register_dataset_format``) would never run and
    the plugin's features would be missing without a word. Each is reported, naming the closest real
    hook; ``optionalhook=True`` implementations are left alone, as pluggy does.
    """
    declared = sorted(
        name for name, caller in vars(manager.hook).items() if not name.startswith("_") and caller.has_spec()
    )
    broken = []
    for name, caller in sorted(vars(manager.hook).items()):
        if name.startswith("_") or caller.has_spec():
            continue
        for implementation in caller.get_hookimpls():
            if implementation.optionalhook:
                continue
            origin = origins.get(implementation.plugin_name, PluginOrigin(implementation.plugin_name))
            hint = did_you_mean(name, declared) or f" Hooks: {', '.join(declared)}."
            broken.append(
                BrokenPlugin(
                    origin, f"implements '{name}', which is not a yolox-sdk hook, so it never runs.{hint}"
                )
            )
    return broken


def _collect(
    manager: pluggy.PluginManager, registry: Registry, kind: PluginKind, origins: dict[str, PluginOrigin]
) -> None:
    hook = getattr(manager.hook, kind.hook)
    for implementation in hook.get_hookimpls():
        origin = origins.get(implementation.plugin_name, PluginOrigin(implementation.plugin_name))
        try:
            implementation.function(register=partial(registry.add, kind.name, origin))
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
