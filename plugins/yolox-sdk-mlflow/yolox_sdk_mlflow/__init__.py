"""yolox-sdk plugin: MLflow experiment tracking as a logger named ``mlflow``.

Imported whenever yolox-sdk builds its registry, so it declares only the options class and the hook;
``mlflow`` itself (seconds to import) is imported by the factory, when a run actually logs to MLflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from yolox_sdk.config.validators import FieldError, boolean
from yolox_sdk.plugins import hookimpl
from yolox_sdk.plugins.hookspecs import Register

if TYPE_CHECKING:
    from yolox_sdk_mlflow.logger import MlflowLogger

__version__ = "0.1.0"


def _text(optional: bool) -> Any:
    def check(instance: object, attribute: attrs.Attribute, value: Any) -> None:
        if optional and value is None:
            return
        if not isinstance(value, str) or not value.strip():
            raise FieldError(attribute.name, "a non-empty string" + (" or null" if optional else ""), value)

    return check


def _check_tags(instance: object, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, dict) or not all(isinstance(key, str) and key.strip() for key in value):
        raise FieldError(attribute.name, "a mapping of tag names to values, e.g. {dataset: bccd}", value)


@attrs.frozen
class MlflowOptions:
    """Options of the ``mlflow`` logger, under ``monitoring.logger_options.mlflow`` with
    ``monitoring.loggers: [..., mlflow]``.

    Attributes:
        experiment: the MLflow experiment the run is logged to (created when missing).
        run_name: the run's name in MLflow; the run directory's name when omitted.
        tracking_uri: where runs are stored: a tracking server (``http://host:5000``), a ``file:`` URI or
            any URI MLflow accepts. When omitted, a local file store at ``<run dir>/mlruns``: no server.
        tags: tags set on the run (values are stored as text).
        log_checkpoints: upload ``best.pt`` as an artifact when the run ends.
    """

    experiment: str = attrs.field(default="yolox-sdk", validator=_text(optional=False))
    run_name: str | None = attrs.field(default=None, validator=_text(optional=True))
    tracking_uri: str | None = attrs.field(default=None, validator=_text(optional=True))
    tags: dict[str, str] = attrs.field(factory=dict, validator=_check_tags)
    log_checkpoints: bool = attrs.field(default=True, validator=boolean())


def create_mlflow_logger(options: MlflowOptions | None, run_dir: Path) -> MlflowLogger:
    """Factory of the ``mlflow`` logger: starts (or, for a resumed run, continues) an MLflow run."""
    from yolox_sdk_mlflow.logger import start_mlflow_logger

    return start_mlflow_logger(options or MlflowOptions(), Path(run_dir))


@hookimpl
def register_loggers(register: Register) -> None:
    """Register the ``mlflow`` logger (turned on by listing it in ``monitoring.loggers``)."""
    register(
        "mlflow",
        create_mlflow_logger,
        options=MlflowOptions,
        description="MLflow: config as params, metrics per step, plots and best checkpoint as artifacts",
    )
