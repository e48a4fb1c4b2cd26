"""The third-party plugin path, proven with the first-party LabelMe plugin in ``plugins/yolox-sdk-labelme``.

One test builds and installs the distribution with pip (into a temporary folder, never into the venv) and
uses it from a fresh interpreter exactly as a user would: listed by ``yolox-sdk plugins`` and loaded through
the registry. The others unit-test the LabelMe reader and writer on real BCCD boxes, importing the package
from its source folder. BCCD's Pascal VOC XML is parsed here with ``xml.etree`` so that these tests depend on
no other dataset format plugin.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from types import ModuleType

import attrs
import numpy as np
import pytest

from yolox_sdk.config.structure import structure_options
from yolox_sdk.data.records import DetectionDataset, ImageRecord
from yolox_sdk.errors import ConfigError, DatasetError

REPO_ROOT = Path(__file__).resolve().parents[1]
LABELME_PLUGIN = REPO_ROOT / "plugins" / "yolox-sdk-labelme"
BCCD_CLASSES = ("Platelets", "RBC", "WBC")  # sorted, as the reader orders them without class_names


@attrs.frozen
class VocImage:
    """One BCCD annotation as the VOC XML states it (independent of the SDK's VOC reader)."""

    image_path: Path
    width: int
    height: int
    objects: list[tuple[str, list[float]]]


def read_voc_annotation(xml_path: Path, images_dir: Path) -> VocImage:
    root = ElementTree.parse(xml_path).getroot()
    objects = []
    for element in root.iter("object"):
        box = [float(element.findtext(f"bndbox/{key}")) for key in ("xmin", "ymin", "xmax", "ymax")]
        objects.append((element.findtext("name"), box))
    return VocImage(
        image_path=images_dir / root.findtext("filename"),
        width=int(root.findtext("size/width")),
        height=int(root.findtext("size/height")),
        objects=objects,
    )


def bccd_images(bccd_dir: Path, numbers: list[int]) -> list[VocImage]:
    return [
        read_voc_annotation(bccd_dir / "Annotations" / f"BloodImage_{n:05d}.xml", bccd_dir / "JPEGImages")
        for n in numbers
    ]


def rectangle(label: str, box: list[float]) -> dict:
    return {
        "label": label,
        "points": [box[:2], box[2:]],
        "group_id": None,
        "shape_type": "rectangle",
        "flags": {},
    }


def diamond(label: str, box: list[float]) -> dict:
    """A polygon through the midpoints of the box's sides: its bounding box is ``box`` again."""
    x1, y1, x2, y2 = box
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    points = [[mx, y1], [x2, my], [mx, y2], [x1, my]]
    return {"label": label, "points": points, "group_id": None, "shape_type": "polygon", "flags": {}}


def write_labelme_file(
    folder: Path, image: VocImage, shapes: list[dict], image_path: str | None = None
) -> Path:
    """Write a LabelMe file the way LabelMe does: imagePath relative to the JSON, no embedded image.

    Without ``image_path`` the image is copied beside the file, since an imagePath leading out of the
    dataset folder is refused.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if image_path is None:
        shutil.copyfile(image.image_path, folder / image.image_path.name)
    document = {
        "version": "5.4.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path or image.image_path.name,
        "imageData": None,
        "imageHeight": image.height,
        "imageWidth": image.width,
    }
    json_path = folder / f"{image.image_path.stem}.json"
    json_path.write_text(json.dumps(document, indent=2))
    return json_path


def rectangles(image: VocImage) -> list[dict]:
    return [rectangle(name, box) for name, box in image.objects]


def expected_boxes(image: VocImage, class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    kept = [(name, box) for name, box in image.objects if box[2] > box[0] and box[3] > box[1]]
    boxes = np.array([box for _, box in kept], dtype=np.float32).reshape(-1, 4)
    labels = np.array([class_names.index(name) for name, _ in kept], dtype=np.int64)
    return boxes, labels


@pytest.fixture
def labelme(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The plugin package, imported from its source folder."""
    monkeypatch.syspath_prepend(str(LABELME_PLUGIN))
    import yolox_sdk_labelme

    assert Path(yolox_sdk_labelme.__file__).is_relative_to(LABELME_PLUGIN)
    return yolox_sdk_labelme


def test_installed_plugin_is_listed_and_loads_real_data(tmp_path: Path, bccd_dir: Path) -> None:
    source = tmp_path / "src"
    # pip builds in the source tree; a copy keeps build/ and *.egg-info out of the repository.
    shutil.copytree(
        LABELME_PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-build-isolation"]
        + ["--target", str(site), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert (site / "yolox_sdk_labelme-0.1.0.dist-info" / "entry_points.txt").is_file()

    images = bccd_images(bccd_dir, [0, 3, 338])  # 338 holds one of BCCD's two zero-area boxes
    dataset_dir = tmp_path / "labelme"
    for image in images:
        shapes = rectangles(image)
        if image.image_path.stem == "BloodImage_00003":
            shapes[0] = diamond(*image.objects[0])
        write_labelme_file(dataset_dir, image, shapes)

    script = """
import json, sys
from yolox_sdk import load_dataset
from yolox_sdk.plugins import get_registry
entry = get_registry().get("dataset_format", "labelme")
fmt = entry.factory(entry.options())
dataset = fmt.load(sys.argv[1])
print(json.dumps({
    "distribution": entry.origin.distribution,
    "version": entry.origin.version,
    "module": sys.modules[type(fmt).__module__].__file__,
    "detect": fmt.detect(sys.argv[1]),
    "auto_format": load_dataset(sys.argv[1]).format,
    "format": dataset.format,
    "class_names": list(dataset.class_names),
    "records": {r.image_path.stem: [r.boxes.tolist(), r.labels.tolist(), r.width, r.height] for r in dataset.records},
    "report": dict(dataset.report.counts),
}))
sys.stdout.flush()
from yolox_sdk.cli.main import main
sys.argv = ["yolox-sdk", "plugins"]
main()
"""
    environment = {**os.environ, "PYTHONPATH": str(site)}
    environment.pop("YOLOX_SDK_PLUGINS", None)
    run = subprocess.run(
        [sys.executable, "-c", script, str(dataset_dir)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    first_line, cli_output = run.stdout.split("\n", 1)
    result = json.loads(first_line)

    assert (result["distribution"], result["version"]) == ("yolox-sdk-labelme", "0.1.0")
    assert Path(result["module"]).is_relative_to(site)
    assert re.search(r"^\s*labelme\s+yolox-sdk-labelme 0\.1\.0\s", cli_output, re.MULTILINE), cli_output
    assert result["detect"] == 0.75  # DETECT_SCHEMA: LabelMe checks the parsed shapes and imagePath
    assert result["auto_format"] == "labelme"  # `data.format: auto` tells it apart from the built-ins
    assert result["format"] == "labelme"
    assert tuple(result["class_names"]) == BCCD_CLASSES
    assert sorted(result["records"]) == [image.image_path.stem for image in images]
    for image in images:
        boxes, labels, width, height = result["records"][image.image_path.stem]
        want_boxes, want_labels = expected_boxes(image, BCCD_CLASSES)
        np.testing.assert_array_equal(np.array(boxes, np.float32).reshape(-1, 4), want_boxes)
        assert labels == want_labels.tolist()
        assert (width, height) == (image.width, image.height)
    assert result["report"] == {"polygon converted to box": 1, "zero-area box dropped": 1}


def test_round_trip_keeps_real_boxes_and_labels(labelme: ModuleType, tmp_path: Path, bccd_dir: Path) -> None:
    *images, background = bccd_images(bccd_dir, [0, 1, 3, 2])
    records = []
    for image in images:
        boxes, labels = expected_boxes(image, BCCD_CLASSES)
        records.append(ImageRecord(image.image_path, image.width, image.height, boxes, labels))
    records.append(ImageRecord(background.image_path, background.width, background.height))  # no boxes
    dataset = DetectionDataset(records, BCCD_CLASSES)
    fmt = labelme.create_labelme_format(None)
    out = tmp_path / "out"

    warnings = fmt.save(dataset, out)
    read_back = fmt.load(out)

    assert warnings == []
    assert read_back.class_names == BCCD_CLASSES
    by_id = {record.image_id: record for record in read_back.records}
    assert sorted(by_id) == sorted(record.image_id for record in records)
    for record in records:
        again = by_id[record.image_id]
        np.testing.assert_array_equal(again.boxes, record.boxes)
        np.testing.assert_array_equal(again.labels, record.labels)
        assert (again.width, again.height) == (record.width, record.height)
        # The writer copies the image beside its LabelMe file, as LabelMe keeps them.
        assert again.image_path == out / record.image_path.name
        assert again.image_path.read_bytes() == record.image_path.read_bytes()
    written = json.loads((out / "BloodImage_00000.json").read_text())
    assert written["imagePath"] == "BloodImage_00000.jpg"
    assert written["imageData"] is None
    assert {shape["shape_type"] for shape in written["shapes"]} == {"rectangle"}
    assert len(read_back.report.counts) == 0


def test_round_trip_with_own_class_order_needs_class_names(
    labelme: ModuleType, tmp_path: Path, bccd_dir: Path
) -> None:
    image = bccd_images(bccd_dir, [3])[0]
    class_names = ("WBC", "RBC", "Platelets", "Neutrophil")
    boxes, labels = expected_boxes(image, class_names)
    dataset = DetectionDataset(
        [ImageRecord(image.image_path, image.width, image.height, boxes, labels)], class_names
    )

    warnings = labelme.create_labelme_format(None).save(dataset, tmp_path)
    options = labelme.LabelmeOptions(class_names=list(class_names))
    read_back = labelme.create_labelme_format(options).load(tmp_path)

    assert len(warnings) == 1
    assert "Neutrophil" in warnings[0] and "class_names" in warnings[0]
    assert read_back.class_names == class_names
    np.testing.assert_array_equal(read_back.records[0].boxes, boxes)
    np.testing.assert_array_equal(read_back.records[0].labels, labels)


def test_malformed_json_names_file_line_and_column(labelme: ModuleType, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "shapes": [],\n  "imagePath": "a.jpg"\n  "imageWidth": 640\n}\n')

    with pytest.raises(DatasetError) as error:
        labelme.create_labelme_format(None).load(tmp_path)

    message = str(error.value)
    assert f"{broken}:4:3" in message  # file:line:column
    assert "Expecting ',' delimiter" in message


def test_polygons_become_boxes_and_other_shapes_are_counted(
    labelme: ModuleType, tmp_path: Path, bccd_dir: Path
) -> None:
    image = bccd_images(bccd_dir, [0])[0]
    (wbc_name, wbc_box), (rbc_name, rbc_box) = image.objects[:2]
    shapes = [
        rectangle(wbc_name, wbc_box),
        diamond(rbc_name, rbc_box),
        {"label": "RBC", "points": [[100.0, 100.0], [120.0, 100.0]], "shape_type": "circle"},
        {"label": "RBC", "points": [[10.0, 10.0]], "shape_type": "point"},
        {"label": "RBC", "points": [[5.0, 5.0], [50.0, 5.0]], "shape_type": "line"},
        {"label": "RBC", "points": [[200.0, 200.0], [260.0, 200.0], [230.0, 250.0]], "shape_type": None},
    ]
    json_path = write_labelme_file(tmp_path, image, shapes)

    dataset = labelme.create_labelme_format(None).load(tmp_path)

    record = dataset.records[0]
    assert dataset.class_names == ("RBC", "WBC")
    np.testing.assert_array_equal(
        record.boxes, np.array([wbc_box, rbc_box, [200, 200, 260, 250]], np.float32)
    )
    assert record.labels.tolist() == [1, 0, 0]
    assert dataset.report.counts == {
        "polygon converted to box": 2,  # the diamond, and the LabelMe 3 shape without shape_type
        "circle shape skipped": 1,
        "point shape skipped": 1,
        "line shape skipped": 1,
    }
    assert dataset.report.examples["circle shape skipped"] == [f"{json_path}: shapes[2]"]


def test_boxes_are_clipped_and_zero_area_boxes_dropped(
    labelme: ModuleType, tmp_path: Path, bccd_dir: Path
) -> None:
    image = bccd_images(bccd_dir, [338])[0]  # one real zero-area RBC box
    shapes = rectangles(image)
    name, (x1, y1, x2, y2) = image.objects[0]
    shapes.append(rectangle(name, [x1 - 50.0, y1, x2, image.height + 30.0]))
    shapes.append(rectangle(name, [image.width + 1.0, 10.0, image.width + 40.0, 60.0]))  # outside entirely
    write_labelme_file(tmp_path, image, shapes)

    dataset = labelme.create_labelme_format(None).load(tmp_path)

    boxes = dataset.records[0].boxes
    want, _ = expected_boxes(image, BCCD_CLASSES)
    np.testing.assert_array_equal(boxes[:-1], want)
    np.testing.assert_array_equal(boxes[-1], [max(x1 - 50.0, 0.0), y1, x2, image.height])
    assert dataset.report.counts == {
        "box clipped to image": 1,
        "zero-area box dropped": 1,
        "box outside image dropped": 1,
    }


def test_class_names_option_sets_the_order_and_rejects_other_labels(
    labelme: ModuleType, tmp_path: Path, bccd_dir: Path
) -> None:
    image = bccd_images(bccd_dir, [3])[0]
    json_path = write_labelme_file(tmp_path, image, rectangles(image))
    order = ["WBC", "RBC", "Platelets"]
    options = structure_options(labelme.LabelmeOptions, {"class_names": order}, "data.format_options")

    dataset = labelme.create_labelme_format(options).load(tmp_path)

    assert dataset.class_names == tuple(order)
    assert dataset.records[0].labels.tolist() == [order.index(name) for name, _ in image.objects]
    np.testing.assert_array_equal(
        dataset.records[0].boxes, np.array([box for _, box in image.objects], np.float32)
    )
    platelets = next(index for index, (name, _) in enumerate(image.objects) if name == "Platelets")
    with pytest.raises(DatasetError) as error:
        labelme.create_labelme_format(labelme.LabelmeOptions(class_names=["WBC", "RBC", "Platelet"])).load(
            tmp_path
        )
    assert f"{json_path}: shapes[{platelets}]: label 'Platelets' is not in" in str(error.value)
    assert "Did you mean 'Platelet'?" in str(error.value)


def test_image_root_and_split_subfolders(labelme: ModuleType, tmp_path: Path, bccd_dir: Path) -> None:
    train, val = bccd_images(bccd_dir, [1, 3])  # only val has Platelets
    for folder, image in (("train", train), ("val", val)):
        write_labelme_file(tmp_path / folder, image, rectangles(image), image_path=image.image_path.name)
    options = labelme.LabelmeOptions(image_root=str(bccd_dir / "JPEGImages"))
    fmt = labelme.create_labelme_format(options)

    dataset = fmt.load(tmp_path, split="train")

    assert [record.image_path for record in dataset.records] == [train.image_path]
    # Classes come from every split, so train and val agree on the label indices.
    assert dataset.class_names == BCCD_CLASSES
    want_boxes, want_labels = expected_boxes(train, BCCD_CLASSES)
    np.testing.assert_array_equal(dataset.records[0].boxes, want_boxes)
    np.testing.assert_array_equal(dataset.records[0].labels, want_labels)
    with pytest.raises(DatasetError, match="subfolder"):
        fmt.load(tmp_path, split="test")


def test_missing_image_is_an_error(labelme: ModuleType, tmp_path: Path, bccd_dir: Path) -> None:
    image = bccd_images(bccd_dir, [0])[0]
    json_path = write_labelme_file(tmp_path, image, rectangles(image), image_path="no_such_image.jpg")

    with pytest.raises(DatasetError) as error:
        labelme.create_labelme_format(None).load(tmp_path)

    assert f"{json_path} refers to the image {tmp_path / 'no_such_image.jpg'}, which does not exist" in str(
        error.value
    )


def test_image_size_comes_from_the_image_file(labelme: ModuleType, tmp_path: Path, bccd_dir: Path) -> None:
    wrong_size, no_size = bccd_images(bccd_dir, [0, 1])
    write_labelme_file(tmp_path, attrs.evolve(wrong_size, width=1280, height=960), rectangles(wrong_size))
    json_path = write_labelme_file(tmp_path, no_size, rectangles(no_size))
    document = json.loads(json_path.read_text())
    del document["imageWidth"], document["imageHeight"]
    json_path.write_text(json.dumps(document))

    dataset = labelme.create_labelme_format(None).load(tmp_path)

    assert [(record.width, record.height) for record in dataset.records] == [(640, 480), (640, 480)]
    assert dataset.report.counts == {
        "annotated image size differs from the file (file size used)": 1,
        "no imageWidth/imageHeight (size read from the image)": 1,
    }


def test_detect_accepts_labelme_folders_only(labelme: ModuleType, tmp_path: Path, bccd_dir: Path) -> None:
    image = bccd_images(bccd_dir, [0])[0]
    write_labelme_file(tmp_path / "labelme", image, rectangles(image))
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "instances.json").write_text('{"images": [], "annotations": [], "categories": []}')
    fmt = labelme.create_labelme_format(None)

    assert fmt.detect(tmp_path / "labelme")
    assert fmt.detect(tmp_path / "labelme" / "BloodImage_00000.json")
    assert not fmt.detect(tmp_path / "coco")
    assert not fmt.detect(bccd_dir)
    assert not fmt.detect(tmp_path / "does_not_exist")


def test_options_are_checked_with_their_yaml_path(labelme: ModuleType) -> None:
    with pytest.raises(ConfigError, match=r"data\.format_options\.class_name'.*Did you mean 'class_names'"):
        structure_options(labelme.LabelmeOptions, {"class_name": ["RBC"]}, "data.format_options")
    with pytest.raises(ConfigError, match=r"data\.format_options\.class_names: expected a non-empty list"):
        structure_options(labelme.LabelmeOptions, {"class_names": ["RBC", "RBC"]}, "data.format_options")


def test_validate_on_a_relative_path_counts_each_image_once(
    labelme: ModuleType, tmp_path: Path, bccd_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader used to make image paths absolute (``os.path.abspath``) while validation lists the images
    under the path as given, so ``data validate labelme_dir`` counted every image twice (and called each a
    duplicate of itself that no annotation references)."""
    from yolox_sdk.data.validation import DUPLICATE_IMAGE, UNREFERENCED_IMAGE, validate_dataset
    from yolox_sdk.testing import plugin_registry

    for image in bccd_images(bccd_dir, [0, 1]):
        write_labelme_file(tmp_path / "labelme", image, rectangles(image))
    monkeypatch.chdir(tmp_path)
    registry = plugin_registry(labelme)

    dataset = labelme.create_labelme_format(None).load(Path("labelme"))
    assert [record.image_path for record in dataset.records] == [
        Path("labelme/BloodImage_00000.jpg"),
        Path("labelme/BloodImage_00001.jpg"),
    ]
    report = validate_dataset("labelme", registry=registry)
    assert report.format == "labelme" and report.images_checked == 2
    assert UNREFERENCED_IMAGE not in report.issues and DUPLICATE_IMAGE not in report.issues
