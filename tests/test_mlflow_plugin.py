"""The first-party MLflow logger plugin in ``plugins/yolox-sdk-mlflow``.

Registration, options and failure handling are tested without mlflow. The real run needs mlflow-skinny,
which the project venv does not carry: as for the W&B plugin, when it is not importable it is installed with
pip into a temporary folder (half a minute to a minute from the local wheel mirror, hence ``slow``) and used
from a subprocess that appends that folder to ``sys.path``, so its dependencies never shadow the venv's.
That subprocess trains yolox-nano for two epochs on a few BCCD images with the logger on, then reads the run
back with MLflow's own client; the test compares what it read with the run's ``metrics.csv`` and
``hparams.csv``, written by the SDK's csv logger. Where pip cannot get mlflow-skinny, the test skips.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path
from types import ModuleType

import pytest

from yolox_sdk.config.plugin_options import resolve_options
from yolox_sdk.errors import ConfigError, PluginError
from yolox_sdk.plugins import build_plugin_manager
from yolox_sdk.plugins.manager import PLUGINS_ENV
from yolox_sdk.plugins.registry import Registry
from yolox_sdk.testing.loggers import check_logger

REPO_ROOT = Path(__file__).resolve().parents[1]
MLFLOW_PLUGIN = REPO_ROOT / "plugins" / "yolox-sdk-mlflow"
OPTIONS_PATH = "monitoring.logger_options.mlflow"


@pytest.fixture
def mlflow_plugin(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The plugin package, imported from its source folder."""
    monkeypatch.syspath_prepend(str(MLFLOW_PLUGIN))
    import yolox_sdk_mlflow

    return yolox_sdk_mlflow


