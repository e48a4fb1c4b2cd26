"""One evaluation for every caller: training's val metrics, ``yolox-sdk run``'s ``eval_<split>.json`` and
``yolox-sdk eval`` measure one checkpoint identically, with every field of the ``evaluation`` section.

The checkpoint is YOLOX-Nano's COCO weights at 160 px on coco8's val split (4 images), where class-agnostic
NMS changes mAP; training itself is replaced by that checkpoint, since only what follows it is tested.
"""

from __future__ import annotations

import json
import logging
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from yolox_sdk.checkpoints.format import Checkpoint, load_checkpoint, save_checkpoint
from yolox_sdk.cli.main import cli
from yolox_sdk.config.loader import config_to_dict, load_config
from yolox_sdk.config.schema import Config, EvaluationConfig
from yolox_sdk.engine import jobs, setup
from yolox_sdk.evaluation.runner import checkpoint_evaluation_settings, evaluate_model, evaluation_settings
from yolox_sdk.models import create_model, model_from_checkpoint


def coco8_config(output_dir: Path, class_agnostic: bool) -> Config:
    return load_config(
        None,
        [
            "model.name=yolox-nano",
            "model.input_size=[160,160]",
            "data.train_path=coco8",
            "data.train_split=train",
            "data.val_path=coco8",
            "data.val_split=val",
            "data.format=yolo",
            "data.batch_size=2",
            f"evaluation.class_agnostic_nms={str(class_agnostic).lower()}",
            "export.formats=[]",
            "device.type=cpu",
            f"monitoring.output_dir={output_dir}",
        ],
    )


def write_checkpoint(path: Path, config: Config) -> Path:
    """A checkpoint as training writes it: weights, spec, class names and the run's resolved config."""
    model, spec, _ = create_model("yolox-nano", 80, pretrained=True, input_size=(160, 160))
    names = setup.load_split(config, "train").class_names
    return save_checkpoint(path, Checkpoint(model.state_dict(), spec, names, config=config_to_dict(config)))


def metrics_as_training_measures(checkpoint_path: Path, config: Config) -> dict:
    """What the trainer's evaluation computes for the best weights: ``evaluate_model`` on the val data
    with ``evaluation_settings(config)``."""
    checkpoint = load_checkpoint(checkpoint_path)
    val = setup.align_classes(setup.load_split(config, "val"), checkpoint.class_names)
    result = evaluate_model(
        model_from_checkpoint(checkpoint), val, checkpoint.spec.input_size, evaluation_settings(config), "cpu"
    )
    return result.to_dict()["metrics"]


def metrics_from_run(checkpoint_path: Path, config: Config, monkeypatch: pytest.MonkeyPatch) -> dict:
    """``yolox-sdk run``'s evaluation after training (training replaced by the checkpoint), from its JSON."""
    run_dir = checkpoint_path.parent
    trained = types.SimpleNamespace(best_checkpoint=checkpoint_path, run_dir=run_dir)
    monkeypatch.setattr(jobs, "train", lambda config, resume_dir=None: trained)
    jobs.run_pipeline(config)
    return json.loads((run_dir / "eval_val.json").read_text())["metrics"]


def metrics_from_eval_command(checkpoint_path: Path, *options: str) -> dict:
    out = checkpoint_path.with_name("cli_eval.json")
    args = ["eval", str(checkpoint_path), "--data", "coco8", "--split", "val", "--format", "yolo"]
    result = CliRunner().invoke(cli, [*args, "--device", "cpu", "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())["metrics"]


@pytest.mark.slow
def test_class_agnostic_nms_changes_runs_numbers_as_it_changes_trainings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``yolox-sdk run`` used to drop ``evaluation.class_agnostic_nms``: its eval_val.json was per-class NMS
    whatever the config said, so it disagreed with the val mAP that chose the best checkpoint."""
    measured = {}
    for class_agnostic in (False, True):
        config = coco8_config(tmp_path / "runs", class_agnostic)
        checkpoint = write_checkpoint(tmp_path / f"agnostic_{class_agnostic}" / "best.pt", config)
        training = metrics_as_training_measures(checkpoint, config)
        assert metrics_from_run(checkpoint, config, monkeypatch) == training
        measured[class_agnostic] = training
    assert measured[True]["mAP"] != measured[False]["mAP"]  # the setting matters on this data


@pytest.mark.slow
def test_one_checkpoint_gives_identical_numbers_through_training_run_and_eval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Non-default settings saved with the checkpoint are what ``yolox-sdk eval`` uses unless told otherwise."""
    config = coco8_config(tmp_path / "runs", class_agnostic=True)
    checkpoint = write_checkpoint(tmp_path / "run" / "best.pt", config)
    training = metrics_as_training_measures(checkpoint, config)
    assert metrics_from_run(checkpoint, config, monkeypatch) == training
    assert metrics_from_eval_command(checkpoint) == training
    per_class = metrics_as_training_measures(
        checkpoint, coco8_config(tmp_path / "runs", class_agnostic=False)
    )
    assert metrics_from_eval_command(checkpoint, "--per-class-nms") == per_class != training


def checkpoint_with_config(config: dict) -> Checkpoint:
    from yolox_sdk.models.variants import make_spec

    return Checkpoint({}, make_spec("yolox-nano", 1, input_size=(160, 160)), ("a",), config=config)


@pytest.mark.parametrize(
    "saved, overrides, expected",
    [
        ({}, {}, EvaluationConfig(batch_size=8)),
        (
            {"evaluation": {"conf_threshold": 0.2, "class_agnostic_nms": True, "batch_size": 4}},
            {"conf_threshold": None, "nms_threshold": 0.5},
            EvaluationConfig(conf_threshold=0.2, nms_threshold=0.5, class_agnostic_nms=True, batch_size=4),
        ),
        (
            {"evaluation": {"class_agnostic_nms": True, "a_key_of_another_version": 1}},
            {"class_agnostic_nms": False},
            EvaluationConfig(batch_size=8),
        ),
        ({"evaluation": "not a mapping"}, {}, EvaluationConfig(batch_size=8)),
    ],
)
def test_eval_settings_come_from_the_checkpoint_and_flags_override_them(
    saved: dict, overrides: dict, expected: EvaluationConfig
) -> None:
    assert checkpoint_evaluation_settings(checkpoint_with_config(saved), **overrides) == expected


def test_unusable_saved_settings_fall_back_to_the_defaults_with_a_warning(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="yolox_sdk"):
        settings = checkpoint_evaluation_settings(
            checkpoint_with_config({"evaluation": {"nms_threshold": 7}})
        )
    assert settings == EvaluationConfig(batch_size=8)
    assert "evaluation.nms_threshold" in caplog.text and "default evaluation settings" in caplog.text
