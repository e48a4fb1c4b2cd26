"""The ``yolo`` format plugin on coco8 and on small edited copies of it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from yolox_sdk.builtin.formats.yolo import YoloFormat, label_path
from yolox_sdk.data.format_support import BOX_CLIPPED, BOX_OUTSIDE, BOX_ZERO_AREA
from yolox_sdk.errors import DatasetError

IMAGE = "000000000009"


@pytest.fixture
def coco8_copy(coco8_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of coco8 (8 small images, 30 boxes)."""
    return Path(shutil.copytree(coco8_dir, tmp_path / "coco8"))


def _label_file(root: Path, name: str = IMAGE) -> Path:
    return root / "labels" / "train" / f"{name}.txt"


def test_coco8_splits_and_names(coco8_dir: Path) -> None:
    names = yaml.safe_load((coco8_dir / "data.yaml").read_text())["names"]
    train = YoloFormat().load(coco8_dir, "train")
    val = YoloFormat().load(coco8_dir, "val")
    assert (len(train), len(val)) == (4, 4)
    assert train.class_names == tuple(names[i] for i in range(80))
    assert train.class_names[:3] == ("person", "bicycle", "car") and len(train.class_names) == 80
    assert {r.image_path.parent.name for r in train.records} == {"train"}
    assert {r.image_path.parent.name for r in val.records} == {"val"}
    every = YoloFormat().load(coco8_dir)
    lines = [line for path in (coco8_dir / "labels").rglob("*.txt") for line in path.read_text().splitlines()]
    assert len(every) == 8 and every.num_boxes() == len(lines) == 30
    assert not every.report.counts


