"""COCO AP recomputed from pycocotools' per-image matches under image weights, for a fast bootstrap.

Rerunning ``COCOeval.evaluate()`` for each of 1,000 resamples would take minutes (0.3 s each on BCCD's
87 val images on a 2-core CPU; 1,000 weighted recomputations take under a second). The matching of a detection to a ground-truth box depends only on its own image, so it is done once per model
(``match_records``); a resample only changes how many times each image counts. ``class_precision``
redoes ``COCOeval.accumulate``'s arithmetic (area ``all``, the last max-detections setting, 101-point
interpolated precision) with every detection and ground-truth box counted as often as its image was drawn.

With every weight 1 the numbers are pycocotools' own, bit for bit up to the final mean. With weight ``w``
an image counts as ``w`` copies of it placed next to each other; detections of equal score keep
pycocotools' stable order, which is the only freedom that placement has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import numpy as np
from pycocotools.cocoeval import COCOeval

# Largest work matrix (elements) of the weighted counts; beyond it they are summed in chunks of resamples.
MATRIX_ELEMENTS = 4_000_000


@attrs.frozen
class ClassMatches:
    """One class's detections of one model over the whole dataset, in pycocotools' accumulate order.

    Attributes:
        image_index: the image of each detection (position in ``COCOeval.params.imgIds``).
        true_positive: ``(IoU thresholds, detections)``: matched and not ignored.
        false_positive: ``(IoU thresholds, detections)``: unmatched and not ignored.
        ground_truth_per_image: non-ignored ground-truth boxes of this class in each image.
    """

    image_index: np.ndarray
    true_positive: np.ndarray
    false_positive: np.ndarray
    ground_truth_per_image: np.ndarray


@attrs.frozen
class MatchRecords:
    """Per-class matches of one model (in ``category_ids`` order) and the evaluation's thresholds."""

    classes: tuple[ClassMatches, ...]
    category_ids: tuple[int, ...]
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    num_images: int


def evaluated(evaluator: COCOeval) -> COCOeval:
    """``evaluator`` after ``evaluate()`` restricted to area ``all``: the only area the AP deltas use, and
    a quarter of the matching work of the four default areas."""
    evaluator.params.areaRng = evaluator.params.areaRng[:1]
    evaluator.params.areaRngLbl = evaluator.params.areaRngLbl[:1]
    evaluator.evaluate()
    return evaluator


def match_records(evaluator: COCOeval, category_ids: Sequence[int]) -> MatchRecords:
    """The matches of an evaluated ``COCOeval`` (``evaluate()`` done), per class in ``category_ids`` order.

    Reads ``evalImgs`` at area range 0 (``all``) and the last ``maxDets`` (100), as ``accumulate`` does for
    the headline AP.
    """
    params = evaluator.params
    num_images, num_areas = len(params.imgIds), len(params.areaRng)
    max_detections = params.maxDets[-1]
    classes = []
    for category_id in category_ids:
        k = list(params.catIds).index(int(category_id))
        start = k * num_areas * num_images
        entries = evaluator.evalImgs[start : start + num_images]
        classes.append(_class_matches(entries, len(params.iouThrs), max_detections))
    return MatchRecords(
        classes=tuple(classes),
        category_ids=tuple(int(category_id) for category_id in category_ids),
        iou_thresholds=np.asarray(params.iouThrs, dtype=np.float64),
        recall_thresholds=np.asarray(params.recThrs, dtype=np.float64),
        num_images=num_images,
    )