@pytest.fixture
def registry(mlflow_plugin: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A registry holding only the mlflow plugin, registered as an application would."""
    monkeypatch.setenv(PLUGINS_ENV, "")
    return build_plugin_manager(extra_plugins=[("mlflow", mlflow_plugin)])[1]


@pytest.fixture(scope="session")
def mlflow_site(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """``None`` when mlflow is importable here, else a temporary folder mlflow-skinny was pip-installed into."""
    if importlib.util.find_spec("mlflow") is not None:
        return None
    site = tmp_path_factory.mktemp("mlflow_site")
    try:
        install = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(site), "mlflow-skinny>=2.9"],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("mlflow-skinny is not installed and pip could not install it within 10 minutes")
    if install.returncode != 0:
        pytest.skip(
            f"mlflow-skinny is not installed and pip could not install it: {install.stderr.strip()[-500:]}"
        )
    return site


def test_registers_the_mlflow_logger_with_its_options(registry: Registry, mlflow_plugin: ModuleType) -> None:
    entry = registry.get("logger", "mlflow")
    raw = {
        "experiment": "bccd",
        "run_name": "nano-416",
        "tracking_uri": "http://mlflow.internal:5000",
        "tags": {"dataset": "bccd"},
        "log_checkpoints": False,
    }

    options = resolve_options(registry, "logger", "mlflow", raw, OPTIONS_PATH)

    assert entry.options is mlflow_plugin.MlflowOptions and entry.origin.plugin == "mlflow"
    assert options == mlflow_plugin.MlflowOptions(
        "bccd", "nano-416", "http://mlflow.internal:5000", {"dataset": "bccd"}, False
    )
    defaults = resolve_options(registry, "logger", "mlflow", {}, OPTIONS_PATH)
    assert defaults == mlflow_plugin.MlflowOptions()
    assert (defaults.experiment, defaults.tracking_uri, defaults.log_checkpoints) == ("yolox-sdk", None, True)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"experimnt": "bccd"}, f"unknown key '{OPTIONS_PATH}.experimnt'. Did you mean 'experiment'?"),
        ({"log_checkpoints": "yes"}, f"{OPTIONS_PATH}.log_checkpoints: expected bool, got str 'yes'"),
        ({"tags": ["bccd", "nano"]}, f"{OPTIONS_PATH}.tags: expected a mapping, got list ['bccd', 'nano']"),
        ({"tags": {" ": "bccd"}}, f"{OPTIONS_PATH}.tags: expected a mapping of tag names to values"),
        ({"experiment": " "}, f"{OPTIONS_PATH}.experiment: expected a non-empty string, got ' '."),
        ({"tracking_uri": ""}, f"{OPTIONS_PATH}.tracking_uri: expected a non-empty string or null, got ''."),
    ],
)
def test_option_errors_name_the_yaml_path(registry: Registry, raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        resolve_options(registry, "logger", "mlflow", raw, OPTIONS_PATH)
    assert message in str(error.value)


def test_a_config_turns_the_logger_on_by_listing_it(mlflow_plugin: ModuleType) -> None:
    from yolox_sdk.config import load_config
    from yolox_sdk.config.plugin_options import configured_loggers

    full_registry = build_plugin_manager(extra_plugins=[("mlflow", mlflow_plugin)])[1]
    config = load_config(
        None,
        ["monitoring.loggers=[mlflow]", "monitoring.logger_options={mlflow: {experiment: bccd}}"],
        registry=full_registry,
    )

    assert ("mlflow", {"experiment": "bccd"}, f"{OPTIONS_PATH}") in configured_loggers(config, full_registry)
    with pytest.raises(ConfigError, match=r"monitoring\.logger_options\.mlflow\.experimnt"):
        load_config(
            None,
            ["monitoring.loggers=[mlflow]", "monitoring.logger_options={mlflow: {experimnt: bccd}}"],
            registry=full_registry,
        )


def test_missing_mlflow_package_says_how_to_install_it(
    mlflow_plugin: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # makes `import mlflow` fail even where it is installed

    with pytest.raises(PluginError, match=r"pip install 'mlflow-skinny>=2\.9'"):
        mlflow_plugin.create_mlflow_logger(mlflow_plugin.MlflowOptions(), tmp_path)


class _UnreachableTracking:
    """Stands in for an MlflowClient whose tracking server went away mid-training."""

    def __init__(self) -> None:
        self.calls = 0

    def __getattr__(self, name: str):
        def fail(*args: object, **kwargs: object) -> None:
            self.calls += 1
            raise ConnectionError("tracking server unreachable")

        return fail


def test_a_failing_store_warns_once_and_turns_the_logger_off(
    mlflow_plugin: ModuleType, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from yolox_sdk_mlflow.logger import MlflowLogger

    client = _UnreachableTracking()
    entities = (namedtuple("Param", "key value"), namedtuple("Metric", "key value timestamp step"))
    logger = MlflowLogger(client, "run-1", tmp_path, entities=entities)

    with caplog.at_level(logging.WARNING, logger="yolox_sdk_mlflow.logger"):
        check_logger(logger)  # raises AssertionError if any call raised
        logger.log_metrics({"val/mAP": 0.5}, 3)
        logger.close()

    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert logger.disabled and logger.closed
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "MLflow could not log params (ConnectionError: tracking server unreachable); the mlflow logger is off"
    )
    assert "training continues" in warnings[0] and str(tmp_path) in warnings[0]
    assert client.calls == 2  # the params call, then one quiet try to mark the run finished


def test_artifacts_are_the_plots_the_eval_images_and_the_best_checkpoint(
    mlflow_plugin: ModuleType, tmp_path: Path
) -> None:
    from yolox_sdk_mlflow.logger import artifact_files

    for name in ("plots/loss.png", "plots/lr/schedule.png", "eval_val/pr_curve.png", "eval_val/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    for name in ("best.pt", "last.pt", "top.png"):
        (tmp_path / name).write_bytes(b"x")

    found = [(str(path.relative_to(tmp_path)), folder) for path, folder in artifact_files(tmp_path, True)]

    assert found == [
        ("plots/loss.png", "plots"),
        ("plots/lr/schedule.png", "plots/lr"),
        ("eval_val/pr_curve.png", "eval_val"),
        ("best.pt", "checkpoints"),
    ]
    assert ("best.pt", "checkpoints") not in [
        (str(path.relative_to(tmp_path)), folder) for path, folder in artifact_files(tmp_path, False)
    ]


# --- a real training run, read back with MLflow's client --------------------------------------------------

_RUN_SCRIPT = r"""
import json, sys
from pathlib import Path
plugin, bccd, output_dir, site = sys.argv[1:5]
if site:
    sys.path.append(site)  # after site-packages: mlflow's dependencies never replace the venv's
sys.path.insert(0, plugin)
import cv2, numpy as np
import yolox_sdk_mlflow
from mlflow.tracking import MlflowClient
from yolox_sdk.config.loader import load_config
from yolox_sdk.engine.trainer import train
from yolox_sdk.errors import YoloxSdkError
from yolox_sdk.plugins import build_plugin_manager, hookimpl
from yolox_sdk.plugins.building import build_plugin
from yolox_sdk.plugins.interfaces import Callback
from yolox_sdk.testing.loggers import check_logger


class PlotAtTrainEnd(Callback):
    # Stands for a plotting callback: writes a real PNG before the loggers close.
    def on_train_end(self, view):
        (view.run_dir / "plots").mkdir(exist_ok=True)
        cv2.imwrite(str(view.run_dir / "plots" / "loss.png"), np.full((8, 8, 3), 127, np.uint8))


class Plotting:
    @hookimpl
    def register_callbacks(self, register):
        register("plot_at_train_end", lambda options: PlotAtTrainEnd())


_, registry = build_plugin_manager(extra_plugins=[("mlflow", yolox_sdk_mlflow), ("plotting", Plotting())])
overrides = [
    "model.name=yolox-nano", "model.input_size=[160,160]",
    f"data.train_path={bccd}", "data.train_split=train", f"data.val_path={bccd}", "data.val_split=val",
    "data.format=voc", "data.batch_size=4", "data.num_workers=0",
    "training.epochs=2", "training.warmup_epochs=0", "training.no_aug_epochs=1", "training.multiscale_range=0",
    "training.callbacks=[plot_at_train_end]", "evaluation.eval_interval=1", "export.formats=[]",
    "device.type=cpu", "monitoring.progress_bar=false", "monitoring.tensorboard=false", "monitoring.log_interval=1",
    "monitoring.loggers=[mlflow]",
    "monitoring.logger_options={mlflow: {experiment: bccd-tests, run_name: tiny, tags: {dataset: bccd}}}",
    f"monitoring.output_dir={output_dir}",
]
run_dir = train(load_config(None, overrides, registry), registry=registry).run_dir

uri = yolox_sdk_mlflow.logger.default_tracking_uri(run_dir)
client = MlflowClient(tracking_uri=uri)
experiment = client.get_experiment_by_name("bccd-tests")
(run,) = client.search_runs([experiment.experiment_id])
histories = {key: [[m.step, m.value] for m in client.get_metric_history(run.info.run_id, key)] for key in run.data.metrics}
artifacts = {}
for folder in ("plots", "checkpoints"):
    artifacts.update({a.path: a.file_size for a in client.list_artifacts(run.info.run_id, folder)})

# Everything a run can send (NaN, infinity, None, lists, re-sent rows) is taken, not dropped by a failure.
conformance = build_plugin(registry, "logger", "mlflow", {}, "monitoring.logger_options.mlflow", Path(output_dir) / "conformance")
check_logger(conformance)

# A store that breaks mid-run (its folder replaced by a file): one warning, the logger turns off, no raise.
broken_dir = Path(output_dir) / "broken"
logger = build_plugin(registry, "logger", "mlflow", {}, "monitoring.logger_options.mlflow", broken_dir)
logger.log_metrics({"val/mAP": 0.25}, 1)
import shutil
shutil.rmtree(broken_dir / "mlruns")
(broken_dir / "mlruns").write_text("not a folder")
logger.log_metrics({"val/mAP": 0.5}, 2)
logger.log_metrics({"val/mAP": 0.75}, 3)
logger.close()
try:
    build_plugin(registry, "logger", "mlflow", {"tracking_uri": "http://127.0.0.1:9"}, "monitoring.logger_options.mlflow", broken_dir / "server")
    unreachable = None
except YoloxSdkError as error:
    unreachable = str(error)

print(json.dumps({
    "run_dir": str(run_dir), "status": run.info.status, "run_name": run.info.run_name,
    "tags": run.data.tags, "params": run.data.params, "histories": histories, "artifacts": artifacts,
    "broken_disabled": logger.disabled, "unreachable": unreachable, "conformance_disabled": conformance.disabled,
}))
"""


def _bccd_subset(bccd_dir: Path, root: Path) -> Path:
    """A VOC folder of 8 train and 4 val BCCD images (the image folders linked, the lists written here)."""
    root.mkdir()
    for folder in ("Annotations", "JPEGImages"):
        (root / folder).symlink_to(bccd_dir / folder, target_is_directory=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for split, count in (("train", 8), ("val", 4)):
        ids = (bccd_dir / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:count]
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def _last_per_step(history: list[list[float]]) -> dict[int, float]:
    """A later value at the same step supersedes the earlier one (``Logger``: a row can be re-sent)."""
    return {int(step): value for step, value in history}


@pytest.mark.slow  # installs mlflow-skinny when missing, then trains two tiny epochs
def test_a_training_run_is_logged_to_a_local_mlflow_store(
    tmp_path: Path, bccd_dir: Path, mlflow_site: Path | None
) -> None:
    data = _bccd_subset(bccd_dir, tmp_path / "bccd")
    environment = {
        **os.environ,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",  # the unreachable-server check fails at once
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }
    for name in (
        PLUGINS_ENV,
        "MLFLOW_TRACKING_URI",
        "MLFLOW_ALLOW_FILE_STORE",
    ):  # built-ins load; no outside store
        environment.pop(name, None)
    arguments = [str(MLFLOW_PLUGIN), str(data), str(tmp_path / "runs"), str(mlflow_site or "")]

    result = subprocess.run(
        [sys.executable, "-c", _RUN_SCRIPT, *arguments],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=900,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    run_dir = Path(found["run_dir"])
    assert (run_dir / "mlruns").is_dir()
    assert (found["status"], found["run_name"], found["tags"]["dataset"]) == ("FINISHED", "tiny", "bccd")

    with (run_dir / "hparams.csv").open(newline="") as handle:
        hparams = {row["key"]: row["value"] for row in csv.DictReader(handle)}
    assert set(found["params"]) == set(hparams)
    for key in ("training.epochs", "data.batch_size", "model.input_size", "training.lr"):
        assert json.loads(found["params"][key]) == json.loads(hparams[key]), key
    assert found["params"]["model.name"] == hparams["model.name"] == "yolox-nano"

    with (run_dir / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    for key in ("train/total_loss", "val/mAP", "val/mAP50", "lr"):
        expected = {int(row["epoch"]): float(row[key]) for row in rows}
        assert _last_per_step(found["histories"][key]) == pytest.approx(expected, rel=1e-9), key
    iteration_steps = [step for step, _ in found["histories"]["iter/total_loss"]]
    assert iteration_steps == [1, 2, 3, 4], found["histories"][
        "iter/total_loss"
    ]  # 2 batches per epoch, 2 epochs

    assert found["artifacts"]["checkpoints/best.pt"] == (run_dir / "best.pt").stat().st_size
    assert found["artifacts"]["plots/loss.png"] == (run_dir / "plots" / "loss.png").stat().st_size

    assert found["conformance_disabled"] is False
    assert found["broken_disabled"] is True
    assert result.stderr.count("MLflow could not log metrics") == 1
    assert "Could not start the MLflow run at http://127.0.0.1:9" in found["unreachable"]
