"""The W&B logger: a thin wrapper over a ``wandb`` run that never stops training because logging failed.

Starting the run is allowed to fail (better before training than after hours of it); once it runs, a
failing ``log_*`` call (network down, W&B service restarting) is logged as a warning and training goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolox_sdk.errors import PluginError, YoloxSdkError

if TYPE_CHECKING:
    from yolox_sdk_wandb import WandbOptions

log = logging.getLogger(__name__)

# Enough to notice a problem; a dead network would otherwise print one warning per logged step.
MAX_FAILURE_WARNINGS = 3


def start_wandb_logger(options: WandbOptions, run_dir: Path) -> WandbLogger:
    """Start a W&B run configured by ``options``, keeping its local files under ``run_dir/wandb``."""
    try:
        import wandb
    except ImportError as error:
        raise PluginError(
            "The 'wandb' logger needs the wandb package, which is not installed: "
            "pip install 'wandb>=0.17' (or reinstall yolox-sdk-wandb with its dependencies)."
        ) from error
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        run = wandb.init(
            project=options.project,
            name=options.name,
            entity=options.entity,
            mode=options.mode,
            tags=list(options.tags) or None,
            dir=str(run_dir),
        )
    except Exception as error:  # wandb raises many types (CommError, UsageError, timeouts)
        raise YoloxSdkError(
            f"Could not start the W&B run ({type(error).__name__}: {error}). Run `wandb login` or set "
            "WANDB_API_KEY, check the network, or set monitoring.logger_options.wandb.mode: offline to log "
            "locally and upload later with `wandb sync`."
        ) from error
    return WandbLogger(run)


class WandbLogger:
    """Sends hyperparameters and metrics to a W&B run; see the module docstring for failure handling."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.failures = 0

    def log_hyperparameters(self, params: Mapping[str, Any]) -> None:
        """Store ``params`` in the run's config: the trainer sends every config key flattened
        (``training.optimizer_options.betas``); nested mappings are accepted too."""
        values = dict(params)
        self._without_raising(
            "log hyperparameters", lambda run: run.config.update(values, allow_val_change=True)
        )

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log ``metrics`` at global ``step``."""
        values = dict(metrics)
        self._without_raising("log metrics", lambda run: run.log(values, step=step))

    def close(self) -> None:
        """Finish the run (upload what is left); safe to call twice."""
        if self.run is None:
            return
        run, self.run = self.run, None
        try:
            run.finish()
        except Exception as error:  # noqa: BLE001 - training is over; losing the tail of the log is not fatal
            log.warning(
                "W&B could not finish the run (%s: %s); sync it later with `wandb sync`.",
                type(error).__name__,
                error,
            )
        if self.failures > MAX_FAILURE_WARNINGS:
            log.warning("%d W&B logging calls failed during this run.", self.failures)

    def _without_raising(self, action: str, call: Callable[[Any], object]) -> None:
        if self.run is None:
            log.warning("W&B logger is closed; cannot %s.", action)
            return
        try:
            call(self.run)
        except Exception as error:  # noqa: BLE001 - a logging failure must never stop training
            self.failures += 1
            if self.failures <= MAX_FAILURE_WARNINGS:
                suffix = (
                    " Further failures are counted, not shown."
                    if self.failures == MAX_FAILURE_WARNINGS
                    else ""
                )
                log.warning(
                    "W&B could not %s (%s: %s); training continues.%s",
                    action,
                    type(error).__name__,
                    error,
                    suffix,
                )
