"""COCO-style mAP of a model on a ``DetectionDataset``: faster-coco-eval for the numbers, pycocotools for
the per-image matches.

The ground truth is built in memory from the dataset (no annotation file needed, whatever the source
format), with the dataset's own ``category_ids`` so per-class results name the ids users know. Two things
the official YOLOX evaluator gets wrong are handled here: a model that predicts nothing scores 0 instead
of crashing, and a class without ground truth is reported as ``n/a`` (``NaN``) and left out of the mean,
exactly as pycocotools leaves out its ``-1`` entries.

Two backends, chosen for speed without changing a number:

- ``metrics``, ``per_class`` and ``summary`` (what every epoch's evaluation and the best-checkpoint metric
  need) come from faster-coco-eval (``coco_backend``), whose stats and precision array equal
  pycocotools'; no pycocotools object is built for them.
- ``EvalResult.evaluator``, pycocotools' evaluated, accumulated and summarized ``COCOeval`` with its
  per-image matches (``evalImgs``, which faster-coco-eval does not expose), is built from the kept ground
  truth and result dicts the first time it is read, then cached. The curves, confusion matrix, error
  analysis, report and metric plugins read it unchanged; a training epoch never pays for it.

Without faster-coco-eval everything comes from pycocotools and the evaluator is built at once, as before.
``accumulated_evaluator`` stays pycocotools' for the callers that need its matches or other IoU thresholds.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import attrs
import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolox_sdk.data.eval_dataset import make_eval_loader
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.evaluation.coco_backend import Headline, faster_headline, headline_of
from yolox_sdk.evaluation.postprocess import ImageDetections, decoding_eval_mode, postprocess

# The order of COCOeval.stats, under the names the SDK uses everywhere (logs, best-checkpoint metric).
METRIC_NAMES: tuple[str, ...] = (
    "mAP",
    "mAP50",
    "mAP75",
    "mAP_small",
    "mAP_medium",
    "mAP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


class ClassAP(NamedTuple):
    """One class's result: ``AP`` is AP@[.5:.95]; both are ``NaN`` when the class has no ground truth."""

    class_name: str
    AP: float
    AP50: float
    num_gt: int


