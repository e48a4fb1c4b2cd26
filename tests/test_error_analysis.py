"""TIDE-style error analysis on hand-built cases whose answers are known.

Each case is one kind of mistake placed on purpose; the oracle-fixed AP50 is checked against pycocotools
run directly (its own ``loadRes`` and ``COCOeval``) on predictions corrected by hand.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolox_sdk.data.records import DetectionDataset, ImageRecord
from yolox_sdk.evaluation.coco_eval import evaluate_detections
from yolox_sdk.evaluation.error_analysis import ERROR_TYPES, analyse_errors
from yolox_sdk.evaluation.matches import matched_boxes

CLASSES = ("cat", "dog")
CAT, DOG = 0, 1
# Image 0: two cats and a dog; image 1: a dog and a cat. Boxes are xyxy.
GROUND_TRUTH = [
    [([10, 10, 60, 60], CAT), ([100, 100, 150, 150], DOG), ([10, 120, 60, 170], CAT)],
    [([20, 20, 80, 80], DOG), ([120, 20, 180, 80], CAT)],
]


def dataset() -> DetectionDataset:
    records = [
        ImageRecord(f"image{index}.jpg", 200, 200, [box for box, _ in boxes], [label for _, label in boxes])
        for index, boxes in enumerate(GROUND_TRUTH)
    ]
    return DetectionDataset(records, CLASSES)


def iou(a: list[float], b: list[float]) -> float:
    """IoU written out by hand, for the test's own expectations."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# (image, box, score, label, expected outcome)
PREDICTIONS = [
    (0, [10, 10, 60, 60], 0.9, CAT, "true_positive"),
    (0, [11, 11, 61, 61], 0.8, CAT, "duplicate"),  # a second box on the first cat
    (0, [100, 100, 150, 150], 0.7, CAT, "classification"),  # the dog, called a cat
    (0, [150, 150, 190, 190], 0.6, DOG, "background"),  # nothing there
    (1, [20, 20, 80, 80], 0.95, DOG, "true_positive"),
    (1, [130, 30, 200, 100], 0.5, CAT, "localisation"),  # the cat, shifted
    (1, [95, 40, 150, 95], 0.4, DOG, "both"),  # near the cat (IoU in [0.1, 0.5)), wrong class
]
# The second cat of image 0 is found by nothing: missed.


def detections(predictions: list[tuple]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    per_image = []
    for image in range(len(GROUND_TRUTH)):
        rows = [row for row in predictions if row[0] == image]
        per_image.append(
            (
                np.array([row[1] for row in rows], dtype=np.float64).reshape(-1, 4),
                np.array([row[2] for row in rows], dtype=np.float64),
                np.array([row[3] for row in rows], dtype=np.int64),
            )
        )
    return per_image


def pycocotools_ap50(ground_truth: list[list[tuple]], predictions: list[tuple]) -> float:
    """AP50 straight from pycocotools: a COCO dict, ``loadRes`` and ``COCOeval`` as documented."""
    images, annotations = [], []
    for image, boxes in enumerate(ground_truth):
        images.append({"id": image, "width": 200, "height": 200})
        for box, label in boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image,
                    "category_id": label,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "area": (box[2] - box[0]) * (box[3] - box[1]),
                    "iscrowd": 0,
                }
            )
    coco = COCO()
    coco.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": label, "name": name} for label, name in enumerate(CLASSES)],
    }
    results = [
        {
            "image_id": image,
            "category_id": label,
            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            "score": score,
        }
        for image, b, score, label, _ in predictions
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.params.iouThrs = np.array([0.5])
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][0, :, :, 0, -1]
    return float(
        np.mean([precision[:, k].mean() for k in range(precision.shape[1]) if precision[:, k].min() > -1])
    )


@pytest.fixture(scope="module")
def analysis():
    result = evaluate_detections(dataset(), detections(PREDICTIONS))
    matches = matched_boxes(result.evaluator, CLASSES, (0, 1))
    return result, matches, analyse_errors(matches)


