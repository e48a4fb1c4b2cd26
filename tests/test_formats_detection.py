"""``format: auto`` among formats whose files overlap: every detector against every format's export.

Besides the built-ins and the LabelMe plugin, a Label Studio JSON-export format is defined here the way a
third party would write it from the docs (``detect`` returning a bool, as detectors did before scores):
its exports are JSON lists of tasks with ``data.image`` and ``annotations``, which CreateML's detector used
to claim from the words ``"image"`` and ``"annotations"`` alone, so neither format could be auto-detected.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import BCCD_CLASSES, REPO_ROOT, read_bccd_boxes
from hypothesis import given, settings
from hypothesis import strategies as st

from yolox_sdk.data.format_support import (
    DETECT_GENERIC,
    DETECT_NONE,
    DETECT_SCHEMA,
    RawImage,
    assemble_dataset,
    export_image,
    image_in_folder,
    json_list_head,
    read_json,
)
from yolox_sdk.data.formats import detect_format, detection_score, detection_scores
from yolox_sdk.data.records import DetectionDataset, ImageRecord
from yolox_sdk.errors import DatasetError
from yolox_sdk.plugins import hookimpl
from yolox_sdk.plugins.registry import Registry
from yolox_sdk.testing import (
    check_detection,
    import_plugin,
    plugin_registry,
    registry_fixture,
    sample_exports,
)

LABEL_STUDIO = "labelstudio"
IMAGE_IDS = ("BloodImage_00000", "BloodImage_00001", "BloodImage_00002")


def _is_task(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("data"), dict)
        and isinstance(entry["data"].get("image"), str)
        and isinstance(entry.get("annotations"), list)
    )


class LabelStudioFormat:
    """Label Studio's "JSON" export of rectangle labels: box corner and size in percent of the image."""

    def __init__(self, options: Any = None) -> None:
        self.options = options

    def detect(self, path: Path) -> bool:
        path = Path(path)
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        entries = [json_list_head(file) for file in files if file.suffix == ".json"]
        return any(found and all(_is_task(entry) for entry in found) for found in entries)

    def load(self, path: Path, split: str | None = None) -> DetectionDataset:
        path = Path(path)
        json_path = path if path.is_file() else path / "tasks.json"
        raw, labels = [], []
        for number, task in enumerate(read_json(json_path)):
            where = f"{json_path} ([{number}])"
            boxes, names = [], []
            for result in task["annotations"][0]["result"]:
                value = result["value"]
                x, y = value["x"] / 100, value["y"] / 100
                boxes.append([x, y, x + value["width"] / 100, y + value["height"] / 100])
                names.append(value["rectanglelabels"][0])
            image = image_in_folder(json_path.parent, task["data"]["image"], where)
            raw.append((RawImage(image, where, boxes, normalized=True), names))
            labels += names
        classes = sorted(set(labels))
        for image, names in raw:
            image.labels = np.array([classes.index(name) for name in names], dtype=np.int64)
        return assemble_dataset(
            [image for image, _ in raw],
            classes,
            source=path,
            format=LABEL_STUDIO,
            layout="a Label Studio JSON export",
        )

    def save(self, dataset: DetectionDataset, out_dir: Path) -> list[str]:
        tasks, taken = [], set()
        for number, record in enumerate(dataset.records):
            name = export_image(record.image_path, out_dir, taken)
            results = [
                {
                    "type": "rectanglelabels",
                    "original_width": record.width,
                    "original_height": record.height,
                    "value": {
                        "x": 100 * x1 / record.width,
                        "y": 100 * y1 / record.height,
                        "width": 100 * (x2 - x1) / record.width,
                        "height": 100 * (y2 - y1) / record.height,
                        "rectanglelabels": [dataset.class_names[label]],
                    },
                }
                for (x1, y1, x2, y2), label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True)
            ]
            tasks.append({"id": number + 1, "data": {"image": name}, "annotations": [{"result": results}]})
        (out_dir / "tasks.json").write_text(json.dumps(tasks), encoding="utf-8")
        return []


@hookimpl
def _register_label_studio(register: Any) -> None:
    register(LABEL_STUDIO, LabelStudioFormat, description="Label Studio JSON export (rectangles)")


