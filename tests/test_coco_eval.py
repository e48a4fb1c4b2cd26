"""COCO evaluation: golden values from pycocotools called directly on the same hand-built data."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolox_sdk.data.records import DetectionDataset, ImageRecord
from yolox_sdk.evaluation.coco_eval import METRIC_NAMES, coco_results, evaluate, evaluate_detections
from yolox_sdk.evaluation.postprocess import ImageDetections
from yolox_sdk.models import create_model


def load_coco8(coco8_dir: Path) -> DetectionDataset:
    """coco8's YOLO labels (class cx cy w h, normalised) as absolute xyxy records; ids are 0..79."""
    names = yaml.safe_load((coco8_dir / "data.yaml").read_text())["names"]
    records = []
    for image_path in sorted(coco8_dir.glob("images/*/*.jpg")):
        height, width = cv2.imread(str(image_path)).shape[:2]
        label_path = coco8_dir / "labels" / image_path.parent.name / f"{image_path.stem}.txt"
        rows = np.loadtxt(label_path, ndmin=2).reshape(-1, 5)
        cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        records.append(ImageRecord(image_path, width, height, boxes, rows[:, 0]))
    return DetectionDataset(records, [names[index] for index in range(len(names))], source=coco8_dir)


@pytest.fixture(scope="module")
def coco8(coco8_dir: Path) -> DetectionDataset:
    return load_coco8(coco8_dir)


def perfect(dataset: DetectionDataset) -> list[ImageDetections]:
    return [
        ImageDetections(
            torch.from_numpy(record.boxes), torch.ones(len(record.labels)), torch.from_numpy(record.labels)
        )
        for record in dataset.records
    ]


