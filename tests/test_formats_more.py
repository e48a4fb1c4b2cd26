"""The ``cvat``, ``createml``, ``kitti`` and ``csv`` format plugins: round trips of real BCCD boxes, detection
among all layouts, and the bad inputs each reader must count or reject."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import attrs
import numpy as np
import pytest

from yolox_sdk.builtin.formats.createml import CreatemlFormat, CreatemlOptions
from yolox_sdk.builtin.formats.csv_format import CsvFormat
from yolox_sdk.builtin.formats.cvat import (
    EMPTY_TRACK,
    FRAME_WITHOUT_IMAGE,
    POLYGON_CONVERTED,
    ROTATED_BOX_CONVERTED,
    SHAPE_SKIPPED,
    CvatFormat,
)
from yolox_sdk.builtin.formats.kitti import DONT_CARE_SKIPPED, KittiFormat, KittiOptions
from yolox_sdk.data.format_support import BOX_CLIPPED, IMAGE_CORRUPT
from yolox_sdk.data.formats import detect_format, load_dataset
from yolox_sdk.data.records import DetectionDataset, ImageRecord
from yolox_sdk.errors import DatasetError
from yolox_sdk.plugins import get_registry
from yolox_sdk.plugins.interfaces import DatasetFormat

REPO_ROOT = Path(__file__).resolve().parents[1]
NEW_FORMATS = ("cvat", "createml", "kitti", "csv")
SUBSET_SIZE = 20
KITTI_TAIL = "-1 -1 -1 -1000 -1000 -1000 -10"


def _writer(name: str) -> DatasetFormat:
    entry = get_registry().get("dataset_format", name)
    return entry.factory(entry.options() if entry.options else None)


@pytest.fixture(scope="module")
def bccd_subset(bccd_dir: Path) -> DetectionDataset:
    """The first 20 BCCD images read through the VOC reader; the second one stripped to a background image."""
    dataset = load_dataset(bccd_dir, format="voc")
    records = dataset.records[:SUBSET_SIZE]
    first = records[1]
    records[1] = ImageRecord(first.image_path, first.width, first.height, image_id=first.image_id)
    return attrs.evolve(dataset, records=records)


def _copy_images(bccd_dir: Path, folder: Path, numbers: list[int]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"BloodImage_{n:05d}.jpg" for n in numbers]
    for name in names:
        shutil.copyfile(bccd_dir / "JPEGImages" / name, folder / name)
    return names


def _assert_same(before: DetectionDataset, after: DetectionDataset, tolerance: float) -> None:
    assert after.class_names == before.class_names
    assert len(after) == len(before)
    for old, new in zip(before.records, after.records, strict=True):
        assert new.image_path.name == old.image_path.name
        assert new.image_id == old.image_id
        assert (new.width, new.height) == (old.width, old.height)
        np.testing.assert_allclose(new.boxes, old.boxes, rtol=0, atol=tolerance)
        np.testing.assert_array_equal(new.labels, old.labels)


def test_new_formats_are_registered_plugins() -> None:
    registry = get_registry()
    for name in NEW_FORMATS:
        entry = registry.get("dataset_format", name)
        assert entry.origin.distribution == "yolox-sdk"
        assert isinstance(_writer(name), DatasetFormat)


@pytest.mark.parametrize(
    ("name", "tolerance"), [("cvat", 0.0), ("createml", 1e-3), ("kitti", 0.0), ("csv", 0.0)]
)
def test_round_trip_of_real_boxes(
    bccd_subset: DetectionDataset, tmp_path: Path, name: str, tolerance: float
) -> None:
    assert bccd_subset.num_boxes() > 200 and not len(bccd_subset.records[1].boxes)
    assert _writer(name).save(bccd_subset, tmp_path / name) == []
    again = load_dataset(tmp_path / name)
    assert again.format == name
    assert not again.report.counts
    _assert_same(bccd_subset, again, tolerance)


@pytest.mark.parametrize("name", NEW_FORMATS)
def test_class_order_is_kept_or_the_loss_is_warned(
    bccd_subset: DetectionDataset, tmp_path: Path, name: str
) -> None:
    order = ("WBC", "RBC", "Platelets", "Unused")  # not sorted, and one class without boxes
    new_index = np.array([2, 1, 0])  # sorted index -> index in ``order``
    records = [attrs.evolve(r, labels=new_index[r.labels]) for r in bccd_subset.records[:5]]
    dataset = DetectionDataset(records, order, (4, 7, 9, 11))
    warnings = _writer(name).save(dataset, tmp_path)
    assert any("(4, 7, 9, 11)" in w or "[4, 7, 9, 11]" in w for w in warnings)
    if name == "cvat":
        assert len(warnings) == 1
        again = load_dataset(tmp_path)
    else:
        assert any(
            "class_names ['WBC', 'RBC', 'Platelets', 'Unused']" in w and "Unused" in w for w in warnings
        )
        assert load_dataset(tmp_path).class_names == ("Platelets", "RBC", "WBC")
        again = load_dataset(tmp_path, options={"class_names": list(order)})
    _assert_same(attrs.evolve(dataset, records=records), again, 1e-3)


def test_each_layout_is_detected_as_exactly_one_format(
    bccd_subset: DetectionDataset,
    bccd_dir: Path,
    coco8_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = get_registry()
    small = attrs.evolve(bccd_subset, records=bccd_subset.records[:3])
    for name in ("coco", "yolo", *NEW_FORMATS):
        _writer(name).save(small, tmp_path / name)
        assert detect_format(tmp_path / name, registry) == name
    assert detect_format(bccd_dir, registry) == "voc"
    assert detect_format(coco8_dir, registry) == "yolo"
    for name, file_name in [
        ("cvat", "annotations.xml"),
        ("createml", "annotations.json"),
        ("csv", "annotations.csv"),
    ]:
        assert detect_format(tmp_path / name / file_name, registry) == name

    # LabelMe is a separate distribution: none of the built-ins may claim its layout, nor it ours.
    labelme_dir = tmp_path / "labelme"
    _copy_images(bccd_dir, labelme_dir, [0])
    document = {
        "version": "5.4.1",
        "flags": {},
        "shapes": [
            {"label": "WBC", "points": [[259, 176], [490, 375]], "shape_type": "rectangle", "flags": {}}
        ],
        "imagePath": "BloodImage_00000.jpg",
        "imageData": None,
        "imageHeight": 480,
        "imageWidth": 640,
    }
    (labelme_dir / "BloodImage_00000.json").write_text(json.dumps(document))
    with pytest.raises(DatasetError, match="does not look like any dataset format"):
        detect_format(labelme_dir, registry)
    monkeypatch.syspath_prepend(str(REPO_ROOT / "plugins" / "yolox-sdk-labelme"))
    from yolox_sdk_labelme import LabelmeOptions
    from yolox_sdk_labelme.labelme import LabelmeFormat

    labelme = LabelmeFormat(LabelmeOptions())
    assert labelme.detect(labelme_dir)
    assert not any(labelme.detect(tmp_path / name) for name in ("coco", "yolo", *NEW_FORMATS))


CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><labels>
    <label><name>WBC</name><attributes><attribute><name>stain</name></attribute></attributes></label>
    <label><name>RBC</name></label>
    <label><name>Platelets</name></label>
  </labels></task></meta>
  <image id="0" name="BloodImage_00000.jpg" width="640" height="480" subset="train">
    <box label="WBC" occluded="0" xtl="259" ytl="176" xbr="490" ybr="375" z_order="0"/>
    <polygon label="RBC" occluded="0" points="77,335;183,360.5;130,434" z_order="0"/>
    <box label="RBC" occluded="0" xtl="300" ytl="100" xbr="340" ybr="120" rotation="90" z_order="0"/>
    <polyline label="RBC" points="1,1;5,5" z_order="0"/>
    <tag label="RBC"/>
  </image>
  <image id="1" name="BloodImage_00001.jpg" width="640" height="480" subset="val"/>
  <track id="0" label="Platelets">
    <box frame="0" outside="0" occluded="0" keyframe="1" xtl="10" ytl="20" xbr="30" ybr="40" z_order="0"/>
    <box frame="1" outside="0" occluded="0" keyframe="1" xtl="12.5" ytl="22" xbr="32" ybr="42" z_order="0"/>
    <box frame="2" outside="1" occluded="0" keyframe="1" xtl="12" ytl="22" xbr="32" ybr="42" z_order="0"/>
    <box frame="7" outside="0" occluded="0" keyframe="1" xtl="12" ytl="22" xbr="32" ybr="42" z_order="0"/>
  </track>
  <track id="1" label="RBC">
    <points frame="0" outside="0" occluded="0" keyframe="1" points="5,5" z_order="0"/>
  </track>
</annotations>
"""


