"""Precision-recall curves, precision/recall/F1 against confidence, and the recommended threshold.

Precision-recall curves are slices of pycocotools' own accumulated ``COCOeval.eval["precision"]`` array
(interpolated precision at 101 recall points), so the area under each is exactly the AP printed in the
table. Curves against confidence count the detections pycocotools matched at IoU 0.5 (``matches``).

The recommended threshold is the confidence that maximises F1 at IoU 0.5, where F1 is the mean over the
classes that have ground truth (a class without ground truth has no recall, as it has no AP). Every
distinct detection score is a candidate, so the maximum is exact rather than a grid's; ties go to the
higher threshold, which keeps fewer boxes for the same F1.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np
from pycocotools.cocoeval import COCOeval

from yolox_sdk.evaluation.matches import MatchedBoxes

# Confidence thresholds the curves against confidence are sampled at (the plots and their JSON).
CONFIDENCE_GRID = np.round(np.linspace(0.0, 1.0, 101), 2)


def _json_values(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(value) else round(float(value), 6) for value in values]


@attrs.frozen(eq=False)
class PrecisionRecallCurves:
    """Interpolated precision at each of COCO's recall points, per class and for all classes.

    ``iou50`` is at IoU 0.5; ``iou50_95`` is averaged over COCO's ten IoU thresholds. Rows are classes;
    a class without ground truth is all ``NaN`` and left out of ``all_*`` (the mean over classes), as it
    is left out of mAP.
    """

    class_names: tuple[str, ...]
    recall: np.ndarray
    iou50: np.ndarray
    iou50_95: np.ndarray

    @property
    def all_iou50(self) -> np.ndarray:
        """Mean precision over classes with ground truth, at IoU 0.5."""
        return _mean_over_classes(self.iou50)

    @property
    def all_iou50_95(self) -> np.ndarray:
        """Mean precision over classes with ground truth, averaged over IoU 0.5:0.95."""
        return _mean_over_classes(self.iou50_95)

    def to_dict(self) -> dict[str, Any]:
        """The numbers behind ``pr_curve.png``."""
        return {
            "recall": _json_values(self.recall),
            "all": {"iou50": _json_values(self.all_iou50), "iou50_95": _json_values(self.all_iou50_95)},
            "per_class": {
                name: {"iou50": _json_values(self.iou50[row]), "iou50_95": _json_values(self.iou50_95[row])}
                for row, name in enumerate(self.class_names)
            },
        }


def _mean_over_classes(rows: np.ndarray) -> np.ndarray:
    valid = rows[~np.isnan(rows).all(axis=1)]
    return valid.mean(axis=0) if len(valid) else np.full(rows.shape[1], np.nan)


def precision_recall_curves(
    evaluator: COCOeval, class_names: tuple[str, ...], category_ids: tuple[int, ...]
) -> PrecisionRecallCurves:
    """The curves inside an accumulated ``COCOeval``: ``eval["precision"][T, R, K, area "all", 100 dets]``."""
    precision = np.asarray(evaluator.eval["precision"], dtype=np.float64)[:, :, :, 0, -1]
    columns = [list(evaluator.params.catIds).index(int(category_id)) for category_id in category_ids]
    per_class = np.where(precision[:, :, columns] <= -1, np.nan, precision[:, :, columns])  # T x R x K
    return PrecisionRecallCurves(
        class_names=tuple(class_names),
        recall=np.asarray(evaluator.params.recThrs, dtype=np.float64),
        iou50=per_class[0].T.copy(),
        iou50_95=per_class.mean(axis=0).T.copy(),
    )


@attrs.frozen(eq=False)
class ConfidenceCurves:
    """Precision, recall and F1 at IoU 0.5 of the detections kept at each threshold of ``thresholds``.

    Rows are classes. Precision is ``NaN`` where no detection of the class is kept (it is undefined);
    F1 is then 0. A class without ground truth is all ``NaN``. ``all_*`` are means over the classes with
    ground truth.
    """

    class_names: tuple[str, ...]
    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray

    def all(self, metric: str) -> np.ndarray:
        """``precision``, ``recall`` or ``f1`` averaged over classes with ground truth."""
        rows = getattr(self, metric)
        has_gt = ~np.isnan(self.recall).all(axis=1)
        if not has_gt.any():
            return np.full(len(self.thresholds), np.nan)
        rows = rows[has_gt]
        if metric != "precision":
            return rows.mean(axis=0)
        defined = ~np.isnan(rows)  # precision is undefined where a class keeps no detection
        total = np.where(defined, rows, 0.0).sum(axis=0)
        return np.divide(
            total, defined.sum(axis=0), out=np.full(rows.shape[1], np.nan), where=defined.any(axis=0)
        )

    def to_dict(self) -> dict[str, Any]:
        """The numbers behind ``f1_curve.png``, ``precision_curve.png`` and ``recall_curve.png``."""
        metrics = ("precision", "recall", "f1")
        return {
            "confidence": _json_values(self.thresholds),
            "all": {metric: _json_values(self.all(metric)) for metric in metrics},
            "per_class": {
                name: {metric: _json_values(getattr(self, metric)[row]) for metric in metrics}
                for row, name in enumerate(self.class_names)
            },
        }


def _kept_counts(matches: MatchedBoxes, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class and threshold: detections with score >= threshold, and how many of them are matched."""
    kept = np.zeros((matches.num_classes, len(thresholds)), dtype=np.int64)
    true_positives = np.zeros_like(kept)
    counted = matches.det_counted
    for label in range(matches.num_classes):
        of_class = counted & (matches.det_label == label)
        order = np.argsort(-matches.det_scores[of_class], kind="stable")
        scores = matches.det_scores[of_class][order]
        cumulative_tp = np.concatenate([[0], np.cumsum(matches.det_matched_gt[of_class][order] >= 0)])
        # How many scores are >= each threshold: scores are sorted in decreasing order.
        counts = np.searchsorted(-scores, -thresholds, side="right")
        kept[label] = counts
        true_positives[label] = cumulative_tp[counts]
    return kept, true_positives


