"""What a checkpoint holds of a training run, and putting a resumed run back where it left off.

``resume_checkpoint`` captures the run (weights, EMA, optimizer, loss scaler, progress, random-number and
callback states); ``restore_training`` is its inverse. ``engine.resume`` finds the checkpoint (newest
intact one first); this module reconciles the run with it: the run's own ``config.yaml`` wins over the
config given now, the run directory is locked before its checkpoint is picked, and a run a callback had
stopped stays stopped. Together they make a resumed run continue bit-identically.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.checkpoints.format import Checkpoint
from yolox_sdk.config.loader import config_to_dict, load_config
from yolox_sdk.config.schema import Config
from yolox_sdk.engine.distributed import DistributedContext
from yolox_sdk.engine.resume import (
    ResumePoint,
    check_resumable,
    find_run_to_resume,
    load_resume_checkpoint,
    log_completed,
    resume_identity,
)
from yolox_sdk.engine.run_dir import CONFIG_FILENAME
from yolox_sdk.engine.run_lock import RunLock
from yolox_sdk.engine.train_state import TrainState, restore_rng, rng_state
from yolox_sdk.errors import CheckpointError
from yolox_sdk.plugins.registry import Registry

log = logging.getLogger(__name__)


def run_to_resume(config: Config, registry: Registry, resume_dir: Path | None) -> tuple[Path | None, str]:
    """The run to continue (``resume_dir``, or the one ``training.auto_resume`` finds), and why it was
    chosen when nobody named it (for the lock's record)."""
    if resume_dir is not None:
        return Path(resume_dir), ""
    if not config.training.auto_resume:
        return None, ""
    found = find_run_to_resume(config, registry)
    return found, "training.auto_resume chose it, the most recent run of this config" if found else ""


def resumed_config(config: Config, resume_dir: Path, resume_file: str, registry: Registry) -> Config:
    """The run's own config (read only: nothing is written before the run is locked)."""
    saved = resume_dir / CONFIG_FILENAME
    check_resumable(resume_dir, resume_file)
    resumed = load_config(saved, registry=registry)
    if resume_identity(resumed) != resume_identity(config):
        log.warning(
            "Resuming with the run's own config %s (the config given now differs and is ignored).", saved
        )
    return resumed


def lock_and_load(
    resume_dir: Path | None,
    resume_file: str,
    lock: RunLock | None,
    dist: DistributedContext,
    why: str,
    epochs: int,
) -> ResumePoint | None:
    """Lock the run to resume (main process), then pick its checkpoint: the newest intact one, or none
    when the run was killed in its first epoch and restarts from scratch (or is a new run: no
    ``resume_dir``)."""
    if resume_dir is None or lock is None:
        return None
    if dist.is_main:
        lock.acquire(why)
    point = load_resume_checkpoint(resume_dir, resume_file, remove_temporaries=dist.is_main)
    log_completed(point, resume_dir, epochs)
    return point


def resume_checkpoint(parts: Any, state: TrainState, lineage: dict[str, Any], callbacks: Any) -> Checkpoint:
    """The run as it stands: what ``restore_training`` puts back (``parts`` is the ``TrainingParts``)."""
    return Checkpoint(
        model=parts.model.state_dict(),
        ema=parts.ema.ema.state_dict() if parts.ema is not None else None,
        spec=parts.spec,
        class_names=parts.class_names,
        config=config_to_dict(parts.config),
        lineage=lineage,
        training_state={
            "optimizer": parts.optimizer.state_dict(),
            "ema_updates": parts.ema.updates if parts.ema is not None else 0,
            "state": attrs.asdict(state),
            "rng": rng_state(),
            "grad_scaler": parts.precision.scaler.state_dict() if parts.precision.scaler else None,
            "callbacks": callbacks.state_dict(),
        },
    )


def restore_training(point: ResumePoint, parts: Any, callbacks: Any) -> TrainState:
    """Load the checkpoint's weights, EMA, optimizer, scaler, RNG and callback states into the run's
    parts; return its progress record.

    Raises:
        CheckpointError: when the checkpoint does not fit the run (edited, or another run's).
    """
    checkpoint, saved = point.checkpoint, point.checkpoint.training_state
    try:
        parts.model.load_state_dict(checkpoint.model)
        if parts.ema is not None and checkpoint.ema is not None:
            parts.ema.ema.load_state_dict(checkpoint.ema)
            parts.ema.updates = int(saved.get("ema_updates", 0))
        parts.optimizer.load_state_dict(saved["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:  # torch's words for "does not fit"
        raise CheckpointError(
            f"Checkpoint {point.path} does not fit the run it is resumed into "
            f"({str(error).splitlines()[0]}). It was edited or belongs to another run; resume from an earlier "
            "checkpoint of the run, or start a new run from its weights with model.checkpoint."
        ) from None
    callbacks.load_state_dict(saved.get("callbacks", {}), point.path)
    restore_rng(saved["rng"])
    if parts.precision.scaler is not None and saved.get("grad_scaler"):
        parts.precision.scaler.load_state_dict(saved["grad_scaler"])  # fp16: resume at the learned scale
    state = attrs.evolve(point.state)
    log.info(
        "Resumed %s from %s at epoch %d, iteration %d%s.",
        point.path.parent,
        point.path.name,
        state.epoch,
        state.iteration,
        f" (batch {state.batch_in_epoch} of epoch {state.epoch + 1})" if state.batch_in_epoch else "",
    )
    return state


def continue_run(
    point: ResumePoint, parts: Any, callbacks: Any, run_dir: Path, log_metrics: Callable[[dict, int], None]
) -> TrainState:
    """Put the run back at ``point`` (``restore_training``), keep a callback's saved stop, and send the
    last epoch's metrics to the loggers again: a kill between saving ``last.pt`` and logging leaves
    ``metrics.csv`` a row short, and the csv logger replaces a row it already has."""
    state = restore_training(point, parts, callbacks)
    keep_saved_stop(state, callbacks.keys, run_dir)
    if state.metrics:
        log_metrics(state.metrics, state.epoch)
    return state


def keep_saved_stop(state: TrainState, callback_keys: list[str], run_dir: Path) -> None:
    """A run a callback had stopped stays stopped, unless that callback is no longer configured."""
    by = state.stopped_by
    if by is None:
        return
    if by in callback_keys:
        log.info(
            "Run %s was stopped after epoch %d by callback %s (%s); nothing to train, returning its result.",
            run_dir,
            state.epoch,
            by,
            state.stop_reason or "no reason given",
        )
        return
    log.info(
        "Run %s was stopped by callback %s, which is no longer configured: training goes on.", run_dir, by
    )
    state.stopped_by, state.stop_reason = None, ""