def shifted(dataset: DetectionDataset, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Ground truth moved by a few pixels with random scores, one label swapped, plus a false positive per image."""
    rng = np.random.default_rng(seed)
    detections = []
    for record in dataset.records:
        boxes = record.boxes + rng.uniform(-12, 12, record.boxes.shape).astype(np.float32)
        labels = record.labels.copy()
        if len(labels) > 2:
            labels[0] = (labels[0] + 1) % dataset.num_classes
        false_positive = np.array([[5, 5, 60, 60]], np.float32)
        detections.append(
            (
                np.concatenate([boxes, false_positive]),
                rng.uniform(0.05, 1.0, len(labels) + 1),
                np.concatenate([labels, [labels[-1] if len(labels) else 0]]),
            )
        )
    return detections


def pycocotools_stats(
    dataset: DetectionDataset, detections: list[tuple[np.ndarray, np.ndarray, np.ndarray]], tmp_path: Path
) -> np.ndarray:
    """The independent path: a COCO json file on disk, ``COCO.loadRes`` and ``COCOeval`` as documented."""
    images, annotations, results = [], [], []
    for image_id, (record, (boxes, scores, labels)) in enumerate(
        zip(dataset.records, detections, strict=True), start=100
    ):
        images.append(
            {
                "id": image_id,
                "file_name": record.image_path.name,
                "width": record.width,
                "height": record.height,
            }
        )
        for (x1, y1, x2, y2), label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": dataset.category_ids[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
        for (x1, y1, x2, y2), score, label in zip(
            boxes.tolist(), scores.tolist(), labels.tolist(), strict=True
        ):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": dataset.category_ids[int(label)],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    categories = [
        {"id": cid, "name": name} for cid, name in zip(dataset.category_ids, dataset.class_names, strict=True)
    ]
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(gt_file))
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def clipped(
    detections: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [(np.maximum(boxes, 0), scores, labels) for boxes, scores, labels in detections]


def assert_matches_stats(metrics: dict[str, float], stats: np.ndarray) -> None:
    for name, expected in zip(METRIC_NAMES, stats, strict=True):
        if expected == -1:
            assert math.isnan(metrics[name]), name
        else:
            assert metrics[name] == pytest.approx(expected, abs=1e-12), name


def test_perfect_predictions_score_one(coco8: DetectionDataset) -> None:
    result = evaluate_detections(coco8, perfect(coco8))
    assert result.metrics["mAP"] == pytest.approx(1.0)
    assert result.metrics["mAP50"] == pytest.approx(1.0)
    assert result.metrics["AR100"] == pytest.approx(1.0)
    with_gt = [row for row in result.per_class if row.num_gt > 0]
    assert {row.class_name for row in with_gt} >= {"person", "bowl", "giraffe", "zebra"}
    assert [ap for row in with_gt for ap in (row.AP, row.AP50)] == pytest.approx([1.0] * 2 * len(with_gt))
    assert sum(row.num_gt for row in result.per_class) == coco8.num_boxes() == 30


def test_no_predictions_scores_zero_without_crashing(coco8: DetectionDataset) -> None:
    nothing = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)) for _ in coco8.records]
    result = evaluate_detections(coco8, nothing)
    assert result.metrics["mAP"] == 0.0 and result.metrics["mAP50"] == 0.0 and result.metrics["AR100"] == 0.0
    assert all(value == 0.0 or math.isnan(value) for value in result.metrics.values())
    assert all(row.AP == 0.0 for row in result.per_class if row.num_gt > 0)
    assert "Average Precision" in result.summary


def test_shifted_boxes_match_pycocotools(coco8: DetectionDataset, tmp_path: Path) -> None:
    detections = clipped(shifted(coco8))
    result = evaluate_detections(coco8, detections)
    stats = pycocotools_stats(coco8, detections, tmp_path)
    assert 0.2 < stats[0] < 0.95  # the data is neither trivially perfect nor hopeless
    assert_matches_stats(result.metrics, stats)


def test_class_without_ground_truth_is_nan_and_left_out_of_the_mean(tmp_path: Path) -> None:
    records = [
        ImageRecord(tmp_path / "a.jpg", 200, 100, [[10, 10, 60, 60], [100, 20, 180, 90]], [0, 1]),
        ImageRecord(tmp_path / "b.jpg", 200, 100, [[20, 30, 70, 90]], [0]),
    ]
    dataset = DetectionDataset(records, ["cat", "dog", "bird"])
    detections = [
        (
            np.array([[10, 10, 60, 60], [100, 20, 180, 90], [0, 0, 30, 30]]),
            np.array([0.9, 0.8, 0.7]),
            np.array([0, 1, 2]),
        ),
        (np.array([[20, 30, 70, 90]]), np.array([0.6]), np.array([0])),
    ]
    result = evaluate_detections(dataset, detections)
    bird = result.per_class[2]
    assert bird.class_name == "bird" and bird.num_gt == 0
    assert math.isnan(bird.AP) and math.isnan(bird.AP50)
    # pycocotools ignores the -1 entries of a class without ground truth, false positives included
    assert result.metrics["mAP"] == pytest.approx(1.0)
    assert_matches_stats(result.metrics, pycocotools_stats(dataset, detections, tmp_path))
    assert "n/a" in result.table()
    saved = json.loads(result.to_json(tmp_path / "eval.json").read_text())
    assert saved["per_class"][2] == {
        "class_name": "bird",
        "category_id": 2,
        "AP": None,
        "AP50": None,
        "num_gt": 0,
    }
    assert saved["metrics"]["mAP_large"] is None  # no large ground truth at all: pycocotools' -1


@pytest.mark.parametrize("category_ids", [(1, 3, 7), (7, 1, 3)])
def test_category_ids_map_back_to_the_source(category_ids: tuple[int, int, int], tmp_path: Path) -> None:
    records = [
        ImageRecord(tmp_path / "a.jpg", 300, 300, [[10, 10, 110, 110], [150, 150, 250, 250]], [0, 1]),
        ImageRecord(tmp_path / "b.jpg", 300, 300, [[20, 20, 220, 120], [30, 150, 90, 290]], [2, 1]),
    ]
    dataset = DetectionDataset(records, ["car", "bus", "truck"], category_ids=category_ids)
    detections = [
        (np.array([[12, 14, 110, 108], [150, 150, 250, 250]]), np.array([0.9, 0.8]), np.array([0, 1])),
        (np.array([[60, 20, 260, 120], [30, 150, 90, 290]]), np.array([0.7, 0.95]), np.array([2, 1])),
    ]
    car, bus, truck = category_ids
    assert [entry["category_id"] for entry in coco_results(dataset, detections)] == [car, bus, truck, bus]
    result = evaluate_detections(dataset, detections)
    assert [row.class_name for row in result.per_class] == ["car", "bus", "truck"]
    # hand-computed: car IoU 0.921 is a hit at 9 of the 10 IoU thresholds, bus is exact, truck IoU 0.667
    # is a hit at 0.50..0.65 (4 of 10); one ground truth each, so AP = hits / 10
    assert [row.AP for row in result.per_class] == pytest.approx([0.9, 1.0, 0.4])
    assert [row.AP50 for row in result.per_class] == pytest.approx([1.0, 1.0, 1.0])
    assert result.metrics["mAP"] == pytest.approx((0.9 + 1.0 + 0.4) / 3)
    assert_matches_stats(result.metrics, pycocotools_stats(dataset, detections, tmp_path))
    saved = result.to_dict()
    assert [row["category_id"] for row in saved["per_class"]] == list(category_ids)


def test_rejects_detections_of_the_wrong_length(coco8: DetectionDataset) -> None:
    with pytest.raises(ValueError, match="one entry"):
        evaluate_detections(coco8, perfect(coco8)[:-1])


@pytest.fixture(scope="module")
def coco_nano(nano_weights: Path) -> torch.nn.Module:
    model, _, _ = create_model("yolox-nano", 80, pretrained=str(nano_weights))
    return model


def test_pretrained_nano_on_coco8_matches_the_documented_ap(
    coco_nano: torch.nn.Module, coco8: DetectionDataset, tmp_path: Path
) -> None:
    coco_nano.train()
    result = evaluate(coco_nano, coco8, (416, 416), batch_size=3)
    # shared/assets/weights/README.md: pycocotools gives AP 0.570 / AP50 0.740 at 416 on these 8 images
    assert result.metrics["mAP"] == pytest.approx(0.570, abs=0.01)
    assert result.metrics["mAP50"] == pytest.approx(0.740, abs=0.01)
    assert coco_nano.training and coco_nano.head.decode_in_inference  # state restored
    assert result.settings["num_images"] == 8 and result.settings["input_size"] == [416, 416]
    by_name = {row.class_name: row for row in result.per_class}
    assert (by_name["zebra"].AP50, by_name["person"].num_gt) == pytest.approx((1.0, 10))
    table = result.table()
    assert "giraffe" in table and "mAP50" in table
    saved = json.loads(result.to_json(tmp_path / "eval.json").read_text())
    assert saved["metrics"]["mAP"] == pytest.approx(result.metrics["mAP"])
    assert saved["settings"]["conf_threshold"] == 0.01 and saved["settings"]["nms_threshold"] == 0.65


def test_a_model_that_predicts_nothing(coco_nano: torch.nn.Module, coco8: DetectionDataset) -> None:
    # a confidence threshold above 1 leaves every image without detections (YOLOX's evaluator crashes here)
    result = evaluate(coco_nano, coco8, (320, 320), conf_threshold=1.1)
    assert result.settings["num_detections"] == 0
    assert result.metrics["mAP"] == 0.0 and result.metrics["AR100"] == 0.0
