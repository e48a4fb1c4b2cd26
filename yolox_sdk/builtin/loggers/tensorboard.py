"""TensorBoard logger: scalars for losses, learning rate and metrics; hyperparameters as text and hparams.

Hyperparameters go to the HParams tab of the same event file (not the sub-run ``add_hparams`` creates),
declaring the run's key metrics so TensorBoard reads their values from the scalars logged as training goes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.plugins.hookspecs import Register, hookimpl

log = logging.getLogger(__name__)

# Metrics the HParams tab shows next to the hyperparameters (the last value of each scalar series).
HPARAMS_METRICS = ("val/mAP", "val/mAP50", "train/total_loss")


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
        """Record every hyperparameter as one text table and in the HParams tab."""
        from torch.utils.tensorboard.summary import hparams

        rows = "\n".join(f"| {key} | {value} |" for key, value in sorted(params.items()))
        self.writer.add_text("hyperparameters", "| key | value |\n|---|---|\n" + rows)
        values = {key: _hparam_value(value) for key, value in params.items()}
        for summary in hparams(values, dict.fromkeys(HPARAMS_METRICS, 0.0)):
            self.writer.file_writer.add_summary(summary)

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


def _hparam_value(value: Any) -> float | int | str:
    """HParams takes numbers and strings only: lists, mappings, ``None`` and booleans become JSON text, as
    in ``hparams.csv`` (a boolean would otherwise show as 0/1)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return value if isinstance(value, str) else json.dumps(value, default=str)


@hookimpl
def register_loggers(register: Register) -> None:
    """Register the ``tensorboard`` logger, switched on by ``monitoring.tensorboard`` (the default)."""
    register(
        "tensorboard",
        TensorboardLogger,
        options=TensorboardOptions,
        description="TensorBoard event files (monitoring.tensorboard)",
        enabled_by="monitoring.tensorboard",
    )
