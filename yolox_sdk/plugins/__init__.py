"""Plugin system: hook specs, the plugin manager and the registry."""

from yolox_sdk.plugins.hookspecs import hookimpl
from yolox_sdk.plugins.manager import build_plugin_manager, get_plugin_manager, get_registry, reset_plugins
from yolox_sdk.plugins.registry import KINDS, PluginEntry, Registry

__all__ = [
    "KINDS",
    "PluginEntry",
    "Registry",
    "build_plugin_manager",
    "get_plugin_manager",
    "get_registry",
    "hookimpl",
    "reset_plugins",
]
