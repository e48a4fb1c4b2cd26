"""The training dataset, its image caches and the training data loader, on real BCCD images."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BCCD_CLASSES, read_bccd_boxes

from yolox_sdk.config.schema import AugmentationConfig
from yolox_sdk.data import image_cache
from yolox_sdk.data.loader import (
    TrainSampler,
    batch_to_device,
    build_train_loader,
    collate_train_batch,
    default_num_workers,
    random_multiscale_size,
    resize_batch,
    set_loader_epoch,
)
from yolox_sdk.data.pipeline import build_augmentations
from yolox_sdk.data.preprocess import letterbox, read_image
from yolox_sdk.data.records import DetectionDataset, ImageRecord
from yolox_sdk.data.train_dataset import TrainDataset
from yolox_sdk.errors import DatasetError
from yolox_sdk.plugins import get_registry

CLASSES = BCCD_CLASSES
NANO_RECIPE = AugmentationConfig(mosaic_prob=0.5, scale=(0.5, 1.5), mixup=False)


def load_bccd(bccd_dir: Path, limit: int, images_dir: Path | None = None) -> DetectionDataset:
    """The first ``limit`` BCCD training images, read independently of the SDK's format plugins."""
    records = []
    for image_id in (bccd_dir / "ImageSets" / "Main" / "train.txt").read_text().split()[:limit]:
        boxes, labels = read_bccd_boxes(bccd_dir, image_id)
        folder = images_dir or bccd_dir / "JPEGImages"
        records.append(ImageRecord(folder / f"{image_id}.jpg", 640, 480, boxes, labels, image_id))
    return DetectionDataset(records, CLASSES, source=bccd_dir, format="voc")


@pytest.fixture(scope="module")
def bccd16(bccd_dir: Path) -> DetectionDataset:
    return load_bccd(bccd_dir, 16)


@pytest.fixture
def bccd_copy(bccd_dir: Path, tmp_path: Path) -> DetectionDataset:
    """Six BCCD images copied to a writable folder (to touch or corrupt them)."""
    images = tmp_path / "images"
    images.mkdir()
    dataset = load_bccd(bccd_dir, 6, images)
    for record in dataset.records:
        shutil.copy(bccd_dir / "JPEGImages" / record.image_path.name, record.image_path)
    return dataset


def full_recipe(config: AugmentationConfig = NANO_RECIPE) -> list:
    return build_augmentations(config, get_registry())


def valid_rows(targets: torch.Tensor) -> torch.Tensor:
    return targets[targets.sum(dim=1) > 0]


# --- samples -------------------------------------------------------------------------------------------


def test_sample_format_and_targets(bccd16: DetectionDataset) -> None:
    dataset = TrainDataset(bccd16, (320, 320), full_recipe(), seed=0)
    for index in range(4):
        image, targets = dataset[index]
        assert image.shape == (3, 320, 320) and image.dtype == torch.uint8  # float32 on the device
        assert targets.shape == (120, 5) and targets.dtype == torch.float32
        rows = valid_rows(targets)
        count = len(rows)
        assert count > 0 and not targets[count:].any()  # valid rows first, zero padding after
        assert set(rows[:, 0].tolist()) <= {0.0, 1.0, 2.0}
        cx, cy, w, h = rows[:, 1:].T
        assert (w > 1).all() and (h > 1).all()
        assert (cx - w / 2 >= -1e-3).all() and (cx + w / 2 <= 320 + 1e-3).all()
        assert (cy - h / 2 >= -1e-3).all() and (cy + h / 2 <= 320 + 1e-3).all()


def test_seed_epoch_and_index_fix_the_sample(bccd16: DetectionDataset) -> None:
    first = TrainDataset(bccd16, (320, 320), full_recipe(), seed=7)
    second = TrainDataset(bccd16, (320, 320), full_recipe(), seed=7)
    other_seed = TrainDataset(bccd16, (320, 320), full_recipe(), seed=8)
    second[5]  # access order does not matter
    for index in (3, 5):
        a_image, a_targets = first[index]
        b_image, b_targets = second[index]
        assert torch.equal(a_image, b_image) and torch.equal(a_targets, b_targets)
    assert any(not torch.equal(first[i][0], other_seed[i][0]) for i in range(3))
    before = first[3][0]
    first.set_epoch(1)
    assert not torch.equal(first[3][0], before)


