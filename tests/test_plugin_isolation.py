"""Plugin loading under misbehaving plugins, with fake distributions installed into a temporary folder.

Each fake distribution is what pip would leave in site-packages: a ``<name>-<version>.dist-info`` folder with
``METADATA`` and ``entry_points.txt``, next to the plugin's module. Putting that folder on ``sys.path`` makes
``importlib.metadata`` (and so the plugin manager) see it like any installed plugin. Built-ins are being
written alongside these tests, so assertions about them are relative: whatever loads without the fakes must
still load with them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from textwrap import dedent

import pytest

from yolox_sdk.errors import PluginError
from yolox_sdk.plugins import build_plugin_manager, get_registry, reset_plugins
from yolox_sdk.plugins.manager import PLUGINS_ENV
from yolox_sdk.plugins.registry import KINDS, Registry

MakeDistribution = Callable[[str, str, dict[str, str | None]], None]


def registers_format(*names: str) -> str:
    """Source of a plugin module registering dataset formats ``names``."""
    calls = "".join(f"    register({name!r}, lambda options: None, description='fake')\n" for name in names)
    return (
        "from yolox_sdk.plugins import hookimpl\n\n@hookimpl\ndef register_dataset_formats(register):\n"
        + calls
    )


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    reset_plugins()
    yield
    reset_plugins()  # later tests must not see this test's fake plugins in the process-wide registry


@pytest.fixture
def make_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeDistribution]:
    """``make_distribution(name, version, {entry_point_name: module_source})`` installs a fake plugin dist.

    Each entry point loads a module named ``fake_yolox_plugin_<entry_point_name>`` (not written when the
    source is ``None``); test-unique entry point names keep one test's cached modules out of the next.
    """
    site = tmp_path / "site-packages"
    site.mkdir()
    modules: list[str] = []

    def make(name: str, version: str, plugins: dict[str, str | None]) -> None:
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = ["[yolox_sdk]"]
        for entry_point, source in plugins.items():
            module = f"fake_yolox_plugin_{entry_point}"
            if source is not None:
                (site / f"{module}.py").write_text(dedent(source))
            lines.append(f"{entry_point} = {module}")
            modules.append(module)
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")

    monkeypatch.syspath_prepend(str(site))
    yield make
    for module in modules:
        sys.modules.pop(module, None)


def all_names(registry: Registry) -> dict[str, set[str]]:
    return {kind: set(registry.names(kind)) for kind in KINDS}


def test_plugin_that_fails_to_import_is_reported_and_the_rest_still_loads(
    make_distribution: MakeDistribution,
) -> None:
    _, baseline = build_plugin_manager()
    make_distribution(
        "fake-broken-import",
        "1.0",
        {"brokenimport": "raise ImportError('needs libfoo, which is not installed')\n"},
    )
    make_distribution("fake-missing-module", "0.3", {"missingmodule": None})
    make_distribution("fake-good", "2.0", {"goodplugin": registers_format("fake_good_format")})

    registry = get_registry()

    new_broken = {
        (plugin.origin.plugin, plugin.origin.distribution, plugin.origin.version): plugin.error
        for plugin in registry.broken
        if plugin not in baseline.broken
    }
    assert new_broken == {
        ("brokenimport", "fake-broken-import", "1.0"): "ImportError: needs libfoo, which is not installed",
        ("missingmodule", "fake-missing-module", "0.3"): (
            "ModuleNotFoundError: No module named 'fake_yolox_plugin_missingmodule'"
        ),
    }
    entry = registry.get("dataset_format", "fake_good_format")
    assert (entry.origin.distribution, entry.origin.version) == ("fake-good", "2.0")
    for kind, names in all_names(baseline).items():
        assert names <= set(registry.names(kind)), f"{kind}: built-ins lost next to a broken plugin"


def test_plugin_whose_register_hook_raises_is_reported(make_distribution: MakeDistribution) -> None:
    source = """
        from yolox_sdk.plugins import hookimpl

        @hookimpl
        def register_dataset_formats(register):
            raise RuntimeError("dataset hook exploded")

        @hookimpl
        def register_loggers(register):
            register("fake_hook_logger", lambda options, run_dir: None)
    """
    make_distribution("fake-bad-hook", "0.2", {"badhook": source})

    registry = get_registry()

    reports = [plugin for plugin in registry.broken if plugin.origin.plugin == "badhook"]
    assert len(reports) == 1
    assert (reports[0].origin.distribution, reports[0].origin.version) == ("fake-bad-hook", "0.2")
    assert reports[0].error == "register_dataset_formats failed: RuntimeError: dataset hook exploded"
    # One failing hook does not cancel the plugin's other hooks.
    assert registry.get("logger", "fake_hook_logger").origin.distribution == "fake-bad-hook"


def test_a_misspelt_hook_makes_the_plugin_broken_naming_the_real_hook(
    make_distribution: MakeDistribution, tmp_path: Path
) -> None:
    """pluggy never calls a hook no spec declares; ``check_pending`` was never run, so a plugin with
    ``register_dataset_format`` (no s) lost its formats without a word. Its correct hooks still register."""
    source = """
        from yolox_sdk.plugins import hookimpl

        @hookimpl
        def register_dataset_format(register):
            register("fake_misspelt_format", lambda options: None)

        @hookimpl
        def register_loggers(register):
            register("fake_misspelt_logger", lambda options, run_dir: None)
    """
    make_distribution("fake-misspelt", "0.1", {"misspelt": source})

    registry = get_registry()

    (report,) = [plugin for plugin in registry.broken if plugin.origin.plugin == "misspelt"]
    assert (report.origin.distribution, report.origin.version) == ("fake-misspelt", "0.1")
    assert "'register_dataset_format'" in report.error
    assert "Did you mean 'register_dataset_formats'?" in report.error
    assert "fake_misspelt_format" not in registry.names("dataset_format")
    assert registry.get("logger", "fake_misspelt_logger").origin.distribution == "fake-misspelt"

    site = str(tmp_path / "site-packages")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([site, *sys.path])}
    result = subprocess.run(
        [sys.executable, "-m", "yolox_sdk", "plugins"], env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "broken: fake-misspelt 0.1 (plugin 'misspelt')" in result.stdout
    assert "Did you mean 'register_dataset_formats'?" in result.stdout


def test_options_that_are_not_attrs_make_the_plugin_broken(make_distribution: MakeDistribution) -> None:
    source = """
        from yolox_sdk.plugins import hookimpl

        @hookimpl
        def register_dataset_formats(register):
            register("fake_dict_options", lambda options: None, options=dict)
    """
    make_distribution("fake-dict-options", "1.0", {"dictoptions": source})

    registry = get_registry()

    reports = [plugin for plugin in registry.broken if plugin.origin.plugin == "dictoptions"]
    assert len(reports) == 1
    assert "not an attrs class" in reports[0].error
    assert "fake_dict_options" not in registry.names("dataset_format")


def test_two_plugins_claiming_one_name_are_both_named(make_distribution: MakeDistribution) -> None:
    make_distribution("fake-claim-a", "1.0", {"claima": registers_format("fake_shared", "fake_only_in_a")})
    make_distribution("fake-claim-b", "2.5", {"claimb": registers_format("fake_shared")})

    registry = get_registry()

    with pytest.raises(PluginError) as error:
        registry.get("dataset_format", "fake_shared")
    message = str(error.value)
    assert "fake-claim-a 1.0 (plugin 'claima')" in message
    assert "fake-claim-b 2.5 (plugin 'claimb')" in message
    assert PLUGINS_ENV in message
    claimants = registry.conflicts()[("dataset_format", "fake_shared")]
    assert [entry.origin.distribution for entry in claimants] == ["fake-claim-a", "fake-claim-b"]
    assert registry.get("dataset_format", "fake_only_in_a").origin.distribution == "fake-claim-a"


def test_unknown_name_lists_available_and_suggests_the_closest(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "fake-spelling", "1.0", {"spelling": registers_format("fake_labelme", "fake_coco_json")}
    )

    registry = get_registry()

    with pytest.raises(PluginError) as error:
        registry.get("dataset_format", "fake_labelmee")
    message = str(error.value)
    assert "Unknown dataset format 'fake_labelmee'" in message
    assert "Did you mean 'fake_labelme'?" in message
    available = message.split("Available: ", 1)[1]
    assert "fake_labelme" in available and "fake_coco_json" in available
    with pytest.raises(PluginError) as error:
        registry.get("dataset_format", "zzzz_nothing_close")
    assert "Did you mean" not in str(error.value)
    with pytest.raises(PluginError, match="Unknown plugin kind 'dataset_formats'"):
        registry.get("dataset_formats", "fake_labelme")


def test_environment_variable_restricts_what_loads(
    make_distribution: MakeDistribution, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_distribution("fake-env-a", "1.0", {"envpicked": registers_format("fake_env_a")})
    make_distribution("fake-env-b", "1.0", {"envleftout": registers_format("fake_env_b")})
    make_distribution("fake-env-broken", "1.0", {"envbroken": "raise RuntimeError('never imported')\n"})

    monkeypatch.setenv(PLUGINS_ENV, " envpicked , envbroken")
    _, registry = build_plugin_manager()
    loaded = {entry.origin.plugin for kind in KINDS for entry in registry.entries(kind)}
    assert loaded == {"envpicked"}
    assert registry.names("dataset_format") == ["fake_env_a"]
    assert [plugin.origin.plugin for plugin in registry.broken] == ["envbroken"]

    monkeypatch.setenv(PLUGINS_ENV, "")
    _, registry = build_plugin_manager()
    assert all(registry.names(kind) == [] for kind in KINDS)
    assert registry.broken == []


def test_plugin_calling_sys_exit_never_ends_the_cli(
    make_distribution: MakeDistribution, tmp_path: Path
) -> None:
    """``sys.exit()`` at import or in a register hook is a broken plugin, not the end of every command."""
    make_distribution("fake-exit-import", "1.0", {"exitsatimport": "import sys\nsys.exit(3)\n"})
    hook_exit = (
        "from yolox_sdk.plugins import hookimpl\nimport sys\n\n@hookimpl\ndef register_loggers(register):\n"
    )
    make_distribution("fake-exit-hook", "1.0", {"exitsinhook": hook_exit + "    sys.exit('bye')\n"})
    site = str(tmp_path / "site-packages")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([site, *sys.path])}
    for arguments in (["--help"], ["plugins"]):
        result = subprocess.run(
            [sys.executable, "-m", "yolox_sdk", *arguments], env=environment, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
    assert "exitsatimport" in result.stdout and "SystemExit: 3" in result.stdout
    assert "exitsinhook" in result.stdout and "SystemExit: bye" in result.stdout