@pytest.fixture
def cvat_dir(bccd_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "cvat"
    _copy_images(bccd_dir, folder / "images", [0, 1])
    (folder / "annotations.xml").write_text(CVAT_XML)
    return folder


def test_cvat_tracks_polygons_and_shapes_that_are_not_boxes(cvat_dir: Path) -> None:
    dataset = CvatFormat().load(cvat_dir)
    assert dataset.class_names == ("WBC", "RBC", "Platelets")  # <meta> order, attribute names left out
    first, second = dataset.records
    np.testing.assert_array_equal(
        first.boxes, [[259, 176, 490, 375], [77, 335, 183, 434], [310, 90, 330, 130], [10, 20, 30, 40]]
    )
    assert first.labels.tolist() == [0, 1, 1, 2]
    np.testing.assert_array_equal(second.boxes, [[12.5, 22, 32, 42]])
    assert second.labels.tolist() == [2]
    assert dataset.report.counts == {
        POLYGON_CONVERTED: 1,
        ROTATED_BOX_CONVERTED: 1,
        SHAPE_SKIPPED: 1,
        EMPTY_TRACK: 1,
        FRAME_WITHOUT_IMAGE: 1,
    }
    assert dataset.report.examples[EMPTY_TRACK] == [f"{cvat_dir / 'annotations.xml'} (track id 1)"]
    assert "frame 7" in dataset.report.examples[FRAME_WITHOUT_IMAGE][0]


def test_cvat_subset_is_the_split_and_labels_must_be_declared(cvat_dir: Path) -> None:
    assert [r.image_id for r in CvatFormat().load(cvat_dir, "val").records] == ["BloodImage_00001"]
    with pytest.raises(
        DatasetError, match=r"no images with subset 'trian'.*Did you mean 'train'.*train, val"
    ):
        CvatFormat().load(cvat_dir, "trian")
    xml = cvat_dir / "annotations.xml"
    xml.write_text(CVAT_XML.replace('<box label="WBC"', '<box label="WBCs"'))
    with pytest.raises(DatasetError, match=r"label 'WBCs' is not among the <labels>.*Did you mean 'WBC'"):
        CvatFormat().load(cvat_dir)


def test_cvat_tracks_without_images_and_malformed_xml(cvat_dir: Path) -> None:
    xml = cvat_dir / "annotations.xml"
    xml.write_text(re.sub(r"<image [^>]*/>|<image .*?</image>", "", CVAT_XML, flags=re.S))
    with pytest.raises(DatasetError, match=r"2 <track> elements but no <image> elements"):
        CvatFormat().load(cvat_dir)
    xml.write_text(CVAT_XML.replace("</image>", "</imag>", 1))
    with pytest.raises(DatasetError, match=rf"{re.escape(str(xml))}:15:\d+: malformed XML"):
        CvatFormat().load(cvat_dir)


def _kitti_dir(bccd_dir: Path, folder: Path, lines: list[str]) -> Path:
    _copy_images(bccd_dir, folder / "image_2", [0, 1])
    (folder / "label_2").mkdir()
    (folder / "label_2" / "BloodImage_00000.txt").write_text("".join(f"{line}\n" for line in lines))
    return folder


def test_kitti_dont_care_score_background_and_clipping(bccd_dir: Path, tmp_path: Path) -> None:
    folder = _kitti_dir(
        bccd_dir,
        tmp_path / "training",
        [
            f"WBC 0.00 0 -10 259.5 176 490 375 {KITTI_TAIL}",
            f"DontCare -1 -1 -10 0 0 50 50 {KITTI_TAIL}",
            f"RBC 0.30 1 1.57 77 335 183 700 {KITTI_TAIL} 0.93",
        ],
    )
    dataset = KittiFormat().load(tmp_path, "training")
    assert KittiFormat().detect(folder) and not KittiFormat().detect(tmp_path)
    assert dataset.class_names == ("RBC", "WBC")
    first, background = dataset.records
    np.testing.assert_array_equal(first.boxes, [[259.5, 176, 490, 375], [77, 335, 183, 480]])
    assert first.labels.tolist() == [1, 0]
    assert len(background.boxes) == 0 and background.image_id == "BloodImage_00001"
    label_file = folder / "label_2" / "BloodImage_00000.txt"
    assert dataset.report.counts == {DONT_CARE_SKIPPED: 1, BOX_CLIPPED: 1}
    assert dataset.report.examples[DONT_CARE_SKIPPED] == [f"{label_file}:2"]
    with pytest.raises(DatasetError, match=r"class_names \(WBC\)"):
        KittiFormat(KittiOptions(class_names=["WBC"])).load(folder)


def test_kitti_wrong_field_count_and_missing_image(bccd_dir: Path, tmp_path: Path) -> None:
    folder = _kitti_dir(
        bccd_dir,
        tmp_path,
        [
            f"WBC 0.00 0 -10 259 176 490 375 {KITTI_TAIL}",
            "RBC 0 0 -10 77 335 183 434 -1 -1 -1 -1000 -1000 -1000",
        ],
    )
    label_file = folder / "label_2" / "BloodImage_00000.txt"
    with pytest.raises(DatasetError, match=rf"{re.escape(str(label_file))}:2: expected 15 fields.*found 14"):
        KittiFormat().load(folder)
    label_file.write_text(f"WBC 0.00 0 -10 259 176 490 375 {KITTI_TAIL}\n")
    shutil.copyfile(label_file, folder / "label_2" / "BloodImage_00002.txt")
    with pytest.raises(DatasetError, match=r"BloodImage_00002\.png, which does not exist"):
        KittiFormat().load(folder)


CSV_ROWS = [
    "image,xmin,ymin,xmax,ymax,label",
    "BloodImage_00000.jpg,259,176,490,375,WBC",
    "BloodImage_00001.jpg,,,,,",
    "BloodImage_00000.jpg,77.25,335,183,434,RBC",
]


def test_csv_backgrounds_and_open_images_columns(bccd_dir: Path, tmp_path: Path) -> None:
    _copy_images(bccd_dir, tmp_path / "images", [0, 1])
    (tmp_path / "boxes.csv").write_text("\n".join(CSV_ROWS) + "\n")
    dataset = CsvFormat().load(tmp_path)
    assert dataset.class_names == ("RBC", "WBC")
    first, background = dataset.records
    np.testing.assert_array_equal(first.boxes, [[259, 176, 490, 375], [77.25, 335, 183, 434]])
    assert first.labels.tolist() == [1, 0] and len(background.boxes) == 0

    open_images = tmp_path / "open_images" / "validation-annotations-bbox.csv"
    open_images.parent.mkdir()
    open_images.write_text(
        "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded\n"
        "BloodImage_00000,xclick,/m/0wbc,1,0.5,0.75,0.25,0.5,0\n"
    )
    dataset = load_dataset(open_images.parent, options={"image_dir": "../images"})
    assert dataset.format == "csv" and dataset.class_names == ("/m/0wbc",)
    np.testing.assert_allclose(dataset.records[0].boxes, [[320, 120, 480, 240]])


def test_csv_malformed_row_and_non_utf8_bytes(bccd_dir: Path, tmp_path: Path) -> None:
    _copy_images(bccd_dir, tmp_path, [0, 1])
    csv_path = tmp_path / "annotations.csv"
    rows = [*CSV_ROWS]
    rows[3] = "BloodImage_00000.jpg,77,abc,183,434,RBC"
    csv_path.write_text("\n".join(rows) + "\n")
    with pytest.raises(
        DatasetError, match=rf"{re.escape(str(csv_path))}:4: box coordinates .* not all numbers"
    ):
        CsvFormat().load(csv_path)
    csv_path.write_text("\n".join([*CSV_ROWS[:3], "BloodImage_00000.jpg,77,335,183,434"]) + "\n")
    with pytest.raises(DatasetError, match=r"annotations\.csv:4: expected 6 fields"):
        CsvFormat().load(csv_path)
    csv_path.write_bytes(("\n".join(CSV_ROWS[:2]) + "\n").encode() + b"Blood\xe9_00001.jpg,,,,,\n")
    with pytest.raises(DatasetError, match=rf"{re.escape(str(csv_path))}:3: the file is not UTF-8 text"):
        CsvFormat().load(csv_path)
    csv_path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(CSV_ROWS) + "\r\n").encode())  # Excel: BOM and CRLF
    assert CsvFormat().detect(tmp_path)
    assert CsvFormat().load(tmp_path).num_boxes() == 2


