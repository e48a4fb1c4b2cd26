"""A kit for testing plugins: build a registry holding a plugin without installing it, and conformance
checks a plugin's own tests call.

The checks are plain functions that raise ``AssertionError`` with a message saying what the plugin did
wrong, so they work under pytest, unittest or a script. Nothing here imports torch until an exporter is
checked.

Example, in a format plugin's tests::

    from yolox_sdk.testing import plugin_registry, check_format_round_trip, check_detection

    def test_my_format(tmp_path, tiny_dataset):
        registry = plugin_registry(my_plugin)
        check_format_round_trip(registry, "my_format", tiny_dataset, tmp_path)
        check_detection(registry, "my_format", tmp_path / "samples", tiny_dataset)
"""

from __future__ import annotations

from yolox_sdk.testing.plugins import import_plugin, plugin_registry

__all__ = ["import_plugin", "plugin_registry"]
