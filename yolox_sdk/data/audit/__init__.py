"""Label audit: run a trained model over a dataset and rank the labels most likely to be wrong.

``audit_labels`` runs the checkpoint over the images (its saved evaluation settings, but confidence 0.05 so
weak disagreements show), then ``scoring`` matches labels and predictions per image into four kinds of
suggestions (missing, wrong class, badly placed, spurious) with a score in ``[0, 1]`` and a fix, and
``cleanlab_scores`` adds cleanlab's image quality and per-box scores next to them. The dataset is read, never
written: ``AuditResult.write`` writes the report elsewhere, ``AuditResult.fixed`` gives a corrected copy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from yolox_sdk.data.audit.cleanlab_scores import CleanlabScores, cleanlab_scores
from yolox_sdk.data.audit.output import write_csv, write_gallery, write_json
from yolox_sdk.data.audit.scoring import (
    BADLY_PLACED,
    KINDS,
    MISSING,
    WRONG_CLASS,
    Boxes,
    BoxIssue,
    class_recall,
    image_issues,
)
from yolox_sdk.data.audit.suggestions import FixResult, Suggestion, apply_suggestions, make_suggestion
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.errors import DatasetError

__all__ = ["AuditResult", "Suggestion", "audit_labels", "AUDIT_CONF"]

AUDIT_CONF = 0.05  # low, so that weak disagreements show; the checkpoint's NMS settings are kept
DEFAULT_TOP = 20
DEFAULT_FIX_THRESHOLD = 0.5
LOW_RECALL = 0.3  # below this share of labels found, the summary warns that suggestions are weak

log = logging.getLogger(__name__)


@attrs.frozen(eq=False)
class AuditResult:
    """What ``audit_labels`` found.

    Attributes:
        dataset: the dataset as read (its own class order; never modified).
        class_names: the checkpoint's classes, which the suggestions name.
        suggestions: every suggestion, highest score first.
        labels: per image, the labels in the checkpoint's class order (what was compared).
        predictions: per image, the model's predictions at ``settings["conf_threshold"]``.
        recall: per class (checkpoint order), the share of labels the model finds (``scoring.class_recall``).
        cleanlab: cleanlab's image and box scores.
        settings: checkpoint, data, thresholds, input size, device.
        notes: what the user must know to read the suggestions (class mapping, a model that finds nothing).
    """

    dataset: DetectionDataset
    class_names: tuple[str, ...]
    suggestions: list[Suggestion]
    labels: list[Boxes]
    predictions: list[Boxes]
    recall: np.ndarray
    cleanlab: CleanlabScores
    settings: dict[str, Any]
    notes: list[str]

    @property
    def num_detections(self) -> int:
        """Predictions over all images (above the audit's confidence threshold)."""
        return int(sum(len(predicted) for predicted in self.predictions))

    @property
    def informative(self) -> bool:
        """Whether the model predicted anything; without predictions no label can be judged."""
        return self.num_detections > 0

    def counts(self) -> dict[str, int]:
        """Suggestions per kind."""
        return {kind: sum(s.kind == kind for s in self.suggestions) for kind in KINDS}

    def to_dict(self) -> dict[str, Any]:
        """``audit.json``: settings, counts, recall, notes, cleanlab's per-image scores, every suggestion."""
        images = [
            {
                "image_id": record.image_id,
                "image_path": str(record.image_path),
                "cleanlab_label_quality": round(float(quality), 4),
            }
            for record, quality in zip(self.dataset.records, self.cleanlab.image_quality, strict=True)
        ]
        return {
            "settings": self.settings,
            "informative": self.informative,
            "notes": self.notes,
            "num_images": len(self.dataset),
            "num_labels": self.dataset.num_boxes(),
            "num_detections": self.num_detections,
            "class_recall": {
                name: round(float(r), 4) for name, r in zip(self.class_names, self.recall, strict=True)
            },
            "counts": self.counts(),
            "suggestions": [suggestion.to_dict() for suggestion in self.suggestions],
            "images": images,
        }

    def summary_lines(self, top: int = 10) -> list[str]:
        """The printed summary: what was audited, counts per kind, notes, the top suggestions."""
        counts = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in self.counts().items())
        recall = ", ".join(f"{n} {r:.0%}" for n, r in zip(self.class_names, self.recall, strict=True))
        lines = [
            f"Audited {len(self.dataset)} images, {self.dataset.num_boxes()} labels with "
            f"{self.settings['checkpoint']}: {self.num_detections} predictions at confidence "
            f"{self.settings['conf_threshold']:g}",
            f"Labels the model finds: {recall}",
            f"{len(self.suggestions)} suggestions: {counts}",
        ]
        lines += [f"note: {note}" for note in self.notes]
        if self.suggestions and top:
            lines.append(f"Top {min(top, len(self.suggestions))}:")
        for rank, s in enumerate(self.suggestions[:top], start=1):
            lines.append(f"  {rank:>3}. {s.score:.2f} {s.kind:<13} {s.image_id:<24} {s.fix}")
        return lines

    def fixed(self, threshold: float = DEFAULT_FIX_THRESHOLD) -> FixResult:
        """A copy of the dataset with every suggestion scoring at least ``threshold`` applied."""
        return apply_suggestions(self.dataset, self.suggestions, threshold)

    def write(self, out_dir: Path | str, top: int = DEFAULT_TOP) -> list[Path]:
        """Write ``audit.json``, ``audit.csv`` and the gallery of the ``top`` suggestions (``gallery/``)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [
            write_json(out_dir / "audit.json", self.to_dict()),
            write_csv(out_dir / "audit.csv", self.suggestions),
        ]
        records = self.dataset.records
        return written + write_gallery(
            self.suggestions, lambda image: records[image].boxes.tolist(), out_dir / "gallery", top
        )


def _cleanlab_box_score(kind: str, issue: BoxIssue, scores: CleanlabScores, image: int) -> float | None:
    """cleanlab's per-box score matching ``kind``: overlooked (per prediction), swap or badloc (per label)."""
    if kind == MISSING and issue.prediction_index is not None:
        return float(scores.overlooked[image][issue.prediction_index])
    if kind == WRONG_CLASS and issue.label_index is not None:
        return float(scores.swap[image][issue.label_index])
    if kind == BADLY_PLACED and issue.label_index is not None:
        return float(scores.badloc[image][issue.label_index])
    return None