LABEL_STUDIO_PLUGIN = SimpleNamespace(register_dataset_formats=_register_label_studio)


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The built-ins, the LabelMe plugin from its source folder and the Label Studio plugin above."""
    labelme = import_plugin(REPO_ROOT / "plugins" / "yolox-sdk-labelme", "yolox_sdk_labelme")
    return plugin_registry(labelme, (LABEL_STUDIO, LABEL_STUDIO_PLUGIN))


@pytest.fixture(scope="module")
def tiny_bccd(bccd_dir: Path) -> DetectionDataset:
    """Three BCCD images with their boxes, read without any format plugin."""
    records = []
    for image_id in IMAGE_IDS:
        boxes, labels = read_bccd_boxes(bccd_dir, image_id)
        path = bccd_dir / "JPEGImages" / f"{image_id}.jpg"
        records.append(ImageRecord(path, 640, 480, boxes, labels))
    return DetectionDataset(records, BCCD_CLASSES)


@pytest.fixture(scope="module")
def exports(
    registry: Registry, tiny_bccd: DetectionDataset, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """Every registered format's export of ``tiny_bccd``: its folder and each annotation file at its top."""
    return sample_exports(registry, tiny_bccd, tmp_path_factory.mktemp("exports"))


def test_every_export_has_exactly_one_winner_the_right_one(
    registry: Registry, exports: dict[Path, str], bccd_dir: Path, coco8_dir: Path
) -> None:
    samples = {**exports, bccd_dir: "voc", coco8_dir: "yolo", coco8_dir / "data.yaml": "yolo"}
    assert {"coco", "createml", "csv", "cvat", "kitti", "labelme", "voc", "yolo", LABEL_STUDIO} <= set(
        exports.values()
    )
    wrong = {}
    for sample, expected in samples.items():
        scores = detection_scores(sample, registry)
        best = max(scores.values(), default=0.0)
        winners = [name for name, score in scores.items() if score == best]
        if winners != [expected]:
            wrong[str(sample)] = (expected, scores)
    assert not wrong


def test_label_studio_export_is_not_createml(registry: Registry, exports: dict[Path, str]) -> None:
    tasks = next(path for path, name in exports.items() if name == LABEL_STUDIO and path.is_file())
    assert registry.get("dataset_format", "createml").factory(None).detect(tasks) == DETECT_NONE
    assert detect_format(tasks, registry) == LABEL_STUDIO
    dataset = registry.get("dataset_format", LABEL_STUDIO).factory(None).load(tasks)
    assert len(dataset) == len(IMAGE_IDS)


def test_createml_checks_its_schema(tmp_path: Path) -> None:
    from yolox_sdk.builtin.formats.createml import CreatemlFormat, createml_score

    good = [
        {
            "image": "a.jpg",
            "annotations": [{"label": "c", "coordinates": {"x": 1, "y": 2, "width": 3, "height": 4}}],
        }
    ]
    cases = {
        "good.json": (good, DETECT_SCHEMA),
        "background.json": ([{"image": "a.jpg", "annotations": []}], DETECT_SCHEMA),
        "no_coordinates.json": ([{"image": "a.jpg", "annotations": [{"label": "c"}]}], DETECT_NONE),
        "image_in_data.json": ([{"data": {"image": "a.jpg"}, "annotations": []}], DETECT_NONE),
        "object.json": ({"image": "a.jpg", "annotations": []}, DETECT_NONE),
        "empty.json": ([], DETECT_NONE),
    }
    for name, (document, expected) in cases.items():
        (tmp_path / name).write_text(json.dumps(document))
        assert createml_score(tmp_path / name) == expected, name
    long_entry = [{"image": "a.jpg", "annotations": good[0]["annotations"] * 2000}]
    (tmp_path / "long.json").write_text(json.dumps(long_entry))
    assert CreatemlFormat().detect(tmp_path / "long.json") > DETECT_NONE  # judged by its keys
    (tmp_path / "notes.txt").write_text(json.dumps(good))
    assert CreatemlFormat().detect(tmp_path / "notes.txt") == DETECT_NONE


class _AnyJson:
    """A careless old-style detector: True for anything ending in .json."""

    def __init__(self, options: Any = None) -> None:
        pass

    def detect(self, path: Path) -> bool:
        return Path(path).suffix == ".json"


def _any_json_plugin(name: str) -> SimpleNamespace:
    @hookimpl
    def register_dataset_formats(register: Any) -> None:
        register(name, _AnyJson, description="any JSON")

    return SimpleNamespace(register_dataset_formats=register_dataset_formats)


