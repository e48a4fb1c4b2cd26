"""Geometric augmentations: YOLOX's random affine and the horizontal flip.

The affine uses ``yolox.data.data_augment``'s own ``get_affine_matrix`` (parameters drawn from
``context.rng`` through ``global_random_from``) and ``apply_affine_to_bboxes`` (box corners transformed
and clipped), so it draws and moves boxes exactly like ``random_affine``. Only the warp differs in how it
runs: OpenCV's bilinear ``warpAffine`` has a vectorised path for 4-channel images but not for 3-channel
ones, so the image is warped as BGRA, which gives bit-identical pixels in about half the time (the test
suite compares against ``random_affine``). As in YOLOX, boxes pushed out of the image are clipped to zero
width here and removed by the training dataset's minimum-size filter.
"""

from __future__ import annotations

import cv2
import numpy as np
from yolox.data.data_augment import apply_affine_to_bboxes, get_affine_matrix

from yolox_sdk.builtin.augmentations.options import AffineOptions, FlipOptions
from yolox_sdk.builtin.augmentations.seeding import global_random_from
from yolox_sdk.data.preprocess import PAD_VALUE
from yolox_sdk.plugins.interfaces import AugmentationContext, Sample


class RandomAffine:
    """Rotate, scale, shear and translate a (mosaic) sample into an image of the input size."""

    disabled_in_no_aug = True

    def __init__(self, options: AffineOptions) -> None:
        self.options = options

    def __call__(self, sample: Sample, context: AugmentationContext) -> Sample:
        if self.options.only_mosaic and not sample.mosaic:
            return sample
        target_size = (context.input_size[1], context.input_size[0])
        options = self.options
        with global_random_from(context.rng, python=True):
            matrix, scale = get_affine_matrix(
                target_size,
                degrees=float(options.degrees),
                translate=float(options.translate),
                scales=tuple(float(s) for s in options.scale),
                shear=float(options.shear),
            )
        image = warp_affine_bgr(sample.image, matrix, target_size)
        boxes = sample.boxes.astype(np.float64)
        if len(boxes):
            boxes = apply_affine_to_bboxes(boxes, target_size, matrix, scale)
        boxes = boxes.astype(np.float32).reshape(-1, 4)
        return Sample(image, boxes, sample.labels.copy(), sample.mosaic)


def warp_affine_bgr(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.warpAffine`` of a BGR image to ``size`` (w, h) with a 114 border, through the faster BGRA path."""
    border = (PAD_VALUE, PAD_VALUE, PAD_VALUE, 255)
    warped = cv2.warpAffine(cv2.cvtColor(image, cv2.COLOR_BGR2BGRA), matrix, size, borderValue=border)
    return cv2.cvtColor(warped, cv2.COLOR_BGRA2BGR)


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Mirror xyxy ``boxes`` in an image ``width`` pixels wide: ``x1' = W - x2``, ``x2' = W - x1``."""
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


class HorizontalFlip:
    """Mirror the image left-right with probability ``prob``."""

    def __init__(self, options: FlipOptions) -> None:
        self.options = options

    def __call__(self, sample: Sample, context: AugmentationContext) -> Sample:
        if not context.rng.random() < self.options.prob:
            return sample
        image = cv2.flip(sample.image, 1)
        boxes = flip_boxes(sample.boxes, sample.image.shape[1])
        return Sample(image, boxes, sample.labels.copy(), sample.mosaic)