def rank_suggestions(
    dataset: DetectionDataset,
    class_names: tuple[str, ...],
    labels: list[Boxes],
    predictions: list[Boxes],
) -> tuple[list[Suggestion], np.ndarray, CleanlabScores]:
    """Suggestions for ``dataset`` (labels in ``class_names`` order) given the predictions, best first;
    with the class recall and cleanlab's scores they came with."""
    recall = class_recall(labels, predictions, len(class_names))
    scores = cleanlab_scores(labels, predictions, len(class_names))
    suggestions = []
    for index, (record, truth, predicted) in enumerate(
        zip(dataset.records, labels, predictions, strict=True)
    ):
        for issue in image_issues(truth, predicted, recall):
            suggestions.append(
                make_suggestion(
                    issue,
                    index,
                    record,
                    predicted,
                    class_names,
                    _cleanlab_box_score(issue.kind, issue, scores, index),
                    float(scores.image_quality[index]),
                )
            )
    suggestions.sort(key=lambda s: (-s.score, s.image, s.label_index if s.label_index is not None else -1))
    return suggestions, recall, scores


def _notes(
    aligned: DetectionDataset, dataset: DetectionDataset, num_detections: int, recall: np.ndarray
) -> list[str]:
    notes = []
    if tuple(aligned.class_names) != tuple(dataset.class_names):
        mapping = ", ".join(
            f"{name} -> {aligned.class_names.index(name)}"
            for name in dataset.class_names
            if name in aligned.class_names
        )
        notes.append(
            f"the dataset lists its classes [{', '.join(dataset.class_names)}] in another order than the model "
            f"[{', '.join(aligned.class_names)}]; mapped by name: {mapping}"
        )
    if num_detections == 0:
        notes.append(
            "the model predicts nothing on these images (0 predictions), so no label can be judged and this "
            "audit is not informative: check that the checkpoint was trained on this kind of image"
        )
    elif recall.max(initial=0.0) < LOW_RECALL:
        notes.append(
            f"the model finds fewer than {LOW_RECALL:.0%} of the labels of every class; its suggestions are weak "
            "evidence (train it longer or on more data)"
        )
    return notes