def test_normalised_boxes_become_absolute_xyxy(coco8_dir: Path) -> None:
    record = next(r for r in YoloFormat().load(coco8_dir, "train").records if r.image_id == IMAGE)
    width, height = Image.open(coco8_dir / "images" / "train" / f"{IMAGE}.jpg").size
    assert (record.width, record.height) == (width, height) == (640, 480)
    first = _label_file(coco8_dir).read_text().splitlines()[0].split()
    class_id, cx, cy, w, h = int(first[0]), *map(float, first[1:])
    expected = [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
    assert record.boxes.dtype == np.float32
    np.testing.assert_allclose(record.boxes[0], expected, atol=1e-3)
    assert record.labels[0] == class_id == 45


def test_label_path_replaces_the_last_images_folder() -> None:
    assert label_path(Path("/d/images/x/images/train/a.jpg")) == Path("/d/images/x/labels/train/a.txt")
    assert label_path(Path("/d/photos/a.png")) == Path("/d/photos/a.txt")


def test_class_id_out_of_range(coco8_copy: Path) -> None:
    label = _label_file(coco8_copy)
    label.write_text(label.read_text() + "80 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError) as error:
        YoloFormat().load(coco8_copy, "train")
    message = str(error.value)
    assert f"{label}:9:" in message
    assert "class id 80 is out of range" in message and "80 classes (ids 0..79)" in message


@pytest.mark.parametrize("line", ["0 0.5 0.5 0.1", "0 0.5 0.5 0.1 0.1 0.7"])
def test_line_without_five_values(coco8_copy: Path, line: str) -> None:
    label = _label_file(coco8_copy)
    lines = label.read_text().splitlines()
    lines.insert(2, line)
    label.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as error:
        YoloFormat().load(coco8_copy, "train")
    message = str(error.value)
    assert f"{label}:3: expected 5 values" in message
    assert f"found {len(line.split())}" in message


def test_non_numeric_value(coco8_copy: Path) -> None:
    label = _label_file(coco8_copy)
    label.write_text("0 0.5 abc 0.1 0.1\n")
    with pytest.raises(DatasetError, match=rf"{re.escape(str(label))}:1: coordinate 'abc' is not a number"):
        YoloFormat().load(coco8_copy, "train")


def test_clipped_outside_and_zero_area_boxes_are_counted(coco8_copy: Path) -> None:
    label = _label_file(coco8_copy)
    label.write_text(
        "0 0.95 0.5 0.2 0.2\n"  # right half outside: clipped to x2 = 640
        "1 0.5 0.5 0 0.1\n"  # zero width: dropped
        "2 1.5 0.5 0.2 0.2\n"  # entirely outside: dropped
        "3 0.5 0.5 0.5 0.5\n"
    )
    dataset = YoloFormat().load(coco8_copy, "train")
    record = next(r for r in dataset.records if r.image_id == IMAGE)
    assert record.labels.tolist() == [0, 3]
    np.testing.assert_allclose(record.boxes, [[544, 192, 640, 288], [160, 120, 480, 360]], atol=1e-3)
    assert dataset.report.counts == {BOX_CLIPPED: 1, BOX_ZERO_AREA: 1, BOX_OUTSIDE: 1}
    assert dataset.report.examples[BOX_ZERO_AREA] == [f"{label}:2"]


def test_image_without_label_file_is_background(coco8_copy: Path) -> None:
    _label_file(coco8_copy).unlink()
    dataset = YoloFormat().load(coco8_copy, "train")
    record = next(r for r in dataset.records if r.image_id == IMAGE)
    assert len(dataset) == 4
    assert record.boxes.shape == (0, 4) and record.labels.shape == (0,)


def test_classes_txt_layout_with_split_folders(coco8_copy: Path) -> None:
    names = yaml.safe_load((coco8_copy / "data.yaml").read_text())["names"]
    (coco8_copy / "data.yaml").unlink()
    (coco8_copy / "classes.txt").write_text("\n".join(names[i] for i in range(80)) + "\n")
    assert YoloFormat().detect(coco8_copy)
    assert len(YoloFormat().load(coco8_copy, "val")) == 4
    assert len(YoloFormat().load(coco8_copy)) == 8
    with pytest.raises(DatasetError, match=r"split 'tset'\. Splits found: train, val"):
        YoloFormat().load(coco8_copy, "tset")


def test_yaml_names_as_list_and_file_path(coco8_copy: Path) -> None:
    config = yaml.safe_load((coco8_copy / "data.yaml").read_text())
    config["names"] = [config["names"][i] for i in range(80)]
    (coco8_copy / "custom.yaml").write_text(yaml.safe_dump(config))
    dataset = YoloFormat().load(coco8_copy / "custom.yaml", "val")
    assert len(dataset) == 4 and dataset.class_names[79] == "toothbrush"


def test_unknown_split_key(coco8_dir: Path) -> None:
    with pytest.raises(DatasetError, match=r"data\.yaml has no 'test' split; it lists: train, val"):
        YoloFormat().load(coco8_dir, "test")


def test_malformed_yaml_names_file_line_and_column(coco8_copy: Path) -> None:
    data_yaml = coco8_copy / "data.yaml"
    data_yaml.write_text("names: [a, b\ntrain: images/train\n")
    with pytest.raises(DatasetError, match=rf"{re.escape(str(data_yaml))}:\d+:\d+: malformed YAML"):
        YoloFormat().load(coco8_copy, "train")


def test_empty_image_folder(coco8_copy: Path) -> None:
    for image in (coco8_copy / "images" / "val").iterdir():
        image.unlink()
    with pytest.raises(
        DatasetError, match=r"No images were found at .*coco8 \(split 'val'\)\. Expected a YOLO folder"
    ):
        YoloFormat().load(coco8_copy, "val")


def test_save_writes_yaml_labels_and_images(coco8_dir: Path, tmp_path: Path) -> None:
    dataset = YoloFormat().load(coco8_dir, "val")
    assert YoloFormat().save(dataset, tmp_path / "out") == []
    saved = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    assert saved["train"] == "images" and saved["names"][0] == "person"
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == sorted(
        p.name for p in (coco8_dir / "images" / "val").iterdir()
    )
    again = YoloFormat().load(tmp_path / "out", "train")
    assert again.class_names == dataset.class_names
    for before, after in zip(dataset.records, again.records, strict=True):
        assert before.image_path.name == after.image_path.name
        np.testing.assert_allclose(after.boxes, before.boxes, atol=1e-3)
        np.testing.assert_array_equal(after.labels, before.labels)


def test_detect(coco8_dir: Path, bccd_dir: Path) -> None:
    assert YoloFormat().detect(coco8_dir)
    assert YoloFormat().detect(coco8_dir / "data.yaml")
    assert not YoloFormat().detect(bccd_dir)


def test_unknown_split_with_a_number_as_a_yaml_key(coco8_copy: Path) -> None:
    """A slipped indentation turns a class id into a top-level key; the error still lists the keys."""
    data_yaml = coco8_copy / "data.yaml"
    data_yaml.write_text(data_yaml.read_text().replace("  79: toothbrush", "79: toothbrush"))
    with pytest.raises(DatasetError, match=r"no 'test' split; it lists: train, val, 79;"):
        YoloFormat().load(coco8_copy, "test")
