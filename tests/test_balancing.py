"""Repeat-factor sampling (class balancing) on the BCCD train split, and its wiring into loader and trainer."""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BCCD_CLASSES, read_bccd_boxes

from yolox_sdk.config.loader import load_config
from yolox_sdk.config.schema import AugmentationConfig
from yolox_sdk.data.balancing import (
    RepeatFactorSampler,
    compute_repeat_factors,
    log_repeat_factors,
    repeat_counts,
)
from yolox_sdk.data.loader import TrainSampler, build_train_loader, set_loader_epoch
from yolox_sdk.data.pipeline import build_augmentations
from yolox_sdk.data.records import DetectionDataset, ImageRecord
from yolox_sdk.data.train_dataset import TrainDataset
from yolox_sdk.errors import ConfigError
from yolox_sdk.plugins import get_registry

THRESHOLD = 0.8  # Platelets are in 117 of 205 train images (57 %); RBC in 197, WBC in 204


@pytest.fixture(scope="module")
def bccd_train(bccd_dir: Path) -> DetectionDataset:
    """The BCCD train split, parsed from the XML files without the SDK's format plugins."""
    records = []
    for image_id in (bccd_dir / "ImageSets" / "Main" / "train.txt").read_text().split():
        boxes, labels = read_bccd_boxes(bccd_dir, image_id)
        path = bccd_dir / "JPEGImages" / f"{image_id}.jpg"
        records.append(ImageRecord(path, 640, 480, boxes, labels, image_id))
    return DetectionDataset(records, BCCD_CLASSES, source=bccd_dir, format="voc")


def hand_factors(dataset: DetectionDataset, threshold: float) -> tuple[dict[str, float], list[float]]:
    """Class and image factors from raw counts, by the formula, one image at a time."""
    images_with: Counter = Counter()
    for record in dataset.records:
        images_with.update({BCCD_CLASSES[label] for label in record.labels.tolist()})
    total = len(dataset.records)
    class_factor = {
        name: max(1.0, math.sqrt(threshold / (images_with[name] / total))) for name in BCCD_CLASSES
    }
    image_factor = [
        max([class_factor[BCCD_CLASSES[label]] for label in record.labels.tolist()], default=1.0)
        for record in dataset.records
    ]
    return class_factor, image_factor


def rare(dataset: DetectionDataset) -> np.ndarray:
    platelets = BCCD_CLASSES.index("Platelets")
    return np.array([platelets in record.labels for record in dataset.records])


def test_factors_match_the_formula_on_raw_counts(bccd_train: DetectionDataset) -> None:
    class_factor, image_factor = hand_factors(bccd_train, THRESHOLD)
    assert class_factor["Platelets"] == pytest.approx(math.sqrt(0.8 / (117 / 205)))
    assert class_factor["RBC"] == class_factor["WBC"] == 1.0

    factors = compute_repeat_factors(bccd_train, THRESHOLD)

    np.testing.assert_allclose(factors.class_factors, [class_factor[name] for name in BCCD_CLASSES])
    np.testing.assert_allclose(factors.class_fractions, [197 / 205, 204 / 205, 117 / 205])
    np.testing.assert_allclose(factors.image_factors, image_factor)
    assert factors.epoch_size == math.floor(sum(image_factor) + 0.5) == 227


def test_every_class_repeated_at_threshold_one(bccd_train: DetectionDataset) -> None:
    class_factor, image_factor = hand_factors(bccd_train, 1.0)
    assert all(value > 1 for value in class_factor.values())
    np.testing.assert_allclose(compute_repeat_factors(bccd_train, 1.0).image_factors, image_factor)


def test_summary_is_logged(bccd_train: DetectionDataset, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="yolox_sdk.data.balancing"):
        log_repeat_factors(compute_repeat_factors(bccd_train, THRESHOLD))
    text = caplog.text
    assert "Platelets: in 57.1% of the images, repeat factor 1.184" in text
    assert "RBC: in 96.1% of the images, repeat factor 1.000" in text
    assert "epoch: 227 samples from 205 images (117 images repeated, threshold 0.8)" in text


def test_rare_class_images_appear_more_often(bccd_train: DetectionDataset) -> None:
    factors = compute_repeat_factors(bccd_train, THRESHOLD)
    sampler = RepeatFactorSampler(factors.image_factors, seed=3)
    size = len(bccd_train)
    keys = np.array(list(sampler))
    assert len(keys) == len(sampler) == 227
    assert len(set(keys.tolist())) == len(keys)  # every appearance is a distinct sample key
    appearances = np.bincount(keys % size, minlength=size)
    with_platelets = rare(bccd_train)
    assert appearances[~with_platelets].tolist() == [1] * int((~with_platelets).sum())
    assert set(appearances[with_platelets].tolist()) == {1, 2}
    assert appearances[with_platelets].mean() > 1.15  # 227 - 88 = 139 samples for 117 images
    # Over many epochs each image's average matches its factor.
    mean = np.mean([repeat_counts(factors.image_factors, np.random.default_rng(e)) for e in range(400)], 0)
    assert np.abs(mean - factors.image_factors).max() < 0.1


