"""Which checkpoints a run writes, and when: the always-on built-in ``checkpoints`` callback.

- Every epoch: ``last.pt`` (the resume point; the file it replaces is kept as ``last.prev.pt``, resume's
  fallback when the newest turns out damaged).
- ``best.pt`` when ``evaluation.save_best_metric`` improved (``loss``: the lowest ``train/total_loss``);
  without any value of it (no validation data) ``best.pt`` follows ``last.pt``.
- ``epoch_N.pt`` every ``monitoring.save_interval`` epochs.
- Mid-epoch ``last.pt`` every ``monitoring.save_every_minutes`` (a crash in a long epoch loses minutes,
  not the epoch), when a callback asks (``request_checkpoint``) and before a signal stops training. The
  trainer asks ``resume_point_due`` at optimizer-step boundaries, where no gradient is half accumulated.

It is an ordinary ``Callback`` fired after all the configured ones at epoch end (so their states, and a
stop they asked for, are in the epoch's files), with two things no plugin gets: the trainer's progress
record (the best value lives in ``TrainState``) and the function that builds a full resume checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
from yolox_sdk.config.schema import Config
from yolox_sdk.engine.interruption import saved_position
from yolox_sdk.engine.resume import LAST, PREVIOUS_LAST
from yolox_sdk.engine.train_state import TrainState
from yolox_sdk.engine.training_view import TrainingView
from yolox_sdk.evaluation.runner import best_metric_lower_is_better
from yolox_sdk.plugins.interfaces import Callback

log = logging.getLogger(__name__)

BEST = "best.pt"


def best_metric_value(metrics: Mapping[str, float], name: str, lower_is_better: bool = False) -> float | None:
    """The value ``best.pt`` maximises: ``val/<name>`` (negated for a metric plugin's lower-is-better
    name), or the negated training loss for ``loss``. ``None`` when the epoch has none (or it is NaN)."""
    if name == "loss":
        return -metrics["train/total_loss"] if "train/total_loss" in metrics else None
    value = metrics.get(f"val/{name}")
    if value is None or math.isnan(value):
        return None
    return -value if lower_is_better else value


class CheckpointPolicy(Callback):
    """Writes ``last``/``best``/``epoch_N`` at epoch ends and keeps the mid-epoch save clock."""

    def __init__(
        self, config: Config, state: Callable[[], TrainState], build: Callable[[], Checkpoint], saved_at: str
    ) -> None:
        self.best_metric = config.evaluation.save_best_metric
        self.lower_is_better = best_metric_lower_is_better(config.evaluation)
        self.interval = config.monitoring.save_interval
        self.minutes = config.monitoring.save_every_minutes
        self._state = state
        self._build = build
        self._last_save = time.monotonic()
        self.saved_at = saved_at  # "PATH holds the run up to ...", for the message when a signal stops it

    def on_epoch_end(self, view: TrainingView, epoch: int, metrics: Mapping[str, float]) -> None:
        """Update the best value (every process), then write the epoch's files (main process)."""
        state = self._state()
        value = best_metric_value(metrics, self.best_metric, self.lower_is_better)
        improved = value is not None and (state.best_value is None or value > state.best_value)
        if improved:
            state.best_value, state.best_epoch = value, epoch + 1
        if not view.is_main:
            return
        no_metric = value is None and state.best_value is None
        files = [(LAST, "last")]
        if improved or no_metric:
            files.append((BEST, "best"))
        if self.interval and (epoch + 1) % self.interval == 0:
            files.append((f"epoch_{epoch + 1}.pt", "epoch"))
        checkpoint = self._build()
        for filename, kind in files:
            self._write(view, filename, checkpoint, kind)

    def resume_point_due(self, requested: bool) -> bool:
        """Whether a mid-epoch ``last.pt`` is due: the ``save_every_minutes`` clock, or a callback asked."""
        clock = self.minutes is not None and time.monotonic() - self._last_save >= self.minutes * 60
        return clock or requested

    def save_resume_point(self, view: TrainingView) -> Path:
        """Write a mid-epoch ``last.pt`` (main process)."""
        path = self._write(view, LAST, self._build(), "last")
        state = self._state()
        log.debug("Mid-epoch checkpoint after batch %d of epoch %d.", state.batch_in_epoch, state.epoch + 1)
        return path

    def _write(self, view: TrainingView, filename: str, checkpoint: Checkpoint, kind: str) -> Path:
        """Save atomically (``last.pt``'s predecessor kept as ``last.prev.pt``) and tell the callbacks; a
        fresh ``last.pt`` restarts the ``save_every_minutes`` clock."""
        keep = view.run_dir / PREVIOUS_LAST if filename == LAST else None
        path = save_checkpoint(view.run_dir / filename, checkpoint, keep_previous=keep)
        if filename == LAST:
            self._last_save = time.monotonic()
            self.saved_at = saved_position(path, self._state())
        view.notify_checkpoint(path, kind)
        return path
