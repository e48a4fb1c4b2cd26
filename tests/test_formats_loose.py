"""Datasets laid out the way LabelImg, Roboflow, Ultralytics and the TensorFlow tutorials leave them.

Every layout is built in ``tmp_path`` from twelve real BCCD images and their XML files, and every load is
compared with the boxes parsed straight from those XML files (``conftest.read_bccd_boxes``, which uses no
format plugin). Detection is checked with the default registry, which is what ``--format auto`` uses.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import BCCD_CLASSES, read_bccd_boxes

from yolox_sdk.builtin.formats.coco import save_coco
from yolox_sdk.builtin.formats.csv_format import find_csv_file
from yolox_sdk.builtin.formats.voc import VocFormat
from yolox_sdk.builtin.formats.yolo import save_yolo
from yolox_sdk.data.format_support import DETECT_NONE
from yolox_sdk.data.formats import (
    DetectionDataset,
    create_format,
    detect_format,
    load_dataset,
    save_with_format,
)
from yolox_sdk.errors import DatasetError
from yolox_sdk.plugins.manager import get_registry
from yolox_sdk.plugins.registry import Registry
from yolox_sdk.testing import check_detection, sample_exports

STEMS = [f"BloodImage_{number:05d}" for number in range(12)]
TRAIN, TEST = STEMS[:8], STEMS[8:]
CSV_HEADER = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]
OPTION_WORDS = ("data.format_options.image_dir", "--format-option image_dir=PATH")

NamedBoxes = dict[str, list[tuple[str, list[float]]]]


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The process-wide registry: the installed formats, as ``--format auto`` sees them."""
    return get_registry()


def _expected(bccd_dir: Path, stems: list[str], shift: float) -> NamedBoxes:
    """Per image stem, the (class, box) pairs of its XML, parsed without the SDK, minus ``shift``."""
    expected = {}
    for stem in stems:
        boxes, labels = read_bccd_boxes(bccd_dir, stem)
        pairs = [
            (BCCD_CLASSES[label], [v - shift for v in box]) for box, label in zip(boxes, labels, strict=True)
        ]
        expected[stem] = sorted(pairs, key=lambda pair: (pair[0], pair[1]))
    return expected


def _loaded(dataset: DetectionDataset) -> NamedBoxes:
    loaded = {}
    for record in dataset.records:
        pairs = [
            (dataset.class_names[label], box)
            for box, label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True)
        ]
        loaded[record.image_path.stem] = sorted(
            pairs, key=lambda pair: (pair[0], [round(v, 2) for v in pair[1]])
        )
    return loaded


def assert_same_boxes(dataset: DetectionDataset, expected: NamedBoxes, atol: float = 0.0) -> None:
    loaded = _loaded(dataset)
    assert sorted(loaded) == sorted(expected)
    for stem, pairs in expected.items():
        assert [name for name, _ in loaded[stem]] == [name for name, _ in pairs], stem
        np.testing.assert_allclose(
            [b for _, b in loaded[stem]], [b for _, b in pairs], atol=atol, err_msg=stem
        )


def _copy_xml(bccd_dir: Path, stem: str, folder: Path, **fields: str | None) -> Path:
    """Copy one BCCD XML into ``folder``, setting (or with ``None`` removing) top-level fields."""
    tree = ET.parse(bccd_dir / "Annotations" / f"{stem}.xml")
    root = tree.getroot()
    for tag, value in fields.items():
        element = root.find(tag)
        if value is None:
            if element is not None:
                root.remove(element)
            continue
        if element is None:
            element = ET.SubElement(root, tag)
        element.text = value
    folder.mkdir(parents=True, exist_ok=True)
    tree.write(folder / f"{stem}.xml")
    return folder / f"{stem}.xml"


