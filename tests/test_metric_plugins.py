"""Metric plugins (``register_metrics``): computed at every evaluation from pycocotools' matches, in
training rows, ``eval`` output and JSON; ``save_best_metric`` may name one.

The model is YOLOX-Nano's COCO weights at 160 px on coco8's val split (real detections); expected counts
are taken from the dataset records and the raw detections, not from the matching the plugins read.
"""

from __future__ import annotations

import csv
from pathlib import Path

import attrs
import numpy as np
import pytest
from test_evaluation_paths import coco8_config, metrics_as_training_measures, write_checkpoint

from yolox_sdk import hookimpl
from yolox_sdk.config.loader import load_config
from yolox_sdk.engine import setup
from yolox_sdk.engine.checkpoint_policy import best_metric_value
from yolox_sdk.errors import ConfigError
from yolox_sdk.evaluation.runner import best_metric_lower_is_better, evaluate_model, evaluation_settings
from yolox_sdk.models import create_model
from yolox_sdk.testing import plugin_registry, use_registry


def settings_with(config, **changes):
    return attrs.evolve(evaluation_settings(config), **changes)


@pytest.fixture(scope="module")
def coco8_eval(tmp_path_factory: pytest.TempPathFactory):
    """The coco8 val split, the COCO nano at 160 px, and the config naming them."""
    tmp = tmp_path_factory.mktemp("metrics")
    config = coco8_config(tmp / "runs", class_agnostic=False)
    model, spec, _ = create_model("yolox-nano", 80, pretrained=True, input_size=(160, 160))
    val = setup.load_split(config, "val")
    return config, model.eval(), val


def test_counting_metric_counts_images_as_the_records_say(coco8_eval) -> None:
    config, model, val = coco8_eval
    settings = settings_with(config, metrics=["counting"], metric_options={"counting": {"conf": 0.25}})
    result = evaluate_model(model, val, (160, 160), settings, "cpu")
    truth = np.array([len(record.boxes) for record in val.records])
    found = np.zeros(len(val.records), dtype=int)
    for detection in result.evaluator.cocoDt.dataset["annotations"]:
        found[detection["image_id"]] += detection["score"] >= 0.25
    assert truth.sum() > 0 and found.sum() > 0
    assert result.metrics["count_accuracy"] == pytest.approx(np.mean(found == truth))
    assert result.metrics["count_mae"] == pytest.approx(np.abs(found - truth).mean())
    assert "count_mae" in result.table() and result.to_dict()["metrics"]["count_accuracy"] is not None


def test_f1_at_a_given_threshold_and_at_the_best_one(coco8_eval) -> None:
    config, model, val = coco8_eval
    best = evaluate_model(model, val, (160, 160), settings_with(config, metrics=["f1"]), "cpu").metrics
    fixed = settings_with(config, metrics=["f1"], metric_options={"f1": {"conf": best["F1_conf"]}})
    at_best = evaluate_model(model, val, (160, 160), fixed, "cpu").metrics
    assert 0 < best["F1"] <= 1 and at_best["F1"] == pytest.approx(best["F1"])
    low = settings_with(config, metrics=["f1"], metric_options={"f1": {"conf": 0.011}})
    assert evaluate_model(model, val, (160, 160), low, "cpu").metrics["F1"] <= best["F1"] + 1e-12
    assert best["mAP"] == evaluate_model(model, val, (160, 160), settings_with(config), "cpu").metrics["mAP"]


class _PredictionCount:
    names = ("predictions",)

    def __init__(self, options=None) -> None:
        pass

    def compute(self, matches):
        return {"predictions": float(matches.num_detections)}


class _CountPlugin:
    @hookimpl
    def register_metrics(self, register) -> None:
        register("prediction_count", _PredictionCount, description="detections evaluated")


