"""Every box of one evaluation as flat arrays, with pycocotools' own matching at IoU 0.5.

The curves, the error analysis and the gallery all need to know, per detection, whether it is a true
positive. Rather than match boxes a second time (and risk disagreeing with the AP the user is shown),
that answer is read from the ``COCOeval`` that computed the AP: its per-image results (``evalImgs``) for
the "all" area range and 100 detections per image and class, at the first IoU threshold (0.5).
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

MATCH_IOU = 0.5


@attrs.frozen(eq=False)
class MatchedBoxes:
    """Ground truth and detections of an evaluation, in the arrays every analysis reads.

    Boxes are absolute ``xyxy``; labels are class indices (positions in ``class_names``); images are
    record indices. Detections are in the order of ``results`` (COCO result dicts, as evaluated).

    Attributes:
        det_matched_gt: per detection, the index of the ground-truth box pycocotools matched it to at
            IoU 0.5 (same class), or -1 for a false positive.
        det_counted: per detection, whether COCO counted it: the top 100 per image and class are; the rest
            never enter AP, and the analyses skip them too.
    """

    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    ground_truth: COCO
    results: list[dict[str, Any]]
    gt_ids: np.ndarray
    gt_image: np.ndarray
    gt_label: np.ndarray
    gt_boxes: np.ndarray
    det_image: np.ndarray
    det_label: np.ndarray
    det_boxes: np.ndarray
    det_scores: np.ndarray
    det_matched_gt: np.ndarray
    det_counted: np.ndarray

    @property
    def num_classes(self) -> int:
        """How many classes the model and the dataset share."""
        return len(self.class_names)

    @property
    def num_detections(self) -> int:
        """How many detections were evaluated (above the evaluation's confidence threshold)."""
        return len(self.det_scores)

    def gt_count_per_class(self) -> np.ndarray:
        """Ground-truth boxes per class."""
        return np.bincount(self.gt_label, minlength=self.num_classes)


def _xyxy(boxes: list[list[float]]) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([array[:, :2], array[:, :2] + array[:, 2:]], axis=1)


def matched_boxes(
    evaluator: COCOeval, class_names: tuple[str, ...], category_ids: tuple[int, ...]
) -> MatchedBoxes:
    """The boxes and IoU-0.5 matches of an evaluated ``COCOeval`` (``EvalResult.evaluator``).

    Raises:
        ValueError: when the evaluator's first IoU threshold is not 0.5 or it was not evaluated.
    """
    if not np.isclose(evaluator.params.iouThrs[0], MATCH_IOU) or not evaluator.evalImgs:
        raise ValueError("matched_boxes needs a COCOeval evaluated with IoU thresholds starting at 0.5.")
    label_of = {int(category_id): label for label, category_id in enumerate(category_ids)}
    gt_annotations = evaluator.cocoGt.dataset["annotations"]
    results = [
        {
            key: value
            for key, value in annotation.items()
            if key in ("image_id", "category_id", "bbox", "score")
        }
        for annotation in evaluator.cocoDt.dataset["annotations"]
    ]
    gt_ids = np.array([annotation["id"] for annotation in gt_annotations], dtype=np.int64)
    gt_index = {int(gt_id): index for index, gt_id in enumerate(gt_ids)}
    det_ids = [annotation["id"] for annotation in evaluator.cocoDt.dataset["annotations"]]
    det_index = {int(det_id): index for index, det_id in enumerate(det_ids)}
    matched = np.full(len(results), -1, dtype=np.int64)
    counted = np.zeros(len(results), dtype=bool)
    for entry in _all_area_entries(evaluator):
        for det_id, gt_id in zip(entry["dtIds"], entry["dtMatches"][0], strict=True):
            counted[det_index[int(det_id)]] = True
            if gt_id > 0:
                matched[det_index[int(det_id)]] = gt_index[int(gt_id)]
    return MatchedBoxes(
        class_names=tuple(class_names),
        category_ids=tuple(int(category_id) for category_id in category_ids),
        ground_truth=evaluator.cocoGt,
        results=results,
        gt_ids=gt_ids,
        gt_image=np.array([annotation["image_id"] for annotation in gt_annotations], dtype=np.int64),
        gt_label=np.array(
            [label_of[annotation["category_id"]] for annotation in gt_annotations], dtype=np.int64
        ),
        gt_boxes=_xyxy([annotation["bbox"] for annotation in gt_annotations]),
        det_image=np.array([result["image_id"] for result in results], dtype=np.int64),
        det_label=np.array([label_of[result["category_id"]] for result in results], dtype=np.int64),
        det_boxes=_xyxy([result["bbox"] for result in results]),
        det_scores=np.array([result["score"] for result in results], dtype=np.float64),
        det_matched_gt=matched,
        det_counted=counted,
    )


def _all_area_entries(evaluator: COCOeval) -> list[dict[str, Any]]:
    """The per-image results for the "all" area range at the largest detection limit (COCO's headline)."""
    all_area = list(evaluator.params.areaRng[0])
    max_detections = evaluator.params.maxDets[-1]
    return [
        entry
        for entry in evaluator.evalImgs
        if entry is not None and list(entry["aRng"]) == all_area and entry["maxDet"] == max_detections
    ]


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of every ``xyxy`` box in ``boxes`` (N) with every one in ``others`` (M): an N x M array.

    The same definition pycocotools uses for bounding boxes (no +1 pixel), so a box that matches at
    0.5 here matches there.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    others = np.asarray(others, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    other_area = np.prod(others[:, 2:] - others[:, :2], axis=1)
    union = area[:, None] + other_area[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)