def test_order_reproducible_and_resumable(bccd_train: DetectionDataset) -> None:
    factors = compute_repeat_factors(bccd_train, THRESHOLD).image_factors
    first, second = RepeatFactorSampler(factors, seed=7), RepeatFactorSampler(factors, seed=7)
    first.set_epoch(2)
    second.set_epoch(2)
    full = list(first)
    assert full == list(second)
    second.set_epoch(3)
    assert list(second) != full
    assert len(second) == len(full)  # the epoch size does not depend on the epoch
    second.set_epoch(2, start_index=100)
    assert list(second) == full[100:]
    assert len(second) == len(full) - 100


def test_no_repeats_keeps_the_plain_order() -> None:
    sampler, plain = RepeatFactorSampler(np.ones(50), seed=1), TrainSampler(50, seed=1)
    sampler.set_epoch(4)
    plain.set_epoch(4)
    assert list(sampler) == list(plain)


def test_fixed_epoch_length_when_fractions_do_not_sum_to_an_integer() -> None:
    factors = np.array([1.3, 1.3, 1.3, 2.45, 1.0, 1.99])  # sum 9.34 -> 9 samples every epoch
    sampler = RepeatFactorSampler(factors, seed=0)
    for epoch in range(50):
        sampler.set_epoch(epoch)
        counts = np.bincount(np.array(list(sampler)) % len(factors), minlength=len(factors))
        assert counts.sum() == 9
        assert np.all(counts >= np.floor(factors)) and np.all(counts <= np.ceil(factors))


def test_loader_length_and_distinct_augmentation_of_copies(bccd_train: DetectionDataset) -> None:
    factors = compute_repeat_factors(bccd_train, THRESHOLD).image_factors
    subset = DetectionDataset(bccd_train.records[:12], BCCD_CLASSES)
    flip_only = build_augmentations(AugmentationConfig(mosaic=False, hsv_aug=False), get_registry())
    train = TrainDataset(subset, (160, 160), flip_only, seed=0)
    loader = build_train_loader(train, 4, num_workers=0, seed=0, repeat_factors=factors[:12])
    expected = math.floor(factors[:12].sum() + 0.5)
    assert len(loader) == expected // 4
    set_loader_epoch(loader, 1)
    assert sum(len(images) for images, _ in loader) == expected // 4 * 4
    # The second appearance of an image is the same record with its own random draws.
    copies = [int(torch.equal(train[index][0], train[index + len(train)][0])) for index in range(len(train))]
    targets = train[0][1], train[len(train)][1]
    assert targets[0][:, 0].tolist() == targets[1][:, 0].tolist()  # the same record's classes
    assert sum(copies) < len(copies)  # some copies were flipped differently
    with pytest.raises(ValueError, match="repeat factors"):
        build_train_loader(train, 4, repeat_factors=factors)


def test_config_threshold_validated(tmp_path: Path) -> None:
    assert load_config(None, ["data.repeat_factor_threshold=0.3"]).data.repeat_factor_threshold == 0.3
    assert load_config(None).data.repeat_factor_threshold is None
    with pytest.raises(ConfigError, match="repeat_factor_threshold"):
        load_config(None, ["data.repeat_factor_threshold=0"])


def test_trainer_builds_a_balanced_loader(
    bccd_train: DetectionDataset, caplog: pytest.LogCaptureFixture
) -> None:
    from yolox_sdk.data.training_data import build_training_loader

    overrides = ["data.repeat_factor_threshold=0.8", "data.batch_size=8", "augmentation.mosaic=false"]
    with caplog.at_level(logging.INFO, logger="yolox_sdk.data.balancing"):
        _, loader = build_training_loader(load_config(None, overrides), bccd_train, (160, 160), get_registry())
    assert isinstance(loader.sampler, RepeatFactorSampler)
    assert len(loader) == 227 // 8  # the schedule's iterations per epoch
    assert "Platelets: in 57.1% of the images" in caplog.text

    _, plain = build_training_loader(load_config(None, overrides[1:]), bccd_train, (160, 160), get_registry())
    assert type(plain.sampler) is TrainSampler
    assert len(plain) == 205 // 8
