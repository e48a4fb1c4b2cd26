"""Evaluating during training: when an epoch is evaluated, and measuring it once for every process.

Kept out of the loop so the trainer reads as "train, evaluate when due, save". The metrics themselves come
from ``evaluation.runner.evaluate_model``, the one function every evaluation of the SDK goes through, so
the val/mAP that picks ``best.pt`` is the number ``yolox-sdk eval`` prints for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from torch import nn

from yolox_sdk.config.schema import Config
from yolox_sdk.engine import distributed
from yolox_sdk.engine.distributed import DistributedContext

log = logging.getLogger(__name__)


def evaluation_due(config: Config, epoch: int, has_val_data: bool) -> bool:
    """Whether epoch ``epoch`` (0-based) ends with an evaluation: every ``evaluation.eval_interval``
    epochs, every no-augmentation epoch (the phase in which the best model usually appears) and the last."""
    if not has_val_data:
        return False
    t, done = config.training, epoch + 1
    return (
        done >= t.epochs - t.no_aug_epochs or done == t.epochs or done % config.evaluation.eval_interval == 0
    )


def evaluate_epoch(
    evaluate: Callable[[nn.Module], Any],
    eval_model: nn.Module,
    train_model: nn.Module,
    dist: DistributedContext,
    epoch: int,
) -> dict[str, float]:
    """``evaluate(eval_model)``'s metrics, measured in the main process and sent to every process (each
    process's callbacks decide on them); ``train_model`` is put back in training mode afterwards."""
    found = None
    if dist.is_main:
        start = time.perf_counter()
        found = dict(evaluate(eval_model).metrics)
        train_model.train()
        log.info(
            "Epoch %d: mAP %.4f, mAP50 %.4f (eval %.1fs)",
            epoch + 1,
            found["mAP"],
            found["mAP50"],
            time.perf_counter() - start,
        )
    return distributed.broadcast_object(found)
