"""Dataset files a user is given, written to hurt: paths leading out of the dataset, text that is not UTF-8,
JSON nested past the parser's stack, a split list naming nothing, a coordinate that is not a number, and
``data convert --force`` over an earlier conversion (issue #9, defects 8 to 10)."""

from __future__ import annotations

import json
import logging
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hostile_datasets import (  # noqa: F401 - fixtures
    annotation_files,
    assert_no_bug,
    invoke,
    labelme_plugin,
    labelme_registry,
    process_registry,
    small_datasets,
)
from test_data_validate import tree_hashes

from yolox_sdk.data.formats import load_dataset
from yolox_sdk.errors import DatasetError
from yolox_sdk.plugins.registry import Registry

OUTSIDE = "outside the dataset folder"


def copy_of(small_datasets: dict[str, Path], name: str, tmp_path: Path) -> Path:  # noqa: F811
    return Path(shutil.copytree(small_datasets[name], tmp_path / name))


@pytest.fixture
def secret(tmp_path: Path, small_datasets: dict[str, Path]) -> Path:  # noqa: F811
    """A real image outside every dataset folder: what an escaping path points at."""
    folder = tmp_path / "private"
    folder.mkdir()
    target = folder / "secret.jpg"
    shutil.copyfile(next(small_datasets["coco"].glob("images/*.jpg")), target)
    return target


# --- Defect 8: image paths stay inside the dataset -------------------------------------------------------


def _edit_json(path: Path, edit) -> None:  # noqa: ANN001
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("absolute", [False, True], ids=["dot-dot", "absolute"])
def test_coco_file_name_outside_the_dataset_is_refused_and_never_copied(
    small_datasets: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    secret: Path,
    absolute: bool,
) -> None:
    root = copy_of(small_datasets, "coco", tmp_path)
    name = str(secret) if absolute else "../../private/secret.jpg"

    def escape(data: dict) -> None:
        data["images"][1]["file_name"] = name

    _edit_json(root / "annotations.json", escape)
    image_id = json.loads((root / "annotations.json").read_text())["images"][1]["id"]

    code, output = invoke("data", "info", root)
    assert code == 2
    assert_no_bug(output)
    message = " ".join(output.split())
    assert f"{root / 'annotations.json'} (image id {image_id!r})" in message
    assert repr(name) in message and str(secret) in message and OUTSIDE in message
    code, output = invoke("data", "convert", root, "--to", "yolo", tmp_path / "converted")
    assert code == 2 and OUTSIDE in output
    copied = [p.read_bytes() for p in (tmp_path / "converted").rglob("*.jpg")]
    assert secret.read_bytes() not in copied