@attrs.define
class EvalResult:
    """What an evaluation measured.

    Attributes:
        metrics: ``mAP``, ``mAP50``, ``mAP75``, ``mAP_small/medium/large``, ``AR1/10/100``,
            ``AR_small/medium/large``. ``NaN`` where there is no ground truth to measure (pycocotools' -1).
        per_class: one ``ClassAP`` per dataset class, in class-index order.
        summary: the 12 lines pycocotools' ``summarize`` prints (faster-coco-eval prints the same ones;
            silenced during evaluation, kept here).
        settings: how the evaluation was run (thresholds, input size, image count, seconds).
        category_ids: the dataset's category id of each class, for mapping back to the source.
        evaluator: (read-only) pycocotools' evaluated and accumulated ``COCOeval`` (its
            ``eval["precision"]`` array, per-image matches and the ground truth and detections as
            ``cocoGt``/``cocoDt``), which the curves and error analysis read instead of recomputing AP;
            ``None`` for results built by hand. Pass it as ``evaluator=``, or a function that builds it
            as ``deferred_evaluator=`` (called once, on first read).
    """

    metrics: dict[str, float]
    per_class: list[ClassAP]
    summary: str = ""
    settings: dict[str, Any] = attrs.field(factory=dict)
    category_ids: tuple[int, ...] = ()
    _evaluator: COCOeval | None = attrs.field(default=None, alias="evaluator", eq=False, repr=False)
    _deferred_evaluator: Callable[[], COCOeval] | None = attrs.field(
        default=None, alias="deferred_evaluator", eq=False, repr=False
    )

    @property
    def evaluator(self) -> COCOeval | None:
        """pycocotools' ``COCOeval`` of this evaluation, built now if it was deferred (see the class)."""
        if self._evaluator is None and self._deferred_evaluator is not None:
            self._evaluator = self._deferred_evaluator()
            self._deferred_evaluator = None
        return self._evaluator

    def table(self) -> str:
        """A plain-text per-class table followed by the summary metrics."""
        name_width = max([len("class"), *(len(row.class_name) for row in self.per_class)])
        header = f"{'class':<{name_width}}  {'gt boxes':>8}  {'AP':>6}  {'AP50':>6}"
        lines = [header, "-" * len(header)]
        for row in self.per_class:
            lines.append(
                f"{row.class_name:<{name_width}}  {row.num_gt:>8d}  {_format(row.AP):>6}  {_format(row.AP50):>6}"
            )
        lines.append("-" * len(header))
        for start in range(0, len(METRIC_NAMES), 3):  # AP, AP by size, AR, AR by size
            names = METRIC_NAMES[start : start + 3]
            lines.append("    ".join(f"{name:<10} {_format(self.metrics[name]):>6}" for name in names))
        extra = [name for name in self.metrics if name not in METRIC_NAMES]  # metric plugins' values
        for start in range(0, len(extra), 3):
            lines.append(
                "    ".join(
                    f"{name:<10} {_format(self.metrics[name]):>6}" for name in extra[start : start + 3]
                )
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Metrics, per-class results and settings as JSON-ready data (``NaN`` becomes ``null``)."""
        per_class = [
            {
                "class_name": row.class_name,
                "category_id": category_id,
                "AP": _json_number(row.AP),
                "AP50": _json_number(row.AP50),
                "num_gt": row.num_gt,
            }
            for row, category_id in zip(self.per_class, self.category_ids, strict=True)
        ]
        return {
            "metrics": {name: _json_number(value) for name, value in self.metrics.items()},
            "per_class": per_class,
            "settings": dict(self.settings),
        }

    def to_json(self, path: Path | str) -> Path:
        """Write ``to_dict()`` to ``path`` (parent folders created) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def _format(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def coco_ground_truth(dataset: DetectionDataset) -> COCO:
    """The dataset as an in-memory pycocotools ``COCO`` object.

    Image ids are record indices; annotation ids start at 1 because COCOeval's matching treats id 0 as
    "unmatched"; ``area`` is the box area, which decides small/medium/large.
    """
    return _indexed_coco(_ground_truth_content(dataset))


def _ground_truth_content(dataset: DetectionDataset) -> dict[str, Any]:
    """``coco_ground_truth``'s dataset dict, without pycocotools' index (faster-coco-eval builds its own)."""
    images, annotations = [], []
    for index, record in enumerate(dataset.records):
        images.append({"id": index, "width": record.width, "height": record.height})
        for box, label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True):
            width, height = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": int(dataset.category_ids[label]),
                    "bbox": [box[0], box[1], width, height],
                    "area": width * height,
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": int(category_id), "name": name}
        for category_id, name in zip(dataset.category_ids, dataset.class_names, strict=True)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def _indexed_coco(content: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = content
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _as_arrays(detections: ImageDetections | Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(detections, ImageDetections):
        parts = (detections.boxes, detections.scores, detections.labels)
    else:
        parts = tuple(detections)
    boxes, scores, labels = (
        part.detach().cpu().numpy() if isinstance(part, torch.Tensor) else np.asarray(part) for part in parts
    )
    return boxes.reshape(-1, 4).astype(np.float64), scores.reshape(-1).astype(np.float64), labels.reshape(-1)


def coco_results(
    dataset: DetectionDataset, detections: Sequence[ImageDetections | Sequence[Any]]
) -> list[dict[str, Any]]:
    """Detections (one entry per record, original image coordinates) as COCO result dicts."""
    if len(detections) != len(dataset.records):
        raise ValueError(
            f"Got detections for {len(detections)} images but the dataset has {len(dataset.records)}; "
            "pass one entry (possibly empty) per record, in record order."
        )
    results = []
    for index, entry in enumerate(detections):
        boxes, scores, labels = _as_arrays(entry)
        for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True):
            results.append(
                {
                    "image_id": index,
                    "category_id": int(dataset.category_ids[int(label)]),
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "score": float(score),
                }
            )
    return results


def _results_coco(ground_truth: COCO, results: list[dict[str, Any]]) -> COCO:
    """Results as a ``COCO`` object; unlike ``COCO.loadRes`` this accepts an empty list."""
    return _indexed_coco(_results_content(ground_truth.dataset, results))


def _results_content(ground_truth: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Result dicts as a COCO dataset dict, with the ``id``, ``area`` and ``iscrowd`` ``loadRes`` adds."""
    annotations = []
    for number, result in enumerate(results, start=1):
        width, height = result["bbox"][2], result["bbox"][3]
        annotations.append({**result, "id": number, "area": width * height, "iscrowd": 0})
    return {
        "images": list(ground_truth["images"]),
        "categories": list(ground_truth["categories"]),
        "annotations": annotations,
    }


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else math.nan


def evaluate_detections(
    dataset: DetectionDataset,
    detections: Sequence[ImageDetections | Sequence[Any]],
    settings: Mapping[str, Any] | None = None,
) -> EvalResult:
    """COCO bbox metrics of precomputed detections against ``dataset``'s ground truth.

    Args:
        dataset: the ground truth.
        detections: per record, in record order, ``ImageDetections`` or a ``(boxes, scores, labels)``
            triple; boxes absolute ``xyxy`` in original image pixels, labels class indices.
        settings: recorded in the result as given.
    """
    ground_truth = _ground_truth_content(dataset)
    results = coco_results(dataset, detections)
    headline = faster_headline(ground_truth, _results_content(ground_truth, results))
    evaluator, deferred = None, None
    if headline is None:
        evaluator = accumulated_evaluator(_indexed_coco(ground_truth), results)
        headline = headline_of(evaluator, _summary_text(evaluator), "pycocotools")
    else:
        deferred = DeferredEvaluator(ground_truth, results)
    metrics = {
        name: (math.nan if value <= -1 else float(value))
        for name, value in zip(METRIC_NAMES, headline.stats, strict=True)
    }
    return EvalResult(
        metrics=metrics,
        per_class=_per_class(dataset, headline),
        summary=headline.summary,
        settings=dict(settings or {}),
        category_ids=tuple(int(category_id) for category_id in dataset.category_ids),
        evaluator=evaluator,
        deferred_evaluator=deferred,
    )


@attrs.frozen(eq=False)
class DeferredEvaluator:
    """Builds ``summarized_evaluator`` of kept ground truth and results when called: what
    ``EvalResult.evaluator`` runs on first read. A class, not a closure, so results stay picklable."""

    ground_truth: dict[str, Any]
    results: list[dict[str, Any]]

    def __call__(self) -> COCOeval:
        return summarized_evaluator(_indexed_coco(self.ground_truth), self.results)


def summarized_evaluator(ground_truth: COCO, results: list[dict[str, Any]]) -> COCOeval:
    """``accumulated_evaluator`` with COCO's thresholds, then summarized (``stats`` filled), silently."""
    evaluator = accumulated_evaluator(ground_truth, results)
    _summary_text(evaluator)
    return evaluator


def _summary_text(evaluator: COCOeval) -> str:
    """Run pycocotools' ``summarize`` and return what it printed."""
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    return summary.getvalue()


def accumulated_evaluator(
    ground_truth: COCO, results: list[dict[str, Any]], iou_thresholds: Sequence[float] | None = None
) -> COCOeval:
    """pycocotools' ``COCOeval`` of ``results`` (COCO result dicts) against ``ground_truth``, evaluated and
    accumulated, its printing silenced. ``iou_thresholds`` replaces COCO's 0.5:0.95 (the error analysis
    needs only 0.5, and recomputes it once per error type)."""
    evaluator = COCOeval(ground_truth, _results_coco(ground_truth, results), "bbox")
    if iou_thresholds is not None:
        evaluator.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def ground_truth_without(ground_truth: COCO, annotation_ids: set[int]) -> COCO:
    """A copy of ``ground_truth`` without the annotations whose ids are given (the oracle that forgives
    missed objects)."""
    content = dict(ground_truth.dataset)
    content["annotations"] = [
        annotation for annotation in content["annotations"] if annotation["id"] not in annotation_ids
    ]
    return _indexed_coco(content)


def _per_class(dataset: DetectionDataset, headline: Headline) -> list[ClassAP]:
    # precision has shape [IoU thresholds, recall points, categories, area ranges, max detections];
    # area index 0 is "all" and the last max-detections entry is 100, as in COCOeval's headline AP.
    precision = headline.precision
    category_order = list(headline.category_order)
    num_gt = np.bincount(
        np.concatenate([record.labels for record in dataset.records] or [np.zeros(0, np.int64)]),
        minlength=dataset.num_classes,
    )
    rows = []
    for label, (name, category_id) in enumerate(zip(dataset.class_names, dataset.category_ids, strict=True)):
        column = category_order.index(int(category_id))
        rows.append(
            ClassAP(
                class_name=name,
                AP=_mean_valid(precision[:, :, column, 0, -1]),
                AP50=_mean_valid(precision[0, :, column, 0, -1]),
                num_gt=int(num_gt[label]),
            )
        )
    return rows


@torch.inference_mode()
def detect_dataset(
    model: torch.nn.Module,
    dataset: DetectionDataset,
    input_size: tuple[int, int],
    batch_size: int = 8,
    conf_threshold: float = 0.01,
    nms_threshold: float = 0.65,
    class_agnostic: bool = False,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
) -> list[ImageDetections]:
    """Run ``model`` on every record; boxes in original image coordinates, clipped to the image.

    The model is moved to ``device``; its train/eval state and head decoding are restored afterwards.
    """
    model.to(device)
    detections: list[ImageDetections] = [None] * len(dataset)  # type: ignore[list-item]
    with decoding_eval_mode(model):
        for images, indices, ratios in make_eval_loader(dataset, input_size, batch_size, num_workers):
            outputs = model(images.to(device))
            per_image = postprocess(outputs, conf_threshold, nms_threshold, class_agnostic)
            for index, ratio, found in zip(indices, ratios, per_image, strict=True):
                record = dataset.records[index]
                detections[index] = found.to_original(ratio, record.width, record.height)
    return detections


def evaluate(
    model: torch.nn.Module,
    dataset: DetectionDataset,
    input_size: tuple[int, int],
    batch_size: int = 8,
    conf_threshold: float = 0.01,
    nms_threshold: float = 0.65,
    class_agnostic: bool = False,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
) -> EvalResult:
    """COCO mAP of ``model`` on ``dataset`` at ``input_size`` (height, width).

    Defaults are YOLOX's evaluation settings (confidence 0.01, NMS IoU 0.65, per-class NMS). The model is
    moved to ``device`` and left in the train/eval state it came in.
    """
    started = time.perf_counter()
    detections = detect_dataset(
        model,
        dataset,
        input_size,
        batch_size,
        conf_threshold,
        nms_threshold,
        class_agnostic,
        device,
        num_workers,
    )
    inference_seconds = time.perf_counter() - started
    settings = {
        "input_size": [int(input_size[0]), int(input_size[1])],
        "batch_size": batch_size,
        "conf_threshold": conf_threshold,
        "nms_threshold": nms_threshold,
        "class_agnostic": class_agnostic,
        "device": str(device),
        "num_images": len(dataset),
        "num_gt_boxes": dataset.num_boxes(),
        "num_detections": int(sum(len(found) for found in detections)),
        "dataset": str(dataset.source) if dataset.source is not None else None,
        "inference_seconds": round(inference_seconds, 3),
    }
    return evaluate_detections(dataset, detections, settings)
