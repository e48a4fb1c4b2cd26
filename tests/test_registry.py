"""The registry: built-ins found through entry points, clear lookup errors."""

from __future__ import annotations

import pytest

from yolox_sdk.errors import PluginError
from yolox_sdk.plugins import build_plugin_manager, get_registry, hookimpl
from yolox_sdk.plugins.registry import PluginOrigin, Registry


def test_builtins_come_from_our_own_distribution() -> None:
    registry = get_registry()
    for kind, name in [
        ("optimizer", "sgd"),
        ("scheduler", "yolox_cosine"),
        ("logger", "tensorboard"),
        ("logger", "csv"),
    ]:
        entry = registry.get(kind, name)
        assert entry.origin.distribution == "yolox-sdk", entry.origin


def test_unknown_name_lists_available_and_suggests() -> None:
    with pytest.raises(PluginError) as error:
        get_registry().get("optimizer", "sgdd")
    assert "Did you mean 'sgd'" in str(error.value)
    assert "Available: " in str(error.value)


def test_unknown_kind() -> None:
    with pytest.raises(PluginError, match="Unknown plugin kind"):
        Registry().get("nonsense", "x")


def test_options_must_be_attrs_class() -> None:
    with pytest.raises(PluginError, match="not an attrs class"):
        Registry().add("optimizer", PluginOrigin("p", "dist"), "x", lambda: None, options=dict)


def test_conflict_names_both_distributions() -> None:
    registry = Registry()
    registry.add("optimizer", PluginOrigin("a", "dist-a", "1.0"), "fast", lambda: None)
    registry.add("optimizer", PluginOrigin("b", "dist-b", "2.0"), "fast", lambda: None)
    with pytest.raises(PluginError) as error:
        registry.get("optimizer", "fast")
    assert "dist-a 1.0" in str(error.value) and "dist-b 2.0" in str(error.value)


class _InCodePlugin:
    @hookimpl
    def register_schedulers(self, register) -> None:
        register("constant", lambda options, settings: None, description="test")


def test_plugins_registered_in_code() -> None:
    _, registry = build_plugin_manager(extra_plugins=[("in_code", _InCodePlugin())])
    assert registry.get("scheduler", "constant").origin.distribution == "(registered in code)"
    assert "yolox_cosine" in registry.names("scheduler")


def test_loading_every_builtin_plugin_does_not_import_torch() -> None:
    """Plugin modules import torch only when they run, so `yolox-sdk --help` and `plugins` start in about
    a second instead of the five that importing torch takes (a fresh process: this one has torch already)."""
    import subprocess
    import sys

    code = (
        "import sys; from yolox_sdk.plugins.manager import get_registry; get_registry(); "
        "print(sorted(m for m in ('torch', 'yolox', 'torchvision') if m in sys.modules))"
    )
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "[]"
