"""YOLOX's mosaic: four images tiled around a random centre of a 2h x 2w canvas.

The tile coordinates come from ``yolox``'s own ``get_mosaic_coordinate``; the sample becomes a mosaic
canvas (``Sample.mosaic = True``) that the affine step then warps down to the input size, exactly as
``MosaicDetection`` does.
"""

from __future__ import annotations

import cv2
import numpy as np
from yolox.data.datasets.mosaicdetection import get_mosaic_coordinate

from yolox_sdk.builtin.augmentations.options import MosaicOptions
from yolox_sdk.data.preprocess import PAD_VALUE
from yolox_sdk.plugins.interfaces import AugmentationContext, Sample


def fit_to_input(sample: Sample, input_size: tuple[int, int]) -> Sample:
    """Resize ``sample`` (keeping aspect) so it just fits ``input_size``, as YOLOX does per mosaic tile.

    Samples from the training dataset already fit, so this is usually a no-op copy-free return.
    """
    height, width = sample.image.shape[:2]
    ratio = min(input_size[0] / height, input_size[1] / width)
    new_size = (int(width * ratio), int(height * ratio))
    if new_size == (width, height):
        return sample
    image = cv2.resize(sample.image, new_size, interpolation=cv2.INTER_LINEAR)
    return Sample(image, sample.boxes * np.float32(ratio), sample.labels, sample.mosaic)


class Mosaic:
    """With probability ``prob``, tile the sample and three random dataset samples into one canvas."""

    disabled_in_no_aug = True

    def __init__(self, options: MosaicOptions) -> None:
        self.options = options

    def __call__(self, sample: Sample, context: AugmentationContext) -> Sample:
        rng = context.rng
        if not rng.random() < self.options.prob:
            return sample
        input_h, input_w = context.input_size
        center_y = int(rng.uniform(0.5 * input_h, 1.5 * input_h))
        center_x = int(rng.uniform(0.5 * input_w, 1.5 * input_w))
        partners = [context.load_sample(int(i)) for i in rng.integers(0, context.dataset_size, 3)]
        canvas = np.full((2 * input_h, 2 * input_w, 3), PAD_VALUE, dtype=np.uint8)
        boxes, labels = [], []
        for position, tile in enumerate([sample, *partners]):
            tile = fit_to_input(tile, context.input_size)
            tile_h, tile_w = tile.image.shape[:2]
            (cx1, cy1, cx2, cy2), (tx1, ty1, tx2, ty2) = get_mosaic_coordinate(
                canvas, position, center_x, center_y, tile_w, tile_h, input_h, input_w
            )
            canvas[cy1:cy2, cx1:cx2] = tile.image[ty1:ty2, tx1:tx2]
            shift = np.array([cx1 - tx1, cy1 - ty1, cx1 - tx1, cy1 - ty1], dtype=np.float32)
            boxes.append(tile.boxes + shift)
            labels.append(tile.labels)
        all_boxes = np.concatenate(boxes).reshape(-1, 4)
        all_boxes[:, 0::2] = all_boxes[:, 0::2].clip(0, 2 * input_w)
        all_boxes[:, 1::2] = all_boxes[:, 1::2].clip(0, 2 * input_h)
        return Sample(canvas, all_boxes.astype(np.float32), np.concatenate(labels), mosaic=True)
