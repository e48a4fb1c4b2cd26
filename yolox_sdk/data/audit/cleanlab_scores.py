"""cleanlab's object-detection scores (ObjectLab) for the same labels and predictions the audit matches.

cleanlab gives what our matching does not: per-box scores for three of our four kinds
(``cleanlab.object_detection.rank``: ``compute_overlooked_box_scores`` per prediction,
``compute_swap_box_scores`` and ``compute_badloc_box_scores`` per label; lower means more likely an error)
and a label quality score per image (1 clean, 0 dirty): those box scores pooled per image by cleanlab's
``pool_box_scores_per_image`` and combined as ``get_label_quality_scores`` does (geometric mean, equal
weights). It has no score for an invented label and suggests no fix, so the ranking, the suggested box and
class are ours (``scoring``); cleanlab's numbers are reported next to them.

cleanlab's probability thresholds (0.95 and 0.5 by default, fixed inside ``get_label_quality_scores`` and
``find_label_issues``) expect calibrated class probabilities; a YOLOX score is objectness times class
probability and rarely reaches 0.95, so the audit calls the per-box functions with its own thresholds and
pools them itself. ``find_label_issues`` is not used: besides the fixed thresholds it computes per-class AP
in a ``multiprocessing`` pool, which a CLI process should not fork.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import attrs
import numpy as np

from yolox_sdk.data.audit.scoring import Boxes

HIGH_PROBABILITY = 0.5  # cleanlab's high_probability_threshold: a confident prediction (overlooked, swap)
LOW_PROBABILITY = 0.3  # cleanlab's low_probability_threshold: predictions that can correct a location
TINY = 1e-100  # cleanlab's floor inside the logarithm of its geometric mean


@attrs.frozen
class CleanlabScores:
    """cleanlab's scores, per image and per box; per-box arrays follow our box order. ``NaN`` where
    cleanlab does not score a box (an overlooked score of a prediction below the threshold)."""

    image_quality: np.ndarray
    overlooked: list[np.ndarray]
    swap: list[np.ndarray]
    badloc: list[np.ndarray]


def _cleanlab_prediction(predicted: Boxes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One image's predictions as cleanlab wants them (per class, ``[x1, y1, x2, y2, score]`` rows) and
    the position in cleanlab's order (class by class) of each of our predictions."""
    per_class = np.empty(num_classes, dtype=object)
    order = []
    for label in range(num_classes):
        chosen = np.flatnonzero(predicted.labels == label)
        order.extend(chosen.tolist())
        rows = np.concatenate([predicted.boxes[chosen], predicted.scores[chosen, None]], axis=1)
        per_class[label] = rows.reshape(-1, 5)
    position = np.empty(len(predicted), dtype=np.int64)
    position[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    return per_class, position


def cleanlab_scores(
    labels: Sequence[Boxes], predictions: Sequence[Boxes], num_classes: int
) -> CleanlabScores:
    """cleanlab's image and box scores of ``labels`` given ``predictions`` (one entry per image)."""
    from cleanlab.object_detection import rank

    given = [{"bboxes": truth.boxes, "labels": truth.labels} for truth in labels]
    converted = [_cleanlab_prediction(predicted, num_classes) for predicted in predictions]
    predicted_lists = [per_class for per_class, _ in converted]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about empty images; the summary says what matters
        overlooked = rank.compute_overlooked_box_scores(
            labels=given, predictions=predicted_lists, high_probability_threshold=HIGH_PROBABILITY
        )
        swap = rank.compute_swap_box_scores(
            labels=given, predictions=predicted_lists, high_probability_threshold=HIGH_PROBABILITY
        )
        badloc = rank.compute_badloc_box_scores(
            labels=given, predictions=predicted_lists, low_probability_threshold=LOW_PROBABILITY
        )
        pooled = [rank.pool_box_scores_per_image(scores) for scores in (overlooked, swap, badloc)]
    quality = np.exp(np.mean([np.log(TINY + image_scores) for image_scores in pooled], axis=0))
    return CleanlabScores(
        image_quality=np.clip(quality, 0.0, 1.0),
        overlooked=[
            np.asarray(scores, np.float64)[position]
            for scores, (_, position) in zip(overlooked, converted, strict=True)
        ],
        swap=[np.asarray(scores, np.float64) for scores in swap],
        badloc=[np.asarray(scores, np.float64) for scores in badloc],
    )