def test_the_test_boxes_have_the_overlaps_they_claim() -> None:
    assert iou([130, 30, 200, 100], [120, 20, 180, 80]) == pytest.approx(2500 / 6000)  # in [0.1, 0.5)
    assert 0.1 <= iou([95, 40, 150, 95], [120, 20, 180, 80]) < 0.5
    assert iou([95, 40, 150, 95], [20, 20, 80, 80]) < 0.1
    assert iou([11, 11, 61, 61], [10, 10, 60, 60]) >= 0.5
    assert iou([150, 150, 190, 190], [100, 100, 150, 150]) == 0


def test_every_prediction_gets_its_known_outcome(analysis) -> None:
    _, matches, errors = analysis
    by_box = {(int(image), tuple(box)): outcome for image, box, _, _, outcome in PREDICTIONS}
    for det in range(matches.num_detections):
        key = (int(matches.det_image[det]), tuple(float(v) for v in matches.det_boxes[det]))
        assert errors.det_outcome[det] == by_box[key]
    missed = [tuple(matches.gt_boxes[gt]) for gt in np.flatnonzero(errors.gt_missed)]
    assert missed == [(10.0, 120.0, 60.0, 170.0)]
    assert errors.counts() == {
        "classification": 1,
        "localisation": 1,
        "both": 1,
        "duplicate": 1,
        "background": 1,
        "missed": 1,
    }
    assert errors.counts(CAT) == {
        "classification": 1,
        "localisation": 1,
        "both": 0,
        "duplicate": 1,
        "background": 0,
        "missed": 1,
    }


def test_base_ap50_is_the_evaluations(analysis) -> None:
    result, _, errors = analysis
    assert errors.ap50 == pytest.approx(result.metrics["mAP50"])
    assert errors.ap50 == pytest.approx(pycocotools_ap50(GROUND_TRUTH, PREDICTIONS))


def hand_fixed(kind: str) -> tuple[list[list[tuple]], list[tuple]]:
    """Ground truth and predictions with every ``kind`` error corrected by hand."""
    ground_truth = [list(boxes) for boxes in GROUND_TRUTH]
    predictions = []
    for image, box, score, label, outcome in PREDICTIONS:
        if outcome != kind:
            predictions.append((image, box, score, label, outcome))
        elif kind == "classification":
            predictions.append((image, box, score, DOG, outcome))  # the dog it sits on
        elif kind == "localisation":
            predictions.append((image, [120, 20, 180, 80], score, label, outcome))  # the cat's own box
        # both, duplicate and background predictions are dropped
    if kind == "missed":
        ground_truth[0] = [entry for entry in ground_truth[0] if entry[0] != [10, 120, 60, 170]]
    return ground_truth, predictions


@pytest.mark.parametrize("kind", ERROR_TYPES)
def test_oracle_gain_is_the_ap50_of_hand_corrected_predictions(analysis, kind: str) -> None:
    _, _, errors = analysis
    expected = pycocotools_ap50(*hand_fixed(kind)) - pycocotools_ap50(GROUND_TRUTH, PREDICTIONS)
    assert errors.gain[kind] == pytest.approx(expected, abs=1e-9)


def test_fixing_errors_that_cost_ap_gains_ap(analysis) -> None:
    """Not a tautology: the hand-built case puts FPs above TPs, so each of these must matter."""
    _, _, errors = analysis
    for kind in ("classification", "localisation", "missed"):
        assert errors.gain[kind] > 0.01


def test_a_fix_landing_on_a_found_object_is_dropped_as_a_duplicate() -> None:
    """A wrong-class box on an object a true positive already found: relabelling it would make a
    duplicate, so the oracle drops it instead."""
    predictions = [
        (0, [100, 100, 150, 150], 0.9, DOG, "true_positive"),
        (0, [101, 101, 151, 151], 0.95, CAT, "classification"),
    ]
    result = evaluate_detections(dataset(), detections(predictions))
    errors = analyse_errors(matched_boxes(result.evaluator, CLASSES, (0, 1)))
    assert list(errors.det_outcome) == ["true_positive", "classification"]
    dropped = [row for row in predictions if row[4] != "classification"]
    expected = pycocotools_ap50(GROUND_TRUTH, dropped) - pycocotools_ap50(GROUND_TRUTH, predictions)
    assert errors.gain["classification"] == pytest.approx(expected, abs=1e-9)


