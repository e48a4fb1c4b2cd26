"""TensorBoard logger: scalars for losses, learning rate and metrics; hyperparameters as text and hparams."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.plugins.hookspecs import hookimpl

log = logging.getLogger(__name__)


@attrs.frozen
class TensorboardOptions:
    """Options of the ``tensorboard`` logger."""

    subdir: str = "tensorboard"


class TensorboardLogger:
    """Writes event files under ``<run_dir>/<subdir>``."""

    def __init__(self, options: TensorboardOptions, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / options.subdir))

    def log_hyperparameters(self, params: Mapping[str, Any]) -> None:
        """Record every hyperparameter as one text table (TensorBoard's hparams tab needs final metrics)."""
        rows = "\n".join(f"| {key} | {value} |" for key, value in sorted(params.items()))
        self.writer.add_text("hyperparameters", "| key | value |\n|---|---|\n" + rows)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """One scalar per metric at ``step``."""
        for key, value in metrics.items():
            try:
                self.writer.add_scalar(key, float(value), step)
            except (TypeError, ValueError) as error:
                log.debug("TensorBoard: skipping %s=%r (%s)", key, value, error)

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


@hookimpl
def register_loggers(register) -> None:
    register(
        "tensorboard", TensorboardLogger, options=TensorboardOptions, description="TensorBoard event files"
    )
