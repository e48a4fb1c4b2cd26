"""The data a training run reads: its splits loaded and checked, and the training loader built.

Shared by training and the commands that read a run's data the way training does (``yolox-sdk eval``
aligns its labels to a checkpoint's classes with ``align_classes``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import attrs
import numpy as np

from yolox_sdk.config.schema import Config
from yolox_sdk.data.records import DetectionDataset, ImageRecord, LoadReport
from yolox_sdk.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)


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


def build_training_loader(
    config: Config,
    train_data: DetectionDataset,
    input_size: tuple[int, int],
    registry: Any,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[Any, Any]:
    """The augmenting ``TrainDataset`` and its loader (repeat-factor balanced when
    ``data.repeat_factor_threshold`` is set; this process's shard of each global batch under torchrun)."""
    from yolox_sdk.data.image_cache import available_memory_bytes, resolve_cache_mode
    from yolox_sdk.data.loader import build_train_loader
    from yolox_sdk.data.pipeline import build_augmentations
    from yolox_sdk.data.train_dataset import TrainDataset

    c = config
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)  # torchrun: each caches its own
    cache_mode = resolve_cache_mode(
        c.data.cache_mode, len(train_data.records), input_size, available_memory_bytes(), local_processes
    )
    dataset = TrainDataset(
        train_data,
        input_size,
        build_augmentations(c.augmentation, registry),
        seed=c.training.seed,
        cache_mode=cache_mode,
    )
    repeat_factors = None
    if c.data.repeat_factor_threshold is not None:
        from yolox_sdk.data.balancing import compute_repeat_factors, log_repeat_factors

        factors = compute_repeat_factors(train_data, c.data.repeat_factor_threshold)
        log_repeat_factors(factors)
        repeat_factors = factors.image_factors
    loader = build_train_loader(
        dataset,
        c.data.batch_size,
        c.data.num_workers,
        c.training.seed,
        repeat_factors=repeat_factors,
        rank=rank,
        world_size=world_size,
    )
    return dataset, loader
