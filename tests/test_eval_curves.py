"""Precision-recall and confidence curves, the recommended threshold and the confusion matrix.

Ground truth is real (BCCD val annotations, parsed here without the SDK); predictions are that ground
truth jittered, with labels swapped and boxes added at random, so every kind of match occurs. Expected
values come from pycocotools run directly and from brute-force loops written here.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from conftest import BCCD_CLASSES, read_bccd_boxes
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolox_sdk.data.records import DetectionDataset, ImageRecord
from yolox_sdk.evaluation.coco_eval import evaluate_detections
from yolox_sdk.evaluation.confusion import confusion_matrix
from yolox_sdk.evaluation.curves import confidence_curves, precision_recall_curves, recommended_threshold
from yolox_sdk.evaluation.matches import matched_boxes

NUM_IMAGES = 12


@pytest.fixture(scope="module")
def bccd_case(bccd_dir: Path) -> tuple[DetectionDataset, list]:
    ids = (bccd_dir / "ImageSets" / "Main" / "val.txt").read_text().split()[:NUM_IMAGES]
    rng = np.random.default_rng(3)
    records, predictions = [], []
    for image_id in ids:
        boxes, labels = read_bccd_boxes(bccd_dir, image_id)
        boxes = np.array(boxes, dtype=np.float64)
        labels = np.array(labels, dtype=np.int64)
        records.append(ImageRecord(bccd_dir / "JPEGImages" / f"{image_id}.jpg", 640, 480, boxes, labels))
        jittered = boxes + rng.normal(0, 6, boxes.shape)
        swapped = np.where(rng.random(len(labels)) < 0.15, (labels + 1) % 3, labels)
        extra = rng.uniform(0, 400, (3, 2))
        spurious = np.concatenate([extra, extra + rng.uniform(20, 120, (3, 2))], axis=1)
        predictions.append(
            (
                np.concatenate([jittered, spurious]),
                rng.uniform(0.02, 1.0, len(labels) + 3),
                np.concatenate([swapped, rng.integers(0, 3, 3)]),
            )
        )
    return DetectionDataset(records, BCCD_CLASSES), predictions


def direct_evaluator(dataset: DetectionDataset, predictions: list) -> COCOeval:
    """pycocotools as documented: a COCO dict, ``loadRes`` and ``COCOeval``."""
    images, annotations, results = [], [], []
    for image, (record, (boxes, scores, labels)) in enumerate(zip(dataset.records, predictions, strict=True)):
        images.append({"id": image, "width": record.width, "height": record.height})
        for box, label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image,
                    "category_id": label,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True):
            results.append(
                {
                    "image_id": image,
                    "category_id": label,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "score": score,
                }
            )
    coco = COCO()
    coco.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": label, "name": name} for label, name in enumerate(BCCD_CLASSES)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def test_pr_curves_are_pycocotools_precision_slices(bccd_case) -> None:
    dataset, predictions = bccd_case
    result = evaluate_detections(dataset, predictions)
    curves = precision_recall_curves(result.evaluator, BCCD_CLASSES, dataset.category_ids)
    precision = direct_evaluator(dataset, predictions).eval["precision"]
    for label in range(3):
        np.testing.assert_allclose(curves.iou50[label], precision[0, :, label, 0, -1])
        np.testing.assert_allclose(curves.iou50_95[label], precision[:, :, label, 0, -1].mean(axis=0))
        assert curves.iou50[label].mean() == pytest.approx(result.per_class[label].AP50)
    assert curves.all_iou50.mean() == pytest.approx(result.metrics["mAP50"])
    assert curves.all_iou50_95.mean() == pytest.approx(result.metrics["mAP"])
    np.testing.assert_allclose(curves.recall, np.linspace(0, 1, 101))


def matched_by_pycocotools(evaluator: COCOeval) -> dict[int, list[tuple[float, bool]]]:
    """Per class, (score, is true positive at IoU 0.5) of every counted detection, from evalImgs."""
    found: dict[int, list[tuple[float, bool]]] = {label: [] for label in range(3)}
    for entry in evaluator.evalImgs:
        if entry is None or entry["aRng"] != [0, 1e10] or entry["maxDet"] != 100:
            continue
        for score, match in zip(entry["dtScores"], entry["dtMatches"][0], strict=True):
            found[entry["category_id"]].append((score, match > 0))
    return found


def brute_force_mean_f1(found: dict, num_gt: dict, threshold: float) -> float:
    values = []
    for label, rows in found.items():
        kept = [tp for score, tp in rows if score >= threshold]
        values.append(2 * sum(kept) / (len(kept) + num_gt[label]))
    return sum(values) / len(values)


def test_recommended_threshold_is_the_brute_force_max_f1(bccd_case) -> None:
    dataset, predictions = bccd_case
    evaluator = direct_evaluator(dataset, predictions)
    found = matched_by_pycocotools(evaluator)
    num_gt = {label: int(sum((r.labels == label).sum() for r in dataset.records)) for label in range(3)}
    scores = sorted({score for rows in found.values() for score, _ in rows})
    f1 = {score: brute_force_mean_f1(found, num_gt, score) for score in scores}
    best = max(f1.values())
    expected = max(score for score, value in f1.items() if value == best)  # ties: the higher threshold

    result = evaluate_detections(dataset, predictions)
    matches = matched_boxes(result.evaluator, BCCD_CLASSES, dataset.category_ids)
    recommended = recommended_threshold(matches)
    assert recommended.conf == pytest.approx(expected)
    assert recommended.f1 == pytest.approx(best)
    assert 0.02 < recommended.conf < 1.0 and 0 < best < 1  # a real trade-off, not an end point

    curves = confidence_curves(matches)
    for index in (0, 30, 55, 90):
        threshold = float(curves.thresholds[index])
        assert curves.all("f1")[index] == pytest.approx(brute_force_mean_f1(found, num_gt, threshold))
        rows = found[1]
        kept = [tp for score, tp in rows if score >= threshold]
        assert curves.recall[1, index] == pytest.approx(sum(kept) / num_gt[1])
        if kept:
            assert curves.precision[1, index] == pytest.approx(sum(kept) / len(kept))


def test_no_predictions_recommend_nothing(bccd_case) -> None:
    dataset, _ = bccd_case
    empty = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)) for _ in dataset.records]
    result = evaluate_detections(dataset, empty)
    matches = matched_boxes(result.evaluator, BCCD_CLASSES, dataset.category_ids)
    assert recommended_threshold(matches) is None
    assert (confidence_curves(matches).f1 == 0).all()
    counts = confusion_matrix(matches, 0.3).counts
    assert counts[:3, 3].sum() == dataset.num_boxes() and counts[:, :3].sum() == 0


def test_confusion_matrix_of_a_hand_built_case() -> None:
    """Image 0 holds a cat and a dog; image 1 a dog. Known pairs: the cat found, the dog of image 0
    called a cat, a duplicate cat, a box on nothing, the dog of image 1 missed (its box scores below
    the threshold)."""
    records = [
        ImageRecord("a.jpg", 200, 200, [[10, 10, 60, 60], [100, 100, 150, 150]], [0, 1]),
        ImageRecord("b.jpg", 200, 200, [[20, 20, 80, 80]], [1]),
    ]
    predictions = [
        (
            np.array([[10, 10, 60, 60], [12, 12, 62, 62], [101, 99, 151, 149], [160, 0, 199, 40]], float),
            np.array([0.9, 0.8, 0.7, 0.6]),
            np.array([0, 0, 0, 1]),
        ),
        (np.array([[20, 20, 80, 80]], float), np.array([0.2]), np.array([1])),
    ]
    dataset = DetectionDataset(records, ("cat", "dog"))
    result = evaluate_detections(dataset, predictions)
    matrix = confusion_matrix(matched_boxes(result.evaluator, ("cat", "dog"), (0, 1)), conf=0.5)
    # rows: true cat, dog, background; columns: predicted cat, dog, background
    np.testing.assert_array_equal(matrix.counts, [[1, 0, 0], [1, 0, 1], [1, 1, 0]])
    np.testing.assert_allclose(matrix.normalized[1], [0.5, 0, 0.5])
    assert matrix.to_dict()["labels"] == ["cat", "dog", "background"]
