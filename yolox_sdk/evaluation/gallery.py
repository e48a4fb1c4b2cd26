"""The images a model gets most wrong, drawn with every box coloured by its outcome.

An image's error weight is the sum of the scores of its wrong predictions (a confident mistake costs
more than a hesitant one) plus one per object no correct prediction found, counting only predictions
at or above the deployment confidence: the boxes a user of the model would see, and the ones drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs
import cv2
import numpy as np

from yolox_sdk.data.preprocess import read_image
from yolox_sdk.evaluation.error_analysis import TRUE_POSITIVE, ErrorAnalysis
from yolox_sdk.evaluation.matches import MatchedBoxes

DEFAULT_GALLERY_SIZE = 16
# BGR colours of each outcome; objects are drawn thin (found) or thick magenta (not found).
OUTCOME_COLORS: dict[str, tuple[int, int, int]] = {
    TRUE_POSITIVE: (60, 180, 60),
    "classification": (0, 140, 255),
    "localisation": (0, 220, 255),
    "both": (200, 80, 160),
    "duplicate": (255, 200, 0),
    "background": (40, 40, 230),
}
FOUND_COLOR = (255, 255, 255)
MISSED_COLOR = (255, 0, 255)
MAX_SIDE = 1024


@attrs.frozen
class GalleryImage:
    """One image of the gallery: its record index, error weight and the file written."""

    image: int
    weight: float
    path: Path


def image_error_weights(matches: MatchedBoxes, errors: ErrorAnalysis, conf: float) -> np.ndarray:
    """Per image (record index), the error weight described in the module docstring."""
    num_images = len(matches.ground_truth.dataset["images"])
    shown = matches.det_counted & (matches.det_scores >= conf)
    wrong = shown & (errors.det_outcome != TRUE_POSITIVE)
    weights = np.bincount(matches.det_image[wrong], weights=matches.det_scores[wrong], minlength=num_images)
    not_found = ~_found_at(matches, errors, conf)
    return weights + np.bincount(matches.gt_image[not_found], minlength=num_images)


def _found_at(matches: MatchedBoxes, errors: ErrorAnalysis, conf: float) -> np.ndarray:
    """Which objects a true positive scoring at least ``conf`` found."""
    found = np.zeros(len(matches.gt_label), dtype=bool)
    hits = (errors.det_outcome == TRUE_POSITIVE) & (matches.det_scores >= conf)
    found[errors.det_target[hits]] = True
    return found


def _label(
    canvas: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int], scale: float
) -> None:
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = corner
    top = y - height - baseline if y - height - baseline >= 0 else y
    cv2.rectangle(canvas, (x, top), (x + width, top + height + baseline), color, cv2.FILLED)
    cv2.putText(canvas, text, (x, top + height), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def _legend(width: int, scale: float) -> np.ndarray:
    entries = [(name.replace("_", " "), color) for name, color in OUTCOME_COLORS.items()]
    entries += [("object found", FOUND_COLOR), ("object not found", MISSED_COLOR)]
    height = int(28 * max(scale / 0.5, 1))
    rows = [np.full((height, width, 3), 32, np.uint8)]
    x = 6
    for name, color in entries:
        text_width = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]
        if x + text_width + 22 > width:
            rows.append(np.full((height, width, 3), 32, np.uint8))
            x = 6
        canvas = rows[-1]
        cv2.rectangle(canvas, (x, height // 4), (x + 12, height // 4 + 12), color, cv2.FILLED)
        cv2.putText(
            canvas,
            name,
            (x + 16, height // 4 + 11),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (230, 230, 230),
            1,
            cv2.LINE_AA,
        )
        x += text_width + 30
    return np.concatenate(rows, axis=0)


def draw_outcomes(
    image: np.ndarray, matches: MatchedBoxes, errors: ErrorAnalysis, index: int, conf: float
) -> np.ndarray:
    """``image`` (BGR) with its objects and its predictions scoring at least ``conf``, coloured by outcome,
    and a legend below."""
    canvas = image.copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 300))
    scale = max(0.4, min(canvas.shape[:2]) / 1000)
    found = _found_at(matches, errors, conf)
    for gt in np.flatnonzero(matches.gt_image == index):
        x1, y1, x2, y2 = (round(value) for value in matches.gt_boxes[gt])
        missed = not found[gt]
        cv2.rectangle(
            canvas,
            (x1, y1),
            (x2, y2),
            MISSED_COLOR if missed else FOUND_COLOR,
            thickness * (2 if missed else 1),
        )
    shown = np.flatnonzero((matches.det_image == index) & matches.det_counted & (matches.det_scores >= conf))
    for det in shown[np.argsort(matches.det_scores[shown])]:  # highest score drawn last, on top
        color = OUTCOME_COLORS[errors.det_outcome[det]]
        x1, y1, x2, y2 = (round(value) for value in matches.det_boxes[det])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        name = matches.class_names[matches.det_label[det]]
        _label(canvas, f"{name} {matches.det_scores[det]:.2f}", (x1, y1), color, scale)
    return np.concatenate([canvas, _legend(canvas.shape[1], scale)], axis=0)


def _fit(image: np.ndarray) -> np.ndarray:
    longest = max(image.shape[:2])
    if longest <= MAX_SIDE:
        return image
    factor = MAX_SIDE / longest
    return cv2.resize(
        image, (round(image.shape[1] * factor), round(image.shape[0] * factor)), interpolation=cv2.INTER_AREA
    )


def write_gallery(
    matches: MatchedBoxes,
    errors: ErrorAnalysis,
    image_paths: Sequence[Path],
    conf: float,
    out_dir: Path,
    size: int = DEFAULT_GALLERY_SIZE,
) -> list[GalleryImage]:
    """Draw the ``size`` images of highest error weight (those with any) into ``out_dir`` as PNGs named
    ``<rank>_<image stem>.png``; images that cannot be read are skipped."""
    weights = image_error_weights(matches, errors, conf)
    order = [int(index) for index in np.argsort(-weights, kind="stable") if weights[index] > 0][:size]
    written = []
    for rank, index in enumerate(order, start=1):
        try:
            image = read_image(Path(image_paths[index]))
        except Exception:  # noqa: BLE001 - a missing image costs its gallery entry, not the evaluation
            continue
        path = out_dir / f"{rank:02d}_{Path(image_paths[index]).stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, encoded = cv2.imencode(".png", _fit(draw_outcomes(image, matches, errors, index, conf)))
        if ok:
            encoded.tofile(str(path))
            written.append(GalleryImage(index, float(weights[index]), path))
    return written
