"""Training to a time budget (``training.time_budget: 20m``): the epoch count from measured speed.

Before the first epoch of a new run the trainer times real training steps (the run's own loader, model,
optimizer, precision and loss terms, on copies so the run's weights are untouched) and one evaluation of
a few validation images, then picks the most epochs whose training and evaluations fit in what is left
of the budget (at most ``training.epochs``). The warm-up and the no-augmentation phase keep their share
of the run: both scale with the epochs, the warm-up staying at least one epoch (or what was asked when
that is less) and the no-augmentation phase at least one epoch when it was asked for. The budget covers
``Trainer.fit`` (set-up, training, evaluations, checkpoints); an export after it (``yolox-sdk run``) is
not counted.

What is measured and chosen is logged, and the run's ``config.yaml`` holds the chosen values, so a resumed
run keeps them. Under ``torchrun`` every process times the same steps (each step's all-reduce waits for
all of them) and the main process's choice is sent to every process.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

from yolox_sdk.config.durations import format_duration, parse_duration
from yolox_sdk.config.schema import Config
from yolox_sdk.engine import distributed
from yolox_sdk.engine.ema import WeightAverage
from yolox_sdk.engine.epoch_evaluation import evaluation_due
from yolox_sdk.engine.training_step import NonFiniteGuard, train_step
from yolox_sdk.errors import TrainingError

log = logging.getLogger(__name__)

WARM_BATCHES = 2  # first steps pay for allocations and kernel selection; not counted
TIMED_BATCHES = 6
EVAL_IMAGES = 16
SAFETY = 0.97  # checkpoints, logging and epoch-to-epoch noise take a few per cent the probe does not see


@attrs.frozen
class MeasuredSpeed:
    """What one epoch costs on this machine, as the probe measured it."""

    seconds_per_batch: float
    batches_per_epoch: int
    seconds_per_evaluation: float

    @property
    def epoch_seconds(self) -> float:
        return self.seconds_per_batch * self.batches_per_epoch


def measure_speed(
    parts: Any, registry: Any, evaluate: Callable[[torch.nn.Module, Any], Any] | None
) -> MeasuredSpeed:
    """Time training batches and one evaluation of ``parts`` (the run's ``TrainingParts``) on copies.

    ``evaluate(model, dataset)`` is the trainer's own evaluation; it runs on at most ``EVAL_IMAGES``
    validation images and is scaled to the whole validation set (``None``: not timed, as in the processes
    above rank 0, which do not evaluate). Under torchrun every process runs the same timed steps: a step's
    all-reduce (and SyncBatchNorm) waits for all of them.
    """
    from yolox_sdk.data.loader import batch_to_device, resize_batch, set_loader_epoch
    from yolox_sdk.engine.setup import build_optimizer

    model = copy.deepcopy(parts.model).train()
    probe = attrs.evolve(
        parts,
        model=model,
        optimizer=build_optimizer(parts.config, model, registry),
        ema=WeightAverage(model, parts.config.training.ema_decay) if parts.ema is not None else None,
    )
    guard = NonFiniteGuard(10**9, lambda: (0, 0, Path("-")))
    wanted = min(WARM_BATCHES + TIMED_BATCHES, parts.batches_per_epoch)
    set_loader_epoch(parts.loader, 0)
    times: list[float] = []
    started = time.perf_counter()
    for index, (images, targets) in enumerate(parts.loader):
        images, targets = batch_to_device(images, targets, parts.device, parts.memory_format)
        images, targets = resize_batch(images, targets, parts.spec.input_size)
        train_step(probe, model, parts.config.training.lr, images, targets, True, guard)
        now = time.perf_counter()
        times.append(now - started)
        started = now
        if index + 1 >= wanted:
            break
    timed = times[WARM_BATCHES:] or times
    return MeasuredSpeed(
        sum(timed) / len(timed), parts.batches_per_epoch, _evaluation_seconds(parts, evaluate, model)
    )


def _evaluation_seconds(
    parts: Any, evaluate: Callable[[torch.nn.Module, Any], Any] | None, model: torch.nn.Module
) -> float:
    """Seconds of one evaluation on the whole validation set, from a timed one on a few images."""
    if evaluate is None or parts.val_data is None or not parts.val_data.records:
        return 0.0
    records = parts.val_data.records
    subset = attrs.evolve(parts.val_data, records=list(records[:EVAL_IMAGES]))
    evaluate(model, subset)  # warm: the first evaluation builds its data pipeline and kernels
    started = time.perf_counter()
    evaluate(model, subset)
    return (time.perf_counter() - started) * len(records) / len(subset.records)


def epochs_within(config: Config, speed: MeasuredSpeed, seconds: float, has_val_data: bool) -> int:
    """The most epochs, at most ``training.epochs``, whose training and due evaluations fit in ``seconds``
    (0 when not even one does); the phases scale with each count tried, as ``budget_config`` sets them."""
    best = 0
    for epochs in range(1, config.training.epochs + 1):
        trial = budget_config(config, epochs)
        evaluations = sum(evaluation_due(trial, epoch, has_val_data) for epoch in range(epochs))
        if epochs * speed.epoch_seconds + evaluations * speed.seconds_per_evaluation > seconds:
            break
        best = epochs
    return best


def budget_config(config: Config, epochs: int) -> Config:
    """``config`` trained for ``epochs`` instead of ``training.epochs``, its phases scaled alike."""
    t = config.training
    share = epochs / t.epochs
    warmup = min(t.warmup_epochs, max(t.warmup_epochs * share, 1.0))
    no_aug = min(t.no_aug_epochs, max(round(t.no_aug_epochs * share), 1 if t.no_aug_epochs else 0), epochs)
    training = attrs.evolve(t, epochs=epochs, warmup_epochs=warmup, no_aug_epochs=no_aug)
    return attrs.evolve(config, training=training)


def fit_to_budget(
    config: Config,
    parts: Any,
    registry: Any,
    evaluate: Callable[[torch.nn.Module, Any], Any],
    started: float,
) -> Config:
    """The config of a run that keeps to ``training.time_budget`` counted from ``started``
    (``time.perf_counter()`` at the start of ``fit``), from speeds measured now; logged.

    Raises:
        TrainingError: not even one epoch fits; the message gives the shortest budget that would.
    """
    budget = parse_duration(config.training.time_budget)
    assert budget is not None  # the schema's validator refused anything else
    epochs, too_short = 0, ""
    speed = measure_speed(parts, registry, evaluate if parts.dist.is_main else None)  # every process
    if parts.dist.is_main:
        left = (budget - (time.perf_counter() - started)) * SAFETY
        epochs = epochs_within(config, speed, left, parts.val_data is not None)
        too_short = _explain(config, speed, epochs, budget, time.perf_counter() - started)
    epochs, too_short = distributed.broadcast_object((epochs, too_short))
    if epochs < 1:
        raise TrainingError(too_short)
    return budget_config(config, epochs)


def _explain(config: Config, speed: MeasuredSpeed, epochs: int, budget: float, spent: float) -> str:
    """Log what was measured and chosen; when nothing fits, return the error's message instead."""
    t = config.training
    measured = (
        f"measured {speed.seconds_per_batch:.2f} s per batch of {config.data.batch_size} "
        f"({speed.epoch_seconds:.1f} s per epoch of {speed.batches_per_epoch} batches) and "
        f"{speed.seconds_per_evaluation:.1f} s per evaluation; set-up and measuring took {spent:.1f} s"
    )
    if epochs < 1:
        shortest = spent + (speed.epoch_seconds + speed.seconds_per_evaluation) / SAFETY
        return (
            f"training.time_budget {t.time_budget} is too short for one epoch on this machine: {measured}, "
            f"so one epoch with its evaluation needs a budget of at least {format_duration(shortest + 1)}. "
            "Give a longer budget, a smaller model.name or model.input_size, or set training.epochs instead."
        )
    chosen = budget_config(config, epochs).training
    log.info(
        "training.time_budget %s (%s): %s; training %d epochs (at most %d), warm-up %g, the last %d "
        "without mosaic.",
        t.time_budget,
        format_duration(budget),
        measured,
        epochs,
        t.epochs,
        chosen.warmup_epochs,
        chosen.no_aug_epochs,
    )
    return ""


def log_budget_kept(time_budget: str, seconds: float) -> None:
    """One line at the end of a budgeted run: how long it took against the budget."""
    budget = parse_duration(time_budget) or seconds
    log.info(
        "training.time_budget %s: the run took %s, %.0f %% of the budget.",
        time_budget,
        format_duration(seconds),
        100 * seconds / budget,
    )
