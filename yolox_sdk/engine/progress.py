"""What a run shows while it trains: the progress of an epoch with the whole run's ETA, the ``iter/*``
metrics every ``monitoring.log_interval`` batches, the row each epoch adds to the metrics, and the lines
that open and close a run.

On a terminal an epoch is a tqdm bar (redrawn in place, cleared when the epoch ends) and every epoch
leaves one line. Anywhere else (CI logs, a notebook's captured output, a pipe or a file) there is no
bar: a redrawn bar there is a stream of carriage returns, so each epoch is that one line only, written
through logging like the rest of the run. Setting this module's logger to WARNING
(``logging.getLogger("yolox_sdk.engine.progress").setLevel(logging.WARNING)``, what ``--quiet`` does)
hides both.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from yolox_sdk.config.loader import config_to_dict, flatten_dict
from yolox_sdk.config.recipes import recipe_summary
from yolox_sdk.config.schema import Config
from yolox_sdk.engine.freezing import count_trainable_parameters

log = logging.getLogger(__name__)

# The losses an epoch line and the bar show, under their short names, when the model reports them.
SHOWN_LOSSES = (("total_loss", "loss"), ("iou_loss", "iou"), ("conf_loss", "obj"), ("cls_loss", "cls"))


def is_interactive(stream: TextIO | None) -> bool:
    """Whether ``stream`` is a terminal that can redraw a bar (not a file, pipe or notebook)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # a closed or stand-in stream
        return False


