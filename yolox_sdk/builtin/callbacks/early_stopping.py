"""Early stopping on any logged epoch metric, with patience and a minimum improvement.

The trainer logs ``val/<metric>`` after each evaluation and ``train/<loss>`` every epoch; this callback
watches one of them and asks the trainer to stop when it has not improved by ``min_delta`` for
``patience`` consecutive observations. ``best.pt`` always holds the best checkpoint, so stopping loses
nothing. The best value and the count of stale observations are saved in every checkpoint, and the stop
itself with the run, so a resumed run goes on counting where it was (and a stopped run stays stopped).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from yolox_sdk.config.validators import number, one_of
from yolox_sdk.plugins.hookspecs import hookimpl
from yolox_sdk.plugins.interfaces import Callback

if TYPE_CHECKING:
    from yolox_sdk.engine.training_view import TrainingView

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

    def on_epoch_end(self, view: TrainingView, epoch: int, metrics: Mapping[str, float]) -> None:
        """Compare this epoch's value (if the metric was logged) with the best so far."""
        value = metrics.get(self.options.metric)
        if value is None:
            return
        if self._improved(float(value)):
            self.best, self.stale = float(value), 0
            return
        self.stale += 1
        if self.stale >= self.options.patience:
            view.request_stop(
                f"{self.options.metric} has not improved on {self.best:.4f} for {self.stale} observations"
            )

    def state_dict(self) -> dict[str, Any]:
        """The best value so far and the stale observations since it."""
        return {"best": self.best, "stale": self.stale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        best = state["best"]
        self.best = None if best is None else float(best)
        self.stale = int(state["stale"])


@hookimpl
def register_callbacks(register) -> None:
    register(
        "early_stopping",
        EarlyStopping,
        options=EarlyStoppingOptions,
        description="stop when a logged metric stops improving",
    )
