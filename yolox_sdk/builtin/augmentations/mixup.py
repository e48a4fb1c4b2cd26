"""YOLOX's mixup ("copy-paste" in its source): blend a mosaic with another, jittered, image.

Follows ``MosaicDetection.mixup``: the partner image is letterboxed to the input size, scaled by a
random jitter factor, flipped with probability one half, randomly cropped (or zero-padded) back to the
sample's size and averaged 50/50 with it; the partner's boxes follow and are clipped to the crop. As in
YOLOX it applies only to mosaic samples that still have boxes.
"""

from __future__ import annotations

import cv2
import numpy as np

from yolox_sdk.builtin.augmentations.geometry import flip_boxes
from yolox_sdk.builtin.augmentations.options import MixupOptions
from yolox_sdk.data.preprocess import PAD_VALUE
from yolox_sdk.plugins.interfaces import AugmentationContext, Sample

PARTNER_TRIES = 10


class Mixup:
    """Blend a mosaic sample with a random labelled sample with probability ``prob``."""

    disabled_in_no_aug = True

    def __init__(self, options: MixupOptions) -> None:
        self.options = options

    def __call__(self, sample: Sample, context: AugmentationContext) -> Sample:
        if not sample.mosaic or len(sample.boxes) == 0:
            return sample
        rng = context.rng
        if not rng.random() < self.options.prob:
            return sample
        jitter = rng.uniform(*self.options.scale)
        flip = rng.uniform(0, 1) > 0.5
        partner = _labelled_partner(context)
        if partner is None:
            return sample
        target_h, target_w = sample.image.shape[:2]
        jittered, boxes = _letterbox_and_jitter(partner, context.input_size, jitter)
        if flip:
            jittered = jittered[:, ::-1]
            boxes = flip_boxes(boxes, jittered.shape[1])
        padded = np.zeros((max(jittered.shape[0], target_h), max(jittered.shape[1], target_w), 3), np.uint8)
        padded[: jittered.shape[0], : jittered.shape[1]] = jittered
        y_offset = int(rng.integers(0, padded.shape[0] - target_h)) if padded.shape[0] > target_h else 0
        x_offset = int(rng.integers(0, padded.shape[1] - target_w)) if padded.shape[1] > target_w else 0
        crop = padded[y_offset : y_offset + target_h, x_offset : x_offset + target_w]
        boxes = boxes - np.array([x_offset, y_offset, x_offset, y_offset], dtype=np.float32)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, target_w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, target_h)
        blended = (0.5 * sample.image.astype(np.float32) + 0.5 * crop.astype(np.float32)).astype(np.uint8)
        return Sample(
            blended,
            np.concatenate([sample.boxes, boxes]).astype(np.float32),
            np.concatenate([sample.labels, partner.labels]),
            mosaic=True,
        )


def _labelled_partner(context: AugmentationContext) -> Sample | None:
    """A random sample with at least one box (YOLOX retries until it finds one; we give up after a few)."""
    for _ in range(PARTNER_TRIES):
        partner = context.load_sample(int(context.rng.integers(0, context.dataset_size)))
        if len(partner.boxes):
            return partner
    return None


def _letterbox_and_jitter(
    partner: Sample, input_size: tuple[int, int], jitter: float
) -> tuple[np.ndarray, np.ndarray]:
    """The partner letterboxed (top-left, 114 padding) into ``input_size``, then resized by ``jitter``."""
    height, width = partner.image.shape[:2]
    ratio = min(input_size[0] / height, input_size[1] / width)
    canvas = np.full((input_size[0], input_size[1], 3), PAD_VALUE, dtype=np.uint8)
    resized_w, resized_h = int(width * ratio), int(height * ratio)
    canvas[:resized_h, :resized_w] = cv2.resize(
        partner.image, (resized_w, resized_h), interpolation=cv2.INTER_LINEAR
    )
    jittered = cv2.resize(canvas, (int(canvas.shape[1] * jitter), int(canvas.shape[0] * jitter)))
    boxes = partner.boxes * np.float32(ratio * jitter)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, jittered.shape[1])
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, jittered.shape[0])
    return jittered, boxes
