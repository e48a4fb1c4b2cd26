"""A kit for testing plugins: build a registry holding a plugin without installing it, and conformance
checks a plugin's own tests call.

The checks are plain functions that raise ``AssertionError`` with a message saying what the plugin did
wrong, so they work under pytest, unittest or a script. Importing this package does not import torch;
``check_exporter`` does, when called.

Example, in a format plugin's tests::

    import my_plugin
    from yolox_sdk.testing import check_detection, check_round_trip, plugin_registry, sample_exports

    def test_my_format(tmp_path, tiny_dataset):
        registry = plugin_registry(my_plugin)          # the built-ins plus my_plugin, no pip
        check_round_trip(registry, "my_format", tiny_dataset, tmp_path / "round_trip")
        samples = sample_exports(registry, tiny_dataset, tmp_path / "exports")
        check_detection(registry, "my_format", samples)
"""

from __future__ import annotations

from yolox_sdk.testing.exporters import check_exporter, tiny_model_and_metadata
from yolox_sdk.testing.formats import check_detection, check_round_trip, sample_exports
from yolox_sdk.testing.loggers import check_logger
from yolox_sdk.testing.plugins import import_plugin, plugin_registry, registry_fixture, use_registry

__all__ = [
    "check_detection",
    "check_exporter",
    "check_logger",
    "check_round_trip",
    "import_plugin",
    "plugin_registry",
    "registry_fixture",
    "sample_exports",
    "tiny_model_and_metadata",
    "use_registry",
]