def test_no_aug_mode_is_the_plain_letterbox(bccd16: DetectionDataset) -> None:
    strong_only = AugmentationConfig(hsv_aug=False, flip_prob=0.0)  # mosaic, affine and mixup
    dataset = TrainDataset(bccd16, (416, 416), full_recipe(strong_only), seed=0)
    dataset.set_no_aug(True)
    record = bccd16.records[2]
    image, targets = dataset[2]
    expected, ratio = letterbox(read_image(record.image_path), (416, 416))
    np.testing.assert_array_equal(image.numpy(), expected)
    boxes = record.boxes * ratio
    rows = valid_rows(targets).numpy()
    np.testing.assert_allclose(rows[:, 3], boxes[:, 2] - boxes[:, 0], rtol=1e-5)
    np.testing.assert_allclose(rows[:, 1], (boxes[:, 0] + boxes[:, 2]) / 2, rtol=1e-5)
    dataset.set_no_aug(False)
    assert not torch.equal(dataset[2][0], image)


def test_no_aug_mode_keeps_flip_like_yolox_close_mosaic(bccd16: DetectionDataset) -> None:
    config = AugmentationConfig(hsv_aug=False, flip_prob=1.0)
    dataset = TrainDataset(bccd16, (416, 416), full_recipe(config), seed=0)
    dataset.set_no_aug(True)
    image, _ = dataset[1]
    expected, _ = letterbox(read_image(bccd16.records[1].image_path)[:, ::-1], (416, 416))
    np.testing.assert_array_equal(image.numpy(), expected)


# --- caches --------------------------------------------------------------------------------------------


def test_ram_and_disk_caches_give_the_same_samples_as_no_cache(
    bccd_copy: DetectionDataset, tmp_path: Path
) -> None:
    augmentations = full_recipe()
    plain = TrainDataset(bccd_copy, (320, 320), augmentations, seed=3)
    ram = TrainDataset(bccd_copy, (320, 320), augmentations, seed=3, cache_mode="ram")
    disk = TrainDataset(
        bccd_copy, (320, 320), augmentations, seed=3, cache_mode="disk", cache_dir=tmp_path / "c"
    )
    for index in range(len(bccd_copy)):
        expected_image, expected_targets = plain[index]
        for cached in (ram, disk):
            image, targets = cached[index]
            assert torch.equal(image, expected_image) and torch.equal(targets, expected_targets)


def test_disk_cache_is_reused_and_invalidated_by_a_touched_source(
    bccd_copy: DetectionDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    built = TrainDataset(bccd_copy, (320, 320), [], seed=0, cache_mode="disk", cache_dir=cache_dir)
    assert built.source.reused is False
    expected = built[4]

    def no_decoding(*args: object) -> None:
        raise AssertionError("a reused disk cache must not decode images")

    with monkeypatch.context() as patch:
        patch.setattr(image_cache, "load_resized_image", no_decoding)
        reused = TrainDataset(bccd_copy, (320, 320), [], seed=0, cache_mode="disk", cache_dir=cache_dir)
        assert reused.source.reused is True
        assert isinstance(reused.source.images(), np.memmap)
        assert torch.equal(reused[4][0], expected[0])

    touched = bccd_copy.records[0].image_path
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    rebuilt = TrainDataset(bccd_copy, (320, 320), [], seed=0, cache_mode="disk", cache_dir=cache_dir)
    assert rebuilt.source.reused is False
    assert len(list(cache_dir.iterdir())) == 1  # rebuilt in place, no stale copy left behind


def test_corrupt_image_at_access_is_skipped_and_counted(
    bccd_copy: DetectionDataset, caplog: pytest.LogCaptureFixture
) -> None:
    dataset = TrainDataset(bccd_copy, (320, 320), [], seed=0)
    bccd_copy.records[2].image_path.write_bytes(b"\xff\xd8 not really a jpeg")
    with caplog.at_level(logging.WARNING):
        image, targets = dataset[2]
    assert dataset.skipped_samples == 1
    assert bccd_copy.records[2].image_path.name in caplog.text
    next_image, next_targets = dataset[3]
    assert torch.equal(image, next_image) and torch.equal(targets, next_targets)
    dataset[2]
    assert dataset.skipped_samples == 2


def test_corrupt_image_in_a_ram_cache_is_skipped_too(bccd_copy: DetectionDataset) -> None:
    bccd_copy.records[1].image_path.write_bytes(b"garbage")
    dataset = TrainDataset(bccd_copy, (320, 320), full_recipe(), seed=0, cache_mode="ram")
    for index in range(len(dataset)):
        dataset[index]
    assert dataset.skipped_samples >= 1


def test_a_dataset_without_readable_images_is_an_error(bccd_copy: DetectionDataset) -> None:
    for record in bccd_copy.records:
        record.image_path.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="None of the"):
        TrainDataset(bccd_copy, (320, 320), [], seed=0, cache_mode="ram")
    dataset = TrainDataset(bccd_copy, (320, 320), [], seed=0)
    with pytest.raises(DatasetError, match="None of the"):
        dataset[0]


