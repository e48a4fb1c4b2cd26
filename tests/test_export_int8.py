"""The ``onnx-int8`` exporter on real data: the COCO nano at 192 px, calibrated on coco8's train images and
judged on its val images; expected APs come from ``yolox-sdk eval`` of the checkpoint and of the file."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from conftest import ASSETS

from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
from yolox_sdk.cli.main import cli
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.errors import ExportError
from yolox_sdk.export.runner import export_checkpoint
from yolox_sdk.models import create_model

INPUT_SIZE = (192, 192)
COCO8_DATA = {"train_path": "coco8", "train_split": "train", "val_path": "coco8", "val_split": "val"}
COCO8_EVAL = ["--data", "coco8", "--split", "val", "--format", "yolo", "--device", "cpu"]
SAMPLES = sorted((ASSETS / "datasets" / "coco8" / "images" / "val").glob("*.jpg"))[:1]


def make_checkpoint(path: Path, data: dict[str, str]) -> Path:
    names = load_dataset("coco8", split="val", format="yolo").class_names
    model, spec, _ = create_model("yolox-nano", 80, pretrained=True, input_size=INPUT_SIZE)
    config = {"data": {**data, "format": "yolo"}} if data else {}
    return save_checkpoint(path, Checkpoint(model.state_dict(), spec, names, config=config))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("int8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
        return make_checkpoint(folder / "nano.pt", COCO8_DATA)


def export_int8(checkpoint: Path, out: Path, **options: object) -> Path:
    result = export_checkpoint(checkpoint, ["onnx-int8"], {"onnx-int8": dict(options)}, out, SAMPLES)[0]
    assert result.format == "onnx-int8" and result.path.is_file()
    assert result.path.name == f"{checkpoint.stem}.int8.onnx"  # beside, never over, an fp32 export
    assert any("speed-up" in note for note in result.notes)
    return result.path


def quantization_metadata(path: Path) -> dict:
    props = {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}
    assert props["precision"] == "int8" and props["decoded"] == "false"
    return json.loads(props["quantization"])


def eval_ap(model: Path, out: Path) -> float:
    """AP50:95 in points measured by ``yolox-sdk eval`` (exit 0 required)."""
    result = CliRunner().invoke(cli, ["eval", str(model), *COCO8_EVAL, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return 100 * json.loads(out.read_text())["metrics"]["mAP"]


def quantized_ops(path: Path) -> int:
    return sum(node.op_type == "QuantizeLinear" for node in onnx.load(str(path)).graph.node)


@pytest.mark.slow
def test_a_loose_budget_quantizes_everything_and_the_file_evaluates(checkpoint: Path, tmp_path: Path) -> None:
    path = export_int8(checkpoint, tmp_path / "loose", max_ap_drop=100, calibration_images=4)
    report = quantization_metadata(path)
    assert report["float_blocks"] == [] and report["float_nodes"] == []
    assert report["trials"] == 1 and report["calibration_images"] == 4
    assert quantized_ops(path) > 50  # every convolution's input is quantized
    fp32 = eval_ap(checkpoint, tmp_path / "pt.json")
    assert fp32 > 10  # the COCO nano finds coco8's objects: the drop is not measured on zeros
    assert report["fp32_ap"] == pytest.approx(fp32, abs=0.1)  # ORT float graph == PyTorch checkpoint
    assert report["int8_ap"] == pytest.approx(eval_ap(path, tmp_path / "int8.json"), abs=1e-3)
    assert report["ap_drop"] == pytest.approx(report["fp32_ap"] - report["int8_ap"], abs=1e-3)
    assert report["fp32_latency_ms"] > 0 and report["int8_latency_ms"] > 0


@pytest.mark.slow
def test_a_tight_budget_keeps_the_most_sensitive_blocks_float(checkpoint: Path, tmp_path: Path) -> None:
    path = export_int8(checkpoint, tmp_path / "tight", max_ap_drop=1.0, calibration_images=4)
    report = quantization_metadata(path)
    assert report["fp32_ap"] - report["all_int8_ap"] > 1.0  # naive INT8 is out of budget here
    assert report["float_blocks"], report
    assert report["ap_drop"] <= 1.0 + 1e-6
    assert report["int8_ap"] == pytest.approx(eval_ap(path, tmp_path / "int8.json"), abs=1e-3)
    first = max(report["sensitivity"], key=report["sensitivity"].get)
    assert report["float_blocks"][0] == first  # the block measured most sensitive is restored first
    graph = onnx.load(str(path)).graph
    float_convs = [
        node for node in graph.node if node.name in set(report["float_nodes"]) and node.op_type == "Conv"
    ]
    assert (
        float_convs
    )  # those convolutions stayed float (a quantized one becomes a Conv fed by DequantizeLinear)
    assert quantized_ops(path) > 0  # and the rest is still INT8


@pytest.mark.slow
def test_an_impossible_budget_fails_naming_the_best_trade_off(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"Best trade-off found: AP50:95 [0-9.]+ \(drop [0-9.]+\) with"):
        export_int8(
            checkpoint, tmp_path / "none", max_ap_drop=0, max_float_fraction=0.03, calibration_images=4
        )
    assert not list((tmp_path / "none").glob("*.onnx"))  # no nano.int8.onnx, no float.onnx


def test_unreadable_calibration_images_are_a_clear_error(checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "calibration"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ExportError, match=r"no calibration images: 1 found in .*calibration, 1 unreadable"):
        export_int8(checkpoint, tmp_path / "out", calibration_folder=str(folder))


def test_a_checkpoint_without_data_asks_for_a_calibration_folder(tmp_path: Path) -> None:
    bare = make_checkpoint(tmp_path / "bare.pt", {})
    result = CliRunner().invoke(
        cli, ["export", str(bare), "--format", "onnx-int8", "--sample", str(SAMPLES[0])]
    )
    assert result.exit_code != 0
    assert "onnx-int8.calibration_folder=FOLDER" in result.output and "Traceback" not in result.output


def test_a_checkpoint_without_val_data_asks_for_a_val_dataset(tmp_path: Path) -> None:
    train_only = make_checkpoint(tmp_path / "train.pt", {"train_path": "coco8", "train_split": "train"})
    with pytest.raises(ExportError, match=r"onnx-int8.val_path=DATASET"):
        export_int8(train_only, tmp_path / "out")


@pytest.mark.slow
def test_a_calibration_folder_skips_and_counts_unreadable_images(checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "calibration"
    folder.mkdir()
    bccd = sorted((ASSETS / "datasets" / "bccd" / "BCCD" / "JPEGImages").glob("*.jpg"))[:2]
    for image in bccd:  # 640 x 480 microscope images: another size and domain than coco8's, letterboxed
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    path = export_int8(checkpoint, tmp_path / "out", max_ap_drop=100, calibration_folder=str(folder))
    report = quantization_metadata(path)
    assert report["calibration_images"] == 2 and report["calibration_skipped"] == 1


def test_export_options_of_the_hyphenated_exporter_are_parsed_and_checked(checkpoint: Path) -> None:
    args = ["export", str(checkpoint), "--format", "onnx-int8", "--option", "onnx-int8.max_ap_drop=-3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "export.options.onnx-int8.max_ap_drop" in result.output and "-3" in result.output
