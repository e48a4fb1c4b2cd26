"""faster-coco-eval as the metrics backend: the same numbers as pycocotools called directly on real
detections, pycocotools' evaluator built only when something reads it, and the fallback without it."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from test_coco_eval import load_coco8

from yolox_sdk.config.schema import EvaluationConfig
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.data.records import DetectionDataset, ImageRecord
from yolox_sdk.engine.distributed import DistributedContext
from yolox_sdk.engine.epoch_evaluation import evaluate_epoch
from yolox_sdk.evaluation import coco_backend
from yolox_sdk.evaluation.coco_eval import (
    METRIC_NAMES,
    EvalResult,
    coco_ground_truth,
    coco_results,
    detect_dataset,
    evaluate_detections,
)
from yolox_sdk.evaluation.runner import evaluate_model
from yolox_sdk.models.factory import create_model

BCCD_IMAGES = 24
INPUT_SIZE = (320, 320)


@pytest.fixture(scope="module")
def coco8(coco8_dir: Path) -> DetectionDataset:
    return load_coco8(coco8_dir)


@pytest.fixture(scope="module")
def bccd_val(bccd_dir: Path) -> DetectionDataset:
    full = load_dataset(bccd_dir, split="val", format="voc")
    return DetectionDataset(
        full.records[:BCCD_IMAGES], full.class_names, full.category_ids, source=full.source
    )


@pytest.fixture(scope="module")
def coco_nano(nano_weights: Path) -> torch.nn.Module:
    model, _, _ = create_model("yolox-nano", 80, pretrained=str(nano_weights), input_size=INPUT_SIZE)
    return model


@pytest.fixture(scope="module")
def bccd_nano(nano_weights: Path) -> torch.nn.Module:
    # COCO weights with a new 3-class head: the boxes and objectness of a finetune's first epoch
    torch.manual_seed(0)
    model, _, _ = create_model("yolox-nano", 3, pretrained=str(nano_weights), input_size=INPUT_SIZE)
    return model


def pycocotools_reference(dataset: DetectionDataset, results: list[dict[str, Any]]) -> tuple[COCOeval, str]:
    """pycocotools used as documented (``loadRes``, evaluate, accumulate, summarize), with what it printed."""
    ground_truth = coco_ground_truth(dataset)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        if results:
            detections = ground_truth.loadRes(results)
        else:  # loadRes refuses an empty list
            detections = COCO()
            detections.dataset = {**ground_truth.dataset, "annotations": []}
            detections.createIndex()
        evaluator = COCOeval(ground_truth, detections, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    return evaluator, summary.getvalue()


def reference_per_class(evaluator: COCOeval, dataset: DetectionDataset) -> list[tuple[float, float]]:
    precision = evaluator.eval["precision"]
    order = list(evaluator.params.catIds)
    rows = []
    for category_id in dataset.category_ids:
        column = precision[:, :, order.index(category_id), 0, -1]
        valid, valid50 = column[column > -1], column[0][column[0] > -1]
        rows.append(
            (
                float(valid.mean()) if valid.size else math.nan,
                float(valid50.mean()) if valid50.size else math.nan,
            )
        )
    return rows


def assert_same_as_reference(result: EvalResult, dataset: DetectionDataset, results: list[dict]) -> COCOeval:
    reference, summary = pycocotools_reference(dataset, results)
    for name, expected in zip(METRIC_NAMES, reference.stats, strict=True):
        if expected == -1:
            assert math.isnan(result.metrics[name]), name
        else:
            assert result.metrics[name] == pytest.approx(expected, rel=0, abs=1e-12), name
    expected_rows = reference_per_class(reference, dataset)
    for row, (ap, ap50) in zip(result.per_class, expected_rows, strict=True):
        for found, expected in ((row.AP, ap), (row.AP50, ap50)):
            assert (math.isnan(found) and math.isnan(expected)) or found == pytest.approx(expected, abs=1e-12)
    assert result.summary == summary
    return reference


@pytest.mark.parametrize("which", ["bccd", "coco8"])
def test_metrics_equal_pycocotools_on_real_detections(
    which: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture
) -> None:
    if which == "bccd":
        dataset, model, conf = (
            request.getfixturevalue("bccd_val"),
            request.getfixturevalue("bccd_nano"),
            0.001,
        )
    else:
        dataset, model, conf = request.getfixturevalue("coco8"), request.getfixturevalue("coco_nano"), 0.01
    detections = detect_dataset(model, dataset, INPUT_SIZE, batch_size=8, conf_threshold=conf)
    results = coco_results(dataset, detections)
    assert len(results) > 10 * len(dataset)  # real detections, many of them false positives
    capsys.readouterr()
    result = evaluate_detections(dataset, detections)
    assert capsys.readouterr().out == ""  # neither backend prints
    assert result.metrics["mAP"] > (0.3 if which == "coco8" else 0.0)
    reference = assert_same_as_reference(result, dataset, results)
    if which == "coco8":  # 80 classes, most of them absent from its 8 images: n/a, as in pycocotools
        absent = [row for row in result.per_class if row.num_gt == 0]
        assert len(absent) > 60 and all(math.isnan(row.AP) and math.isnan(row.AP50) for row in absent)
    # the backend's whole precision array, not only the means taken from it
    headline = coco_backend.faster_headline(
        coco_ground_truth(dataset).dataset, coco_results_content(dataset, results)
    )
    assert headline is not None and headline.backend == "faster-coco-eval"
    np.testing.assert_allclose(headline.precision, reference.eval["precision"], rtol=0, atol=1e-12)


def coco_results_content(dataset: DetectionDataset, results: list[dict]) -> dict[str, Any]:
    ground_truth = coco_ground_truth(dataset).dataset
    annotations = [
        {**result, "id": number, "area": result["bbox"][2] * result["bbox"][3], "iscrowd": 0}
        for number, result in enumerate(results, start=1)
    ]
    return {
        "images": ground_truth["images"],
        "categories": ground_truth["categories"],
        "annotations": annotations,
    }


def test_a_model_that_predicts_nothing_scores_zero(
    coco_nano: torch.nn.Module, bccd_val: DetectionDataset, coco8: DetectionDataset
) -> None:
    for dataset in (bccd_val, coco8):
        detections = detect_dataset(coco_nano, dataset, INPUT_SIZE, conf_threshold=1.1)
        assert sum(len(found) for found in detections) == 0
        result = evaluate_detections(dataset, detections)
        assert result.metrics["mAP"] == 0.0 and result.metrics["AR100"] == 0.0
        assert_same_as_reference(result, dataset, [])
        assert result.evaluator is not None and result.evaluator.evalImgs


def test_a_class_without_ground_truth_is_nan_like_pycocotools(tmp_path: Path) -> None:
    records = [
        ImageRecord(tmp_path / "a.jpg", 200, 100, [[10, 10, 60, 60], [100, 20, 180, 90]], [0, 1]),
        ImageRecord(tmp_path / "b.jpg", 200, 100, [[20, 30, 70, 90]], [0]),
    ]
    dataset = DetectionDataset(records, ["cat", "dog", "bird"], category_ids=(5, 2, 9))
    detections = [
        (
            np.array([[12, 10, 60, 64], [100, 20, 170, 90], [0, 0, 30, 30]]),
            np.array([0.9, 0.8, 0.7]),
            [0, 1, 2],
        ),
        (np.array([[20, 30, 70, 90], [22, 28, 66, 88]]), np.array([0.6, 0.3]), np.array([0, 2])),
    ]
    result = evaluate_detections(dataset, detections)
    bird = result.per_class[2]
    assert bird.num_gt == 0 and math.isnan(bird.AP) and math.isnan(bird.AP50)
    assert math.isnan(result.metrics["mAP_large"])  # no large ground truth: pycocotools' -1
    assert_same_as_reference(result, dataset, coco_results(dataset, detections))


class ConstructionCounter:
    """Counts pycocotools ``COCO`` and ``COCOeval`` objects built while it is installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.built: list[str] = []
        for cls in (COCO, COCOeval):
            original = cls.__init__

            def counting(instance: Any, *args: Any, _original: Any = original, **kwargs: Any) -> None:
                self.built.append(type(instance).__name__)
                _original(instance, *args, **kwargs)

            monkeypatch.setattr(cls, "__init__", counting)


