"""Run set-up from config: class counts, class alignment between splits, initial weights."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from yolox_sdk.config.loader import load_config
from yolox_sdk.data.records import DetectionDataset, ImageRecord
from yolox_sdk.engine.setup import (
    align_classes,
    base_learning_rate,
    build_training_model,
    load_training_data,
    model_spec_from_config,
    resolve_num_classes,
)
from yolox_sdk.errors import CheckpointError, ConfigError, DatasetError


def tiny_dataset(names: tuple[str, ...], labels: list[int]) -> DetectionDataset:
    boxes = np.array([[1, 1, 5, 5]] * len(labels), dtype=np.float32)
    return DetectionDataset([ImageRecord(Path("a.jpg"), 10, 10, boxes, labels)], names, source=Path("val"))


def test_num_classes_disagreeing_with_dataset_the_dataset_wins(caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(None, ["model.num_classes=80"])
    with caplog.at_level(logging.WARNING):
        assert resolve_num_classes(config, tiny_dataset(("a", "b", "c"), [0])) == 3
    assert "model.num_classes is 80 but the training data has 3 classes" in caplog.text


def test_align_classes_reorders_by_name() -> None:
    val = tiny_dataset(("WBC", "RBC"), [0, 1])
    aligned = align_classes(val, ("Platelets", "RBC", "WBC"))
    assert aligned.class_names == ("Platelets", "RBC", "WBC")
    assert aligned.records[0].labels.tolist() == [2, 1]


def test_align_classes_refuses_unknown_class() -> None:
    with pytest.raises(DatasetError, match=r"classes \['Dog'\] do not exist in the training data"):
        align_classes(tiny_dataset(("Dog",), [0]), ("Cat",))


def test_missing_train_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="data.train_path is not set"):
        load_training_data(load_config(None))


def test_bccd_splits_share_class_order() -> None:
    config = load_config(
        None, ["data.train_path=bccd", "data.train_split=train", "data.val_path=bccd", "data.val_split=val"]
    )
    train, val = load_training_data(config)
    assert (len(train), len(val)) == (205, 87)
    assert train.class_names == val.class_names


def test_checkpoint_from_a_different_variant_is_refused(nano_weights: Path) -> None:
    config = load_config(None, ["model.name=yolox-tiny", f"model.checkpoint={nano_weights}"])
    with pytest.raises(CheckpointError, match="another variant"):
        build_training_model(config, model_spec_from_config(config, 3))


def test_learning_rate_scales_with_batch() -> None:
    assert base_learning_rate(load_config(None, ["data.batch_size=8"])) == pytest.approx(0.01 * 8 / 64)


def test_preflight_check_is_cached_and_stops_on_broken_images(
    tmp_path: Path, bccd_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from yolox_sdk.data import validation
    from yolox_sdk.engine.setup import preflight_check

    images = []
    for name in sorted((bccd_dir / "JPEGImages").glob("*.jpg"))[:3]:
        images.append(Path(shutil.copy(name, tmp_path / name.name)))
    dataset = DetectionDataset([ImageRecord(p, 640, 480) for p in images], ("a",), source=tmp_path)
    preflight_check(dataset, "train")
    opened = []
    original = validation.inspect_image_header
    monkeypatch.setattr(
        validation, "inspect_image_header", lambda path: opened.append(path) or original(path)
    )
    preflight_check(dataset, "train")
    assert opened == []
    images[1].write_bytes(images[1].read_bytes()[:5000])
    with pytest.raises(DatasetError, match="cannot be trained on"):
        preflight_check(dataset, "train")
    assert opened == [images[1].resolve()]
