"""Where a model's AP50 goes: every prediction and object classified the way TIDE does, with the AP50
each kind of error costs.

Definitions (Bolya et al., "TIDE: A General Toolbox for Identifying Object Detection Errors", 2020), at
a foreground IoU of 0.5 and a background IoU of 0.1. A prediction pycocotools matched at IoU 0.5 is a
true positive; every other one is, testing in the order TIDE's reference tool does (so its numbers can
be checked against it):

1. ``localisation``: its best IoU with an object of its class is in [0.1, 0.5);
2. ``classification``: IoU >= 0.5 with an object of another class;
3. ``duplicate``: IoU >= 0.5 with an object of its class that a higher-scoring prediction already took;
4. ``background``: IoU < 0.1 with every object;
5. ``both``: the rest (IoU in [0.1, 0.5) with an object of another class only).

An object no true positive found is ``missed`` unless a classification or localisation error points at
it (fixing that error would find it).

Each error type's cost is the AP50 gained when that type alone is fixed by an oracle and AP50 is
recomputed through pycocotools: classification errors take their object's class and localisation
errors its box (each is dropped instead when its object is already found, by a true positive or by a
higher-scoring fixed prediction: it would be a duplicate); both, duplicate and background errors are
dropped; missed objects are removed from the ground truth. Only the predictions COCO counts (the top
100 per image and class) are classified; the rest never enter AP.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from yolox_sdk.evaluation.coco_eval import accumulated_evaluator, ground_truth_without
from yolox_sdk.evaluation.matches import MatchedBoxes, box_iou

FOREGROUND_IOU = 0.5
BACKGROUND_IOU = 0.1
TRUE_POSITIVE = "true_positive"
NOT_COUNTED = "not_counted"
PREDICTION_ERRORS = ("classification", "localisation", "both", "duplicate", "background")
ERROR_TYPES = (*PREDICTION_ERRORS, "missed")


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 6)


@attrs.frozen(eq=False)
class ErrorAnalysis:
    """The outcome of every prediction and object, the count of each error type and what fixing it gains.

    Attributes:
        det_outcome: per prediction (``MatchedBoxes`` order), ``true_positive``, an error type, or
            ``not_counted``.
        det_target: per prediction, the object a duplicate, classification or localisation error is
            about (index into the ground-truth arrays), else -1.
        gt_missed: per object, whether it is a ``missed`` error.
        gt_found: per object, whether a true positive found it.
        ap50: AP50 over all classes as evaluated, and ``per_class_ap50`` per class (``NaN`` without
            ground truth).
        gain: per error type, AP50 (all classes) gained by the oracle fix; ``per_class_gain`` per class.
    """

    class_names: tuple[str, ...]
    det_outcome: np.ndarray
    det_target: np.ndarray
    gt_missed: np.ndarray
    gt_found: np.ndarray
    det_label: np.ndarray
    gt_label: np.ndarray
    ap50: float
    per_class_ap50: np.ndarray
    gain: dict[str, float]
    per_class_gain: dict[str, np.ndarray]

    def counts(self, label: int | None = None) -> dict[str, int]:
        """How many errors of each type, for one class (predicted class; missed: the object's) or all."""
        det_of = np.ones(len(self.det_outcome), bool) if label is None else self.det_label == label
        gt_of = np.ones(len(self.gt_missed), bool) if label is None else self.gt_label == label
        counts = {kind: int(np.sum(det_of & (self.det_outcome == kind))) for kind in PREDICTION_ERRORS}
        counts["missed"] = int(np.sum(gt_of & self.gt_missed))
        return counts

    def to_dict(self) -> dict[str, Any]:
        """The numbers behind ``errors.png``: counts and AP50 gains, for all classes and per class."""
        per_class = {
            name: {
                "AP50": _json_number(self.per_class_ap50[label]),
                "counts": self.counts(label),
                "ap50_gain": {kind: _json_number(self.per_class_gain[kind][label]) for kind in ERROR_TYPES},
            }
            for label, name in enumerate(self.class_names)
        }
        return {
            "foreground_iou": FOREGROUND_IOU,
            "background_iou": BACKGROUND_IOU,
            "all": {
                "AP50": _json_number(self.ap50),
                "true_positives": int(np.sum(self.det_outcome == TRUE_POSITIVE)),
                "counts": self.counts(),
                "ap50_gain": {kind: _json_number(self.gain[kind]) for kind in ERROR_TYPES},
            },
            "per_class": per_class,
        }


def _classify_prediction(iou: np.ndarray, same_class: np.ndarray) -> tuple[str, int]:
    """The error type of one unmatched prediction and the object it is about (-1 if none)."""

    def best(mask: np.ndarray) -> int:
        return int(np.argmax(np.where(mask, iou, -1.0)))

    if len(iou) == 0:
        return "background", -1
    foreground = iou >= FOREGROUND_IOU
    if same_class.any() and BACKGROUND_IOU <= iou[best(same_class)] < FOREGROUND_IOU:
        return "localisation", best(same_class)
    if (foreground & ~same_class).any():
        return "classification", best(foreground & ~same_class)
    if (foreground & same_class).any():
        return "duplicate", best(foreground & same_class)
    if iou.max() < BACKGROUND_IOU:
        return "background", -1
    return "both", best(iou >= BACKGROUND_IOU)


def classify_predictions(matches: MatchedBoxes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Outcome and target object of every prediction; which objects were found and which are missed."""
    outcome = np.full(matches.num_detections, NOT_COUNTED, dtype=object)
    target = np.full(matches.num_detections, -1, dtype=np.int64)
    gt_found = np.zeros(len(matches.gt_label), dtype=bool)
    true_positive = matches.det_counted & (matches.det_matched_gt >= 0)
    outcome[true_positive] = TRUE_POSITIVE
    target[true_positive] = matches.det_matched_gt[true_positive]
    gt_found[matches.det_matched_gt[true_positive]] = True
    for det in np.flatnonzero(matches.det_counted & ~true_positive):
        in_image = np.flatnonzero(matches.gt_image == matches.det_image[det])
        iou = box_iou(matches.det_boxes[det], matches.gt_boxes[in_image])[0]
        same_class = matches.gt_label[in_image] == matches.det_label[det]
        kind, position = _classify_prediction(iou, same_class)
        outcome[det] = kind
        target[det] = in_image[position] if position >= 0 else -1
    covered = np.zeros_like(gt_found)
    fixable = np.isin(outcome, ("classification", "localisation"))
    covered[target[fixable]] = True
    gt_missed = ~gt_found & ~covered
    return outcome.astype(str), target, gt_found, gt_missed


def _fixed_results(
    matches: MatchedBoxes, outcome: np.ndarray, target: np.ndarray, gt_found: np.ndarray, kind: str
) -> list[dict[str, Any]]:
    """The predictions with every ``kind`` error fixed by the oracle (see the module docstring)."""
    results = [dict(result) for result in matches.results]
    dropped = set(np.flatnonzero(outcome == kind).tolist())
    if kind in ("classification", "localisation"):
        dropped = set()
        taken = gt_found.copy()
        errors = np.flatnonzero(outcome == kind)
        for det in errors[np.argsort(-matches.det_scores[errors], kind="stable")]:
            gt = target[det]
            if taken[gt]:
                dropped.add(int(det))
                continue
            taken[gt] = True
            if kind == "classification":
                results[det]["category_id"] = matches.category_ids[matches.gt_label[gt]]
            else:
                x1, y1, x2, y2 = matches.gt_boxes[gt].tolist()
                results[det]["bbox"] = [x1, y1, x2 - x1, y2 - y1]
    return [result for index, result in enumerate(results) if index not in dropped]


def ap50_by_class(
    ground_truth: Any, results: list[dict[str, Any]], category_ids: tuple[int, ...]
) -> tuple[float, np.ndarray]:
    """AP50 over all classes (mean of those with ground truth) and per class, through pycocotools."""
    evaluator = accumulated_evaluator(ground_truth, results, iou_thresholds=[FOREGROUND_IOU])
    precision = evaluator.eval["precision"][0, :, :, 0, -1]
    order = list(evaluator.params.catIds)
    per_class = np.array(
        [
            float(np.mean(column))
            if (column := precision[:, order.index(int(category_id))]).min() > -1
            else math.nan
            for category_id in category_ids
        ]
    )
    valid = per_class[~np.isnan(per_class)]
    return (float(valid.mean()) if len(valid) else math.nan), per_class


def analyse_errors(matches: MatchedBoxes) -> ErrorAnalysis:
    """Classify every prediction and object and measure each error type's AP50 cost (oracle fixes)."""
    outcome, target, gt_found, gt_missed = classify_predictions(matches)
    base, per_class_base = ap50_by_class(matches.ground_truth, matches.results, matches.category_ids)
    gain, per_class_gain = {}, {}
    for kind in ERROR_TYPES:
        if kind == "missed":
            ground_truth = ground_truth_without(matches.ground_truth, set(matches.gt_ids[gt_missed].tolist()))
            fixed, per_class = ap50_by_class(ground_truth, matches.results, matches.category_ids)
        else:
            results = _fixed_results(matches, outcome, target, gt_found, kind)
            fixed, per_class = ap50_by_class(matches.ground_truth, results, matches.category_ids)
        gain[kind] = fixed - base
        per_class_gain[kind] = per_class - per_class_base
    return ErrorAnalysis(
        class_names=matches.class_names,
        det_outcome=outcome,
        det_target=target,
        gt_missed=gt_missed,
        gt_found=gt_found,
        det_label=matches.det_label,
        gt_label=matches.gt_label,
        ap50=base,
        per_class_ap50=per_class_base,
        gain=gain,
        per_class_gain=per_class_gain,
    )
