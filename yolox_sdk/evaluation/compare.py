"""A/B comparison of two checkpoints on the same images (``yolox-sdk compare``).

Each model is evaluated as ``yolox-sdk eval`` would evaluate it (its own saved evaluation settings, its own
input size), so the two AP columns are the numbers ``eval`` prints. Whether the difference is real is
answered by a paired bootstrap over images: each resample draws the images with replacement, the same
draw for both models, and the AP difference is recomputed from pycocotools' per-image matches
(``evaluation.bootstrap``) instead of rerunning the evaluation, so 1,000 resamples take seconds. The 95 %
interval is the 2.5th to 97.5th percentile of those differences; a difference is called significant when
the interval leaves out 0. Latency (batch 1, median after warm-up) is measured on the same device.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolox_sdk.checkpoints.format import Checkpoint, load_checkpoint
from yolox_sdk.config.schema import EvaluationConfig
from yolox_sdk.data.eval_dataset import EvalImageDataset
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.errors import CheckpointError, ConfigError, DatasetError
from yolox_sdk.evaluation import bootstrap
from yolox_sdk.evaluation.coco_eval import (
    EvalResult,
    coco_ground_truth,
    coco_results,
    detect_dataset,
    evaluate_detections,
)
from yolox_sdk.evaluation.postprocess import ImageDetections, decoding_eval_mode, postprocess
from yolox_sdk.evaluation.runner import DEFAULT_BATCH_SIZE, checkpoint_evaluation_settings
from yolox_sdk.models.factory import model_from_checkpoint
from yolox_sdk.plain_values import is_whole_number

log = logging.getLogger(__name__)

CONFIDENCE_LEVEL = 0.95
DEFAULT_RESAMPLES = 1000
DEFAULT_LATENCY_RUNS = 50
LATENCY_WARMUP_RUNS = 5
METRICS = (("AP50:95", "mAP", "AP"), ("AP50", "mAP50", "AP50"))  # shown name, overall key, per-class key


@attrs.frozen
class Delta:
    """B minus A for one metric, over all classes (``class_name`` None) or one class.

    Values are fractions (0-1) as in ``eval``'s JSON; the verdict prints them as AP points (x100).
    ``resamples`` counts the resamples where the class had ground truth (the interval is over those).
    """

    metric: str
    class_name: str | None
    a: float
    b: float
    ci_low: float
    ci_high: float
    resamples: int

    @property
    def delta(self) -> float:
        """B minus A, as pycocotools measures each on the whole dataset."""
        return self.b - self.a

    @property
    def significant(self) -> bool:
        """Whether the 95 % interval leaves out 0."""
        return self.ci_low > 0 or self.ci_high < 0

    def verdict(self) -> str:
        """One plain sentence: which model is better and by how much, or that the data cannot tell."""
        if math.isnan(self.delta) or math.isnan(self.ci_low):
            return f"not measurable on {self.metric} (no ground truth)"
        if self.ci_low > 0:
            return f"B is better by {_points(self.delta)} {self.metric}, 95 % CI {_interval(self.ci_low, self.ci_high)}"
        if self.ci_high < 0:
            return f"A is better by {_points(-self.delta)} {self.metric}, 95 % CI {_interval(-self.ci_high, -self.ci_low)}"
        return f"no significant difference on {self.metric} (95 % CI {_interval(self.ci_low, self.ci_high)} contains 0)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``NaN`` becomes ``null``."""
        values = {
            "a": self.a,
            "b": self.b,
            "delta": self.delta,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
        }
        return {
            "metric": self.metric,
            "class_name": self.class_name,
            **{key: _json_number(value) for key, value in values.items()},
            "significant": self.significant,
            "resamples": self.resamples,
            "verdict": self.verdict(),
        }


@attrs.frozen
class Latency:
    """Milliseconds per image of one model: forward pass and postprocessing (decode, threshold, NMS) of one
    letterboxed image, batch 1, the median of ``runs`` timed runs after ``warmup`` untimed ones."""

    median_ms: float
    runs: int
    warmup: int
    device: str
    input_size: tuple[int, int]

    def describe(self) -> str:
        """``12.3 ms/image at 416x416`` style text."""
        return f"{self.median_ms:.1f} ms/image at {self.input_size[0]}x{self.input_size[1]}"


@attrs.frozen
class ModelReport:
    """One side of the comparison: which checkpoint, how it was evaluated, what it measured."""

    checkpoint: Path
    model_name: str
    input_size: tuple[int, int]
    settings: EvaluationConfig
    evaluation: EvalResult
    latency: Latency

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "checkpoint": str(self.checkpoint),
            "model": self.model_name,
            "input_size": list(self.input_size),
            "evaluation_settings": attrs.asdict(self.settings),
            "evaluation": self.evaluation.to_dict(),
            "latency": {**attrs.asdict(self.latency), "input_size": list(self.latency.input_size)},
        }