def test_pycocotools_evaluator_is_built_on_first_read_only(
    coco_nano: torch.nn.Module, coco8: DetectionDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    detections = detect_dataset(coco_nano, coco8, INPUT_SIZE)
    counter = ConstructionCounter(monkeypatch)
    result = evaluate_detections(coco8, detections)
    assert counter.built == []
    assert result._evaluator is None and result._deferred_evaluator is not None
    copied = pickle.loads(pickle.dumps(result))  # results still travel between processes

    evaluator = result.evaluator
    assert isinstance(evaluator, COCOeval) and counter.built.count("COCOeval") == 1
    assert result.evaluator is evaluator and counter.built.count("COCOeval") == 1  # cached
    assert len(evaluator.evalImgs) > 0 and any(entry is not None for entry in evaluator.evalImgs)
    for name, value in zip(METRIC_NAMES, evaluator.stats, strict=True):
        # one ulp apart at most: faster-coco-eval's precision array is pycocotools' to 1e-16, not bit for bit
        assert (value == -1 and math.isnan(result.metrics[name])) or result.metrics[name] == pytest.approx(
            value, rel=0, abs=1e-12
        ), name
    assert copied.evaluator is not None and copied.evaluator.stats[0] == evaluator.stats[0]


def test_epoch_evaluation_builds_no_pycocotools_object(
    coco_nano: torch.nn.Module, coco8: DetectionDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = ConstructionCounter(monkeypatch)
    coco_nano.train()

    def evaluate(model: torch.nn.Module) -> EvalResult:
        return evaluate_model(model, coco8, INPUT_SIZE, EvaluationConfig(), "cpu")

    metrics = evaluate_epoch(evaluate, coco_nano, coco_nano, DistributedContext(), epoch=0)
    assert metrics["mAP"] > 0.3 and counter.built == []
    assert coco_nano.training


def test_without_faster_coco_eval_pycocotools_gives_the_same_result(
    coco_nano: torch.nn.Module,
    coco8: DetectionDataset,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    detections = detect_dataset(coco_nano, coco8, INPUT_SIZE)
    fast = evaluate_detections(coco8, detections)
    try:
        with monkeypatch.context() as patch, caplog.at_level(logging.DEBUG, logger=coco_backend.__name__):
            patch.setitem(sys.modules, "faster_coco_eval", None)  # its import raises ImportError
            coco_backend.faster_coco_eval_module.cache_clear()
            slow = evaluate_detections(coco8, detections)
            evaluate_detections(coco8, detections)
    finally:
        coco_backend.faster_coco_eval_module.cache_clear()
    said = [record for record in caplog.records if "faster-coco-eval is not importable" in record.message]
    assert len(said) == 1 and said[0].levelno == logging.DEBUG
    assert slow._evaluator is not None  # built at once: it computed the metrics
    assert slow.summary == fast.summary
    assert same_numbers(slow.metrics, fast.metrics)
    assert same_numbers(
        {
            (row.class_name, key): getattr(row, key)
            for row in slow.per_class
            for key in ("AP", "AP50", "num_gt")
        },
        {
            (row.class_name, key): getattr(row, key)
            for row in fast.per_class
            for key in ("AP", "AP50", "num_gt")
        },
    )
    assert coco_backend.faster_coco_eval_module() is not None  # back for the tests that follow


def same_numbers(found: dict[Any, float], expected: dict[Any, float]) -> bool:
    """Equal keys and values equal to 1e-12, ``NaN`` equal to ``NaN``."""
    return found.keys() == expected.keys() and all(
        abs(found[key] - expected[key]) <= 1e-12 or (math.isnan(found[key]) and math.isnan(expected[key]))
        for key in found
    )