def test_bool_detectors_count_as_generic_and_still_clash(tmp_path: Path, exports: dict[Path, str]) -> None:
    assert detection_score(True) == DETECT_GENERIC and detection_score(False) == DETECT_NONE
    assert detection_score(float("nan")) == DETECT_NONE and detection_score(7) == 1.0
    createml = next(path for path, name in exports.items() if name == "createml" and path.is_file())
    registry = plugin_registry(("anyjson", _any_json_plugin("anyjson")))
    assert detect_format(createml, registry) == "createml"  # the schema check beats a bare True
    other = tmp_path / "other.json"
    other.write_text("{}")
    assert detect_format(other, registry) == "anyjson"
    both = plugin_registry(
        ("anyjson", _any_json_plugin("anyjson")), ("anyjson2", _any_json_plugin("anyjson2"))
    )
    with pytest.raises(
        DatasetError, match=r"more than one dataset format: anyjson, anyjson2\. Set data\.format"
    ):
        detect_format(other, both)


def test_export_folders_load_back_with_auto(
    registry: Registry, exports: dict[Path, str], tmp_path: Path
) -> None:
    from yolox_sdk.data.formats import load_dataset

    tasks_dir = next(path for path, name in exports.items() if name == LABEL_STUDIO and path.is_dir())
    copy = tmp_path / "ls"
    shutil.copytree(tasks_dir, copy)
    dataset = load_dataset(copy, registry=registry)
    assert dataset.format == LABEL_STUDIO and len(dataset) == len(IMAGE_IDS)


@pytest.mark.parametrize(
    "name", ["coco", "createml", "csv", "cvat", "kitti", "labelme", "voc", "yolo", LABEL_STUDIO]
)
def test_each_format_passes_the_kits_detection_check(
    registry: Registry, exports: dict[Path, str], bccd_dir: Path, coco8_dir: Path, name: str
) -> None:
    check_detection(registry, name, {**exports, bccd_dir: "voc", coco8_dir: "yolo"})


def test_the_detection_check_names_a_format_that_claims_others(exports: dict[Path, str]) -> None:
    registry = plugin_registry(("anyjson", _any_json_plugin("anyjson")))
    with pytest.raises(AssertionError, match=r"Detection clashes:\n.*anyjson claims it with 0\.25"):
        check_detection(registry, "anyjson", {**exports, Path(__file__): "anyjson"})


registry_with_label_studio = registry_fixture((LABEL_STUDIO, LABEL_STUDIO_PLUGIN))


def test_registry_fixture_lets_the_cli_use_the_plugin(
    registry_with_label_studio: Registry, exports: dict[Path, str]
) -> None:
    from click.testing import CliRunner

    from yolox_sdk.cli.main import cli

    tasks_dir = next(path for path, name in exports.items() if name == LABEL_STUDIO and path.is_dir())
    result = CliRunner().invoke(cli, ["data", "info", str(tasks_dir)])
    assert result.exit_code == 0, result.output
    assert LABEL_STUDIO in result.output


def test_plugin_registry_takes_a_plugin_that_is_installed_too() -> None:
    """A plugin's tests pass its module whether or not it is pip-installed in that environment."""
    from yolox_sdk.builtin.formats import coco

    registry = plugin_registry(coco)  # also an installed entry point
    assert registry.get("dataset_format", "coco").origin.distribution == "yolox-sdk"
    alone = plugin_registry(coco, installed=False)
    assert alone.names("dataset_format") == ["coco"]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(derandomize=True, max_examples=150, deadline=None, database=None)
@given(document=JSON_VALUES, cut=st.floats(0.0, 1.0))
def test_json_detectors_never_raise_on_any_json(document: Any, cut: float) -> None:
    """Whole or cut short, any JSON gets a score, never an exception, from the JSON-reading detectors."""
    import tempfile

    from yolox_sdk.builtin.formats.coco import CocoFormat
    from yolox_sdk.builtin.formats.createml import createml_score

    text = json.dumps({"image": "a.jpg", "annotations": [document]} if cut < 0.5 else [document, document])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sample.json"
        path.write_text(text[: max(1, int(len(text) * cut))] if cut < 0.9 else text)
        head = json_list_head(path)
        assert head is None or isinstance(head, list)
        for score in (createml_score(path), CocoFormat().detect(path)):
            assert DETECT_NONE <= score <= 1.0
        assert isinstance(LabelStudioFormat().detect(path), bool)
