"""Built-in metric plugins: F1 at a deployment threshold, and counting accuracy.

Both read the matched boxes of an evaluation (``yolox_sdk.evaluation.matches``: pycocotools' own
IoU-0.5 matching), so they agree with the AP the user sees; they are the example third parties copy for
a ``register_metrics`` plugin.

- ``f1``: precision, recall and F1 over all classes (mean over classes with ground truth) at a fixed
  ``conf``, or at the max-F1 threshold when ``conf`` is unset: what the model does once deployed, where
  AP averages over every threshold.
- ``counting``: for counting applications (cells, products on a shelf): the share of images whose number
  of detections at ``conf`` equals the number of labelled objects (``count_accuracy``) and the mean
  absolute count error per image (``count_mae``, lower is better).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from yolox_sdk.config.validators import number
from yolox_sdk.plugins.hookspecs import hookimpl

if TYPE_CHECKING:  # the registry is built for --help too: pycocotools is imported when a metric runs
    from yolox_sdk.evaluation.matches import MatchedBoxes


@attrs.frozen
class F1Options:
    """Options of the ``f1`` metric.

    Attributes:
        conf: the confidence threshold to measure at; unset (``null``), the threshold with the highest F1
            (``yolox-sdk eval``'s recommended one).
    """

    conf: float | None = attrs.field(default=None, validator=number(0.0, 1.0, optional=True))


class F1AtThreshold:
    """``F1``, ``precision``, ``recall`` (and ``F1_conf``, the threshold used) over all classes."""

    names = ("F1", "precision", "recall", "F1_conf")
    lower_is_better: tuple[str, ...] = ()

    def __init__(self, options: F1Options | None = None) -> None:
        self.options = options or F1Options()

    def compute(self, matches: MatchedBoxes) -> Mapping[str, float]:
        from yolox_sdk.evaluation.curves import confidence_curves, recommended_threshold

        if self.options.conf is None:
            best = recommended_threshold(matches)
            if best is None:
                return dict.fromkeys(self.names, math.nan) | {"F1": 0.0}
            return {"F1": best.f1, "precision": best.precision, "recall": best.recall, "F1_conf": best.conf}
        curves = confidence_curves(matches, np.array([self.options.conf]))
        values = {name: float(curves.all(name.lower())[0]) for name in ("F1", "precision", "recall")}
        return values | {"F1_conf": float(self.options.conf)}


@attrs.frozen
class CountingOptions:
    """Options of the ``counting`` metric.

    Attributes:
        conf: detections with at least this confidence are counted.
    """

    conf: float = attrs.field(default=0.3, validator=number(0.0, 1.0))


class CountingAccuracy:
    """``count_accuracy`` (images counted exactly) and ``count_mae`` (mean absolute error per image)."""

    names = ("count_accuracy", "count_mae")
    lower_is_better = ("count_mae",)

    def __init__(self, options: CountingOptions | None = None) -> None:
        self.options = options or CountingOptions()

    def compute(self, matches: MatchedBoxes) -> Mapping[str, float]:
        images = np.array(sorted(matches.ground_truth.getImgIds()), dtype=np.int64)
        if not len(images):
            return dict.fromkeys(self.names, math.nan)
        kept = matches.det_counted & (matches.det_scores >= self.options.conf)
        truth = _per_image(matches.gt_image, images)
        found = _per_image(matches.det_image[kept], images)
        error = np.abs(found - truth)
        return {"count_accuracy": float(np.mean(error == 0)), "count_mae": float(error.mean())}


def _per_image(image_of_box: np.ndarray, images: np.ndarray) -> np.ndarray:
    """How many boxes each of ``images`` (sorted ids) has."""
    positions = np.searchsorted(images, image_of_box)
    return np.bincount(positions, minlength=len(images))[: len(images)]


@hookimpl
def register_metrics(register: Any) -> None:
    register(
        "f1",
        F1AtThreshold,
        options=F1Options,
        description="F1, precision and recall at the max-F1 (or a given) confidence, all classes",
    )
    register(
        "counting",
        CountingAccuracy,
        options=CountingOptions,
        description="images counted exactly and mean absolute count error at a confidence",
    )
