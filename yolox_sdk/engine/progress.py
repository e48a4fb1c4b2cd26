"""What a run shows while it trains: the progress bar of an epoch, the ``iter/*`` metrics every
``monitoring.log_interval`` batches, the row each epoch adds to the metrics, and the lines that open and close a run."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from yolox_sdk.config.loader import config_to_dict, flatten_dict
from yolox_sdk.config.recipes import recipe_summary
from yolox_sdk.config.schema import Config
from yolox_sdk.engine.freezing import count_trainable_parameters

log = logging.getLogger(__name__)


class EpochProgress:
    """The batches of one epoch behind a progress bar (main process, ``monitoring.progress_bar``)."""

    def __init__(self, config: Config, loader: Iterable[Any], epoch: int, total: int, first: int, show: bool):
        self.log_interval = config.monitoring.log_interval
        self.bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{config.training.epochs}",
            leave=False,
            disable=not (show and config.monitoring.progress_bar),
            dynamic_ncols=True,
            initial=first,
            total=total,
        )

    def __iter__(self) -> Iterator[Any]:
        return iter(self.bar)

    def batch_done(
        self, losses: Mapping[str, float], input_size: tuple[int, int], iteration: int, loggers: list[Any]
    ) -> None:
        """Show a trained batch's losses; every ``log_interval`` batches send them to the loggers too."""
        self.bar.set_postfix(
            loss=f"{losses['total_loss']:.3f}",
            iou=f"{losses['iou_loss']:.3f}",
            cls=f"{losses['cls_loss']:.3f}",
            lr=f"{losses['lr']:.2e}",
            size=input_size[0],
            refresh=False,
        )
        if iteration % self.log_interval == 0:
            for logger in loggers:
                logger.log_metrics({f"iter/{k}": v for k, v in losses.items()}, iteration)
            log.debug("iter %d: %s", iteration, dict(losses))


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