def test_coco_absolute_path_inside_the_dataset_is_read(
    small_datasets: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    root = copy_of(small_datasets, "coco", tmp_path)
    first = sorted((root / "images").iterdir())[0]

    def absolute(data: dict) -> None:
        entry = next(i for i in data["images"] if i["file_name"] == first.name)
        entry["file_name"] = str(first)

    _edit_json(root / "annotations.json", absolute)
    assert first in [record.image_path for record in load_dataset(root).records]


def _escape_cvat(root: Path, name: str) -> None:
    tree = ET.parse(root / "annotations.xml")
    tree.getroot().find("image").set("name", name)
    tree.write(root / "annotations.xml")


def _escape_createml(root: Path, name: str) -> None:
    _edit_json(root / "annotations.json", lambda data: data[0].update(image=name))


def _escape_csv(root: Path, name: str) -> None:
    lines = (root / "annotations.csv").read_text().splitlines()
    first_image = lines[1].split(",")[0]
    (root / "annotations.csv").write_text("\n".join(line.replace(first_image, name) for line in lines) + "\n")


def _escape_yolo_list(root: Path, name: str) -> None:
    images = sorted(p.relative_to(root).as_posix() for p in (root / "images").iterdir())
    (root / "train.txt").write_text("\n".join([*images[1:], name]) + "\n")
    (root / "data.yaml").write_text(
        (root / "data.yaml").read_text().replace("train: images", "train: train.txt")
    )


def _escape_yolo_yaml(root: Path, name: str) -> None:
    (root / "data.yaml").write_text(
        (root / "data.yaml").read_text().replace("train: images", f"train: {Path(name).parent}")
    )


def _escape_labelme(root: Path, name: str) -> None:
    _edit_json(sorted(root.glob("*.json"))[0], lambda data: data.update(imagePath=name))


ESCAPES = {
    "cvat": _escape_cvat,
    "createml": _escape_createml,
    "csv": _escape_csv,
    "yolo-list-file": _escape_yolo_list,
    "yolo-yaml-split": _escape_yolo_yaml,
    "labelme": _escape_labelme,
}


@pytest.mark.parametrize("absolute", [False, True], ids=["dot-dot", "absolute"])
@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_every_format_refuses_an_image_outside_the_dataset(
    small_datasets: dict[str, Path],  # noqa: F811
    labelme_registry: Registry,  # noqa: F811
    tmp_path: Path,
    secret: Path,
    case: str,
    absolute: bool,
) -> None:
    name = case.split("-")[0]
    if name not in small_datasets:
        pytest.skip("the LabelMe plugin is not importable")
    root = copy_of(small_datasets, name, tmp_path)
    written = str(secret) if absolute else "../private/secret.jpg"
    ESCAPES[case](root, written)
    with pytest.raises(DatasetError) as error:
        load_dataset(root, format=name, registry=labelme_registry)
    message = str(error.value)
    assert OUTSIDE in message and str(secret.parent if case == "yolo-yaml-split" else secret) in message


def test_voc_reads_only_the_file_name_of_its_filename_element(
    small_datasets: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    secret: Path,
) -> None:
    """VOC's <filename> (and <path>) may hold folders; the image is always JPEGImages/<file name>."""
    root = copy_of(small_datasets, "voc", tmp_path)
    xml_path = sorted((root / "Annotations").glob("*.xml"))[0]
    tree = ET.parse(xml_path)
    tree.getroot().find("filename").text = str(secret)
    ET.SubElement(tree.getroot(), "path").text = str(secret)
    tree.write(xml_path)
    shutil.copyfile(secret, root / "JPEGImages" / "secret.jpg")
    paths = [record.image_path for record in load_dataset(root).records]
    assert root / "JPEGImages" / "secret.jpg" in paths and secret not in paths


def test_symbolic_links_inside_the_dataset_are_followed(
    small_datasets: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The documented choice: a link someone put inside the dataset (an image folder on shared storage)
    is theirs to make; only the paths annotation files write are checked."""
    root = copy_of(small_datasets, "coco", tmp_path)
    shared = tmp_path / "shared_images"
    shutil.move(root / "images", shared)
    (root / "images").symlink_to(shared, target_is_directory=True)
    assert len(load_dataset(root)) == 3


# --- Defect 9: text that is not UTF-8, JSON nested too deep, a COCO file that is not an object --------------


def _non_utf8(path: Path) -> None:
    """Latin-1 bytes in the first string of a JSON file, or at the start of the second line of a text file."""
    data = path.read_bytes()
    at = data.find(b'"' if path.suffix == ".json" else b"\n") + 1
    path.write_bytes(data[:at] + b"Caf\xe9 " + data[at:])


def _yolo_classes_file(root: Path) -> Path:
    (root / "data.yaml").unlink()
    (root / "classes.txt").write_text("Platelets\nRBC\nWBC\n")
    return root / "classes.txt"


def _yolo_list_file(root: Path) -> Path:
    images = sorted(p.relative_to(root).as_posix() for p in (root / "images").iterdir())
    (root / "train.txt").write_text("\n".join(images) + "\n")
    (root / "data.yaml").write_text(
        (root / "data.yaml").read_text().replace("train: images", "train: train.txt")
    )
    return root / "train.txt"


NON_UTF8_CASES = {
    "yolo-label": ("yolo", lambda root: sorted((root / "labels").glob("*.txt"))[0], None),
    "yolo-classes": ("yolo", _yolo_classes_file, None),
    "yolo-list": ("yolo", _yolo_list_file, None),
    "voc-split-list": ("voc", lambda root: root / "ImageSets" / "Main" / "all.txt", "all"),
    "kitti-label": ("kitti", lambda root: sorted((root / "label_2").glob("*.txt"))[0], None),
    "csv": ("csv", lambda root: root / "annotations.csv", None),
    "coco": ("coco", lambda root: root / "annotations.json", None),
    "createml": ("createml", lambda root: root / "annotations.json", None),
    "labelme": ("labelme", lambda root: sorted(root.glob("*.json"))[0], None),
}


@pytest.mark.parametrize("case", sorted(NON_UTF8_CASES))
def test_text_that_is_not_utf8_names_the_file_and_the_encoding(
    small_datasets: dict[str, Path],  # noqa: F811
    labelme_registry: Registry,  # noqa: F811
    tmp_path: Path,
    case: str,
) -> None:
    name, pick, split = NON_UTF8_CASES[case]
    if name not in small_datasets:
        pytest.skip("the LabelMe plugin is not importable")
    root = copy_of(small_datasets, name, tmp_path)
    bad = pick(root)
    _non_utf8(bad)
    args = ["--format", name, *(["--split", split] if split else [])]
    with process_registry(labelme_registry):
        code, output = invoke("data", "info", root, *args)
    assert code == 2
    assert_no_bug(output)
    assert f"{bad}:" in output and "is not UTF-8 text" in output


def test_validate_reports_a_yolo_label_file_that_is_not_utf8(
    small_datasets: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    root = copy_of(small_datasets, "yolo", tmp_path)
    bad = sorted((root / "labels").glob("*.txt"))[0]
    _non_utf8(bad)
    code, output = invoke("data", "validate", root)
    assert code == 1
    assert_no_bug(output)
    assert "annotations cannot be read" in output and f"{bad}:2" in output and "UTF-8" in output
    assert "3 images checked" in output  # the other files are still checked


DEEP = 50_000


@pytest.mark.parametrize("name", ["coco", "createml", "labelme"])
def test_json_nested_too_deeply_is_refused_with_the_file_named(
    small_datasets: dict[str, Path],  # noqa: F811
    labelme_registry: Registry,  # noqa: F811
    tmp_path: Path,
    name: str,
) -> None:
    if name not in small_datasets:
        pytest.skip("the LabelMe plugin is not importable")
    root = copy_of(small_datasets, name, tmp_path)
    target = sorted(root.glob("*.json"))[0]
    nested = "[" * DEEP + "]" * DEEP
    if name == "coco":
        target.write_text('{"images": ' + nested + ', "annotations": [], "categories": []}')
    elif name == "createml":
        target.write_text('[{"image": "a.jpg", "annotations": ' + nested + "}]")
    else:
        target.write_text('{"shapes": ' + nested + ', "imagePath": "a.jpg"}')
    with process_registry(labelme_registry):
        code, output = invoke("data", "info", root, "--format", name)
        assert_no_bug(output)
        assert code == 2 and f"{target}: the JSON is nested too deeply" in output
        code, output = invoke("data", "validate", root, "--format", name)
    assert code == 2 and "nested too deeply" in output
    assert_no_bug(output)


def test_cvat_xml_nested_deeply_is_read_without_a_crash(
    small_datasets: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    root = copy_of(small_datasets, "cvat", tmp_path)
    text = (root / "annotations.xml").read_text()
    (root / "annotations.xml").write_text(text.replace("<meta>", "<meta>" + "<x>" * DEEP + "</x>" * DEEP, 1))
    assert len(load_dataset(root)) == 3


@pytest.mark.parametrize("top_level", ["[]", '"images"', "42", "null"])
def test_coco_file_whose_top_level_is_not_an_object_is_named(
    small_datasets: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    top_level: str,
) -> None:
    root = copy_of(small_datasets, "coco", tmp_path)
    json_path = root / "annotations.json"
    json_path.write_text(top_level)
    for path in (root, json_path):
        code, output = invoke("data", "info", path, "--format", "coco")
        assert code == 2
        assert_no_bug(output)
        assert (
            f"{json_path} is not a COCO" in output and "top level is" in output and "not an object" in output
        )


# --- Defect 10: split lists, convert --force, the field of a bad coordinate ------------------------------


@pytest.fixture
def voc_with_dangling_split(small_datasets: dict[str, Path], tmp_path: Path) -> Path:  # noqa: F811
    root = copy_of(small_datasets, "voc", tmp_path)
    (root / "ImageSets" / "Main" / "val.txt").write_text("BloodImage_99999\n")
    return root


def test_split_list_naming_a_missing_image_is_reported_by_every_command(
    voc_with_dangling_split: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = voc_with_dangling_split
    where = f"{root / 'ImageSets' / 'Main' / 'val.txt'}:1: 'BloodImage_99999'"
    # Training reads its data through load_dataset, which logs the reader's report.
    with caplog.at_level(logging.WARNING, logger="yolox_sdk.data.formats"):
        dataset = load_dataset(root)
    assert len(dataset) == 3 and any(where in message for message in caplog.messages)
    with pytest.raises(DatasetError, match="BloodImage_99999' has no annotation file"):
        load_dataset(root, split="val")
    for command in ("info", "stats"):
        code, output = invoke("data", command, root)
        assert code == 0, output
        assert "split list names an image without annotation file" in output and where in output
    code, output = invoke("data", "validate", root)
    assert code == 1 and "split list names an image without annotation file" in output and where in output
    code, output = invoke("data", "validate", root, "--split", "val")
    assert code == 2 and "'BloodImage_99999' has no annotation file" in output


def test_voc_coordinate_that_is_not_a_number_names_the_field(
    small_datasets: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    root = copy_of(small_datasets, "voc", tmp_path)
    xml_path = sorted((root / "Annotations").glob("*.xml"))[0]
    tree = ET.parse(xml_path)
    second = tree.getroot().findall("object")[1]
    second.find("bndbox/ymin").text = "12px"
    tree.write(xml_path)
    code, output = invoke("data", "info", root)
    assert code == 2
    assert_no_bug(output)
    message = " ".join(output.split())
    name = second.findtext("name")
    assert f"{xml_path} (object 2), class '{name}': <ymin> is '12px', not a number" in message


def test_convert_force_replaces_an_earlier_conversion(
    small_datasets: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    code, output = invoke("data", "convert", small_datasets["voc"], "--to", "yolo", out)
    assert code == 0, output
    (out / ".yolox-sdk-dataset").unlink()  # a conversion written before the marker existed
    before = tree_hashes(small_datasets["coco"])

    code, output = invoke("data", "convert", small_datasets["coco"], "--to", "voc", out, "--force")

    assert code == 0, output
    assert "Deleted the earlier dataset" in output and "Nothing was lost" in output
    assert sorted(p.name for p in out.iterdir()) == [
        ".yolox-sdk-dataset",
        "Annotations",
        "ImageSets",
        "JPEGImages",
    ]
    assert load_dataset(out).format == "voc" and len(load_dataset(out)) == 3
    assert tree_hashes(small_datasets["coco"]) == before
    code, output = invoke("data", "convert", small_datasets["coco"], "--to", "createml", out, "--force")
    assert code == 0 and sorted(p.name for p in out.iterdir())[:2] == [
        ".yolox-sdk-dataset",
        "BloodImage_00007.jpg",
    ]
    assert load_dataset(out).format == "createml"


def test_convert_force_refuses_a_folder_that_is_not_a_dataset(
    small_datasets: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.md").write_text("keep me")
    code, output = invoke("data", "convert", small_datasets["coco"], "--to", "voc", mine, "--force")
    assert code == 2 and "does not look like a dataset" in output
    assert [p.name for p in mine.iterdir()] == ["notes.md"]
    # A dataset plus something else (a model, notes) is not emptied either.
    invoke("data", "convert", small_datasets["coco"], "--to", "yolo", tmp_path / "earlier")
    (tmp_path / "earlier" / ".yolox-sdk-dataset").unlink()
    (tmp_path / "earlier" / "best.pt").write_bytes(b"weights")
    code, output = invoke(
        "data", "convert", small_datasets["coco"], "--to", "voc", tmp_path / "earlier", "--force"
    )
    assert code == 2 and "best.pt" in output and (tmp_path / "earlier" / "best.pt").is_file()


def test_convert_force_never_touches_the_source(
    small_datasets: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    root = copy_of(small_datasets, "coco", tmp_path)
    before = tree_hashes(root)
    for target in (root, root / "images", tmp_path):
        code, output = invoke("data", "convert", root, "--to", "voc", target, "--force")
        assert code == 2 and "overlaps the source" in output
    assert tree_hashes(root) == before


def test_validate_fix_force_replaces_an_earlier_fixed_copy(
    small_datasets: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    fixed = tmp_path / "fixed"
    assert invoke("data", "validate", small_datasets["yolo"], "--fix", fixed)[0] == 0
    (fixed / "labels" / "stale.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    code, output = invoke("data", "validate", small_datasets["yolo"], "--fix", fixed, "--force")
    assert code == 0, output
    assert "deleted the earlier dataset" in output and not (fixed / "labels" / "stale.txt").exists()


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("images", "id", []),
        ("images", "id", {}),
        ("annotations", "image_id", [1]),
        ("annotations", "category_id", {}),
    ]
    + [("annotations", "id", [])],
)
def test_coco_ids_of_the_wrong_type_are_named(
    small_datasets: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    section: str,
    key: str,
    value: object,
) -> None:
    """Found by tests/test_fuzz_formats.py: an id that is a list or an object crashed the reader."""
    root = copy_of(small_datasets, "coco", tmp_path)
    _edit_json(root / "annotations.json", lambda data: data[section][0].update({key: value}))
    code, output = invoke("data", "info", root)
    assert code == 2
    assert_no_bug(output)
    assert f"{root / 'annotations.json'}" in output and f"{section}[0]" in output


def test_convert_force_never_empties_a_folder_holding_source_images(
    small_datasets: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    """A COCO file in annotations/ may read its images from a sibling folder: that folder is the source."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    shutil.copytree(small_datasets["coco"] / "images", root / "val")
    shutil.copyfile(small_datasets["coco"] / "annotations.json", root / "annotations" / "instances_val.json")
    (root / "val" / "instances_val.json").write_text(
        (root / "annotations" / "instances_val.json").read_text()
    )  # makes val/ look like a COCO dataset of its own
    before = tree_hashes(root)
    source = root / "annotations" / "instances_val.json"
    code, output = invoke("data", "convert", source, "--to", "voc", root / "val", "--force")
    assert code == 2 and "an image of the dataset being read" in output
    assert tree_hashes(root) == before
