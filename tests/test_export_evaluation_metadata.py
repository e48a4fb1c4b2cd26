"""Exported files carry the checkpoint's evaluation thresholds, so ``eval`` of an export measures it as
``eval`` of the checkpoint does; a file whose entry is malformed falls back on the defaults with a warning.

The COCO yolox-nano at 256 px on coco8's val images, with thresholds far from the defaults (confidence 0.3
against 0.01) so that measuring with the wrong ones changes the result.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from conftest import ASSETS

from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
from yolox_sdk.cli.main import cli
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.export.runner import export_checkpoint
from yolox_sdk.models import create_model
from yolox_sdk.runtimes import load_model

TRAINED_WITH = {"conf_threshold": 0.3, "nms_threshold": 0.45, "class_agnostic_nms": True}
COCO8_EVAL = ["--data", "coco8", "--split", "val", "--format", "yolo", "--device", "cpu"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("evaluation_metadata")
    names = load_dataset("coco8", split="val", format="yolo").class_names
    model, spec, _ = create_model("yolox-nano", 80, pretrained=True, input_size=(256, 256))
    config = {"evaluation": {**TRAINED_WITH, "eval_interval": 5}}
    checkpoint = save_checkpoint(folder / "nano.pt", Checkpoint(model.state_dict(), spec, names, config=config))
    samples = sorted((ASSETS / "datasets" / "coco8" / "images" / "val").glob("*.jpg"))[:1]
    exported = export_checkpoint(checkpoint, ["onnx"], {}, folder / "export", samples)[0].path
    graph = onnx.load(str(exported))
    for prop in graph.metadata_props:
        if prop.key == "evaluation":
            prop.value = json.dumps({"conf_threshold": 7, "nms_threshold": "high"})
    malformed = folder / "malformed.onnx"
    onnx.save(graph, str(malformed))
    return {"pt": checkpoint, "onnx": exported, "malformed": malformed}


def evaluated(model: Path, out: Path, *flags: str) -> dict:
    result = CliRunner().invoke(cli, ["eval", str(model), *COCO8_EVAL, "--out", str(out), *flags])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_the_export_carries_the_checkpoints_thresholds(files: dict[str, Path]) -> None:
    metadata = {prop.key: prop.value for prop in onnx.load(str(files["onnx"])).metadata_props}
    assert json.loads(metadata["evaluation"]) == TRAINED_WITH
    assert load_model(files["onnx"]).evaluation == TRAINED_WITH


def test_eval_of_the_export_uses_them_and_flags_still_win(files: dict[str, Path], tmp_path: Path) -> None:
    checkpoint = evaluated(files["pt"], tmp_path / "pt.json")
    export = evaluated(files["onnx"], tmp_path / "onnx.json")
    for key in ("conf_threshold", "nms_threshold"):
        assert export["settings"][key] == checkpoint["settings"][key] == TRAINED_WITH[key]
    assert export["settings"]["class_agnostic"] is True
    assert export["metrics"]["mAP"] == pytest.approx(checkpoint["metrics"]["mAP"], abs=1e-3)
    assert export["settings"]["num_detections"] == checkpoint["settings"]["num_detections"]

    defaults = evaluated(files["onnx"], tmp_path / "low.json", "--conf", "0.01", "--nms", "0.65")
    assert defaults["settings"]["conf_threshold"] == 0.01
    assert defaults["settings"]["num_detections"] > export["settings"]["num_detections"]  # the test can fail


def test_a_malformed_entry_falls_back_on_the_defaults_with_a_warning(
    files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert load_model(files["malformed"]).evaluation is None
    assert str(files["malformed"]) in caplog.text and "default thresholds" in caplog.text
    report = evaluated(files["malformed"], tmp_path / "bad.json")
    assert report["settings"]["conf_threshold"] == 0.01 and report["settings"]["nms_threshold"] == 0.65