def test_a_third_party_metric_reaches_training_metrics_and_may_be_the_best_metric(
    coco8_eval, tmp_path: Path
) -> None:
    config, _, _ = coco8_eval
    registry = plugin_registry(("count", _CountPlugin()))
    with use_registry(registry):
        chosen = load_config(
            None,
            [
                *[f"{key}={value}" for key, value in _coco8_overrides(tmp_path).items()],
                "evaluation.metrics=[prediction_count]",
                "evaluation.save_best_metric=predictions",
            ],
        )
        checkpoint = write_checkpoint(tmp_path / "best.pt", chosen)
        metrics = metrics_as_training_measures(checkpoint, chosen)
    assert metrics["predictions"] > 0 and "mAP" in metrics


def _coco8_overrides(tmp_path: Path) -> dict[str, str]:
    return {
        "model.name": "yolox-nano",
        "model.input_size": "[160,160]",
        "data.train_path": "coco8",
        "data.train_split": "train",
        "data.val_path": "coco8",
        "data.val_split": "val",
        "data.format": "yolo",
        "export.formats": "[]",
        "device.type": "cpu",
        "monitoring.output_dir": str(tmp_path / "runs"),
    }


def test_save_best_metric_must_be_one_the_run_computes() -> None:
    def check(*overrides: str) -> bool:
        return best_metric_lower_is_better(load_config(None, list(overrides)).evaluation)

    assert check("evaluation.metrics=[f1]", "evaluation.save_best_metric=F1") is False
    assert check("evaluation.metrics=[counting]", "evaluation.save_best_metric=count_mae") is True
    assert check("evaluation.save_best_metric=mAP50") is False
    with pytest.raises(ConfigError, match="'F2' is not a metric this run computes.*compute F1, precision"):
        check("evaluation.metrics=[f1]", "evaluation.save_best_metric=F2")
    with pytest.raises(ConfigError, match="add the metric plugin that computes it"):
        check("evaluation.save_best_metric=F1")
    with pytest.raises(ConfigError, match="evaluation.metrics"):
        load_config(None, ["evaluation.metrics=[f2]"])
    with pytest.raises(ConfigError, match="evaluation.metric_options.f1"):
        load_config(None, ["evaluation.metrics=[f1]", "evaluation.metric_options={f1: {conf: 2}}"])


def test_lower_is_better_metrics_are_minimised_by_best_pt() -> None:
    assert best_metric_value({"val/count_mae": 2.0}, "count_mae", lower_is_better=True) == -2.0
    assert best_metric_value({"val/F1": 0.5}, "F1") == 0.5
    assert best_metric_value({"val/F1": float("nan")}, "F1") is None


@pytest.mark.slow
def test_training_logs_plugin_metrics_in_metrics_csv(tmp_path: Path) -> None:
    from yolox_sdk.engine.trainer import train

    overrides = _coco8_overrides(tmp_path) | {
        "training.epochs": "1",
        "training.warmup_epochs": "0",
        "data.batch_size": "4",
        "monitoring.progress_bar": "false",
        "evaluation.metrics": "[f1,counting]",
        "evaluation.save_best_metric": "count_mae",
    }
    result = train(load_config(None, [f"{key}={value}" for key, value in overrides.items()]))
    with open(result.run_dir / "metrics.csv", newline="", encoding="utf-8") as handle:
        [row] = list(csv.DictReader(handle))
    for name in ("val/F1", "val/precision", "val/recall", "val/count_accuracy", "val/count_mae"):
        assert name in row and row[name] != "", name
    assert (result.run_dir / "best.pt").is_file()


@pytest.mark.slow
def test_a_trainer_given_its_own_registry_evaluates_its_metric_plugins(tmp_path: Path) -> None:
    """``train(config, registry=...)``: the per-epoch evaluation finds the metric in that registry too,
    not only in the installed plugins (a notebook registering a plugin in code needs nothing more)."""
    from yolox_sdk.engine.trainer import train

    registry = plugin_registry(("count", _CountPlugin()))
    overrides = {
        **_coco8_overrides(tmp_path),
        "training.epochs": "1",
        "evaluation.metrics": "[prediction_count]",
    }
    config = load_config(None, [f"{key}={value}" for key, value in overrides.items()], registry)
    result = train(config, registry=registry)
    assert result.metrics["val/predictions"] > 0
