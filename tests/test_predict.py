"""Prediction with the COCO-pretrained nano on coco8 images, in original image coordinates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from torchvision.ops import box_iou

from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
from yolox_sdk.errors import ConfigError, DatasetError
from yolox_sdk.evaluation.predict import Predictor, list_images, predict_to_folder
from yolox_sdk.models import create_model

IMAGE = "images/val/000000000036.jpg"  # a person holding an umbrella, 481x640 (portrait)


@pytest.fixture(scope="module")
def class_names(coco8_dir: Path) -> list[str]:
    names = yaml.safe_load((coco8_dir / "data.yaml").read_text())["names"]
    return [names[index] for index in range(len(names))]


@pytest.fixture(scope="module")
def predictor(nano_weights: Path, class_names: list[str]) -> Predictor:
    model, spec, _ = create_model("yolox-nano", 80, pretrained=str(nano_weights))
    return Predictor(model, spec, class_names)


def ground_truth(coco8_dir: Path, relative: str, class_names: list[str]) -> tuple[torch.Tensor, list[str]]:
    """The YOLO label file converted here, independently of the SDK, to absolute xyxy."""
    height, width = cv2.imread(str(coco8_dir / relative)).shape[:2]
    label_file = coco8_dir / relative.replace("images/", "labels/").replace(".jpg", ".txt")
    rows = np.loadtxt(label_file, ndmin=2)
    cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
    boxes = torch.tensor(
        np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1), dtype=torch.float32
    )
    return boxes, [class_names[int(label)] for label in rows[:, 0]]


def test_finds_the_labelled_objects_in_original_coordinates(
    predictor: Predictor, coco8_dir: Path, class_names: list[str]
) -> None:
    (detections,) = predictor.predict([coco8_dir / IMAGE], conf=0.3, nms=0.45)
    gt_boxes, gt_names = ground_truth(coco8_dir, IMAGE, class_names)
    assert sorted(gt_names) == ["person", "umbrella"]
    assert {detection.class_name for detection in detections} >= {"person", "umbrella"}
    for box, name in zip(gt_boxes, gt_names, strict=True):
        same_class = [d for d in detections if d.class_name == name]
        best = box_iou(box[None], torch.tensor([d.box for d in same_class])).max()
        assert best > 0.8, f"{name}: best IoU {best:.2f}"  # the 416 letterbox was undone (ratio 0.65)
    image = cv2.imread(str(coco8_dir / IMAGE))
    for detection in detections:
        x1, y1, x2, y2 = detection.box
        assert 0 <= x1 < x2 <= image.shape[1] and 0 <= y1 < y2 <= image.shape[0]
        assert detection.class_name == class_names[detection.class_id] and 0.3 <= detection.score <= 1


def test_arrays_and_paths_give_the_same_detections(predictor: Predictor, coco8_dir: Path) -> None:
    paths = sorted((coco8_dir / "images" / "train").glob("*.jpg"))[:3]
    from_paths = predictor.predict(paths, batch_size=2)
    from_arrays = predictor.predict([cv2.imread(str(path)) for path in paths], batch_size=3)
    assert len(from_paths) == 3
    for first, second in zip(from_paths, from_arrays, strict=True):
        assert [d.class_id for d in first] == [d.class_id for d in second]
        np.testing.assert_allclose([d.box for d in first], [d.box for d in second], atol=0.05)


def test_higher_confidence_gives_a_subset(predictor: Predictor, coco8_dir: Path) -> None:
    crowded = coco8_dir / "images" / "val" / "000000000049.jpg"  # riders on horses, people far away
    (loose,) = predictor.predict([crowded], conf=0.05)
    (strict,) = predictor.predict([crowded], conf=0.6)
    assert 0 < len(strict) < len(loose)
    assert all(d.score >= 0.6 for d in strict)
    assert strict == [d for d in loose if d.score >= 0.6]


def test_from_checkpoint_gives_the_same_detections(
    predictor: Predictor, class_names: list[str], coco8_dir: Path, tmp_path: Path
) -> None:
    path = save_checkpoint(
        tmp_path / "coco.pt",
        Checkpoint(model=predictor.model.state_dict(), spec=predictor.spec, class_names=tuple(class_names)),
    )
    loaded = Predictor.from_checkpoint(path)
    assert loaded.class_names == tuple(class_names) and loaded.input_size == (416, 416)
    expected = predictor.predict([coco8_dir / IMAGE])[0]
    actual = loaded.predict([coco8_dir / IMAGE])[0]
    assert [(d.class_name, round(d.score, 4)) for d in actual] == [
        (d.class_name, round(d.score, 4)) for d in expected
    ]


def test_class_name_count_must_match_the_head(nano_weights: Path) -> None:
    model, spec, _ = create_model("yolox-nano", 80)
    with pytest.raises(ConfigError, match="80 classes but 3"):
        Predictor(model, spec, ["a", "b", "c"])


def test_predict_to_folder_writes_images_and_json(
    predictor: Predictor, coco8_dir: Path, tmp_path: Path
) -> None:
    source = coco8_dir / "images" / "val"
    json_path = predict_to_folder(predictor, source, tmp_path / "out", conf=0.3)
    assert json_path == tmp_path / "out" / "detections.json"
    report = json.loads(json_path.read_text())
    names = sorted(path.name for path in source.glob("*.jpg"))
    assert [entry["file"] for entry in report["images"]] == names
    assert sorted(path.name for path in (tmp_path / "out").glob("*.jpg")) == names
    expected = predictor.predict(sorted(source.glob("*.jpg")), conf=0.3)
    for entry, detections in zip(report["images"], expected, strict=True):
        original = cv2.imread(str(source / entry["file"]))
        annotated = cv2.imread(str(tmp_path / "out" / entry["file"]))
        assert annotated.shape == original.shape == (entry["height"], entry["width"], 3)
        assert [d["class_name"] for d in entry["detections"]] == [d.class_name for d in detections]
        np.testing.assert_allclose(
            [d["box"] for d in entry["detections"]] or np.zeros((0, 4)),
            [d.box for d in detections] or np.zeros((0, 4)),
            atol=0.01,
        )
        if detections:  # boxes were drawn: the image changed beyond JPEG noise along the box edges
            assert np.abs(annotated.astype(int) - original.astype(int)).max() > 100
    umbrella = next(entry for entry in report["images"] if entry["file"] == "000000000036.jpg")
    assert {d["class_name"] for d in umbrella["detections"]} >= {"person", "umbrella"}
    assert report["class_names"][0] == "person" and report["settings"]["conf"] == 0.3


def test_predict_to_folder_single_file_and_guards(
    predictor: Predictor, coco8_dir: Path, tmp_path: Path
) -> None:
    image = tmp_path / "in" / "photo.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), cv2.imread(str(coco8_dir / IMAGE)))
    report = json.loads(predict_to_folder(predictor, image, tmp_path / "out").read_text())
    assert [entry["file"] for entry in report["images"]] == ["photo.png"]
    assert (tmp_path / "out" / "photo.png").is_file()
    with pytest.raises(ConfigError, match="overwrite"):
        predict_to_folder(predictor, image.parent, image.parent)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No images"):
        list_images(tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist"):
        list_images(tmp_path / "missing")
    shutil.copy(coco8_dir / "data.yaml", tmp_path / "data.yaml")
    with pytest.raises(DatasetError, match="not an image"):
        list_images(tmp_path / "data.yaml")


def test_predict_skips_images_it_cannot_decode_and_keeps_the_rest(
    predictor: Predictor, class_names: list[str], coco8_dir: Path, tmp_path: Path
) -> None:
    """A 0-byte, a random-bytes and a text file named .jpg among real photos: each skipped with a warning,
    every good photo annotated and in detections.json, exit 0; ``--strict`` turns the skips into exit 1."""
    from click.testing import CliRunner

    from yolox_sdk.cli.main import cli

    source = tmp_path / "photos"
    shutil.copytree(coco8_dir / "images" / "val", source)
    good = sorted(path.name for path in source.glob("*.jpg"))
    (source / "empty.jpg").write_bytes(b"")
    (source / "noise.jpg").write_bytes(
        np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    )
    (source / "notes.png").write_text("not an image")
    checkpoint = save_checkpoint(
        tmp_path / "coco.pt",
        Checkpoint(model=predictor.model.state_dict(), spec=predictor.spec, class_names=tuple(class_names)),
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["predict", str(checkpoint), str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for bad in ("empty.jpg", "noise.jpg", "notes.png"):
        assert f"Skipping {bad}: " in result.output
    assert "Skipped 3 image(s)" in result.output and "Traceback" not in result.output
    report = json.loads((out / "detections.json").read_text())
    assert [entry["file"] for entry in report["images"]] == good
    assert sorted(entry["file"] for entry in report["skipped"]) == ["empty.jpg", "noise.jpg", "notes.png"]
    assert all("cannot be decoded" in entry["error"] for entry in report["skipped"])
    assert sorted(path.name for path in out.glob("*.jpg")) == good

    strict = CliRunner().invoke(cli, ["predict", str(checkpoint), str(source), "--out", str(out), "--strict"])
    assert strict.exit_code == 1 and "Skipped 3 image(s)" in strict.output

    only_bad = tmp_path / "only-bad"
    only_bad.mkdir()
    shutil.copy(source / "noise.jpg", only_bad)
    failed = CliRunner().invoke(
        cli, ["predict", str(checkpoint), str(only_bad), "--out", str(tmp_path / "o2")]
    )
    assert failed.exit_code == 2 and "None of the 1 images" in failed.output and "bug" not in failed.output