def _precision_recall_f1(
    matches: MatchedBoxes, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kept, true_positives = _kept_counts(matches, thresholds)
    num_gt = matches.gt_count_per_class()[:, None].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(kept > 0, true_positives / np.maximum(kept, 1), np.nan)
        recall = np.where(num_gt > 0, true_positives / np.maximum(num_gt, 1), np.nan)
        f1 = np.where(num_gt > 0, 2 * true_positives / (kept + num_gt), np.nan)
    precision = np.where(num_gt > 0, precision, np.nan)
    return precision, recall, f1


def confidence_curves(matches: MatchedBoxes, thresholds: np.ndarray = CONFIDENCE_GRID) -> ConfidenceCurves:
    """Precision, recall and F1 against confidence, per class, from pycocotools' IoU-0.5 matches."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    precision, recall, f1 = _precision_recall_f1(matches, thresholds)
    return ConfidenceCurves(matches.class_names, thresholds, precision, recall, f1)


@attrs.frozen
class RecommendedThreshold:
    """The confidence with the highest mean F1 at IoU 0.5, and the precision, recall and F1 there."""

    conf: float
    f1: float
    precision: float
    recall: float

    def to_dict(self) -> dict[str, float]:
        """JSON-ready values, rounded to 1e-6."""
        return {name: round(value, 6) for name, value in attrs.asdict(self).items()}


def recommended_threshold(matches: MatchedBoxes) -> RecommendedThreshold | None:
    """The confidence maximising F1 (mean over classes with ground truth) at IoU 0.5.

    Returns ``None`` when there is nothing to choose from: no counted detection, or no ground truth.
    """
    candidates = np.unique(matches.det_scores[matches.det_counted])[::-1]  # decreasing: ties keep the highest
    if not len(candidates) or not (matches.gt_count_per_class() > 0).any():
        return None
    precision, recall, f1 = _precision_recall_f1(matches, candidates)
    has_gt = matches.gt_count_per_class() > 0
    mean_f1 = f1[has_gt].mean(axis=0)
    best = int(np.argmax(mean_f1))
    defined = precision[has_gt, best][~np.isnan(precision[has_gt, best])]
    mean_precision = defined.mean() if len(defined) else 0.0
    return RecommendedThreshold(
        conf=float(candidates[best]),
        f1=float(mean_f1[best]),
        precision=float(mean_precision),
        recall=float(recall[has_gt, best].mean()),
    )