def _class_matches(entries: Sequence[dict | None], num_thresholds: int, max_detections: int) -> ClassMatches:
    ground_truth = np.zeros(len(entries), dtype=np.int64)
    scores, matched, ignored, images = [], [], [], []
    for index, entry in enumerate(entries):
        if entry is None:
            continue
        ground_truth[index] = int(np.count_nonzero(np.asarray(entry["gtIgnore"]) == 0))
        count = len(entry["dtScores"][:max_detections])
        scores.append(np.asarray(entry["dtScores"][:max_detections], dtype=np.float64))
        matched.append(np.asarray(entry["dtMatches"])[:, :max_detections].reshape(num_thresholds, count))
        ignored.append(np.asarray(entry["dtIgnore"])[:, :max_detections].reshape(num_thresholds, count))
        images.append(np.full(count, index, dtype=np.int64))
    if not scores:
        empty = np.zeros((num_thresholds, 0), dtype=bool)
        return ClassMatches(np.zeros(0, dtype=np.int64), empty, empty, ground_truth)
    order = np.argsort(-np.concatenate(scores), kind="mergesort")  # accumulate's order
    matches = np.concatenate(matched, axis=1)[:, order] != 0
    ignores = np.concatenate(ignored, axis=1)[:, order] != 0
    return ClassMatches(
        image_index=np.concatenate(images)[order],
        true_positive=matches & ~ignores,
        false_positive=~matches & ~ignores,
        ground_truth_per_image=ground_truth,
    )


def class_precision(records: MatchRecords, k: int, weights: np.ndarray) -> np.ndarray:
    """Interpolated precision ``(resamples, IoU thresholds, recall thresholds)`` of class ``k`` under image
    ``weights`` (``(resamples, images)`` non-negative integers); ``-1`` where the class has no ground truth
    under a resample, as pycocotools marks absent classes."""
    matches = records.classes[k]
    ground_truth = weights @ matches.ground_truth_per_image  # pycocotools' npig, per resample
    shape = (len(weights), len(records.iou_thresholds), len(records.recall_thresholds))
    precision = np.full(shape, -1.0)
    if not ground_truth.any():
        return precision
    needed = _true_positives_needed(ground_truth, records.recall_thresholds)
    for t in range(len(records.iou_thresholds)):
        precision[:, t] = _threshold_precision(matches, t, weights, needed)
    precision[ground_truth == 0] = -1.0
    return precision


def _threshold_precision(
    matches: ClassMatches, t: int, weights: np.ndarray, needed: np.ndarray
) -> np.ndarray:
    """``(resamples, recall thresholds)`` precision of one class at IoU threshold index ``t``.

    Only the true positives' positions are evaluated: interpolated precision is a maximum of precision
    over the positions at or after a recall, and a false positive never raises precision above that of
    the true positive (or the start) before it, so leaving the false positives out changes no maximum.
    Their counts still enter through ``false_count``.
    """
    true_positive = matches.true_positive[t]
    if not true_positive.any():
        return np.zeros((len(weights), needed.shape[1]), dtype=np.float64)
    positions = np.flatnonzero(true_positive)
    true_count = weighted_running_counts(matches.image_index, true_positive, positions, weights)
    false_count = weighted_running_counts(matches.image_index, matches.false_positive[t], positions, weights)
    precision = true_count / (false_count + true_count + np.spacing(1))
    envelope = np.flip(np.maximum.accumulate(np.flip(precision, axis=1), axis=1), axis=1)
    position = _first_reaching(true_count.astype(np.int64), needed)
    reached = position < len(positions)
    picked = np.take_along_axis(envelope, np.minimum(position, len(positions) - 1), axis=1)
    return np.where(reached, picked, 0.0)


