"""The table of plugin kinds drives the registry, the manager's hook lookup and the config's option checks."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import attrs
import pluggy
import pytest

from yolox_sdk.config.plugin_options import validate_plugin_options
from yolox_sdk.config.schema import Config
from yolox_sdk.errors import PluginError
from yolox_sdk.plugins import hookimpl, hookspecs, interfaces
from yolox_sdk.plugins.kinds import KINDS, NAME_LIST, PLUGIN_KINDS, ConfigSlot, PluginKind
from yolox_sdk.plugins.manager import build_plugin_manager
from yolox_sdk.plugins.registry import Registry

hookspec = pluggy.HookspecMarker(hookspecs.PROJECT_NAME)

# A kind the table does not have (the real ``metric`` kind is a row now), with config keys of its own.
METRIC = PluginKind(
    "box_metric",
    "register_box_metrics",
    "Metric",
    config=ConfigSlot("evaluation.box_metrics", NAME_LIST, "evaluation.box_metric_options"),
)


class MetricSpecs:
    """The hook spec of the test's new kind: the only thing besides the table row a kind needs."""

    @hookspec
    def register_box_metrics(self, register: hookspecs.Register) -> None:
        """Register evaluation metrics."""


@attrs.frozen
class SmallObjectOptions:
    max_area: int = 32 * 32


class MetricPlugin:
    @hookimpl
    def register_box_metrics(self, register) -> None:
        register("small_objects", lambda options: options, options=SmallObjectOptions, description="test")


def test_every_row_has_a_hook_spec_and_every_register_spec_a_row() -> None:
    specs = {
        name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")
    }
    assert {kind.hook for kind in PLUGIN_KINDS} == specs - {"register_commands"}
    assert tuple(kind.name for kind in PLUGIN_KINDS) == KINDS
    assert Registry().kinds == PLUGIN_KINDS


def test_what_factories_return_is_a_documented_interface() -> None:
    for kind in PLUGIN_KINDS:
        assert kind.returns.startswith("torch.") or hasattr(interfaces, kind.returns), kind


def test_every_config_slot_is_a_real_config_path() -> None:
    config = Config()
    for kind in PLUGIN_KINDS:
        if kind.config is None:  # a kind only code uses (runtime): nothing in the config to check
            continue
        for dotted in filter(None, (kind.config.names, kind.config.options)):
            value = config
            for key in dotted.split("."):
                value = getattr(value, key)


def test_a_kind_added_to_the_table_is_registered_looked_up_and_option_checked() -> None:
    _, registry = build_plugin_manager(
        extra_plugins=[("metrics", MetricPlugin())], kinds=(*PLUGIN_KINDS, METRIC), specs=[MetricSpecs]
    )
    entry = registry.get("box_metric", "small_objects")
    assert entry.factory(SmallObjectOptions()) == SmallObjectOptions()
    assert METRIC in registry.kinds and registry.names("optimizer")  # the built-in kinds are still there

    base = Config()
    sections = {field.name: getattr(base, field.name) for field in attrs.fields(Config)}

    def config_with(metrics: list[str], options: dict) -> SimpleNamespace:
        evaluation = SimpleNamespace(
            metrics=[], metric_options={}, box_metrics=metrics, box_metric_options=options
        )
        return SimpleNamespace(**{**sections, "evaluation": evaluation})

    assert (
        validate_plugin_options(config_with(["small_objects"], {"small_objects": {"max_area": 64}}), registry)
        == []
    )
    problems = validate_plugin_options(config_with(["small_object"], {}), registry)
    assert len(problems) == 1 and problems[0].startswith(
        "evaluation.box_metrics: Unknown box metric 'small_object'."
    )
    assert "Did you mean 'small_objects'?" in problems[0]
    problems = validate_plugin_options(
        config_with(["small_objects"], {"small_objects": {"max_aera": 1}}), registry
    )
    assert len(problems) == 1
    assert problems[0].startswith(
        "unknown key 'evaluation.box_metric_options.small_objects.max_aera'. Did you mean 'max_area'?"
    )


def test_a_row_without_a_hook_spec_is_refused() -> None:
    with pytest.raises(PluginError, match="'register_box_metrics', which has no hook spec"):
        build_plugin_manager(kinds=(*PLUGIN_KINDS, METRIC))


def test_the_config_layer_checks_options_and_builds_nothing() -> None:
    """Factories are called by ``yolox_sdk.plugins.building``; ``config/`` only structures options."""
    import ast
    from pathlib import Path

    from yolox_sdk.plugins.building import build_plugin
    from yolox_sdk.plugins.manager import get_registry

    config_dir = Path(__file__).resolve().parents[1] / "yolox_sdk" / "config"
    for module in config_dir.glob("*.py"):
        calls = [
            node
            for node in ast.walk(ast.parse(module.read_text()))
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "factory"
        ]
        assert calls == [], f"{module.name} calls a plugin factory"
    schedule = build_plugin(
        get_registry(), "scheduler", "yolox_cosine", {}, "training.scheduler_options", _settings()
    )
    assert 0.0 < schedule.lr_at(0) < 0.01  # in the warm-up


def _settings():
    from yolox_sdk.plugins.interfaces import ScheduleSettings

    return ScheduleSettings(0.01, 10, 5, 1.0, 0.0, 0.05, 1)
