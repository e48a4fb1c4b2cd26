"""Building plugin objects: look a plugin up, structure its options, call its factory.

The config layer only checks plugin names and options (``yolox_sdk.config.plugin_options``); turning
them into running objects (an optimizer, a logger with an open file) is this module's job, for the
engine, the data pipeline and the exporters alike. Kept out of ``yolox_sdk.plugins``' package imports:
building needs the config layer, and the registry must load without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from yolox_sdk.config.plugin_options import resolve_options

if TYPE_CHECKING:
    from yolox_sdk.plugins.registry import Registry


def build_plugin(registry: Registry, kind: str, name: str, raw: Any, path: str, *args: Any) -> Any:
    """Look up plugin ``name`` of ``kind``, structure ``raw`` into its options class and return
    ``factory(options, *args)`` (the arguments each kind's factory takes are in its hook spec).

    Raises:
        PluginError: no plugin ``name`` of ``kind`` is installed, or two claim it.
        ConfigError: ``raw`` does not fit the plugin's options; the message names ``path``.
    """
    options = resolve_options(registry, kind, name, raw, path)
    return registry.get(kind, name).factory(options, *args)
