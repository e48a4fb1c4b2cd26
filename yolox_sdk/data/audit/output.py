"""What ``yolox-sdk data audit`` writes: ``audit.json`` (every suggestion, the settings and notes),
``audit.csv`` (one row per suggestion, the same values) and a gallery of the top suggestions as PNGs, each
the image with its labels (thin grey), the label in question and the suggested box in the kind's colour."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolox_sdk.data.audit.scoring import BADLY_PLACED, MISSING, SPURIOUS, WRONG_CLASS
from yolox_sdk.data.audit.suggestions import Suggestion
from yolox_sdk.data.preprocess import read_image
from yolox_sdk.errors import DatasetError

# BGR colour of each kind, in the gallery and its legend.
KIND_COLORS: dict[str, tuple[int, int, int]] = {
    MISSING: (60, 200, 60),
    WRONG_CLASS: (0, 140, 255),
    BADLY_PLACED: (0, 220, 255),
    SPURIOUS: (60, 60, 235),
}
LABEL_COLOR = (200, 200, 200)
CSV_COLUMNS = (
    "rank",
    "kind",
    "score",
    "image_id",
    "image_path",
    "label_index",
    "label_class",
    "label_x1",
    "label_y1",
    "label_x2",
    "label_y2",
    "suggested_class",
    "suggested_x1",
    "suggested_y1",
    "suggested_x2",
    "suggested_y2",
    "prediction_score",
    "iou",
    "cleanlab_box_score",
    "cleanlab_image_quality",
    "fix",
)


def write_json(path: Path, content: dict[str, Any]) -> Path:
    """``content`` as indented JSON at ``path``."""
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return path


def _corners(prefix: str, box: Sequence[float] | None) -> dict[str, Any]:
    names = [f"{prefix}_{corner}" for corner in ("x1", "y1", "x2", "y2")]
    return dict(zip(names, box if box is not None else ["", "", "", ""], strict=True))


def write_csv(path: Path, suggestions: Sequence[Suggestion]) -> Path:
    """One row per suggestion, ranked; empty cells where a field does not apply."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for rank, suggestion in enumerate(suggestions, start=1):
            data = suggestion.to_dict()
            row = {key: data.get(key) for key in CSV_COLUMNS if key in data}
            row.update(_corners("label", suggestion.label_box))
            row.update(_corners("suggested", suggestion.suggested_box))
            row["rank"] = rank
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return path


def _text(
    canvas: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int], scale: float
) -> None:
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = corner
    x = min(max(0, x), max(0, canvas.shape[1] - width))
    top = y - height - baseline if y - height - baseline >= 0 else y
    cv2.rectangle(canvas, (x, top), (x + width, top + height + baseline), color, cv2.FILLED)
    cv2.putText(canvas, text, (x, top + height), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def _rectangle(canvas: np.ndarray, box: Sequence[float], color: tuple[int, int, int], thickness: int) -> None:
    x1, y1, x2, y2 = (round(value) for value in box)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)


def draw_suggestion(
    image: np.ndarray, suggestion: Suggestion, labels: Sequence[Sequence[float]]
) -> np.ndarray:
    """``image`` (BGR) with all its labels thin grey, the suggestion's label thick and the suggested box
    outlined in white, both in the kind's colour, with the score and the fix in a caption below."""
    canvas = image.copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 300))
    scale = max(0.4, min(canvas.shape[:2]) / 1000)
    color = KIND_COLORS[suggestion.kind]
    for box in labels:
        _rectangle(canvas, box, LABEL_COLOR, thickness)
    if suggestion.label_box is not None:
        _rectangle(canvas, suggestion.label_box, color, thickness * 2)
        _text(
            canvas, f"label: {suggestion.label_class}", suggestion_corner(suggestion.label_box), color, scale
        )
    if suggestion.suggested_box is not None:
        _rectangle(canvas, suggestion.suggested_box, (255, 255, 255), thickness * 3)
        _rectangle(canvas, suggestion.suggested_box, color, thickness)
        name = suggestion.suggested_class or suggestion.label_class
        _text(canvas, f"suggested: {name}", suggestion_corner(suggestion.suggested_box), color, scale)
    caption = np.full((int(32 * max(scale / 0.5, 1)), canvas.shape[1], 3), 32, np.uint8)
    words = f"{suggestion.kind.replace('_', ' ')} {suggestion.score:.2f}: {suggestion.fix}"
    _text(caption, words, (6, caption.shape[0] - 8), color, scale)
    return np.concatenate([canvas, caption], axis=0)


def suggestion_corner(box: Sequence[float]) -> tuple[int, int]:
    """Where a box's caption goes: its top-left corner."""
    return round(box[0]), round(box[1])


def write_gallery(suggestions: Sequence[Suggestion], labels_of: Any, out_dir: Path, top: int) -> list[Path]:
    """The ``top`` suggestions drawn as ``<rank>_<kind>_<image stem>.png`` in ``out_dir``; an image that
    cannot be read any more costs its picture, not the audit. ``labels_of(image)`` gives an image's
    label boxes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for rank, suggestion in enumerate(suggestions[:top], start=1):
        try:
            image = read_image(Path(suggestion.image_path))
        except DatasetError:
            continue
        path = out_dir / f"{rank:03d}_{suggestion.kind}_{Path(suggestion.image_path).stem}.png"
        ok, encoded = cv2.imencode(".png", draw_suggestion(image, suggestion, labels_of(suggestion.image)))
        if ok:
            encoded.tofile(str(path))
            written.append(path)
    return written
