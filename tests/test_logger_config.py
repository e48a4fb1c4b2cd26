"""Which loggers a run opens comes from the loggers' own registrations, not from names in the core."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from yolox_sdk.config import load_config
from yolox_sdk.config.plugin_options import configured_loggers
from yolox_sdk.errors import ConfigError
from yolox_sdk.plugins import build_plugin_manager, get_registry, hookimpl

PACKAGE = Path(__file__).resolve().parents[1] / "yolox_sdk"


@attrs.frozen
class JsonLinesOptions:
    filename: str = "metrics.jsonl"


class AlwaysOnPlugin:
    @hookimpl
    def register_loggers(self, register) -> None:
        register("jsonl", lambda options, run_dir: None, options=JsonLinesOptions, always_on=True)


class SwitchedPlugin:
    @hookimpl
    def register_loggers(self, register) -> None:
        register("progress", lambda options, run_dir: None, enabled_by="monitoring.progress_bar")


class MissingSwitchPlugin:
    @hookimpl
    def register_loggers(self, register) -> None:
        register("nowhere", lambda options, run_dir: None, enabled_by="monitoring.no_such_key")


def names(config, registry) -> list[str]:
    return [name for name, _, _ in configured_loggers(config, registry)]


def test_csv_always_tensorboard_by_its_switch_others_when_listed() -> None:
    registry = get_registry()
    assert names(load_config(None), registry) == ["csv", "tensorboard"]
    assert names(load_config(None, ["monitoring.tensorboard=false"]), registry) == ["csv"]
    listed = load_config(None, ["monitoring.tensorboard=false", "monitoring.loggers=[tensorboard]"])
    assert configured_loggers(listed, registry) == [
        ("csv", {}, "monitoring.logger_options.csv"),
        ("tensorboard", {}, "monitoring.logger_options.tensorboard"),
    ]


def test_a_plugin_logger_declares_when_it_is_on() -> None:
    _, registry = build_plugin_manager(extra_plugins=[("a", AlwaysOnPlugin()), ("s", SwitchedPlugin())])
    config = load_config(None, registry=registry)
    assert names(config, registry) == ["csv", "jsonl", "progress", "tensorboard"]
    config = load_config(None, ["monitoring.progress_bar=false"], registry=registry)
    assert names(config, registry) == ["csv", "jsonl", "tensorboard"]


def test_a_switch_the_config_lacks_is_a_config_error() -> None:
    _, registry = build_plugin_manager(extra_plugins=[("m", MissingSwitchPlugin())])
    with pytest.raises(ConfigError, match="monitoring.no_such_key: a plugin is switched on by this key"):
        load_config(None, registry=registry)


@pytest.mark.parametrize(
    "module, names",
    [
        ("engine/setup.py", "csv|tensorboard|wandb"),
        ("config/plugin_options.py", "csv|tensorboard|wandb"),
        # monitoring.wandb is the plan's section; the schema keeps its key and install hint
        ("config/schema.py", "csv|tensorboard"),
    ],
)
def test_core_code_names_no_logger_plugin(module: str, names: str) -> None:
    code = re.sub(r'"""(?:.|\n)*?"""', "", (PACKAGE / module).read_text())  # docstrings may give examples
    assert not re.search(rf"[\"']({names})[\"']", code)
