"""Building what a training run needs from the config: datasets, model, optimizer, schedule, plugins.

Kept apart from the loop so the loop reads as training only, and so the API can reuse each piece
(``yolox-sdk eval`` loads datasets the same way training does).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from torch import nn

from yolox_sdk.config.plugin_options import build_plugin, configured_loggers, named_items
from yolox_sdk.config.schema import Config
from yolox_sdk.data.records import DetectionDataset, ImageRecord, LoadReport
from yolox_sdk.errors import ConfigError, DatasetError
from yolox_sdk.models.factory import build_model
from yolox_sdk.models.variants import ModelSpec, make_spec
from yolox_sdk.models.weights import TransferReport, load_initial_weights
from yolox_sdk.plugins.interfaces import ScheduleSettings
from yolox_sdk.plugins.registry import Registry

log = logging.getLogger(__name__)

BATCH_FOR_BASE_LR = 64


def load_split(config: Config, which: str) -> DetectionDataset | None:
    """Load ``data.<which>_path`` with its split, or ``None`` when the path is not set."""
    from yolox_sdk.data.formats import load_dataset

    path = getattr(config.data, f"{which}_path")
    if path is None:
        return None
    split = getattr(config.data, f"{which}_split")
    return load_dataset(path, split=split, format=config.data.format, options=config.data.format_options)


def load_training_data(config: Config) -> tuple[DetectionDataset, DetectionDataset | None]:
    """The training set and the validation set, with the validation labels aligned to the training classes."""
    if config.data.train_path is None:
        raise ConfigError(
            "Invalid config: data.train_path is not set. Point it at your training data (a folder, an "
            "annotation file or a catalog name such as bccd)."
        )
    train = load_split(config, "train")
    if not train.records:
        raise DatasetError(f"The training set {config.data.train_path} has no images; nothing to train on.")
    preflight_check(train, "train")
    val = load_split(config, "val")
    if val is not None:
        preflight_check(val, "val")
    return train, align_classes(val, train.class_names) if val is not None else None


def preflight_check(dataset: DetectionDataset, which: str) -> None:
    """``yolox-sdk data validate``'s fast path before epoch 1: image headers, cached by file mtime and size.

    What the reader already fixed was logged when the dataset was read; here only the images that will be
    trained on are checked, and an error stops the run before any time is spent on it.
    """
    from yolox_sdk.assets.catalog import cache_home
    from yolox_sdk.data.validation import quick_validate

    report = quick_validate(attrs.evolve(dataset, report=LoadReport()), cache_home() / "validation")
    if report.issues:
        log.warning("%s data check (%d images):\n%s", which, len(dataset), report.table())
    if not report.ok:
        raise DatasetError(
            f"The {which} data at {dataset.source} has images that cannot be trained on (table above). Run "
            f"`yolox-sdk data validate {dataset.source} --fix OUT_DIR` for a cleaned copy, or remove them."
        )


def align_classes(dataset: DetectionDataset, class_names: tuple[str, ...]) -> DetectionDataset:
    """Re-index ``dataset``'s labels to ``class_names`` (a split may list its classes in another order).

    Raises:
        DatasetError: when the dataset has a class the training set does not know.
    """
    if tuple(dataset.class_names) == tuple(class_names):
        return dataset
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [name for name in dataset.class_names if name not in index]
    used_unknown = {dataset.class_names[int(label)] for r in dataset.records for label in r.labels} & set(
        unknown
    )
    if used_unknown:
        raise DatasetError(
            f"{dataset.source}: classes {sorted(used_unknown)} do not exist in the training data "
            f"({', '.join(class_names)}). Use the same class list for every split."
        )
    mapping = np.array([index.get(name, -1) for name in dataset.class_names], dtype=np.int64)
    records = [
        ImageRecord(
            r.image_path,
            r.width,
            r.height,
            r.boxes,
            mapping[r.labels] if len(r.labels) else r.labels,
            r.image_id,
        )
        for r in dataset.records
    ]
    return DetectionDataset(
        records, class_names, source=dataset.source, format=dataset.format, report=dataset.report
    )


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


def build_training_model(config: Config, spec: ModelSpec) -> tuple[nn.Module, TransferReport | None]:
    """Build the network and load ``model.checkpoint`` or ``model.pretrained`` into it."""
    model = build_model(spec)
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