@attrs.frozen
class ComparisonResult:
    """What ``compare`` found: both models' evaluations and latencies, and B-minus-A deltas with their
    bootstrap intervals, overall (``overall``: AP50:95 then AP50) and per class (``per_class``)."""

    a: ModelReport
    b: ModelReport
    overall: tuple[Delta, ...]
    per_class: tuple[Delta, ...]
    num_images: int
    dataset: str | None
    resamples: int
    seed: int
    device: str
    class_note: str | None = None
    bootstrap_seconds: float = 0.0

    @property
    def verdict(self) -> str:
        """The headline verdict, on AP50:95."""
        return self.overall[0].verdict()

    def table(self) -> str:
        """A printable report: per-class and overall AP of A and B, the deltas with intervals, latency, verdicts."""
        return format_table(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content of ``compare.json``."""
        return {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "overall": [delta.to_dict() for delta in self.overall],
            "per_class": [delta.to_dict() for delta in self.per_class],
            "verdict": self.verdict,
            "bootstrap": {
                "resamples": self.resamples,
                "seed": self.seed,
                "confidence": CONFIDENCE_LEVEL,
                "unit": "image",
                "paired": True,
                "seconds": round(self.bootstrap_seconds, 3),
            },
            "num_images": self.num_images,
            "dataset": self.dataset,
            "device": self.device,
            "class_note": self.class_note,
        }

    def to_json(self, path: Path | str) -> Path:
        """Write ``to_dict()`` to ``path`` (parent folders created) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def _points(value: float) -> str:
    return f"{value * 100:.1f}"


def _interval(low: float, high: float) -> str:
    return f"[{_points(low)}, {_points(high)}]"


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


# --- the comparison ----------------------------------------------------------------------------------------


def compare(
    checkpoint_a: Path | str,
    checkpoint_b: Path | str,
    data: str | Path,
    split: str | None = None,
    format_name: str = "auto",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    device: str = "auto",
    latency_runs: int = DEFAULT_LATENCY_RUNS,
    latency_warmup: int = LATENCY_WARMUP_RUNS,
) -> ComparisonResult:
    """Compare two checkpoints on the same dataset (``yolox-sdk compare``).

    Args:
        checkpoint_a, checkpoint_b: the two checkpoints; deltas are B minus A.
        data: dataset path or catalog name; ``split`` and ``format_name`` as for ``yolox-sdk eval``.
        resamples: bootstrap resamples; ``seed`` makes them repeat exactly.
        device: where both models run (and are timed).
        latency_runs: timed batch-1 runs per model, after ``latency_warmup`` untimed ones.

    Raises:
        CheckpointError: a checkpoint cannot be read, or the two were trained on different classes.
        DatasetError: the dataset cannot be read or has classes the checkpoints do not know.
    """
    from yolox_sdk.data.formats import load_dataset
    from yolox_sdk.data.training_data import align_classes
    from yolox_sdk.engine.devices import resolve_device

    _check_count("resamples", resamples, 1)
    _check_count("latency_runs", latency_runs, 1)
    _check_count("latency_warmup", latency_warmup, 0)
    paths = (Path(checkpoint_a), Path(checkpoint_b))
    first, second = (load_checkpoint(path) for path in paths)
    label_map, class_note = class_mapping(first, second, *paths)
    dataset = align_classes(load_dataset(data, split=split, format=format_name), first.class_names)
    if not dataset.records:
        raise DatasetError(f"{data}: the dataset has no images to compare the models on.")
    run_on = resolve_device(device)
    timing = (latency_runs, latency_warmup)
    report_a, detections_a = _measure(first, paths[0], dataset, run_on, timing, None)
    report_b, detections_b = _measure(second, paths[1], dataset, run_on, timing, label_map)
    started = time.perf_counter()
    overall, per_class = compare_detections(dataset, detections_a, detections_b, resamples, seed)
    overall = tuple(_with_point_values(delta, report_a.evaluation, report_b.evaluation) for delta in overall)
    return ComparisonResult(
        a=report_a,
        b=report_b,
        overall=overall,
        per_class=per_class,
        num_images=len(dataset),
        dataset=str(dataset.source) if dataset.source is not None else str(data),
        resamples=resamples,
        seed=seed,
        device=str(run_on),
        class_note=class_note,
        bootstrap_seconds=time.perf_counter() - started,
    )


def _check_count(name: str, value: int, low: int) -> None:
    if not is_whole_number(value) or value < low:
        raise ConfigError(f"{name} must be a whole number of at least {low}, got {value!r}.")


def class_mapping(
    a: Checkpoint, b: Checkpoint, path_a: Path, path_b: Path
) -> tuple[np.ndarray | None, str | None]:
    """How B's class indices map onto A's: ``None`` when both list the same classes in the same order, an
    index array (B index -> A index) and a note saying so when only the order differs.

    Raises:
        CheckpointError: the class lists differ (naming both), since AP of different classes is not comparable.
    """
    names_a, names_b = tuple(a.class_names), tuple(b.class_names)
    if names_a == names_b:
        return None, None
    same_set = sorted(names_a) == sorted(names_b) and len(set(names_a)) == len(names_a)
    if not same_set:
        only_a = [name for name in names_a if name not in names_b]
        only_b = [name for name in names_b if name not in names_a]
        raise CheckpointError(
            f"The checkpoints were trained on different classes: A ({path_a}) has {list(names_a)}, "
            f"B ({path_b}) has {list(names_b)} (only in A: {only_a}; only in B: {only_b}). Only models "
            "of the same classes can be compared; retrain one of them on the other's class list."
        )
    mapping = np.array([names_a.index(name) for name in names_b], dtype=np.int64)
    note = (
        f"The checkpoints list the same classes in another order (A: {', '.join(names_a)}; "
        f"B: {', '.join(names_b)}); B's detections were mapped to A's classes by name."
    )
    log.info("%s", note)
    return mapping, note


def _measure(
    checkpoint: Checkpoint,
    path: Path,
    dataset: DetectionDataset,
    device: torch.device,
    timing: tuple[int, int],
    label_map: np.ndarray | None,
) -> tuple[ModelReport, list[ImageDetections]]:
    """Detect, evaluate and time one checkpoint with the evaluation settings it was trained with."""
    settings = checkpoint_evaluation_settings(checkpoint)
    model = model_from_checkpoint(checkpoint).to(device)
    input_size = tuple(int(side) for side in checkpoint.spec.input_size)
    detections = detect_dataset(
        model,
        dataset,
        input_size,
        batch_size=settings.batch_size or DEFAULT_BATCH_SIZE,
        conf_threshold=settings.conf_threshold,
        nms_threshold=settings.nms_threshold,
        class_agnostic=settings.class_agnostic_nms,
        device=str(device),
    )
    if label_map is not None:
        detections = [
            ImageDetections(d.boxes, d.scores, torch.from_numpy(label_map)[d.labels]) for d in detections
        ]
    evaluation = evaluate_detections(
        dataset, detections, {"input_size": list(input_size), "device": str(device)}
    )
    latency = measure_latency(model, dataset, input_size, settings, device, *timing)
    report = ModelReport(path, checkpoint.spec.name, input_size, settings, evaluation, latency)
    return report, detections


@torch.inference_mode()
def measure_latency(
    model: torch.nn.Module,
    dataset: DetectionDataset,
    input_size: tuple[int, int],
    settings: EvaluationConfig,
    device: torch.device,
    runs: int = DEFAULT_LATENCY_RUNS,
    warmup: int = LATENCY_WARMUP_RUNS,
) -> Latency:
    """Batch-1 latency of ``model`` on the dataset's first image (letterboxed to ``input_size``):
    forward and postprocessing with ``settings``' thresholds. Image decoding and resizing are left out;
    they cost the same whichever model runs."""
    image = EvalImageDataset(dataset, input_size)[0][0][None].to(device)
    timings = []
    with decoding_eval_mode(model):
        for run in range(warmup + runs):
            _synchronize(device)
            started = time.perf_counter()
            postprocess(
                model(image), settings.conf_threshold, settings.nms_threshold, settings.class_agnostic_nms
            )
            _synchronize(device)
            if run >= warmup:
                timings.append((time.perf_counter() - started) * 1000)
    return Latency(statistics.median(timings), runs, warmup, str(device), input_size)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _with_point_values(delta: Delta, a: EvalResult, b: EvalResult) -> Delta:
    """The overall delta with its A and B values from ``eval``'s own pycocotools summary (identical to the
    recomputed ones; taking them from there makes the comparison quote exactly what ``eval`` prints)."""
    key = "mAP" if delta.metric == "AP50:95" else "mAP50"
    return attrs.evolve(delta, a=a.metrics[key], b=b.metrics[key])


def compare_detections(
    dataset: DetectionDataset,
    detections_a: Sequence[ImageDetections],
    detections_b: Sequence[ImageDetections],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[tuple[Delta, ...], tuple[Delta, ...]]:
    """B-minus-A deltas of two sets of detections on ``dataset`` (one entry per record, class indices of
    ``dataset``), with paired-bootstrap intervals over images.

    Returns:
        ``(overall, per_class)``: overall AP50:95 and AP50; then per class, AP50:95 and AP50 of each class
        in class order.
    """
    _check_count("resamples", resamples, 1)
    records_a = match_records_of(dataset, detections_a)
    records_b = match_records_of(dataset, detections_b)
    weights = bootstrap.resample_weights(len(dataset), resamples, seed)
    full = np.ones((1, len(dataset)), dtype=np.int64)
    point_a, point_b = (bootstrap.average_precision(r, full) for r in (records_a, records_b))
    drawn_a, drawn_b = (bootstrap.average_precision(r, weights) for r in (records_a, records_b))
    overall = tuple(
        _delta(shown, None, point_a[key][0], point_b[key][0], drawn_b[key] - drawn_a[key])
        for shown, key, _ in METRICS
    )
    per_class = tuple(
        _delta(shown, name, point_a[key][0, k], point_b[key][0, k], drawn_b[key][:, k] - drawn_a[key][:, k])
        for k, name in enumerate(dataset.class_names)
        for shown, _, key in METRICS
    )
    return overall, per_class


def _delta(metric: str, class_name: str | None, a: float, b: float, differences: np.ndarray) -> Delta:
    valid = differences[~np.isnan(differences)]
    if valid.size == 0:
        low = high = math.nan
    else:
        tail = (1 - CONFIDENCE_LEVEL) / 2 * 100
        low, high = (float(value) for value in np.percentile(valid, [tail, 100 - tail]))
    return Delta(metric, class_name, float(a), float(b), low, high, int(valid.size))


def match_records_of(
    dataset: DetectionDataset, detections: Sequence[ImageDetections | Sequence[Any]]
) -> bootstrap.MatchRecords:
    """pycocotools' per-image matches of ``detections`` against ``dataset`` (``COCOeval.evaluate()`` run
    once, area ``all``), the input of the weighted AP recomputation."""
    ground_truth = coco_ground_truth(dataset)
    predicted = _results_as_coco(ground_truth, coco_results(dataset, detections))
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        evaluator = bootstrap.evaluated(COCOeval(ground_truth, predicted, "bbox"))
    return bootstrap.match_records(evaluator, dataset.category_ids)


def _results_as_coco(ground_truth: COCO, results: list[dict[str, Any]]) -> COCO:
    """Detections as a ``COCO`` object (``COCO.loadRes`` fails on an empty list: a model may find nothing)."""
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            return ground_truth.loadRes(results)
        empty = COCO()
        empty.dataset = {**ground_truth.dataset, "annotations": []}
        empty.createIndex()
        return empty


# --- the printed report ------------------------------------------------------------------------------------


def format_table(result: ComparisonResult) -> str:
    """The report ``yolox-sdk compare`` prints (AP in points, 0-100; delta = B - A)."""
    lines = [
        f"A: {result.a.checkpoint} ({result.a.model_name}, {_size(result.a.input_size)})",
        f"B: {result.b.checkpoint} ({result.b.model_name}, {_size(result.b.input_size)})",
        f"Data: {result.dataset}, {result.num_images} images. Paired bootstrap over images: "
        f"{result.resamples} resamples, seed {result.seed}.",
    ]
    if result.class_note:
        lines.append(result.class_note)
    lines += ["", *_delta_rows(result), ""]
    latency = result.a.latency
    lines.append(
        f"Latency on {latency.device} (batch 1, forward + NMS, median of {latency.runs} runs after "
        f"{latency.warmup} warm-up): A {result.a.latency.describe()}, B {result.b.latency.describe()}"
    )
    lines += [f"{delta.metric}: {delta.verdict()}" for delta in result.overall]
    return "\n".join(lines)


def _size(input_size: tuple[int, int]) -> str:
    return f"{input_size[0]}x{input_size[1]}"


def _delta_rows(result: ComparisonResult) -> list[str]:
    by_class: dict[str | None, dict[str, Delta]] = {}
    for delta in (*result.per_class, *result.overall):
        by_class.setdefault(delta.class_name, {})[delta.metric] = delta
    names = [name or "all" for name in by_class]
    width = max(len("class"), *(len(name) for name in names))
    cells = [f"{'A':>6} {'B':>6} {'B-A':>6} {'95% CI':>17}" for _ in METRICS]
    header = f"{'':<{width}}  " + "   ".join(f"{shown:^38}" for shown, _, _ in METRICS)
    columns = f"{'class':<{width}}  " + "   ".join(cells)
    rows = [header, columns, "-" * len(columns)]
    for name, deltas in by_class.items():
        if name is None:
            rows.append("-" * len(columns))
        parts = [_delta_cells(deltas[shown]) for shown, _, _ in METRICS]
        rows.append(f"{name or 'all':<{width}}  " + "   ".join(parts))
    return rows


def _delta_cells(delta: Delta) -> str:
    def number(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value * 100:.2f}"

    interval = "n/a" if math.isnan(delta.ci_low) else f"[{number(delta.ci_low)}, {number(delta.ci_high)}]"
    return f"{number(delta.a):>6} {number(delta.b):>6} {number(delta.delta):>6} {interval:>17}"