def _link_images(bccd_dir: Path, stems: list[str], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        os.symlink(bccd_dir / "JPEGImages" / f"{stem}.jpg", folder / f"{stem}.jpg")


def _write_tutorial_csv(bccd_dir: Path, stems: list[str], path: Path) -> None:
    """The CSV the TensorFlow object-detection tutorials' xml_to_csv writes: XML values as they are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        for stem in stems:
            root = ET.parse(bccd_dir / "Annotations" / f"{stem}.xml").getroot()
            for obj in root.iter("object"):
                box = obj.find("bndbox")
                coordinates = [box.find(tag).text.strip() for tag in ("xmin", "ymin", "xmax", "ymax")]
                writer.writerow([f"{stem}.jpg", "640", "480", obj.find("name").text.strip(), *coordinates])


@pytest.fixture
def user_layout(bccd_dir: Path, tmp_path: Path) -> Path:
    """The layout of issue #11: annotations/ + images/ + data/{train,test}_labels.csv."""
    root = tmp_path / "blood"
    for stem in STEMS:
        _copy_xml(bccd_dir, stem, root / "annotations")
    _link_images(bccd_dir, STEMS, root / "images")
    _write_tutorial_csv(bccd_dir, TRAIN, root / "data" / "train_labels.csv")
    _write_tutorial_csv(bccd_dir, TEST, root / "data" / "test_labels.csv")
    return root


def test_the_users_layout_reads_as_voc_and_as_csv(
    user_layout: Path, bccd_dir: Path, registry: Registry
) -> None:
    assert detect_format(user_layout, registry) == "voc"
    dataset = load_dataset(user_layout, registry=registry)
    assert dataset.format == "voc"
    assert [record.image_id for record in dataset.records] == STEMS
    assert_same_boxes(dataset, _expected(bccd_dir, STEMS, shift=1))

    data = user_layout / "data"
    assert detect_format(data, registry) == "csv"
    for split, stems in (("train", TRAIN), ("test", TEST)):
        part = load_dataset(data, split=split, registry=registry)
        assert part.source == data / f"{split}_labels.csv"
        assert_same_boxes(part, _expected(bccd_dir, stems, shift=0))  # CSV keeps the XML's values
        assert all(record.image_path.parent == user_layout / "images" for record in part.records)
    assert not load_dataset(data / "train_labels.csv", registry=registry).report.counts  # sizes agree


def test_the_users_layout_from_the_command_line(user_layout: Path) -> None:
    from click.testing import CliRunner

    from yolox_sdk.cli.main import cli

    result = CliRunner().invoke(cli, ["data", "info", str(user_layout)])
    assert result.exit_code == 0, result.output
    assert "voc" in result.output and "12" in result.output


def test_a_split_without_split_lists_is_a_clear_error(user_layout: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"split 'train'\. Splits found: none \(the dataset has no ImageSets"
    ):
        VocFormat().load(user_layout, "train")


def test_split_lists_of_a_loose_layout_select_images(user_layout: Path, bccd_dir: Path) -> None:
    lists = user_layout / "imagesets" / "main"
    lists.mkdir(parents=True)
    (lists / "val.txt").write_text("".join(f"{stem}\n" for stem in TEST))
    dataset = VocFormat().load(user_layout, "val")
    assert [record.image_id for record in dataset.records] == TEST
    assert_same_boxes(dataset, _expected(bccd_dir, TEST, shift=1))


def _mixed_folder(bccd_dir: Path, root: Path) -> None:
    """XML files and images in one folder, each XML keeping BCCD's <path> (the annotator's /home/pi/...)."""
    for stem in STEMS:
        _copy_xml(bccd_dir, stem, root)
    _link_images(bccd_dir, STEMS, root)


def _path_inside(bccd_dir: Path, root: Path) -> None:
    """<path> absolute inside the dataset, in a folder no search knows (pics/), <filename> wrong."""
    _link_images(bccd_dir, STEMS, root / "pics")
    for stem in STEMS:
        _copy_xml(
            bccd_dir,
            stem,
            root / "xml",
            path=str((root / "pics" / f"{stem}.jpg").absolute()),
            filename="x.png",
        )


def _filename_only(bccd_dir: Path, root: Path) -> None:
    """No <path>; Annotations/ beside Images/ (LabelImg's defaults, any case), no JPEGImages/."""
    for stem in STEMS:
        _copy_xml(bccd_dir, stem, root / "Annotations", path=None)
    _link_images(bccd_dir, STEMS, root / "Images")


def _filename_relative(bccd_dir: Path, root: Path) -> None:
    """No <path>; <filename> relative to the XML's folder, leading into photos/ beside it."""
    _link_images(bccd_dir, STEMS, root / "photos")
    for stem in STEMS:
        _copy_xml(bccd_dir, stem, root / "XML", path=None, filename=f"../photos/{stem}.jpg")


@pytest.mark.parametrize("build", [_mixed_folder, _path_inside, _filename_only, _filename_relative])
def test_loose_voc_layouts_read_the_same_boxes(
    build, bccd_dir: Path, tmp_path: Path, registry: Registry
) -> None:
    root = tmp_path / "dataset"
    build(bccd_dir, root)
    assert detect_format(root, registry) == "voc"
    dataset = load_dataset(root, registry=registry)
    assert [record.image_id for record in dataset.records] == STEMS
    assert_same_boxes(dataset, _expected(bccd_dir, STEMS, shift=1))
    assert all(record.image_path.is_relative_to(root) for record in dataset.records)


def test_image_dir_option_and_the_error_that_names_it(bccd_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    for stem in STEMS:
        _copy_xml(bccd_dir, stem, root / "annotations", path=None)
    _link_images(bccd_dir, STEMS, root / "photos")
    with pytest.raises(DatasetError) as error:
        VocFormat().load(root)
    message = str(error.value)
    assert all(words in message for words in OPTION_WORDS), message
    assert "BloodImage_00000.xml" in message and "12 referenced images are missing" in message
    dataset = create_format("voc", options={"image_dir": "photos"}).load(root)
    assert_same_boxes(dataset, _expected(bccd_dir, STEMS, shift=1))
    assert all(record.image_path.parent == root / "photos" for record in dataset.records)


def test_image_dir_from_the_command_line(bccd_dir: Path, tmp_path: Path) -> None:
    """The flag the error names is the one that fixes it."""
    from click.testing import CliRunner

    from yolox_sdk.cli.main import cli

    root = tmp_path / "dataset"
    for stem in STEMS:
        _copy_xml(bccd_dir, stem, root / "annotations", path=None)
    _link_images(bccd_dir, STEMS, root / "photos")
    failed = CliRunner().invoke(cli, ["data", "info", str(root)])
    assert failed.exit_code != 0 and "--format-option image_dir=PATH" in failed.output
    result = CliRunner().invoke(cli, ["data", "info", str(root), "--format-option", "image_dir=photos"])
    assert result.exit_code == 0, result.output
    assert "voc" in result.output and "12" in result.output


def test_a_path_outside_the_dataset_is_not_followed(bccd_dir: Path, tmp_path: Path) -> None:
    """<path> naming a real image elsewhere on the machine: not read; the error says where it looked."""
    root = tmp_path / "dataset"
    outside = str((bccd_dir / "JPEGImages" / "BloodImage_00000.jpg").absolute())
    _copy_xml(
        bccd_dir, "BloodImage_00000", root / "annotations", path=outside, filename="../../../" + outside
    )
    with pytest.raises(DatasetError, match="does not exist") as error:
        VocFormat().load(root)
    message = str(error.value)
    assert (
        f"refers to the image {root / 'annotations' / 'BloodImage_00000.jpg'}, which does not exist"
        in message
    )
    assert OPTION_WORDS[0] in message


def test_cvat_xml_and_non_voc_xml_are_not_claimed(bccd_dir: Path, tmp_path: Path) -> None:
    cvat = tmp_path / "cvat"
    cvat.mkdir()
    (cvat / "annotations.xml").write_text(
        '<?xml version="1.0"?>\n<annotations><version>1.1</version></annotations>'
    )
    _link_images(bccd_dir, STEMS[:1], cvat / "images")
    assert VocFormat().detect(cvat) == DETECT_NONE
    empty = tmp_path / "no_objects"
    _copy_xml(bccd_dir, STEMS[0], empty / "annotations")
    text = (empty / "annotations" / f"{STEMS[0]}.xml").read_text()
    (empty / "annotations" / f"{STEMS[0]}.xml").write_text(
        re.sub(r"<object>.*</object>", "", text, flags=re.DOTALL)
    )
    assert VocFormat().detect(empty) == DETECT_NONE
    assert VocFormat().detect(bccd_dir / "Annotations" / f"{STEMS[0]}.xml") == DETECT_NONE


@pytest.fixture(scope="module")
def strict_subset(bccd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DetectionDataset:
    """The twelve images read from a strict VOC copy (the writers' input)."""
    root = tmp_path_factory.mktemp("strict")
    for stem in STEMS:
        _copy_xml(bccd_dir, stem, root / "Annotations")
    _link_images(bccd_dir, STEMS, root / "JPEGImages")
    dataset = VocFormat().load(root)
    assert len(dataset) == len(STEMS)
    return dataset


def _subset(dataset: DetectionDataset, stems: list[str]) -> DetectionDataset:
    import attrs

    return attrs.evolve(dataset, records=[r for r in dataset.records if r.image_id in stems])


def _roboflow_yolo(dataset: DetectionDataset, root: Path) -> None:
    """Roboflow's YOLO export: train/ and valid/ each with images/ + labels/, data.yaml with ../ paths."""
    for folder, stems in (("train", TRAIN), ("valid", TEST)):
        save_yolo(_subset(dataset, stems), root / folder)
        (root / folder / "data.yaml").unlink()
    names = list(dataset.class_names)
    config = {"train": "../train/images", "val": "../valid/images", "nc": len(names), "names": names}
    (root / "data.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def _ultralytics_yolo(dataset: DetectionDataset, root: Path, classes_txt: bool = False) -> None:
    """Ultralytics' layout: images/{train,val} + labels/{train,val}, data.yaml (or classes.txt)."""
    for split, stems in (("train", TRAIN), ("val", TEST)):
        scratch = root.parent / f"{root.name}_{split}"
        save_yolo(_subset(dataset, stems), scratch)
        for kind in ("images", "labels"):
            (root / kind).mkdir(parents=True, exist_ok=True)
            shutil.move(scratch / kind, root / kind / split)
    names = list(dataset.class_names)
    if classes_txt:
        (root / "classes.txt").write_text("".join(f"{name}\n" for name in names))
    else:
        config = {"path": ".", "train": "images/train", "val": "images/val", "names": dict(enumerate(names))}
        (root / "data.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.parametrize("layout", ["roboflow", "ultralytics", "ultralytics-classes-txt"])
def test_yolo_export_layouts_read_each_split(
    layout: str, strict_subset: DetectionDataset, bccd_dir: Path, tmp_path: Path, registry: Registry
) -> None:
    root = tmp_path / layout
    if layout == "roboflow":
        _roboflow_yolo(strict_subset, root)
    else:
        _ultralytics_yolo(strict_subset, root, classes_txt=layout.endswith("txt"))
    assert detect_format(root, registry) == "yolo"
    for split, stems in (("train", TRAIN), ("val", TEST), ("valid", TEST)):
        part = load_dataset(root, split=split, format="auto", registry=registry)
        assert_same_boxes(part, _expected(bccd_dir, stems, shift=1), atol=1e-3)
    everything = load_dataset(root, registry=registry)
    assert_same_boxes(everything, _expected(bccd_dir, STEMS, shift=1), atol=1e-3)
    with pytest.raises(DatasetError, match=r"'tset'.*train"):
        load_dataset(root, split="tset", registry=registry)


def test_yolo_yaml_without_split_keys_reads_images_folder(
    strict_subset: DetectionDataset, bccd_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "flat"
    save_yolo(strict_subset, root)
    (root / "data.yaml").write_text(yaml.safe_dump({"names": list(strict_subset.class_names)}))
    assert_same_boxes(create_format("yolo").load(root), _expected(bccd_dir, STEMS, shift=1), atol=1e-3)


def test_yolo_split_path_leading_out_still_refused_when_no_folder_matches(
    strict_subset: DetectionDataset, tmp_path: Path
) -> None:
    root = tmp_path / "out"
    _roboflow_yolo(strict_subset, root)
    shutil.rmtree(root / "valid")
    with pytest.raises(DatasetError, match="outside the dataset folder"):
        create_format("yolo").load(root, "val")


def test_yolo_split_path_found_nowhere_says_where_it_looked(
    strict_subset: DetectionDataset, tmp_path: Path
) -> None:
    root = tmp_path / "wrong"
    _roboflow_yolo(strict_subset, root)
    shutil.rmtree(root / "valid")
    (root / "data.yaml").write_text(yaml.safe_dump({"names": ["a"], "val": "nowhere/images"}))
    with pytest.raises(DatasetError, match=r"'val: nowhere/images'.*no val/images or images/val folder"):
        create_format("yolo").load(root, "val")


def test_coco_layouts_find_their_images(
    strict_subset: DetectionDataset, bccd_dir: Path, tmp_path: Path, registry: Registry
) -> None:
    images_folder = tmp_path / "images_folder"  # annotations.json + images/, as save_coco writes
    save_coco(strict_subset, images_folder)
    roboflow = tmp_path / "roboflow"  # train/_annotations.coco.json with the images beside it
    stem_named = tmp_path / "stem_named"  # train.json beside train/
    for folder, stems in (("train", TRAIN), ("valid", TEST)):
        save_coco(_subset(strict_subset, stems), roboflow / folder)
        for image in (roboflow / folder / "images").iterdir():
            shutil.move(image, roboflow / folder / image.name)
        (roboflow / folder / "images").rmdir()
        (roboflow / folder / "annotations.json").rename(roboflow / folder / "_annotations.coco.json")
        save_coco(_subset(strict_subset, stems), stem_named / "scratch")
        (stem_named / "scratch" / "annotations.json").rename(stem_named / f"{folder}.json")
        (stem_named / "scratch" / "images").rename(stem_named / folder)
        (stem_named / "scratch").rmdir()
    assert_same_boxes(load_dataset(images_folder, registry=registry), _expected(bccd_dir, STEMS, shift=1))
    for root in (roboflow, stem_named):
        assert detect_format(root, registry) == "coco"
        for split, stems in (("train", TRAIN), ("valid", TEST)):
            part = load_dataset(root, split=split, registry=registry)
            assert_same_boxes(part, _expected(bccd_dir, stems, shift=1))
    assert len(load_dataset(roboflow, split="val", registry=registry)) == len(TEST)
    with pytest.raises(DatasetError, match="several COCO JSON files"):
        load_dataset(roboflow, registry=registry)


def test_coco_missing_images_name_the_option(strict_subset: DetectionDataset, tmp_path: Path) -> None:
    root = tmp_path / "coco"
    save_coco(strict_subset, root)
    (root / "images").rename(root / "pictures")
    with pytest.raises(DatasetError) as error:
        create_format("coco").load(root)
    assert all(words in str(error.value) for words in OPTION_WORDS)
    (root / "pictures" / f"{STEMS[3]}.jpg").rename(tmp_path / "elsewhere.jpg")
    with pytest.raises(DatasetError, match=r"does not exist.*data\.format_options\.image_dir") as error:
        create_format("coco", options={"image_dir": "pictures"}).load(root)
    assert STEMS[3] in str(error.value)


@pytest.mark.parametrize(
    "name",
    [
        "train_labels.csv",
        "train-labels.csv",
        "labels_train.csv",
        "bccd-train.csv",
        "train.csv",
        "bccd_train.csv",
    ],
)
def test_csv_split_file_names(name: str, bccd_dir: Path, tmp_path: Path) -> None:
    _write_tutorial_csv(bccd_dir, TRAIN, tmp_path / name)
    _write_tutorial_csv(bccd_dir, TEST, tmp_path / name.replace("train", "test"))
    assert find_csv_file(tmp_path, "train") == tmp_path / name
    assert find_csv_file(tmp_path, "test") == tmp_path / name.replace("train", "test")
    with pytest.raises(DatasetError, match=r"No annotation CSV file for split 'val'.*It holds"):
        find_csv_file(tmp_path, "val")


def test_csv_images_not_found_names_the_option(user_layout: Path, bccd_dir: Path) -> None:
    (user_layout / "images").rename(user_layout / "photos")
    csv_file = user_layout / "data" / "train_labels.csv"
    with pytest.raises(DatasetError) as error:
        create_format("csv").load(csv_file)
    message = str(error.value)
    assert all(words in message for words in OPTION_WORDS) and "relative to the CSV's folder" in message
    dataset = create_format("csv", options={"image_dir": "../photos"}).load(csv_file)
    assert_same_boxes(dataset, _expected(bccd_dir, TRAIN, shift=0))


def test_csv_images_beside_the_csv_folder_win_over_nothing_only(user_layout: Path, bccd_dir: Path) -> None:
    """The sibling images/ is used only when the CSV's own folder and its images/ hold none of them."""
    data = user_layout / "data"
    _link_images(bccd_dir, TRAIN[:1], data)
    with pytest.raises(DatasetError, match="does not exist"):
        create_format("csv").load(data / "train_labels.csv")


def test_detection_with_the_kits_check(
    registry: Registry,
    strict_subset: DetectionDataset,
    user_layout: Path,
    bccd_dir: Path,
    coco8_dir: Path,
    tmp_path: Path,
) -> None:
    """Each loose layout is won by its own format, and no format claims another's export."""
    samples = sample_exports(registry, _subset(strict_subset, STEMS[:3]), tmp_path / "exports")
    mixed, roboflow, ultralytics = tmp_path / "mixed", tmp_path / "roboflow", tmp_path / "ultralytics"
    _mixed_folder(bccd_dir, mixed)
    _roboflow_yolo(strict_subset, roboflow)
    _ultralytics_yolo(strict_subset, ultralytics)
    samples |= {
        user_layout: "voc",
        user_layout / "data": "csv",
        user_layout / "data" / "train_labels.csv": "csv",
        mixed: "voc",
        roboflow: "yolo",
        ultralytics: "yolo",
        bccd_dir: "voc",
        coco8_dir: "yolo",
    }
    for name in ("voc", "yolo", "coco", "csv"):
        check_detection(registry, name, samples)


@pytest.mark.parametrize("name", ["coco", "yolo", "voc", "csv", "cvat", "createml", "kitti"])
def test_save_with_split_reads_back_with_that_split(
    name: str, strict_subset: DetectionDataset, tmp_path: Path
) -> None:
    dataset = _subset(strict_subset, TEST)
    out = tmp_path / name
    save_with_format(create_format(name), dataset, out, split="val")
    again = create_format(name, options=_class_options(name, dataset)).load(out, "val")
    assert_same_boxes(again, {stem: pairs for stem, pairs in _loaded(dataset).items()}, atol=1e-3)
    with pytest.raises(DatasetError, match="train"):
        create_format(name).load(out, "train")


def _class_options(name: str, dataset: DetectionDataset) -> dict:
    return {"class_names": list(dataset.class_names)} if name in ("voc", "csv", "createml", "kitti") else {}


def test_save_without_split_writes_what_it_always_did(
    strict_subset: DetectionDataset, tmp_path: Path
) -> None:
    dataset = _subset(strict_subset, TEST)
    expected_files = {
        "coco": "annotations.json",
        "csv": "annotations.csv",
        "createml": "annotations.json",
        "voc": "ImageSets/Main/all.txt",
        "kitti": "label_2",
    }
    for name, path in expected_files.items():
        save_with_format(create_format(name), dataset, tmp_path / name)
        assert (tmp_path / name / path).exists(), name
    save_with_format(create_format("yolo"), dataset, tmp_path / "yolo")
    assert set(yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())) == {"path", "train", "names"}
    save_with_format(create_format("cvat"), dataset, tmp_path / "cvat")
    assert "subset" not in (tmp_path / "cvat" / "annotations.xml").read_text()
    assert json.loads((tmp_path / "coco" / "annotations.json").read_text())["images"]


def test_docs_list_every_option_of_every_builtin_format(registry: Registry) -> None:
    """The options table of the data guide's "Dataset formats" section (docs/guides/data.md) names exactly
    the fields of each options class."""
    import attrs
    from conftest import REPO_ROOT

    text = (REPO_ROOT / "docs" / "guides" / "data.md").read_text()
    start = text.index("## Dataset formats\n")
    section = text[start : text.index("\n## ", start + 1)]
    documented = set(re.findall(r"^\| `(\w+)` \| `(\w+)` \|", section, flags=re.MULTILINE))
    builtin = [e for e in registry.entries("dataset_format") if e.origin.distribution == "yolox-sdk"]
    expected = {
        (e.name, field.name) for e in builtin if e.options is not None for field in attrs.fields(e.options)
    }
    assert documented == expected
