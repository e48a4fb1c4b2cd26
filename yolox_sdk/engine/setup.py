"""Building what a training run needs from the config: one frozen ``TrainingParts`` bundle (device, data,
model, EMA, precision, loader, optimizer, schedule) and the plugins around it (loggers, callbacks).

Kept apart from the loop so the loop reads as training only, and so the API can reuse each piece. The
data functions live in ``yolox_sdk.data.training_data``; ``load_split``, ``load_training_data``,
``preflight_check`` and ``align_classes`` stay importable from here for existing callers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from yolox_sdk.config.plugin_options import configured_loggers, named_items
from yolox_sdk.config.schema import Config
from yolox_sdk.data import training_data
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.data.training_data import (  # noqa: F401 - re-exported for existing callers
    align_classes,
    load_split,
    load_training_data,
    preflight_check,
)
from yolox_sdk.engine import distributed, freezing
from yolox_sdk.engine.devices import resolve_device
from yolox_sdk.engine.distributed import DistributedContext
from yolox_sdk.engine.ema import WeightAverage
from yolox_sdk.engine.loss_terms import LossTerms, build_loss_terms
from yolox_sdk.engine.memory import enable_gradient_checkpointing
from yolox_sdk.engine.precision import Precision
from yolox_sdk.engine.run_dir import new_run_dir, write_run_config
from yolox_sdk.engine.run_lock import RunLock
from yolox_sdk.evaluation.runner import best_metric_lower_is_better
from yolox_sdk.models.factory import build_model
from yolox_sdk.models.variants import ModelSpec, make_spec
from yolox_sdk.models.weights import TransferReport, load_initial_weights
from yolox_sdk.plugins.building import build_plugin
from yolox_sdk.plugins.interfaces import ScheduleSettings
from yolox_sdk.plugins.registry import Registry

log = logging.getLogger(__name__)

BATCH_FOR_BASE_LR = 64


def resolve_num_classes(config: Config, dataset: DetectionDataset) -> int:
    """The dataset's class count; a disagreeing ``model.num_classes`` is overruled with a warning."""
    found = dataset.num_classes
    if config.model.num_classes is not None and config.model.num_classes != found:
        log.warning(
            "model.num_classes is %d but the training data has %d classes (%s); using %d (the dataset wins).",
            config.model.num_classes,
            found,
            ", ".join(dataset.class_names),
            found,
        )
    return found


def model_spec_from_config(config: Config, num_classes: int) -> ModelSpec:
    """The ``ModelSpec`` the config asks for."""
    m = config.model
    return make_spec(m.name, num_classes, m.depth, m.width, m.depthwise, m.input_size)


def label_assignment(setting: str, device: torch.device) -> str:
    """``training.assignment`` on ``device``: ``auto`` is ``batched`` on CUDA and ``yolox`` elsewhere (see
    ``TrainingConfig``'s docstring for the measurement)."""
    if setting != "auto":
        return setting
    return "batched" if device.type == "cuda" else "yolox"


def build_training_model(
    config: Config, spec: ModelSpec, device: torch.device | None = None
) -> tuple[nn.Module, TransferReport | None]:
    """Build the network (its head's label assignment from ``training.assignment`` on ``device``, the
    CPU when not given) and load ``model.checkpoint`` or ``model.pretrained`` into it."""
    assignment = label_assignment(config.training.assignment, device or torch.device("cpu"))
    model = build_model(spec, assignment)
    source = config.model.checkpoint or config.model.pretrained
    return model, load_initial_weights(model, source, spec.name, strict_shapes=True)


def accumulation_steps(config: Config) -> int:
    """Batches summed per optimizer step: ``training.accumulate``, or what ``nominal_batch_size`` asks for."""
    t = config.training
    if t.nominal_batch_size is None:
        return t.accumulate
    return max(1, round(t.nominal_batch_size / config.data.batch_size))


def effective_weight_decay(config: Config) -> float:
    """``training.weight_decay``, scaled by effective / nominal batch when ``nominal_batch_size`` is set.

    Decay is applied once per optimizer step; when the effective batch (batch x accumulation, rounded)
    differs from the nominal one, scaling keeps the decay per training image what the recipe intended.
    """
    t = config.training
    if t.nominal_batch_size is None:
        return t.weight_decay
    effective = config.data.batch_size * accumulation_steps(config)
    return t.weight_decay * effective / t.nominal_batch_size


