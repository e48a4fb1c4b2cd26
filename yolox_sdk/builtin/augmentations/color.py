"""Colour augmentation: YOLOX's HSV jitter, computed with lookup tables.

Same draw and same arithmetic as ``yolox.data.data_augment.augment_hsv`` (each of hue, saturation and
value shifted by an integer gain with probability one half; hue wraps at 180, the others clip to
0..255), but applied with ``cv2.LUT`` on the three channels instead of int16 array arithmetic: the
result is bit-identical for the same gains (``tests/test_augmentations.py`` checks it against YOLOX's
function) at about half the cost, and the gains come from ``context.rng`` rather than ``np.random``.
"""

from __future__ import annotations

import cv2
import numpy as np

from yolox_sdk.builtin.augmentations.options import HsvOptions
from yolox_sdk.plugins.interfaces import AugmentationContext, Sample

HUE_RANGE = 180  # OpenCV's 8-bit hue is 0..179

_LEVELS = np.arange(256, dtype=np.int16)


def draw_hsv_gains(rng: np.random.Generator, hgain: int, sgain: int, vgain: int) -> np.ndarray:
    """YOLOX's random gains: uniform in +-gain, each kept with probability 1/2, truncated to int16."""
    gains = rng.uniform(-1, 1, 3) * [hgain, sgain, vgain]
    gains *= rng.integers(0, 2, 3)
    return gains.astype(np.int16)


def apply_hsv_gains(image: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """A new BGR image with hue, saturation and value shifted by ``gains`` (int16 ``[dh, ds, dv]``)."""
    hue, saturation, value = cv2.split(cv2.cvtColor(image, cv2.COLOR_BGR2HSV))
    hue_table = ((_LEVELS + gains[0]) % HUE_RANGE).astype(np.uint8)
    saturation_table = np.clip(_LEVELS + gains[1], 0, 255).astype(np.uint8)
    value_table = np.clip(_LEVELS + gains[2], 0, 255).astype(np.uint8)
    shifted = cv2.merge(
        (cv2.LUT(hue, hue_table), cv2.LUT(saturation, saturation_table), cv2.LUT(value, value_table))
    )
    return cv2.cvtColor(shifted, cv2.COLOR_HSV2BGR)


class HsvJitter:
    """Shift hue, saturation and value by random amounts with probability ``prob``."""

    def __init__(self, options: HsvOptions) -> None:
        self.options = options

    def __call__(self, sample: Sample, context: AugmentationContext) -> Sample:
        if not context.rng.random() < self.options.prob:
            return sample
        options = self.options
        gains = draw_hsv_gains(context.rng, options.hgain, options.sgain, options.vgain)
        image = apply_hsv_gains(sample.image, gains)
        return Sample(image, sample.boxes.copy(), sample.labels.copy(), sample.mosaic)