def weighted_running_counts(
    image_index: np.ndarray, include: np.ndarray, positions: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """``(resamples, positions)``: the weighted count of included detections up to each of ``positions``
    (inclusive), each detection weighing its image's weight in that resample. Whole numbers in float64.

    Small problems take one matrix product with per-image running counts (images x positions); when that
    matrix would be large, the weighted detections are summed directly, a few resamples at a time, so
    memory stays bounded whatever the dataset size.
    """
    num_images = weights.shape[1]
    if num_images * len(image_index) <= MATRIX_ELEMENTS:
        one_hot = np.zeros((num_images, len(image_index)), dtype=np.float64)
        one_hot[image_index, np.arange(len(image_index))] = include
        return weights.astype(np.float64) @ np.cumsum(one_hot, axis=1)[:, positions]
    counts = np.empty((len(weights), len(positions)), dtype=np.float64)
    chunk = max(1, MATRIX_ELEMENTS // max(1, len(image_index)))
    for start in range(0, len(weights), chunk):
        part = weights[start : start + chunk, image_index] * include
        counts[start : start + chunk] = np.cumsum(part, axis=1)[:, positions]
    return counts


def _true_positives_needed(ground_truth: np.ndarray, recall_thresholds: np.ndarray) -> np.ndarray:
    """Per resample and recall threshold, the fewest true positives ``v`` with ``v / npig >= threshold``
    in floating point, the comparison ``np.searchsorted(recall, thresholds)`` makes in pycocotools.

    Division by a positive number is monotone, so "recall reaches the threshold" is "the true-positive
    count reaches ``v``", an exact integer test. ``ceil(threshold * npig)`` is that count up to rounding;
    the loops move it until the floating-point test itself holds at ``v`` and fails at ``v - 1``.
    """
    total = np.maximum(ground_truth, 1)[:, None].astype(np.float64)
    needed = np.ceil(recall_thresholds[None, :] * total).astype(np.int64)
    while True:  # too high: v - 1 already reaches the threshold
        lower = (needed > 0) & ((needed - 1) / total >= recall_thresholds[None, :])
        if not lower.any():
            break
        needed -= lower
    while True:  # too low: v does not reach it
        higher = needed / total < recall_thresholds[None, :]
        if not higher.any():
            break
        needed += higher
    return needed


def _first_reaching(counts: np.ndarray, needed: np.ndarray) -> np.ndarray:
    """``(resamples, recall thresholds)``: the first column whose count in ``counts`` (resamples, columns;
    non-decreasing along each row) reaches ``needed``; the number of columns where it never does.

    One ``searchsorted`` over all rows at once: each row is shifted by a multiple of a span larger than
    any count or query, which keeps the flattened array sorted and the rows apart, in exact integers.
    """
    rows, columns = counts.shape
    span = int(max(counts.max(initial=0), needed.max(initial=0))) + 2
    offsets = np.arange(rows, dtype=np.int64)[:, None] * span
    found = np.searchsorted((counts + offsets).ravel(), (needed + offsets).ravel(), side="left")
    return found.reshape(needed.shape) - np.arange(rows, dtype=np.int64)[:, None] * columns


def average_precision(records: MatchRecords, weights: np.ndarray) -> dict[str, np.ndarray]:
    """AP@[.5:.95] and AP50 under image ``weights`` (``(resamples, images)``), per class and overall (the
    mean over the classes with ground truth, pycocotools' ``stats[0]`` and ``stats[1]``); ``NaN`` where a
    class, or every class, has no ground truth in a resample.

    Returns:
        ``AP``, ``AP50`` of shape ``(resamples, classes)``; ``mAP``, ``mAP50`` of shape ``(resamples,)``.
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=np.int64))
    if weights.ndim != 2 or weights.shape[1] != records.num_images:
        raise ValueError(f"Expected weights of shape (resamples, {records.num_images}), got {weights.shape}.")
    per_class = np.full((2, len(weights), len(records.classes)), math.nan)
    for k in range(len(records.classes)):
        precision = class_precision(records, k, weights)
        present = precision[:, 0, 0] > -1
        per_class[0, present, k] = precision[present].mean(axis=(1, 2))
        per_class[1, present, k] = precision[present, 0].mean(axis=1)
    overall = [_mean_over_present(values) for values in per_class]
    return {"AP": per_class[0], "AP50": per_class[1], "mAP": overall[0], "mAP50": overall[1]}


def _mean_over_present(values: np.ndarray) -> np.ndarray:
    present = ~np.isnan(values)
    count = present.sum(axis=1)
    total = np.where(present, values, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), math.nan)


def resample_weights(num_images: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, images)`` multiplicities of a bootstrap over images: each resample draws
    ``num_images`` images with replacement. The same seed gives the same draws."""
    generator = np.random.default_rng(seed)
    draws = generator.integers(0, num_images, size=(resamples, num_images))
    offsets = np.arange(resamples)[:, None] * num_images
    return np.bincount((draws + offsets).ravel(), minlength=resamples * num_images).reshape(
        resamples, num_images
    )
