"""Early stopping on any logged epoch metric, with patience and a minimum improvement.

The trainer logs ``val/<metric>`` after each evaluation and ``train/<loss>`` every epoch; this callback
watches one of them and asks the trainer to stop when it has not improved by ``min_delta`` for
``patience`` consecutive observations. ``best.pt`` always holds the best checkpoint, so stopping loses
nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs

from yolox_sdk.config.validators import number, one_of
from yolox_sdk.plugins.hookspecs import hookimpl
from yolox_sdk.plugins.interfaces import Callback

log = logging.getLogger(__name__)


@attrs.frozen
class EarlyStoppingOptions:
    """``metric`` is a key of metrics.csv (``val/mAP``, ``val/mAP50``, ``train/total_loss``, ...)."""

    metric: str = "val/mAP"
    mode: str = attrs.field(default="max", validator=one_of(("max", "min")))
    patience: int = attrs.field(default=5, validator=number(1))
    min_delta: float = attrs.field(default=0.0, validator=number(0.0))


class EarlyStopping(Callback):
    """Stops training after ``patience`` observations of ``metric`` without improvement."""

    def __init__(self, options: EarlyStoppingOptions) -> None:
        self.options = options
        self.best: float | None = None
        self.stale = 0

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        delta = value - self.best if self.options.mode == "max" else self.best - value
        return delta > self.options.min_delta

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: Mapping[str, float]) -> None:
        """Compare this epoch's value (if the metric was logged) with the best so far."""
        value = metrics.get(self.options.metric)
        if value is None:
            return
        if self._improved(float(value)):
            self.best, self.stale = float(value), 0
            return
        self.stale += 1
        if self.stale >= self.options.patience:
            log.info(
                "Early stopping after epoch %d: %s has not improved on %.4f for %d observations.",
                epoch + 1,
                self.options.metric,
                self.best,
                self.stale,
            )
            trainer.should_stop = True


@hookimpl
def register_callbacks(register) -> None:
    register(
        "early_stopping",
        EarlyStopping,
        options=EarlyStoppingOptions,
        description="stop when a logged metric stops improving",
    )