# --- loader --------------------------------------------------------------------------------------------


def test_loader_batches_and_drop_last(bccd16: DetectionDataset) -> None:
    dataset = TrainDataset(load_subset(bccd16, 10), (320, 320), full_recipe(), seed=0)
    loader = build_train_loader(dataset, batch_size=4, num_workers=0, seed=0)
    batches = list(loader)
    assert len(batches) == 2  # 10 images: the partial batch of 2 is dropped
    images, targets = batches[0]
    assert images.shape == (4, 3, 320, 320) and targets.shape == (4, 120, 5)
    kept = list(build_train_loader(dataset, batch_size=4, num_workers=0, seed=0, drop_last=False))
    assert [len(batch[0]) for batch in kept] == [4, 4, 2]
    images, targets = collate_train_batch([dataset[0], dataset[1]])
    assert images.shape == (2, 3, 320, 320) and targets.shape == (2, 120, 5)


def load_subset(dataset: DetectionDataset, count: int) -> DetectionDataset:
    return DetectionDataset(dataset.records[:count], dataset.class_names)


def test_sampler_order_is_seeded_and_resumable() -> None:
    sampler = TrainSampler(20, seed=1)
    sampler.set_epoch(3)
    epoch3 = list(sampler)
    assert sorted(epoch3) == list(range(20)) and epoch3 != list(range(20))
    sampler.set_epoch(3, start_index=8)
    assert list(sampler) == epoch3[8:] and len(sampler) == 12
    sampler.set_epoch(4)
    assert list(sampler) != epoch3
    assert list(TrainSampler(5, seed=1, shuffle=False)) == [0, 1, 2, 3, 4]


def test_resumed_epoch_and_worker_count_give_the_same_batches(bccd16: DetectionDataset) -> None:
    dataset = TrainDataset(bccd16, (320, 320), full_recipe(), seed=5)
    loader = build_train_loader(dataset, batch_size=4, num_workers=0, seed=5)
    set_loader_epoch(loader, 2)
    full_epoch = list(loader)
    set_loader_epoch(loader, 2, start_batch=2)
    resumed = list(loader)
    assert len(resumed) == 2
    for (a_images, a_targets), (b_images, b_targets) in zip(full_epoch[2:], resumed, strict=True):
        assert torch.equal(a_images, b_images) and torch.equal(a_targets, b_targets)
    with_workers = build_train_loader(dataset, batch_size=4, num_workers=2, seed=5)
    set_loader_epoch(with_workers, 2, start_batch=2)
    for (a_images, a_targets), (b_images, b_targets) in zip(resumed, with_workers, strict=True):
        assert torch.equal(a_images, b_images) and torch.equal(a_targets, b_targets)


def test_default_num_workers_follows_the_measurement() -> None:
    assert default_num_workers(2) == 0
    assert default_num_workers(16) >= 1


# --- multi-scale ---------------------------------------------------------------------------------------


