"""Drawing detections on images with OpenCV, for ``yolox-sdk predict`` output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from yolox_sdk.evaluation.predict import Detection


def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable, well-spread BGR colour for a class (golden-ratio hue steps, so neighbours differ)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 180)
    pixel = np.uint8([[[hue, 200, 230]]])
    blue, green, red = cv2.cvtColor(pixel, cv2.COLOR_HSV2BGR)[0, 0]
    return int(blue), int(green), int(red)


def draw_detections(image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
    """A copy of ``image`` (BGR) with each box and a ``"name score"`` label drawn on it.

    Line width and font size follow the image size so labels stay readable on large photos.
    """
    canvas = image.copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 300))
    font_scale = max(0.4, min(canvas.shape[:2]) / 1000)
    for detection in detections:
        color = class_color(detection.class_id)
        x1, y1, x2, y2 = (round(value) for value in detection.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        label = f"{detection.class_name} {detection.score:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = y1 - text_h - baseline if y1 - text_h - baseline >= 0 else y1
        cv2.rectangle(canvas, (x1, top), (x1 + text_w, top + text_h + baseline), color, cv2.FILLED)
        cv2.putText(
            canvas,
            label,
            (x1, top + text_h),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return canvas
