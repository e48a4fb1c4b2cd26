"""The ``coco`` format plugin on hand-written COCO files over coco8's images."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from yolox_sdk.builtin.formats.coco import CROWD_SKIPPED, CocoFormat, CocoOptions
from yolox_sdk.builtin.formats.voc import VocFormat, VocOptions
from yolox_sdk.builtin.formats.yolo import YoloFormat
from yolox_sdk.data.format_support import BOX_CLIPPED, BOX_ZERO_AREA, IMAGE_CORRUPT
from yolox_sdk.errors import DatasetError

IMAGES = {
    1: ("000000000009.jpg", 640, 480),
    2: ("000000000025.jpg", 640, 426),
    5: ("000000000030.jpg", 640, 428),
}


def _coco(annotations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "info": {"description": "test"},
        "images": [{"id": i, "file_name": n, "width": w, "height": h} for i, (n, w, h) in IMAGES.items()],
        "annotations": annotations,
        "categories": [{"id": 7, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }


def _annotation(
    ann_id: int, image_id: int, category_id: int, bbox: list[float], **extra: Any
) -> dict[str, Any]:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}


DEFAULT_ANNOTATIONS = [
    _annotation(10, 1, 1, [10, 20, 100, 50.5]),
    _annotation(11, 1, 7, [300.25, 40, 20, 30]),
    _annotation(12, 2, 3, [0, 0, 640, 426]),
]


@pytest.fixture
def coco_dir(coco8_dir: Path, tmp_path: Path) -> Path:
    """A folder with annotations.json and the three referenced images in images/."""
    folder = tmp_path / "coco"
    (folder / "images").mkdir(parents=True)
    for name, _, _ in IMAGES.values():
        shutil.copyfile(coco8_dir / "images" / "train" / name, folder / "images" / name)
    _write(folder / "annotations.json", _coco(DEFAULT_ANNOTATIONS))
    return folder


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def test_category_ids_map_to_contiguous_indices(coco_dir: Path) -> None:
    dataset = CocoFormat().load(coco_dir / "annotations.json")
    assert dataset.class_names == ("person", "car", "dog")
    assert dataset.category_ids == (1, 3, 7)
    assert [r.labels.tolist() for r in dataset.records] == [[0, 2], [1], []]


def test_xywh_becomes_xyxy_float32(coco_dir: Path) -> None:
    records = CocoFormat().load(coco_dir / "annotations.json").records
    assert records[0].boxes.dtype == np.float32
    np.testing.assert_array_equal(records[0].boxes, [[10, 20, 110, 70.5], [300.25, 40, 320.25, 70]])
    np.testing.assert_array_equal(records[1].boxes, [[0, 0, 640, 426]])
    assert [r.image_id for r in records] == ["1", "2", "5"]
    assert [(r.width, r.height) for r in records] == [(w, h) for _, w, h in IMAGES.values()]


def test_image_without_annotations_is_kept_as_background(coco_dir: Path) -> None:
    records = CocoFormat().load(coco_dir).records
    assert records[2].image_path == coco_dir / "images" / "000000000030.jpg"
    assert records[2].boxes.shape == (0, 4)


def test_duplicate_annotation_ids(coco_dir: Path) -> None:
    path = _write(
        coco_dir / "annotations.json", _coco([*DEFAULT_ANNOTATIONS, _annotation(11, 2, 1, [1, 1, 5, 5])])
    )
    with pytest.raises(DatasetError) as error:
        CocoFormat().load(path)
    assert str(path) in str(error.value)
    assert "annotation id 11 is used twice" in str(error.value)


def test_crowd_annotations_are_skipped_and_counted(coco_dir: Path) -> None:
    crowd = _annotation(13, 1, 1, [5, 5, 50, 50], iscrowd=1)
    dataset = CocoFormat().load(_write(coco_dir / "annotations.json", _coco([*DEFAULT_ANNOTATIONS, crowd])))
    assert dataset.num_boxes() == 3
    assert dataset.report.counts == {CROWD_SKIPPED: 1}
    assert "id 13" in dataset.report.examples[CROWD_SKIPPED][0]


def test_clipped_and_zero_area_boxes_are_counted(coco_dir: Path) -> None:
    annotations = [_annotation(1, 1, 1, [600, -10, 100, 50]), _annotation(2, 1, 1, [5, 5, 0, 10])]
    dataset = CocoFormat().load(_write(coco_dir / "annotations.json", _coco(annotations)))
    np.testing.assert_array_equal(dataset.records[0].boxes, [[600, 0, 640, 40]])
    assert dataset.report.counts == {BOX_CLIPPED: 1, BOX_ZERO_AREA: 1}


def test_missing_image_is_an_error(coco_dir: Path) -> None:
    (coco_dir / "images" / "000000000025.jpg").unlink()
    with pytest.raises(DatasetError) as error:
        CocoFormat().load(coco_dir / "annotations.json")
    message = str(error.value)
    assert f"{coco_dir / 'annotations.json'} (image id 2)" in message
    assert f"{coco_dir / 'images' / '000000000025.jpg'}, which does not exist" in message


def test_images_nowhere_suggests_image_dir(coco_dir: Path, tmp_path: Path) -> None:
    shutil.move(coco_dir / "images", tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match=r"none of the folders searched.*image_dir"):
        CocoFormat().load(coco_dir / "annotations.json")
    dataset = CocoFormat(CocoOptions(image_dir="../elsewhere")).load(coco_dir / "annotations.json")
    assert dataset.records[0].image_path == tmp_path / "elsewhere" / "000000000009.jpg"  # ".." folded


def test_truncated_image_is_skipped(coco_dir: Path) -> None:
    image = coco_dir / "images" / "000000000025.jpg"
    image.write_bytes(image.read_bytes()[:5000])
    dataset = CocoFormat().load(coco_dir / "annotations.json")
    assert [r.image_id for r in dataset.records] == ["1", "5"]
    assert dataset.report.counts[IMAGE_CORRUPT] == 1


def test_official_layout_with_splits(coco_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "official"
    shutil.copytree(coco_dir / "images", root / "val2017")
    _write(root / "annotations" / "instances_val2017.json", _coco(DEFAULT_ANNOTATIONS))
    _write(root / "annotations" / "instances_train2017.json", _coco(DEFAULT_ANNOTATIONS[:1]))
    dataset = CocoFormat().load(root, "val2017")
    assert dataset.records[0].image_path == root / "val2017" / "000000000009.jpg"
    assert dataset.num_boxes() == 3
    with pytest.raises(DatasetError, match=r"several COCO JSON files.*instances_train2017\.json"):
        CocoFormat().load(root)
    with pytest.raises(DatasetError, match=r"No COCO JSON for split 'test'"):
        CocoFormat().load(root, "test")
    with pytest.raises(DatasetError, match=r"single COCO file, so split 'val'"):
        CocoFormat().load(root / "annotations" / "instances_val2017.json", "val")


def test_malformed_json_names_file_line_and_column(coco_dir: Path) -> None:
    path = coco_dir / "annotations.json"
    path.write_text('{"images": [\n  {"id": 1,, "file_name": "a.jpg"}\n]}')
    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}:2:12: malformed JSON"):
        CocoFormat().load(path)


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (_annotation(1, 99, 1, [0, 0, 1, 1]), r"image_id 99 is not in 'images'"),
        (_annotation(1, 1, 2, [0, 0, 1, 1]), r"category_id 2 is not in 'categories' \(ids \[1, 3, 7\]\)"),
        (_annotation(1, 1, 1, [0, 0, 1]), r"'bbox' must be four numbers"),
    ],
)
def test_inconsistent_annotations(coco_dir: Path, annotation: dict[str, Any], expected: str) -> None:
    path = _write(coco_dir / "annotations.json", _coco([annotation]))
    with pytest.raises(DatasetError, match=expected):
        CocoFormat().load(path)


def test_empty_images_list(coco_dir: Path) -> None:
    path = _write(coco_dir / "annotations.json", {"images": [], "annotations": [], "categories": []})
    with pytest.raises(DatasetError, match=r"No images were found at .*annotations\.json"):
        CocoFormat().load(path)


def test_save_keeps_ids_and_reads_back_identically(coco_dir: Path, tmp_path: Path) -> None:
    dataset = CocoFormat().load(coco_dir / "annotations.json")
    assert CocoFormat().save(dataset, tmp_path / "out") == []
    saved = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert [c["id"] for c in saved["categories"]] == [1, 3, 7]
    assert [i["id"] for i in saved["images"]] == [1, 2, 5]
    again = CocoFormat().load(tmp_path / "out")
    assert again.category_ids == (1, 3, 7) and again.class_names == dataset.class_names
    for before, after in zip(dataset.records, again.records, strict=True):
        np.testing.assert_array_equal(after.boxes, before.boxes)
        np.testing.assert_array_equal(after.labels, before.labels)


def test_detect(coco_dir: Path, coco8_dir: Path, bccd_dir: Path) -> None:
    assert CocoFormat().detect(coco_dir)
    assert CocoFormat().detect(coco_dir / "annotations.json")
    assert not CocoFormat().detect(coco8_dir)
    assert not CocoFormat().detect(bccd_dir)


def test_saving_to_formats_without_ids_warns_and_keeps_fractional_boxes(
    coco_dir: Path, tmp_path: Path
) -> None:
    dataset = CocoFormat().load(coco_dir / "annotations.json")
    voc_warnings = VocFormat().save(dataset, tmp_path / "voc")
    assert any("original ids [1, 3, 7] are not kept" in warning for warning in voc_warnings)
    assert any("class_names ['person', 'car', 'dog']" in warning for warning in voc_warnings)
    yolo_warnings = YoloFormat().save(dataset, tmp_path / "yolo")
    assert yolo_warnings == [
        "YOLO class ids are 0..N-1, so the original category ids [1, 3, 7] are not kept."
    ]

    again = VocFormat(VocOptions(class_names=["person", "car", "dog"])).load(tmp_path / "voc")
    assert again.class_names == dataset.class_names
    for before, after in zip(dataset.records, again.records, strict=True):
        np.testing.assert_array_equal(after.boxes, before.boxes)
        np.testing.assert_array_equal(after.labels, before.labels)