def test_per_class_gains_add_up_to_what_the_class_lost(analysis) -> None:
    _, _, errors = analysis
    per_class = errors.to_dict()["per_class"]
    assert set(per_class) == set(CLASSES)
    assert per_class["cat"]["counts"]["missed"] == 1
    # Dropping the dog called background can only help dogs.
    assert per_class["dog"]["ap50_gain"]["background"] >= 0
    assert per_class["cat"]["ap50_gain"]["background"] == 0


TIDE_NAMES = {
    "classification": "Cls",
    "localisation": "Loc",
    "both": "Both",
    "duplicate": "Dupe",
    "background": "Bkg",
    "missed": "Miss",
}


def jittered_bccd(bccd_dir, num_images: int = 12) -> tuple[DetectionDataset, list]:
    """BCCD val ground truth (parsed without the SDK) and predictions made from it with every kind of error."""
    from conftest import BCCD_CLASSES, read_bccd_boxes

    ids = (bccd_dir / "ImageSets" / "Main" / "val.txt").read_text().split()[:num_images]
    rng = np.random.default_rng(5)
    records, predictions = [], []
    for image_id in ids:
        boxes, labels = (np.array(values) for values in read_bccd_boxes(bccd_dir, image_id))
        records.append(ImageRecord(f"{image_id}.jpg", 640, 480, boxes, labels))
        shifted = boxes + rng.normal(0, 8, boxes.shape)
        swapped = np.where(rng.random(len(labels)) < 0.2, (labels + 1) % 3, labels)
        twice = rng.random(len(labels)) < 0.1  # duplicates
        corners = rng.uniform(0, 400, (3, 2))
        spurious = np.concatenate([corners, corners + rng.uniform(20, 120, (3, 2))], axis=1)
        predictions.append(
            (
                np.concatenate([shifted, boxes[twice] + 1, spurious]),
                rng.uniform(0.02, 1.0, len(labels) + int(twice.sum()) + 3),
                np.concatenate([swapped, labels[twice], rng.integers(0, 3, 3)]),
            )
        )
    return DetectionDataset(records, BCCD_CLASSES), predictions


def test_counts_and_gains_agree_with_the_tidecv_package(bccd_dir) -> None:
    """The reference TIDE implementation (``tidecv``, test-only, where installed) on the same boxes."""
    tidecv = pytest.importorskip("tidecv")
    data, predictions = jittered_bccd(bccd_dir)
    ground_truth, detected = tidecv.Data("gt"), tidecv.Data("predictions")
    for image, record in enumerate(data.records):
        for box, label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True):
            ground_truth.add_ground_truth(image, label, [box[0], box[1], box[2] - box[0], box[3] - box[1]])
    for image, (boxes, scores, labels) in enumerate(predictions):
        for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True):
            detected.add_detection(image, label, score, [box[0], box[1], box[2] - box[0], box[3] - box[1]])
    tide = tidecv.TIDE()
    with contextlib.redirect_stdout(io.StringIO()):
        run = tide.evaluate(ground_truth, detected, mode=tidecv.TIDE.BOX)
    reference_gain = tide.get_main_errors()["predictions"]
    reference_count = {error.short_name: len(found) for error, found in run.error_dict.items()}

    result = evaluate_detections(data, predictions)
    errors = analyse_errors(matched_boxes(result.evaluator, data.class_names, data.category_ids))
    assert errors.ap50 * 100 == pytest.approx(run.ap, abs=1e-6)
    for kind, name in TIDE_NAMES.items():
        assert errors.counts()[kind] == reference_count[name], kind
        # Fixes that drop boxes (or objects) are the same; fixes that turn a box into a true positive
        # differ slightly: tidecv lets only the highest-scoring classification *or* localisation error on
        # an object be fixed, even when fixing one type alone, and counts the fixed box as a true positive
        # without matching again, where we re-run pycocotools on the corrected boxes.
        tolerance = 0.5 if kind in ("classification", "localisation") else 1e-6
        assert errors.gain[kind] * 100 == pytest.approx(reference_gain[name], abs=tolerance), kind
    assert min(errors.counts().values()) > 0  # every kind occurs, so each comparison means something
