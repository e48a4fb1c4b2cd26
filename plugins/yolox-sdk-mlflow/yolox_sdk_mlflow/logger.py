"""The MLflow logger: the run's config as params, its metrics at their steps, and at the end its plots and
best checkpoint as artifacts.

Starting is allowed to fail (a tracking server that is down is better found before training than after
hours of it). Once the run has started, the first failing call (server gone, disk full) logs one warning
and turns the logger off for the rest of the run: training never stops because tracking failed, and the
log is not flooded with one warning per step.

Without ``tracking_uri`` the run goes to a local file store at ``<run dir>/mlruns``: no server and no
database. MLflow 3 keeps that store in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``; this logger
sets that variable (unless it is already set) only when it writes to a file store. A database store
(``sqlite:///...``) needs SQLAlchemy and Alembic, which mlflow-skinny does not carry.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from yolox_sdk.errors import PluginError, YoloxSdkError

if TYPE_CHECKING:
    from yolox_sdk_mlflow import MlflowOptions

log = logging.getLogger(__name__)

# The run id, so that a resumed yolox-sdk run continues its MLflow run instead of starting another.
RUN_RECORD = "mlflow_run.json"
BEST_CHECKPOINT = "best.pt"
# MLflow's limits per log_batch call and on a param value's length (mlflow >= 2.9).
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_LENGTH = 6000
# Characters MLflow accepts in param and metric names; others become "_".
_NAME_CHARACTERS = re.compile(r"[^\w\-. /]")


def default_tracking_uri(run_dir: Path) -> str:
    """The local file store of a run: ``file:`` URI of ``<run dir>/mlruns``."""
    return (Path(run_dir).resolve() / "mlruns").as_uri()


def is_file_store(uri: str) -> bool:
    """Whether ``uri`` names a local folder (a ``file:`` URI or a plain path) rather than a server or database."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or len(scheme) == 1  # one letter: a Windows drive, C:\...


