"""Loading a plugin for a test: from its source folder, into a registry of its own, without pip; making that
registry the one the CLI and ``load_dataset`` use for a while."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from yolox_sdk.plugins import manager
from yolox_sdk.plugins.manager import ENTRY_POINT_GROUP, PLUGINS_ENV, build_plugin_manager
from yolox_sdk.plugins.registry import Registry


def import_plugin(source_dir: str | Path, module: str) -> ModuleType:
    """Import the plugin package ``module`` from ``source_dir`` (the folder holding its package).

    A copy of ``module`` imported earlier from somewhere else (an installed release) is forgotten first, so
    the test runs the code in ``source_dir``. ``sys.path`` is restored afterwards; the package's own
    ``__path__`` keeps finding its sub-modules when the factory imports them later.
    """
    source = Path(source_dir).resolve()
    loaded = sys.modules.get(module)
    if loaded is not None and not Path(loaded.__file__ or "").resolve().is_relative_to(source):
        for name in [name for name in sys.modules if name == module or name.startswith(f"{module}.")]:
            del sys.modules[name]
    sys.path.insert(0, str(source))
    try:
        imported = importlib.import_module(module)
    finally:
        sys.path.remove(str(source))
    if not Path(imported.__file__ or "").resolve().is_relative_to(source):
        raise AssertionError(f"{module} was imported from {imported.__file__}, not from {source}.")
    return imported


@contextmanager
def _only_plugins(names: str | None) -> Iterator[None]:
    before = os.environ.get(PLUGINS_ENV)
    if names is not None:
        os.environ[PLUGINS_ENV] = names
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PLUGINS_ENV, None)
        else:
            os.environ[PLUGINS_ENV] = before


def _named(plugin: object | tuple[str, object]) -> tuple[str, object]:
    if isinstance(plugin, tuple):
        return plugin
    name = getattr(plugin, "__name__", None) or type(plugin).__name__
    return str(name), plugin


def plugin_registry(*plugins: object | tuple[str, object], installed: bool = True) -> Registry:
    """A fresh registry holding ``plugins`` (modules or objects with hook functions, or ``(name, plugin)``).

    Args:
        plugins: what a plugin's entry point would name: its module, or any object with ``@hookimpl``
            functions. They register exactly as if installed, without pip and without touching the
            process-wide registry.
        installed: also load the installed plugins (the built-ins among them), as a user's registry
            would; ``False`` gives a registry of ``plugins`` alone.

    Raises:
        AssertionError: one of ``plugins`` failed to register (the registry would report it as broken).
    """
    named = [_named(plugin) for plugin in plugins]
    if installed:
        # A plugin that is also installed would be registered twice (pluggy refuses); its entry point
        # loads the same module (``import_plugin`` put the source copy in ``sys.modules``).
        loaded = {
            entry_point.value.split(":")[0] for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP)
        }
        named = [(name, plugin) for name, plugin in named if getattr(plugin, "__name__", None) not in loaded]
    with _only_plugins(None if installed else ""):
        _, registry = build_plugin_manager(extra_plugins=named)
    ours = {name for name, _ in named}
    failures = [
        f"{broken.origin.plugin}: {broken.error}"
        for broken in registry.broken
        if broken.origin.plugin in ours
    ]
    if failures:
        raise AssertionError("Plugin failed to register: " + "; ".join(failures))
    return registry


@contextmanager
def use_registry(registry: Registry) -> Iterator[Registry]:
    """Make ``registry`` the process-wide one for the block: what ``yolox-sdk`` commands (click's
    ``CliRunner``), ``load_dataset`` and the trainer find when not handed a registry."""
    saved = manager._cached
    manager._cached = (manager.get_plugin_manager(), registry)
    try:
        yield registry
    finally:
        manager._cached = saved


def registry_fixture(
    *plugins: object | tuple[str, object], installed: bool = True, scope: str = "function"
) -> Any:
    """A pytest fixture giving ``plugin_registry(*plugins)``, made the process-wide registry while it lives.

    In a plugin's ``conftest.py``: ``registry = registry_fixture(my_plugin)``; a test then takes
    ``registry`` and can run the CLI on the plugin as if it were installed.
    """
    import pytest

    @pytest.fixture(scope=scope)
    def fixture() -> Iterator[Registry]:
        with use_registry(plugin_registry(*plugins, installed=installed)) as registry:
            yield registry

    return fixture