def test_createml_image_dir_corrupt_image_and_malformed_json(bccd_dir: Path, tmp_path: Path) -> None:
    _copy_images(bccd_dir, tmp_path / "pictures", [0, 1])
    entries = [
        {
            "image": "BloodImage_00000.jpg",
            "annotations": [
                {"label": "WBC", "coordinates": {"x": 374.5, "y": 275.5, "width": 231, "height": 199}}
            ],
        },
        {"image": "BloodImage_00001.jpg", "annotations": []},
    ]
    json_path = tmp_path / "train.json"
    json_path.write_text(json.dumps(entries))
    dataset = CreatemlFormat(CreatemlOptions(image_dir="pictures")).load(tmp_path, "train")
    np.testing.assert_array_equal(dataset.records[0].boxes, [[259, 176, 490, 375]])
    assert len(dataset.records[1].boxes) == 0

    image = tmp_path / "pictures" / "BloodImage_00001.jpg"
    image.write_bytes(image.read_bytes()[:5000])
    dataset = CreatemlFormat(CreatemlOptions(image_dir="pictures")).load(json_path)
    assert [r.image_id for r in dataset.records] == ["BloodImage_00000"]
    assert dataset.report.counts == {IMAGE_CORRUPT: 1}

    json_path.write_text(json.dumps(entries, indent=1).replace('"width": 231', '"width" 231'))
    with pytest.raises(DatasetError, match=rf"{re.escape(str(json_path))}:\d+:\d+: malformed JSON"):
        CreatemlFormat().load(json_path)