def start_mlflow_logger(options: MlflowOptions, run_dir: Path) -> MlflowLogger:
    """Start the MLflow run ``options`` describe (or continue the one ``run_dir`` recorded, on resume)."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as error:
        raise PluginError(
            "The 'mlflow' logger needs the mlflow-skinny package, which is not installed: "
            "pip install 'mlflow-skinny>=2.9' (or pip install ./plugins/yolox-sdk-mlflow with its dependencies)."
        ) from error
    run_dir.mkdir(parents=True, exist_ok=True)
    uri = options.tracking_uri or default_tracking_uri(run_dir)
    if is_file_store(uri):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        client = MlflowClient(tracking_uri=uri)
        run_id = _continued_run(client, run_dir, uri) or _new_run(client, options, run_dir)
    except Exception as error:  # MLflow raises MlflowException, requests' errors, OSError...
        raise YoloxSdkError(
            f"Could not start the MLflow run at {uri} ({type(error).__name__}: {_first_line(error)}). "
            "Check monitoring.logger_options.mlflow.tracking_uri (a tracking server must be running and "
            "reachable), or leave it out to log to a local file store in the run directory."
        ) from error
    _write_run_record(run_dir, uri, run_id)
    log.info("MLflow: logging to run %s at %s", run_id, uri)
    return MlflowLogger(client, run_id, run_dir, options.log_checkpoints)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def _new_run(client: Any, options: MlflowOptions, run_dir: Path) -> str:
    experiment = client.get_experiment_by_name(options.experiment)
    if experiment is None:
        experiment_id = client.create_experiment(options.experiment)
    else:
        experiment_id = experiment.experiment_id
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment_id)
    tags = {str(key): str(value) for key, value in options.tags.items()}
    run = client.create_run(experiment_id, run_name=options.run_name or run_dir.name, tags=tags)
    return run.info.run_id


def _continued_run(client: Any, run_dir: Path, uri: str) -> str | None:
    """The run id ``run_dir`` recorded for this tracking URI, when that run still exists; else ``None``."""
    try:
        record = json.loads((run_dir / RUN_RECORD).read_text(encoding="utf-8"))
        run_id = record["run_id"] if record.get("tracking_uri") == uri else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(run_id, str):
        return None
    try:
        client.get_run(run_id)
    except Exception:  # noqa: BLE001 - deleted or unknown run: start a new one
        return None
    client.update_run(run_id, status="RUNNING")
    return run_id


def _write_run_record(run_dir: Path, uri: str, run_id: str) -> None:
    try:
        (run_dir / RUN_RECORD).write_text(json.dumps({"tracking_uri": uri, "run_id": run_id}) + "\n")
    except OSError as error:  # only resuming into the same MLflow run depends on it
        log.warning(
            "MLflow: could not write %s (%s); a resumed run will start a new MLflow run.", RUN_RECORD, error
        )


class MlflowLogger:
    """Sends one yolox-sdk run to one MLflow run; see the module docstring for failure handling."""

    def __init__(
        self,
        client: Any,
        run_id: str,
        run_dir: Path,
        log_checkpoints: bool = True,
        entities: tuple[type, type] | None = None,
    ) -> None:
        """``client`` is an ``MlflowClient`` and ``entities`` its ``(Param, Metric)`` classes (imported
        from ``mlflow.entities`` when not given)."""
        if entities is None:
            from mlflow.entities import Metric, Param

            entities = (Param, Metric)
        self.client = client
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.log_checkpoints = log_checkpoints
        self.param_type, self.metric_type = entities
        self.disabled = False
        self.closed = False

    def log_hyperparameters(self, params: Mapping[str, Any]) -> None:
        """Log ``params`` (the trainer's flattened config; nested mappings are flattened with dots) as
        MLflow params. A continued run keeps the params it has: MLflow params cannot change."""
        self._call("log params", lambda: self._log_params(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log the numeric values of ``metrics`` at ``step`` (global iteration for ``iter/...``, epochs
        completed for epoch rows, as ``Logger`` documents); other values are left out."""
        self._call("log metrics", lambda: self._log_metrics(metrics, step))

    def close(self) -> None:
        """Upload plots and the best checkpoint, then mark the run finished; safe to call twice."""
        if self.closed:
            return
        self._call("upload artifacts", self._log_artifacts)
        if not self.disabled:
            self._call("finish the run", lambda: self.client.set_terminated(self.run_id, "FINISHED"))
        else:
            try:  # the store failed before: one quiet try, so the run does not stay "running" forever
                self.client.set_terminated(self.run_id, "FINISHED")
            except Exception as error:  # noqa: BLE001 - already warned about this store
                log.debug("MLflow could not finish run %s either: %s", self.run_id, error)
        self.closed = True

    # --- the calls --------------------------------------------------------------------------------------

    def _log_params(self, params: Mapping[str, Any]) -> None:
        existing = set(self.client.get_run(self.run_id).data.params)
        values = {_name(key): _param_text(value) for key, value in _flattened(params)}
        entries = [self.param_type(key, value) for key, value in values.items() if key not in existing]
        for start in range(0, len(entries), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=entries[start : start + MAX_PARAMS_PER_BATCH])

    def _log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        timestamp = int(time.time() * 1000)
        entries = [
            self.metric_type(_name(key), float(value), timestamp, int(step))
            for key, value in metrics.items()
            if isinstance(value, numbers.Real) and not isinstance(value, bool)
        ]
        for start in range(0, len(entries), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=entries[start : start + MAX_METRICS_PER_BATCH])

    def _log_artifacts(self) -> None:
        for path, artifact_dir in artifact_files(self.run_dir, self.log_checkpoints):
            self.client.log_artifact(self.run_id, str(path), artifact_dir)

    def _call(self, action: str, call: Callable[[], object]) -> None:
        if self.disabled or self.closed:
            log.debug("MLflow logger is %s; not trying to %s.", "off" if self.disabled else "closed", action)
            return
        try:
            call()
        except Exception as error:  # noqa: BLE001 - a tracking failure must never stop training
            self.disabled = True
            log.warning(
                "MLflow could not %s (%s: %s); the mlflow logger is off for the rest of this run and training "
                "continues. What it logged before stays in MLflow run %s; metrics.csv in %s has every value.",
                action,
                type(error).__name__,
                _first_line(error),
                self.run_id,
                self.run_dir,
            )


def artifact_files(run_dir: Path, log_checkpoints: bool) -> list[tuple[Path, str]]:
    """``(file, artifact folder)`` of what ``close`` uploads: PNGs under ``plots/`` and under the
    evaluation folders (``eval*``), keeping their sub-folders, and ``best.pt`` under ``checkpoints``."""
    files = []
    for folder in sorted(run_dir.glob("plots")) + sorted(run_dir.glob("eval*")):
        if folder.is_dir():
            for image in sorted(folder.rglob("*.png")):
                files.append(
                    (image, str(PurePosixPath(folder.name, *image.parent.relative_to(folder).parts)))
                )
    best = run_dir / BEST_CHECKPOINT
    if log_checkpoints and best.is_file():
        files.append((best, "checkpoints"))
    return files


def _flattened(params: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flattened(value, f"{name}.")
        else:
            yield name, value


def _name(key: Any) -> str:
    return _NAME_CHARACTERS.sub("_", str(key)) or "_"


def _param_text(value: Any) -> str:
    """Text of a param: strings as they are, anything else as JSON (``null``, ``[320, 416]``, ``true``,
    ``{}``), cut to MLflow's length limit."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, float) and not math.isfinite(value):
        text = str(value)
    else:
        text = json.dumps(value, default=str)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."