def test_resize_batch_scales_images_and_targets() -> None:
    images = torch.rand(2, 3, 320, 416) * 255
    targets = torch.zeros(2, 120, 5)
    targets[0, 0] = torch.tensor([2.0, 100.0, 80.0, 40.0, 30.0])
    resized, scaled = resize_batch(images, targets, (480, 320))
    assert resized.shape == (2, 3, 480, 320)
    expected = torch.tensor([2.0, 100.0 * 320 / 416, 80.0 * 1.5, 40.0 * 320 / 416, 30.0 * 1.5])
    torch.testing.assert_close(scaled[0, 0], expected)
    assert not scaled[0, 1:].any() and not scaled[1].any()
    assert targets[0, 0, 1] == 100.0  # input untouched
    reference = torch.nn.functional.interpolate(images, size=(480, 320), mode="bilinear", align_corners=False)
    torch.testing.assert_close(resized, reference)
    same_images, same_targets = resize_batch(images, targets, (320, 416))
    assert same_images is images and same_targets is targets


def test_uint8_batches_become_float32_on_the_device_with_the_same_values(bccd16: DetectionDataset) -> None:
    dataset = TrainDataset(load_subset(bccd16, 4), (320, 320), full_recipe(), seed=0)
    images, targets = next(iter(build_train_loader(dataset, batch_size=4, num_workers=0, seed=0)))
    assert images.dtype == torch.uint8 and images.element_size() * images.numel() == 4 * 3 * 320 * 320
    moved, moved_targets = batch_to_device(images, targets, "cpu", torch.channels_last)
    assert moved.dtype == torch.float32 and moved.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(moved, images.to(torch.float32)) and torch.equal(moved_targets, targets)
    resized, _ = resize_batch(images, targets, (256, 256))  # a uint8 batch resizes as its float32 copy
    torch.testing.assert_close(resized, resize_batch(images.float(), targets, (256, 256))[0])


def test_random_multiscale_size_stays_on_the_stride_grid() -> None:
    rng = np.random.default_rng(0)
    sizes = {random_multiscale_size((416, 416), 5, rng) for _ in range(300)}
    assert {h for h, _ in sizes} == {32 * k for k in range(8, 19)}
    assert all(h == w for h, w in sizes)
    wide = {random_multiscale_size((384, 640), 2, rng) for _ in range(100)}
    assert all(h % 32 == 0 and w % 32 == 0 and 320 <= h <= 448 for h, w in wide)
    assert (384, 640) in wide
    assert random_multiscale_size((416, 416), 0, rng) == (416, 416)


# --- one training step ---------------------------------------------------------------------------------


def test_a_batch_trains_yolox_nano(bccd16: DetectionDataset) -> None:
    from yolox_sdk.models import create_model

    torch.manual_seed(0)
    model, _, _ = create_model("yolox-nano", num_classes=3)
    model.train()
    dataset = TrainDataset(load_subset(bccd16, 8), (320, 320), full_recipe(AugmentationConfig()), seed=0)
    images, targets = next(iter(build_train_loader(dataset, batch_size=4, num_workers=0, seed=0)))
    outputs = model(*batch_to_device(images, targets, "cpu"))
    assert torch.isfinite(outputs["total_loss"])
    outputs["total_loss"].backward()


def test_cache_mode_auto_keeps_images_in_ram_when_a_quarter_of_the_memory_holds_them() -> None:
    from yolox_sdk.data.image_cache import available_memory_bytes, resolve_cache_mode

    one_image = 416 * 416 * 3  # bytes of one cache slot
    assert resolve_cache_mode("auto", 205, (416, 416), available=4 * 205 * one_image) == "ram"
    assert resolve_cache_mode("auto", 205, (416, 416), available=4 * 205 * one_image - 1) == "none"
    assert resolve_cache_mode("auto", 205, (416, 416), available=4 * 205 * one_image, processes=2) == "none"
    assert resolve_cache_mode("auto", 205, (416, 416), available=None) == "none"  # unknown: never risk it
    assert resolve_cache_mode("disk", 205, (416, 416), available=10**12) == "disk"  # asked for: kept
    available = available_memory_bytes()
    assert available is None or available > 0