def duration(seconds: float) -> str:
    """``0:04:07``: seconds as hours, minutes and seconds."""
    minutes, secs = divmod(round(max(seconds, 0.0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class RunClock:
    """The whole run's ETA, shared by its epochs: the wall time per batch since this process's first
    epoch began (evaluations and checkpoints between epochs included), times the batches still to train.

    Positions are batches from the start of the run (``epoch * batches_per_epoch + batch``), so a resumed
    run measures only what this process trained.
    """

    def __init__(self) -> None:
        self._start: float | None = None
        self._start_position = 0

    def start(self, position: int) -> None:
        """Start measuring at ``position`` (the first call only)."""
        if self._start is None:
            self._start, self._start_position = time.perf_counter(), position

    def remaining_seconds(self, position: int, run_batches: int) -> float | None:
        """Seconds to train the batches from ``position`` to ``run_batches`` (the run's last); ``None``
        before a batch was timed."""
        done = position - self._start_position
        if self._start is None or done <= 0:
            return None
        left = max(run_batches - position, 0)
        return (time.perf_counter() - self._start) / done * left


class EpochProgress:
    """The batches of one epoch: a bar on a terminal, then one line for the epoch (main process only).

    Args:
        config: the run's config (``monitoring.progress_bar``, ``log_interval``, ``training.epochs``).
        loader: the batches.
        epoch: the 0-based epoch.
        total: batches in the epoch.
        first: the batch it starts at (> 0 when resuming mid-epoch).
        show: whether this process shows progress (the main one).
        clock: the run's clock, for the whole-run ETA; without one only the epoch's is shown.
    """

    def __init__(
        self,
        config: Config,
        loader: Iterable[Any],
        epoch: int,
        total: int,
        first: int,
        show: bool,
        clock: RunClock | None = None,
    ):
        self.log_interval = config.monitoring.log_interval
        self.epoch, self.epochs, self.total, self.first = epoch, config.training.epochs, total, first
        self.clock = clock or RunClock()
        # Not isEnabledFor: a Python caller who configured no logging still gets the bar.
        self.show = show and not log.level > logging.INFO  # --quiet raises this logger's own level
        self.batches = first
        self.loss_sums: dict[str, float] = {}
        self.loss_count = 0
        self.lr: float | None = None
        self.description = f"epoch {epoch + 1}/{self.epochs}"
        self.bar = tqdm(
            loader,
            desc=self.description,
            leave=False,
            disable=not (self.show and config.monitoring.progress_bar and is_interactive(sys.stderr)),
            dynamic_ncols=True,
            initial=first,
            total=total,
            file=sys.stderr,
        )

    def __iter__(self) -> Iterator[Any]:
        self.clock.start(self.epoch * self.total + self.first)
        start = time.perf_counter()
        for batch in self.bar:
            self.batches += 1  # counted before it trains: batch_done's ETA then includes its time
            yield batch
        if self.show and self.batches > self.first:
            log.info(self.epoch_line(time.perf_counter() - start))

    def batch_done(
        self, losses: Mapping[str, float], input_size: tuple[int, int], iteration: int, loggers: list[Any]
    ) -> None:
        """Show a trained batch's losses; every ``log_interval`` batches send them to the loggers too."""
        for key, _ in SHOWN_LOSSES:
            if key in losses:
                self.loss_sums[key] = self.loss_sums.get(key, 0.0) + float(losses[key])
        self.loss_count += 1
        self.lr = losses.get("lr", self.lr)
        if not self.bar.disable:
            # The total only: the parts are in the epoch's line, and a long postfix squeezes the bar away.
            postfix = {
                "loss": f"{losses['total_loss']:.3f}",
                "lr": f"{losses['lr']:.2e}",
                "size": input_size[0],
            }
            self.bar.set_postfix(postfix, refresh=False)
            left = self.clock.remaining_seconds(self._position(), self.epochs * self.total)
            if left is not None:  # in the description: the bar cuts a long postfix on narrow terminals
                self.bar.set_description_str(f"{self.description}, run ETA {duration(left)}", refresh=False)
        if iteration % self.log_interval == 0:
            for logger in loggers:
                logger.log_metrics({f"iter/{k}": v for k, v in losses.items()}, iteration)
            log.debug("iter %d: %s", iteration, dict(losses))

    def epoch_line(self, seconds: float) -> str:
        """``epoch 3/10: loss 4.123, iou 1.234, obj 0.912, cls 0.801, lr 1.00e-03, 42 s, run ETA 0:04:10``:
        the epoch's mean losses (this process's batches), its last learning rate, its training time and,
        while epochs remain, the time the rest of the run should take."""
        items = [
            f"{short} {self.loss_sums[key] / self.loss_count:.3f}"
            for key, short in SHOWN_LOSSES
            if key in self.loss_sums
        ]
        if self.lr is not None:
            items.append(f"lr {self.lr:.2e}")
        items.append(f"{seconds:.1f} s")
        left = self.clock.remaining_seconds(self._position(), self.epochs * self.total)
        if left is not None and self.epoch + 1 < self.epochs:
            items.append(f"run ETA {duration(left)}")
        return f"epoch {self.epoch + 1}/{self.epochs}: {', '.join(items)}"

    def _position(self) -> int:
        return self.epoch * self.total + self.batches


def counted(number: int, one: str, many: str) -> str:
    """``1 class``, ``3 classes``: the count with its noun in the right number."""
    return f"{number} {one if number == 1 else many}"


def epoch_metrics(epoch: int, losses: dict[str, float], parts: Any) -> dict[str, float]:
    """The row an epoch adds to ``metrics.csv`` and the loggers before evaluation: its 1-based number,
    mean losses, the learning rate it ended at (once: the step's ``lr`` is not averaged into a
    ``train/lr``) and how many parameters trained (freezing changes it)."""
    return {
        "epoch": epoch + 1,
        **{f"train/{key}": value for key, value in losses.items() if key != "lr"},  # lr: the next column
        "lr": parts.optimizer.param_groups[0]["lr"],
        "trainable_params": count_trainable_parameters(parts.model),
    }


def log_run_start(config: Config, parts: Any, loggers: list[Any], run_dir: Path) -> None:
    """The hyperparameters to every logger, and one line saying what trains on what."""
    params = flatten_dict(config_to_dict(config))
    for logger in loggers:
        logger.log_hyperparameters(params)
    log.info(
        "Training %s (%s: %s) on %s: %d train images, %s val images, run dir %s",
        parts.spec.name,
        counted(parts.spec.num_classes, "class", "classes"),
        ", ".join(parts.class_names),
        parts.device,
        len(parts.train_data),
        len(parts.val_data) if parts.val_data else "no",
        run_dir,
    )
    summary = recipe_summary(config)
    if summary is not None:
        log.info(summary)


def log_run_end(result: Any, best_summary: str) -> None:
    log.info(
        "Trained %d epochs in %.0f s (%.1f train images/s); %s; run dir %s",
        result.epochs_completed,
        result.wall_seconds,
        result.train_images_per_second,
        best_summary,
        result.run_dir,
    )
