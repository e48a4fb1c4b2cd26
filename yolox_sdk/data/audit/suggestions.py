"""Suggestions: an issue of ``scoring`` with the image, boxes, class names and the fix spelled out, and
the copy of a dataset with suggestions applied (``--fix-copy``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from yolox_sdk.data.audit.scoring import BADLY_PLACED, MISSING, SPURIOUS, WRONG_CLASS, BoxIssue
from yolox_sdk.data.records import DetectionDataset, ImageRecord

Box = tuple[float, float, float, float]


def _box(values: Any) -> Box:
    return tuple(round(float(v), 1) for v in values)  # type: ignore[return-value]


@attrs.frozen
class Suggestion:
    """One label the model disagrees with, and what to do about it.

    Attributes:
        kind: ``missing``, ``wrong_class``, ``badly_placed`` or ``spurious``.
        score: how likely the label is wrong, in ``[0, 1]`` (``scoring`` says how each kind is scored).
        image: the record index in the dataset as read.
        image_id: the record's id; ``image_path`` its file.
        label_index: the box's position among the record's boxes (``None`` for ``missing``).
        label_box: the labelled box, absolute xyxy; ``label_class`` its class name.
        suggested_box: the box to add (``missing``) or move to (``badly_placed``).
        suggested_class: the class to add or change to (``missing``, ``wrong_class``).
        prediction_score: the score of the prediction behind the suggestion.
        iou: IoU of the label and that prediction.
        cleanlab_box_score: cleanlab's per-box score for this kind (overlooked, swap or badloc; lower is
            more likely an error); ``None`` for ``spurious`` or where cleanlab does not score the box.
        cleanlab_image_quality: cleanlab's label quality score of the image (1 clean, 0 dirty).
    """

    kind: str
    score: float
    image: int
    image_id: str
    image_path: str
    label_index: int | None
    label_box: Box | None
    label_class: str | None
    suggested_box: Box | None
    suggested_class: str | None
    prediction_score: float | None
    iou: float | None
    cleanlab_box_score: float | None = None
    cleanlab_image_quality: float | None = None

    @property
    def fix(self) -> str:
        """The fix in words: add box X of class C / change class to C / move box to X / delete."""
        if self.kind == MISSING:
            return f"add box {list(self.suggested_box or ())} of class {self.suggested_class}"
        if self.kind == WRONG_CLASS:
            return f"change class {self.label_class} to {self.suggested_class}"
        if self.kind == BADLY_PLACED:
            return f"move box to {list(self.suggested_box or ())}"
        return "delete box"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, the fix included."""
        data = attrs.asdict(self)
        for key in ("label_box", "suggested_box"):
            data[key] = list(data[key]) if data[key] is not None else None
        data["fix"] = self.fix
        return data


def _optional(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)


def make_suggestion(
    issue: BoxIssue,
    index: int,
    record: ImageRecord,
    predicted: Any,
    class_names: Sequence[str],
    cleanlab_box_score: float | None,
    cleanlab_image_quality: float | None,
) -> Suggestion:
    """``issue`` of record ``index`` (labels indexed into ``class_names``) as a ``Suggestion``."""
    label = issue.label_index
    prediction = issue.prediction_index
    moved_or_added = issue.kind in (MISSING, BADLY_PLACED)
    return Suggestion(
        kind=issue.kind,
        score=round(float(np.clip(issue.score, 0.0, 1.0)), 4),
        image=index,
        image_id=record.image_id,
        image_path=str(record.image_path),
        label_index=label,
        label_box=_box(record.boxes[label]) if label is not None else None,
        label_class=class_names[int(record.labels[label])] if label is not None else None,
        suggested_box=_box(predicted.boxes[prediction])
        if moved_or_added and prediction is not None
        else None,
        suggested_class=class_names[issue.suggested_label] if issue.suggested_label is not None else None,
        prediction_score=_optional(predicted.scores[prediction]) if prediction is not None else None,
        iou=_optional(issue.iou) if issue.iou is not None else None,
        cleanlab_box_score=_optional(cleanlab_box_score) if cleanlab_box_score is not None else None,
        cleanlab_image_quality=_optional(cleanlab_image_quality)
        if cleanlab_image_quality is not None
        else None,
    )


@attrs.frozen
class FixResult:
    """A dataset with suggestions applied: the copy, the suggestions applied, and why others were not."""

    dataset: DetectionDataset
    applied: list[Suggestion]
    skipped: list[str]


def _fixed_record(record: ImageRecord, fixes: list[Suggestion], class_index: dict[str, int]) -> ImageRecord:
    boxes = record.boxes.copy()
    labels = record.labels.copy()
    keep = np.ones(len(labels), dtype=bool)
    added_boxes, added_labels = [], []
    for fix in fixes:
        if fix.kind == SPURIOUS:
            keep[fix.label_index] = False
        elif fix.kind == WRONG_CLASS:
            labels[fix.label_index] = class_index[fix.suggested_class]
        elif fix.kind == BADLY_PLACED:
            boxes[fix.label_index] = fix.suggested_box
        else:
            added_boxes.append(fix.suggested_box)
            added_labels.append(class_index[fix.suggested_class])
    boxes = np.concatenate([boxes[keep], np.asarray(added_boxes, np.float32).reshape(-1, 4)])
    labels = np.concatenate([labels[keep], np.asarray(added_labels, np.int64)])
    return attrs.evolve(record, boxes=boxes, labels=labels)


def apply_suggestions(
    dataset: DetectionDataset, suggestions: Sequence[Suggestion], threshold: float
) -> FixResult:
    """A copy of ``dataset`` (the records as read, its own class order) with every suggestion scoring at
    least ``threshold`` applied; a suggested class the dataset does not declare is skipped and said."""
    class_index = {name: i for i, name in enumerate(dataset.class_names)}
    per_image: dict[int, list[Suggestion]] = {}
    skipped = []
    for suggestion in suggestions:
        if suggestion.score < threshold:
            continue
        if suggestion.suggested_class is not None and suggestion.suggested_class not in class_index:
            skipped.append(
                f"{suggestion.image_id}: {suggestion.fix} (the dataset has no class {suggestion.suggested_class})"
            )
            continue
        per_image.setdefault(suggestion.image, []).append(suggestion)
    records = [
        _fixed_record(record, per_image[index], class_index) if index in per_image else record
        for index, record in enumerate(dataset.records)
    ]
    applied = [s for index in sorted(per_image) for s in per_image[index]]
    return FixResult(attrs.evolve(dataset, records=records), applied, skipped)
