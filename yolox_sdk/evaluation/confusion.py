"""The confusion matrix of a model at its deployment thresholds (a confidence and IoU 0.5).

Rows are the true class, columns the predicted one; the last row and column are "background": a
prediction on no object lands in the background row, an object no prediction found in the background
column. Matching is one-to-one, per image: pairs of the same class first (highest IoU first), so a
correct box is never displaced by a wrong-class one overlapping more; the boxes left over are then
paired across classes, which is what fills the off-diagonal cells.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from yolox_sdk.evaluation.matches import MATCH_IOU, MatchedBoxes, box_iou

BACKGROUND = "background"


@attrs.frozen(eq=False)
class ConfusionMatrix:
    """Counts of (true class, predicted class) pairs, background last on both axes."""

    class_names: tuple[str, ...]
    counts: np.ndarray
    conf: float
    iou: float

    @property
    def labels(self) -> tuple[str, ...]:
        """Axis labels: the class names, then ``background``."""
        return (*self.class_names, BACKGROUND)

    @property
    def normalized(self) -> np.ndarray:
        """Each row divided by its sum (where each true class's objects went); empty rows stay 0."""
        totals = self.counts.sum(axis=1, keepdims=True)
        return np.divide(self.counts, totals, out=np.zeros(self.counts.shape), where=totals > 0)

    @property
    def num_predictions(self) -> int:
        """Predictions at or above ``conf`` (every column but the background one)."""
        return int(self.counts[:, :-1].sum())

    def to_dict(self) -> dict[str, Any]:
        """The numbers behind ``confusion_matrix.png`` and ``confusion_matrix_normalized.png``."""
        return {
            "rows": "true class",
            "columns": "predicted class",
            "labels": list(self.labels),
            "conf": round(self.conf, 6),
            "iou": self.iou,
            "counts": self.counts.tolist(),
            "normalized": np.round(self.normalized, 6).tolist(),
        }


def _pair_greedily(
    iou: np.ndarray, allowed: np.ndarray, gt_free: np.ndarray, det_free: np.ndarray, iou_min: float
) -> list[tuple[int, int]]:
    """One-to-one (gt, det) pairs with IoU >= ``iou_min`` among ``allowed`` and free boxes, best IoU first."""
    candidates = np.argwhere(allowed & (iou >= iou_min) & gt_free[:, None] & det_free[None, :])
    order = np.argsort(-iou[candidates[:, 0], candidates[:, 1]], kind="stable")
    pairs = []
    for gt, det in candidates[order]:
        if gt_free[gt] and det_free[det]:
            gt_free[gt] = det_free[det] = False
            pairs.append((int(gt), int(det)))
    return pairs


def _image_counts(
    gt_labels: np.ndarray,
    gt_boxes: np.ndarray,
    det_labels: np.ndarray,
    det_boxes: np.ndarray,
    counts: np.ndarray,
    iou_min: float,
) -> None:
    background = counts.shape[0] - 1
    iou = box_iou(gt_boxes, det_boxes)
    gt_free = np.ones(len(gt_labels), dtype=bool)
    det_free = np.ones(len(det_labels), dtype=bool)
    same_class = gt_labels[:, None] == det_labels[None, :]
    for allowed in (same_class, np.ones_like(same_class)):
        for gt, det in _pair_greedily(iou, allowed, gt_free, det_free, iou_min):
            counts[gt_labels[gt], det_labels[det]] += 1
    np.add.at(counts, (gt_labels[gt_free], background), 1)
    np.add.at(counts, (background, det_labels[det_free]), 1)


def confusion_matrix(matches: MatchedBoxes, conf: float, iou: float = MATCH_IOU) -> ConfusionMatrix:
    """The confusion matrix of the detections scoring at least ``conf``, matched at ``iou``."""
    size = matches.num_classes + 1
    counts = np.zeros((size, size), dtype=np.int64)
    kept = matches.det_scores >= conf
    images = np.union1d(matches.gt_image, matches.det_image[kept])
    for image in images:
        gt = matches.gt_image == image
        det = kept & (matches.det_image == image)
        _image_counts(
            matches.gt_label[gt],
            matches.gt_boxes[gt],
            matches.det_label[det],
            matches.det_boxes[det],
            counts,
            iou,
        )
    return ConfusionMatrix(matches.class_names, counts, float(conf), float(iou))