def base_learning_rate(config: Config) -> float:
    """``training.lr`` is for a batch of 64; YOLOX scales it linearly with the (effective) batch size."""
    return config.training.lr * config.data.batch_size * accumulation_steps(config) / BATCH_FOR_BASE_LR


def build_optimizer(config: Config, model: nn.Module, registry: Registry) -> Any:
    """The optimizer plugin named by ``training.optimizer``, given the effective weight decay."""
    t = config.training
    recipe = attrs.evolve(
        t, weight_decay=effective_weight_decay(config), accumulate=accumulation_steps(config)
    )
    return build_plugin(
        registry, "optimizer", t.optimizer, t.optimizer_options, "training.optimizer_options", model, recipe
    )


def sync_batchnorm(model: nn.Module, wanted: bool, distributed: bool, device: Any) -> nn.Module:
    """``training.sync_bn``: BatchNorm layers that share statistics across processes (CUDA only).

    Without CUDA (gloo on CPU) torch has no synchronised BatchNorm; the run goes on with per-process
    statistics and says so.
    """
    if not (wanted and distributed):
        return model
    if getattr(device, "type", "cpu") != "cuda":
        log.warning("training.sync_bn needs CUDA devices; training on %s with per-process BatchNorm.", device)
        return model
    log.info("BatchNorm statistics are synchronised across processes (training.sync_bn).")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def build_schedule(config: Config, iters_per_epoch: int, registry: Registry) -> Any:
    """The learning-rate schedule plugin named by ``training.scheduler``."""
    t = config.training
    settings = ScheduleSettings(
        base_lr=base_learning_rate(config),
        iters_per_epoch=iters_per_epoch,
        epochs=t.epochs,
        warmup_epochs=t.warmup_epochs,
        warmup_lr=t.warmup_lr,
        min_lr_ratio=t.min_lr_ratio,
        no_aug_epochs=min(t.no_aug_epochs, t.epochs),
    )
    return build_plugin(
        registry, "scheduler", t.scheduler, t.scheduler_options, "training.scheduler_options", settings
    )


def build_loggers(config: Config, run_dir: Path, registry: Registry) -> list[Any]:
    """The loggers the config turns on (see ``configured_loggers``), each built from the registry."""
    from yolox_sdk.plugins.building import build_plugin as build

    return [
        build(registry, "logger", name, options, where, run_dir)
        for name, options, where in configured_loggers(config, registry)
    ]


def build_callbacks(config: Config, registry: Registry) -> list[Any]:
    """The callback plugins listed in ``training.callbacks``."""
    return [
        build_plugin(registry, "callback", name, options, where)
        for name, options, where in named_items(config.training.callbacks, "training.callbacks")
    ]


def callback_names(config: Config) -> list[str]:
    """The names in ``training.callbacks``, in order (the keys their states are saved under)."""
    return [name for name, _, _ in named_items(config.training.callbacks, "training.callbacks")]