def audit_labels(
    data: str | Path,
    checkpoint: str | Path,
    split: str | None = None,
    format_name: str = "auto",
    format_options: Mapping[str, Any] | None = None,
    device: str = "auto",
    conf_threshold: float = AUDIT_CONF,
    batch_size: int | None = None,
) -> AuditResult:
    """Audit the labels of ``data`` (a path or dataset name, its ``split``) with the model in ``checkpoint``.

    Raises:
        DatasetError: the dataset cannot be read, has no images, or uses classes the model does not know.
        CheckpointError: the checkpoint cannot be read.
    """
    from yolox_sdk.checkpoints.format import load_checkpoint
    from yolox_sdk.data.formats import load_dataset
    from yolox_sdk.engine.devices import resolve_device
    from yolox_sdk.evaluation.coco_eval import detect_dataset
    from yolox_sdk.evaluation.runner import checkpoint_evaluation_settings, dataset_for_checkpoint
    from yolox_sdk.models.factory import model_from_checkpoint

    model_file = load_checkpoint(checkpoint)
    dataset = load_dataset(data, split=split, format=format_name, options=format_options)
    if not dataset.records:
        where = f" split {split!r}" if split else ""
        raise DatasetError(
            f"{dataset.source}{where} holds no images, so there are no labels to audit. Check the path and --split."
        )
    aligned = dataset_for_checkpoint(dataset, model_file.class_names, checkpoint)
    settings = checkpoint_evaluation_settings(
        model_file, conf_threshold=conf_threshold, batch_size=batch_size
    )
    torch_device = resolve_device(device)
    detections = detect_dataset(
        model_from_checkpoint(model_file),
        aligned,
        model_file.spec.input_size,
        batch_size=settings.batch_size,
        conf_threshold=settings.conf_threshold,
        nms_threshold=settings.nms_threshold,
        class_agnostic=settings.class_agnostic_nms,
        device=torch_device,
    )
    labels = [Boxes(record.boxes, record.labels) for record in aligned.records]
    predictions = [
        Boxes(found.boxes.numpy(), found.labels.numpy(), found.scores.numpy()) for found in detections
    ]
    class_names = tuple(model_file.class_names)
    suggestions, recall, scores = rank_suggestions(aligned, class_names, labels, predictions)
    num_detections = int(sum(len(p) for p in predictions))
    record = {
        "checkpoint": str(checkpoint),
        "data": str(dataset.source),
        "format": dataset.format,
        "split": split,
        "conf_threshold": settings.conf_threshold,
        "nms_threshold": settings.nms_threshold,
        "class_agnostic_nms": settings.class_agnostic_nms,
        "input_size": list(model_file.spec.input_size),
        "device": str(torch_device),
    }
    notes = _notes(aligned, dataset, num_detections, recall)
    for note in notes:
        log.info("audit: %s", note)
    return AuditResult(
        dataset=dataset,
        class_names=class_names,
        suggestions=suggestions,
        labels=labels,
        predictions=predictions,
        recall=recall,
        cleanlab=scores,
        settings=record,
        notes=notes,
    )
