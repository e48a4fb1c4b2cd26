"""The first-party W&B logger plugin in ``plugins/yolox-sdk-wandb``.

Registration, options and failure handling are tested without wandb. The real offline run needs wandb,
which the project venv does not carry: when it is not importable, it is installed with pip into a temporary
folder (15 s to a minute from the local wheel mirror, hence ``slow``) and used from a subprocess that appends
that folder to ``sys.path``, so wandb's dependencies never shadow the venv's. Where pip cannot get wandb, the
test skips.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from yolox_sdk.config.plugin_options import resolve_options
from yolox_sdk.errors import ConfigError, PluginError
from yolox_sdk.plugins import build_plugin_manager
from yolox_sdk.plugins.manager import PLUGINS_ENV
from yolox_sdk.plugins.registry import Registry

REPO_ROOT = Path(__file__).resolve().parents[1]
WANDB_PLUGIN = REPO_ROOT / "plugins" / "yolox-sdk-wandb"
OPTIONS_PATH = "monitoring.logger_options.wandb"


@pytest.fixture
def wandb_plugin(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The plugin package, imported from its source folder."""
    monkeypatch.syspath_prepend(str(WANDB_PLUGIN))
    import yolox_sdk_wandb

    return yolox_sdk_wandb


@pytest.fixture
def registry(wandb_plugin: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A registry holding only the wandb plugin, registered as an application would."""
    monkeypatch.setenv(PLUGINS_ENV, "")
    return build_plugin_manager(extra_plugins=[("wandb", wandb_plugin)])[1]


@pytest.fixture(scope="session")
def wandb_site(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """``None`` when wandb is importable here, else a temporary folder wandb was pip-installed into."""
    if importlib.util.find_spec("wandb") is not None:
        return None
    site = tmp_path_factory.mktemp("wandb_site")
    try:
        install = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(site), "wandb>=0.17"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("wandb is not installed and pip could not install it within 5 minutes")
    if install.returncode != 0:
        pytest.skip(f"wandb is not installed and pip could not install it: {install.stderr.strip()[-500:]}")
    return site


def test_registers_the_wandb_logger_with_its_options(registry: Registry, wandb_plugin: ModuleType) -> None:
    entry = registry.get("logger", "wandb")
    raw = {"project": "bccd", "name": "nano-416", "mode": "offline", "tags": ["bccd", "nano"]}

    options = resolve_options(registry, "logger", "wandb", raw, OPTIONS_PATH)

    assert entry.options is wandb_plugin.WandbOptions
    assert entry.origin.plugin == "wandb"
    assert options == wandb_plugin.WandbOptions("bccd", "nano-416", None, "offline", ["bccd", "nano"])
    assert resolve_options(registry, "logger", "wandb", {}, OPTIONS_PATH) == wandb_plugin.WandbOptions()
    assert wandb_plugin.WandbOptions().project == "yolox-sdk"


def test_option_errors_name_the_yaml_path(registry: Registry) -> None:
    with pytest.raises(ConfigError) as error:
        resolve_options(registry, "logger", "wandb", {"projct": "bccd"}, OPTIONS_PATH)
    assert f"unknown key '{OPTIONS_PATH}.projct'. Did you mean 'project'?" in str(error.value)

    with pytest.raises(ConfigError) as error:
        resolve_options(registry, "logger", "wandb", {"mode": "ofline"}, OPTIONS_PATH)
    assert f"{OPTIONS_PATH}.mode: expected one of online, offline, disabled, got 'ofline'." in str(
        error.value
    )
    assert "Did you mean 'offline'?" in str(error.value)


def test_missing_wandb_package_says_how_to_install_it(
    wandb_plugin: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail even where it is installed

    with pytest.raises(PluginError, match=r"pip install 'wandb>=0.17'"):
        wandb_plugin.create_wandb_logger(wandb_plugin.WandbOptions(mode="offline"), tmp_path)


class _UnreachableRun:
    """Stands in for a wandb run whose backend went away mid-training."""

    def __init__(self) -> None:
        self.finished = False
        self.config = self

    def update(self, values: dict, allow_val_change: bool = False) -> None:
        raise ConnectionError("W&B backend unreachable")

    def log(self, values: dict, step: int) -> None:
        raise ConnectionError("W&B backend unreachable")

    def finish(self) -> None:
        self.finished = True


def test_logging_failures_warn_and_never_raise(
    wandb_plugin: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    from yolox_sdk_wandb.logger import MAX_FAILURE_WARNINGS, WandbLogger

    run = _UnreachableRun()
    logger = WandbLogger(run)

    with caplog.at_level(logging.WARNING, logger="yolox_sdk_wandb.logger"):
        logger.log_hyperparameters({"training": {"lr": 0.01}})
        for step in range(10):
            logger.log_metrics({"loss": 1.0}, step)
        logger.close()
        logger.close()

    messages = [record.getMessage() for record in caplog.records]
    assert logger.failures == 11
    assert run.finished
    assert messages[0] == (
        "W&B could not log hyperparameters (ConnectionError: W&B backend unreachable); training continues."
    )
    assert len([m for m in messages if m.startswith("W&B could not")]) == MAX_FAILURE_WARNINGS
    assert messages[-1] == "11 W&B logging calls failed during this run."


@pytest.mark.slow  # installing wandb takes 15 s on an idle machine, close to a minute on a busy one
def test_offline_run_logs_hyperparameters_and_metrics(tmp_path: Path, wandb_site: Path | None) -> None:
    script = """
import json, sys
if sys.argv[3]:
    sys.path.append(sys.argv[3])  # after site-packages: wandb's dependencies never replace the venv's
sys.path.insert(0, sys.argv[1])
import yolox_sdk_wandb
from yolox_sdk.plugins import build_plugin_manager
from yolox_sdk.plugins.building import build_plugin

_, registry = build_plugin_manager(extra_plugins=[("wandb", yolox_sdk_wandb)])
raw = {"project": "yolox-sdk-tests", "name": "offline-check", "mode": "offline", "tags": ["bccd"]}
logger = build_plugin(registry, "logger", "wandb", raw, "monitoring.logger_options.wandb", sys.argv[2])
logger.log_hyperparameters({"zz_hyper_lr": 0.0123, "model": {"zz_variant": "yolox-nano"}})
logger.log_metrics({"qq_train_loss": 2.5}, 0)
logger.log_metrics({"qq_train_loss": 1.25, "qq_val_ap": 0.375}, 1)
run = logger.run
print(json.dumps({"name": run.name, "project": run.project, "tags": list(run.tags), "offline": run.offline}))
run.finish()
logger.log_metrics({"qq_train_loss": 1.0}, 2)  # wandb raises on a finished run: must only warn
logger.close()
"""
    run_dir = tmp_path / "run"
    environment = {
        **os.environ,
        PLUGINS_ENV: "",
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"),  # keep ~/.config and ~/.cache untouched
        "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb_data"),
    }
    environment.pop("WANDB_MODE", None)
    environment.pop("WANDB_API_KEY", None)
    site = str(wandb_site) if wandb_site else ""

    result = subprocess.run(
        [sys.executable, "-c", script, str(WANDB_PLUGIN), str(run_dir), site],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info == {"name": "offline-check", "project": "yolox-sdk-tests", "tags": ["bccd"], "offline": True}
    assert "W&B could not log metrics (UsageError" in result.stderr
    # The run's record is wandb's binary log; the values are stored as JSON text inside it.
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    content = run_file.read_bytes()
    for text in (
        "zz_hyper_lr",
        "0.0123",
        "zz_variant",
        "yolox-nano",
        "qq_train_loss",
        "2.5",
        "1.25",
        "qq_val_ap",
    ):
        assert text.encode() in content, text


# --- monitoring.wandb: the plan's section, checked by the plugin's own options class ----------------------


@pytest.fixture
def full_registry(wandb_plugin: ModuleType) -> Registry:
    """The built-ins plus the wandb plugin: what a config load sees once the plugin is installed."""
    return build_plugin_manager(extra_plugins=[("wandb", wandb_plugin)])[1]


def test_plan_section_switches_the_logger_on_with_the_plugins_options(
    full_registry: Registry, wandb_plugin: ModuleType
) -> None:
    from yolox_sdk.config import load_config
    from yolox_sdk.config.plugin_options import configured_loggers

    config = load_config(
        None, ["monitoring.wandb={enabled: true, project: bccd, name: nano}"], registry=full_registry
    )

    assert configured_loggers(config, full_registry) == [
        ("csv", {}, "monitoring.logger_options.csv"),
        ("tensorboard", {}, "monitoring.tensorboard"),
        ("wandb", {"project": "bccd", "name": "nano"}, "monitoring.wandb"),
    ]
    options = resolve_options(
        full_registry, "logger", "wandb", {"project": "bccd", "name": "nano"}, "monitoring.wandb"
    )
    assert options == wandb_plugin.WandbOptions(project="bccd", name="nano")
    off_by_default = configured_loggers(load_config(None, registry=full_registry), full_registry)
    assert [name for name, _, _ in off_by_default] == ["csv", "tensorboard"]


def test_plan_section_is_validated_by_the_plugin_even_when_disabled(full_registry: Registry) -> None:
    from yolox_sdk.config import load_config

    with pytest.raises(
        ConfigError, match=r"unknown key 'monitoring\.wandb\.projct'. Did you mean 'project'\?"
    ):
        load_config(None, ["monitoring.wandb.projct=bccd"], registry=full_registry)
    with pytest.raises(
        ConfigError, match=r"monitoring\.wandb\.mode: expected one of online, offline, disabled"
    ):
        load_config(None, ["monitoring.wandb={enabled: true, mode: ofline}"], registry=full_registry)
    with pytest.raises(ConfigError, match=r"monitoring\.wandb\.enabled: expected true or false"):
        load_config(None, ["monitoring.wandb.enabled=yes please"], registry=full_registry)


def test_the_core_schema_holds_no_wandb_options() -> None:
    from yolox_sdk.config import schema

    assert not hasattr(schema, "WandbConfig")
    assert schema.MonitoringConfig().wandb == {"enabled": False, "project": "yolox-sdk", "name": None}