def stop_loader_workers(loader: Any) -> None:
    """End a ``DataLoader``'s persistent worker processes now. torch ends them only when the loader is
    garbage collected, which after an error or a signal (a traceback refers to the trainer) may be never."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None


@attrs.frozen
class TrainingParts:
    """Everything a run trains with, built once by ``build_training_parts`` before the first epoch.

    Frozen: the loop never swaps a part (the objects themselves change as they train). What may change
    during a run lives in the trainer: the learning-rate schedule (a callback may replace it) and the
    module the step calls (rebuilt under torchrun when unfreezing changes what DDP synchronises).
    """

    config: Config
    dist: DistributedContext
    device: torch.device
    train_data: DetectionDataset
    val_data: DetectionDataset | None
    spec: ModelSpec
    model: nn.Module
    transfer: TransferReport | None
    freeze_plan: freezing.FreezePlan
    precision: Precision
    memory_format: torch.memory_format
    ema: Any
    train_dataset: Any
    loader: Any
    optimizer: Any
    schedule: Any
    accumulate: int
    batches_per_epoch: int  # fixed at set-up: the loader is shorter while it resumes inside an epoch
    losses: LossTerms = attrs.field(factory=LossTerms)  # loss-term plugins added to YOLOX's loss

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.train_data.class_names)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (a last, shorter accumulation group steps too)."""
        return -(-self.batches_per_epoch // self.accumulate)


def create_run_dir(config: Config) -> tuple[Path, RunLock]:
    """A fresh run directory, locked before anything (its config.yaml) is written into it."""
    run_dir = new_run_dir(config)
    lock = RunLock(run_dir)
    lock.acquire()
    write_run_config(run_dir, config)
    return run_dir, lock


def join_process_group(config: Config, dist: DistributedContext) -> torch.device:
    """Pick the device; under ``torchrun`` also join the process group and quieten processes above 0."""
    if not dist.enabled:
        return resolve_device(config.device)
    device = distributed.device_for_rank(dist, config.device)  # warns or stops as device.fallback says
    distributed.init_distributed(dist, device)
    if not dist.is_main:
        logging.getLogger("yolox_sdk").setLevel(logging.WARNING)
    return device


def build_training_parts(config: Config, registry: Registry, dist: DistributedContext) -> TrainingParts:
    """Device, data, loss terms (a distillation teacher is loaded and checked), model (initial weights,
    freeze plan, memory options, EMA), loader, optimizer and schedule, in the order that fails fastest: a
    bad freeze pattern or teacher fails before any run directory exists."""
    c = config
    best_metric_lower_is_better(
        c.evaluation, registry
    )  # an unknown save_best_metric fails before any data is read
    device = join_process_group(c, dist)
    train_data, val_data = training_data.load_training_data(c)
    spec = model_spec_from_config(c, resolve_num_classes(c, train_data))
    losses = build_loss_terms(c, registry, tuple(train_data.class_names), spec.input_size, device)
    model, transfer = build_training_model(c, spec, device)
    freeze_plan = freezing.plan_freezing(c.model, model, c.training.epochs)
    if c.training.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    precision = Precision(device, c.training.amp, model)
    memory_format = torch.channels_last if c.training.channels_last else torch.preserve_format
    model.to(device, memory_format=memory_format)
    model = sync_batchnorm(model, c.training.sync_bn, dist.enabled, device)
    ema = _ema(model, c)
    losses.watch(model)  # after the EMA copy: the copy gets no hooks
    train_dataset, loader = _build_data_in_rank_order(c, train_data, spec.input_size, registry, dist)
    optimizer = build_optimizer(c, model, registry)
    accumulate = accumulation_steps(c)
    schedule = build_schedule(c, -(-len(loader) // accumulate), registry)
    return TrainingParts(
        c, dist, device, train_data, val_data, spec, model, transfer, freeze_plan, precision,
        memory_format, ema, train_dataset, loader, optimizer, schedule, accumulate, len(loader), losses,
    )  # fmt: skip


def with_epochs(parts: TrainingParts, config: Config, registry: Registry) -> TrainingParts:
    """``parts`` for ``config`` whose epochs and phases changed (the time budget chose them): the parts
    that depend on the epoch count, the schedule and the freeze plan, are built again."""
    schedule = build_schedule(config, parts.steps_per_epoch, registry)
    freeze_plan = freezing.plan_freezing(config.model, parts.model, config.training.epochs)
    return attrs.evolve(parts, config=config, schedule=schedule, freeze_plan=freeze_plan)


def _ema(model: nn.Module, config: Config) -> WeightAverage | None:
    return WeightAverage(model, config.training.ema_decay) if config.training.ema else None


def _build_data_in_rank_order(
    config: Config,
    train_data: DetectionDataset,
    input_size: tuple[int, int],
    registry: Registry,
    dist: DistributedContext,
) -> tuple[Any, Any]:
    """The main process builds the training data first (it may write caches), then the others read them."""
    if not dist.is_main:
        distributed.barrier()
    built = training_data.build_training_loader(
        config, train_data, input_size, registry, rank=dist.rank, world_size=dist.world_size
    )
    if dist.enabled and dist.is_main:
        distributed.barrier()
    return built
