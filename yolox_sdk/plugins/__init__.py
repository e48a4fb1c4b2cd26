"""Plugin system: the table of plugin kinds, hook specs, the plugin manager and the registry."""

from yolox_sdk.plugins.hookspecs import hookimpl
from yolox_sdk.plugins.kinds import KINDS, PLUGIN_KINDS, ConfigSlot, PluginKind
from yolox_sdk.plugins.manager import build_plugin_manager, get_plugin_manager, get_registry, reset_plugins
from yolox_sdk.plugins.registry import PluginEntry, Registry

__all__ = [
    "KINDS",
    "PLUGIN_KINDS",
    "ConfigSlot",
    "PluginEntry",
    "PluginKind",
    "Registry",
    "build_plugin_manager",
    "get_plugin_manager",
    "get_registry",
    "hookimpl",
    "reset_plugins",
]
