"""The ``voc`` format plugin on BCCD and on small broken copies of it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from yolox_sdk.builtin.formats.voc import DIFFICULT_KEPT, SIZE_MISSING, VocFormat, VocOptions
from yolox_sdk.data.format_support import BOX_CLIPPED, BOX_ZERO_AREA, IMAGE_CORRUPT
from yolox_sdk.errors import DatasetError

FIRST_IMAGES = ["BloodImage_00000", "BloodImage_00001", "BloodImage_00002"]


def _copy_voc(bccd_dir: Path, dest: Path, stems: list[str]) -> Path:
    """A writable VOC dataset holding the given BCCD images, all listed in ImageSets/Main/train.txt."""
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (dest / folder).mkdir(parents=True, exist_ok=True)
    for stem in stems:
        shutil.copyfile(bccd_dir / "Annotations" / f"{stem}.xml", dest / "Annotations" / f"{stem}.xml")
        shutil.copyfile(bccd_dir / "JPEGImages" / f"{stem}.jpg", dest / "JPEGImages" / f"{stem}.jpg")
    (dest / "ImageSets" / "Main" / "train.txt").write_text("".join(f"{s}\n" for s in stems))
    return dest


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, count))


@pytest.mark.parametrize(("split", "count"), [("train", 205), ("val", 87), ("test", 72)])
def test_bccd_splits_have_the_listed_images(bccd_dir: Path, split: str, count: int) -> None:
    dataset = VocFormat().load(bccd_dir, split)
    listed = (bccd_dir / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    assert len(dataset) == count
    assert [record.image_id for record in dataset.records] == listed
    assert dataset.class_names == ("Platelets", "RBC", "WBC")
    assert dataset.format == "voc"


def test_bccd_all_boxes_minus_the_two_zero_area_ones(bccd_dir: Path) -> None:
    xml_texts = [path.read_text() for path in sorted((bccd_dir / "Annotations").glob("*.xml"))]
    written = sum(text.count("<object>") for text in xml_texts)
    degenerate = 0
    for text in xml_texts:
        for box in re.findall(
            r"<xmin>(\d+)</xmin>\s*<ymin>(\d+)</ymin>\s*<xmax>(\d+)</xmax>\s*<ymax>(\d+)", text
        ):
            x1, y1, x2, y2 = map(int, box)
            degenerate += x2 <= x1 or y2 <= y1
    assert (written, degenerate) == (4888, 2)

    dataset = VocFormat().load(bccd_dir)
    assert len(dataset) == 364
    assert dataset.num_boxes() == written - degenerate == 4886
    assert dataset.report.counts == {BOX_ZERO_AREA: 2}
    assert {Path(where.split(" ")[0]).name for where in dataset.report.examples[BOX_ZERO_AREA]} == {
        "BloodImage_00338.xml",
        "BloodImage_00343.xml",
    }


def test_coordinates_are_shifted_by_one_and_labels_follow_sorted_names(bccd_dir: Path) -> None:
    record = VocFormat().load(bccd_dir).records[0]
    assert record.image_id == "BloodImage_00000"
    assert (record.width, record.height) == (640, 480)
    assert record.boxes.dtype == np.float32
    # BloodImage_00000.xml: WBC 260 177 491 376, then RBC 78 336 184 435.
    np.testing.assert_array_equal(record.boxes[:2], [[259, 176, 490, 375], [77, 335, 183, 434]])
    assert record.labels[:2].tolist() == [2, 1]


def test_save_writes_back_the_original_coordinates(bccd_dir: Path, tmp_path: Path) -> None:
    source = _copy_voc(bccd_dir, tmp_path / "in", FIRST_IMAGES)
    dataset = VocFormat().load(source)
    assert VocFormat().save(dataset, tmp_path / "out") == []
    coordinates = re.compile(r"<(xmin|ymin|xmax|ymax)>(\d+)</")
    for stem in FIRST_IMAGES:
        original = coordinates.findall((source / "Annotations" / f"{stem}.xml").read_text())
        saved = coordinates.findall((tmp_path / "out" / "Annotations" / f"{stem}.xml").read_text())
        assert saved == original
    assert (tmp_path / "out" / "ImageSets" / "Main" / "all.txt").read_text().split() == FIRST_IMAGES


def test_class_names_option_sets_the_order(bccd_dir: Path) -> None:
    dataset = VocFormat(VocOptions(class_names=["RBC", "WBC", "Platelets"])).load(bccd_dir, "test")
    assert dataset.class_names == ("RBC", "WBC", "Platelets")
    first = VocFormat().load(bccd_dir, "test").records[0]
    remap = np.array([2, 0, 1])  # sorted index -> index in the given order
    assert dataset.records[0].labels.tolist() == remap[first.labels].tolist()


def test_unknown_class_name_with_class_names_given(bccd_dir: Path, tmp_path: Path) -> None:
    source = _copy_voc(bccd_dir, tmp_path, FIRST_IMAGES)
    with pytest.raises(DatasetError) as error:
        VocFormat(VocOptions(class_names=["RBC", "WBCs", "Platelets"])).load(source)
    message = str(error.value)
    assert str(source / "Annotations" / "BloodImage_00000.xml") in message
    assert "class 'WBC' is not in data.format_options.class_names" in message
    assert "Did you mean 'WBCs'" in message
    assert "--format-option class_names=[RBC,WBCs,Platelets,WBC] on the command line" in message


def test_xml_without_size_reads_the_image(bccd_dir: Path, tmp_path: Path) -> None:
    source = _copy_voc(bccd_dir, tmp_path, FIRST_IMAGES)
    xml = source / "Annotations" / "BloodImage_00001.xml"
    text = xml.read_text()
    xml.write_text(re.sub(r"<size>.*?</size>", "", text, flags=re.S))
    dataset = VocFormat().load(source)
    assert dataset.report.counts[SIZE_MISSING] == 1
    assert dataset.report.examples[SIZE_MISSING] == [str(xml)]
    assert (dataset.records[1].width, dataset.records[1].height) == (640, 480)
    assert len(dataset.records[1].boxes) == text.count("<object>")


def test_boxes_outside_the_image_are_clipped_and_counted(bccd_dir: Path, tmp_path: Path) -> None:
    source = _copy_voc(bccd_dir, tmp_path, FIRST_IMAGES[:1])
    xml = source / "Annotations" / "BloodImage_00000.xml"
    _edit(xml, "<xmax>491</xmax>", "<xmax>700</xmax>")
    _edit(xml, "<xmin>78</xmin>", "<xmin>-20</xmin>")
    record = VocFormat().load(source).records[0]
    np.testing.assert_array_equal(record.boxes[:2], [[259, 176, 640, 375], [0, 335, 183, 434]])
    dataset = VocFormat().load(source)
    assert dataset.report.counts[BOX_CLIPPED] == 2


def test_difficult_objects_are_kept_and_counted(bccd_dir: Path, tmp_path: Path) -> None:
    source = _copy_voc(bccd_dir, tmp_path, FIRST_IMAGES[:1])
    xml = source / "Annotations" / "BloodImage_00000.xml"
    before = VocFormat().load(source).num_boxes()
    _edit(xml, "<difficult>0</difficult>", "<difficult>1</difficult>")
    dataset = VocFormat().load(source)
    assert dataset.num_boxes() == before
    assert dataset.report.counts[DIFFICULT_KEPT] == 1


def test_missing_image_is_an_error_naming_annotation_and_image(bccd_dir: Path, tmp_path: Path) -> None:
    source = _copy_voc(bccd_dir, tmp_path, FIRST_IMAGES)
    (source / "JPEGImages" / "BloodImage_00001.jpg").unlink()
    with pytest.raises(DatasetError) as error:
        VocFormat().load(source)
    message = str(error.value)
    assert str(source / "Annotations" / "BloodImage_00001.xml") in message
    assert str(source / "JPEGImages" / "BloodImage_00001.jpg") in message
    assert "does not exist" in message and "silently lose" in message


def test_truncated_jpeg_is_skipped_and_counted(bccd_dir: Path, tmp_path: Path) -> None:
    source = _copy_voc(bccd_dir, tmp_path, FIRST_IMAGES)
    image = source / "JPEGImages" / "BloodImage_00002.jpg"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    dataset = VocFormat().load(source)
    assert [record.image_id for record in dataset.records] == FIRST_IMAGES[:2]
    assert dataset.report.counts[IMAGE_CORRUPT] == 1
    assert str(image) in dataset.report.examples[IMAGE_CORRUPT][0]
    assert "truncated JPEG" in dataset.report.examples[IMAGE_CORRUPT][0]


def test_malformed_xml_names_file_line_and_column(bccd_dir: Path, tmp_path: Path) -> None:
    source = _copy_voc(bccd_dir, tmp_path, FIRST_IMAGES)
    xml = source / "Annotations" / "BloodImage_00001.xml"
    _edit(xml, "<segmented>0</segmented>", "<segmented>0</segmentd>")
    with pytest.raises(DatasetError, match=rf"{re.escape(str(xml))}:13:16: malformed XML"):
        VocFormat().load(source)


def test_unknown_split_lists_the_available_ones(bccd_dir: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"split 'trian'.*Did you mean 'train'.*test, train, trainval, val"
    ):
        VocFormat().load(bccd_dir, "trian")


def test_empty_split_is_an_error(bccd_dir: Path, tmp_path: Path) -> None:
    source = _copy_voc(bccd_dir, tmp_path, FIRST_IMAGES)
    (source / "ImageSets" / "Main" / "val.txt").write_text("\n")
    with pytest.raises(
        DatasetError, match=r"No images were found at .*val\.txt\. Expected a Pascal VOC folder"
    ):
        VocFormat().load(source, "val")


def test_detect(bccd_dir: Path, coco8_dir: Path) -> None:
    assert VocFormat().detect(bccd_dir)
    assert not VocFormat().detect(coco8_dir)
    assert not VocFormat().detect(bccd_dir / "Annotations" / "BloodImage_00000.xml")
