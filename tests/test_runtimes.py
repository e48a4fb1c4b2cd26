"""Exported models run through the same predict and eval paths as checkpoints (runtime plugins).

The COCO-pretrained yolox-nano on real coco8 and BCCD images: the ``.pt`` checkpoint's results, computed
by the PyTorch path that training uses, are the expected values for its ``.onnx`` exports.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from click.testing import CliRunner
from conftest import ASSETS

from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
from yolox_sdk.cli.main import cli
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.data.preprocess import images_to_batch, read_image
from yolox_sdk.errors import CheckpointError, ConfigError, WeightsError
from yolox_sdk.evaluation.predict import Predictor
from yolox_sdk.export.runner import export_checkpoint
from yolox_sdk.models import create_model
from yolox_sdk.runtimes import load_model

INPUT_SIZE = (256, 256)
RECOMMENDED_CONF = 0.37
COCO8_EVAL = ["--data", "coco8", "--split", "val", "--format", "yolo", "--device", "cpu"]
BCCD_IMAGES = sorted((ASSETS / "datasets" / "bccd" / "BCCD" / "JPEGImages").glob("*.jpg"))[:3]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A coco8 checkpoint of the COCO nano and its exports: fp32 (dynamic batch), fp16, onnxslim-simplified,
    and raw head output (decoded by the runtime, fixed batch 1)."""
    folder = tmp_path_factory.mktemp("runtimes")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
        patch.setenv("YOLOX_SDK_HOME", str(folder / "home"))
        names = load_dataset("coco8", split="val", format="yolo").class_names
        model, spec, _ = create_model("yolox-nano", 80, pretrained=True, input_size=INPUT_SIZE)
        checkpoint = save_checkpoint(
            folder / "nano.pt",
            Checkpoint(model.state_dict(), spec, names, config={}, recommended_conf=RECOMMENDED_CONF),
        )
        samples = sorted((ASSETS / "datasets" / "coco8" / "images" / "val").glob("*.jpg"))[:2]
        variants = {
            "fp32": {"dynamic_batch": True},
            "fp16": {"dynamic_batch": True, "fp16": True},
            "slim": {"dynamic_batch": True, "simplify": True},
            "raw": {"decode_in_graph": False},
        }
        files = {"pt": checkpoint}
        for name, options in variants.items():
            files[name] = export_checkpoint(checkpoint, ["onnx"], {"onnx": options}, folder / name, samples)[
                0
            ].path
    return files


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def eval_metrics(model: Path, out: Path) -> dict[str, float]:
    code, output = invoke("eval", str(model), *COCO8_EVAL, "--out", str(out))
    assert code == 0, output
    return json.loads(out.read_text())["metrics"]


def test_eval_of_the_onnx_files_equals_eval_of_the_checkpoint(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    expected = eval_metrics(exported["pt"], tmp_path / "pt.json")
    assert expected["mAP"] > 0.2  # the COCO nano finds coco8's objects: the comparison is not of zeros
    for name in ("fp32", "raw", "slim"):
        measured = eval_metrics(exported[name], tmp_path / f"{name}.json")
        for key in ("mAP", "mAP50", "mAP75", "AR100"):
            assert measured[key] == pytest.approx(expected[key], abs=1e-3), (name, key)
    half = eval_metrics(exported["fp16"], tmp_path / "fp16.json")
    assert half["mAP"] == pytest.approx(expected["mAP"], abs=0.01)
    assert half["mAP50"] == pytest.approx(expected["mAP50"], abs=0.01)


def detections(model: Path, source: Path, out: Path, *options: str) -> list[dict]:
    code, output = invoke("predict", str(model), str(source), "--out", str(out), "--device", "cpu", *options)
    assert code == 0, output
    return json.loads((out / "detections.json").read_text())["images"]


def assert_same_detections(expected: list[dict], measured: list[dict], pixels: float) -> None:
    assert [image["file"] for image in measured] == [image["file"] for image in expected]
    for want, got in zip(expected, measured, strict=True):
        assert [box["class_name"] for box in got["detections"]] == [
            box["class_name"] for box in want["detections"]
        ]
        for want_box, got_box in zip(want["detections"], got["detections"], strict=True):
            assert np.abs(np.subtract(got_box["box"], want_box["box"])).max() <= pixels


def test_predict_on_the_onnx_writes_the_checkpoints_detections(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "bccd"
    source.mkdir()
    for image in BCCD_IMAGES:
        (source / image.name).write_bytes(image.read_bytes())
    expected = detections(exported["pt"], source, tmp_path / "pt", "--conf", "0.1")
    assert sum(len(image["detections"]) for image in expected) >= 3
    for name in ("fp32", "raw"):
        assert_same_detections(
            expected, detections(exported[name], source, tmp_path / name, "--conf", "0.1"), 1.0
        )


def test_the_onnx_file_carries_classes_input_size_and_threshold(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    from_checkpoint = Predictor.from_checkpoint(exported["pt"])
    from_onnx = Predictor.from_file(exported["fp32"])
    assert from_onnx.class_names == from_checkpoint.class_names and len(from_onnx.class_names) == 80
    assert from_onnx.input_size == INPUT_SIZE
    assert from_onnx.recommended_conf == pytest.approx(RECOMMENDED_CONF)
    image = next((ASSETS / "datasets" / "coco8" / "images" / "val").glob("*.jpg"))
    code, output = invoke(
        "predict", str(exported["fp32"]), str(image), "--out", str(tmp_path / "p"), "--conf", "auto"
    )
    assert code == 0 and f"Confidence threshold {RECOMMENDED_CONF:.3f}" in output
    written = json.loads((tmp_path / "p" / "detections.json").read_text())
    assert written["settings"]["conf"] == pytest.approx(RECOMMENDED_CONF)
    scores = [box["score"] for entry in written["images"] for box in entry["detections"]]
    assert scores and min(scores) >= RECOMMENDED_CONF


def real_batch(count: int) -> np.ndarray:
    paths = sorted((ASSETS / "datasets" / "coco8" / "images" / "val").glob("*.jpg"))[:count]
    batch, _ = images_to_batch([read_image(path) for path in paths], INPUT_SIZE)
    return batch.numpy()


def test_raw_output_is_decoded_like_the_graph_decodes_it(exported: dict[str, Path]) -> None:
    batch = real_batch(3)
    decoded_in_graph = load_model(exported["fp32"]).forward(batch)
    raw = load_model(exported["raw"])
    assert raw.fixed_batch == 1 and raw.decoded is False  # the file itself is batch 1, run in pieces
    decoded_here = raw.forward(batch)
    assert decoded_here.shape == decoded_in_graph.shape == (3, 1344, 85)
    assert np.abs(decoded_here[..., :4] - decoded_in_graph[..., :4]).max() < 0.05  # pixels
    assert np.abs(decoded_here[..., 4:] - decoded_in_graph[..., 4:]).max() < 1e-4


def test_pytorch_runtime_gives_the_networks_own_output(exported: dict[str, Path]) -> None:
    batch = real_batch(2)
    loaded = load_model(exported["pt"])
    network = loaded.module
    network.head.decode_in_inference = True
    with torch.inference_mode():
        expected = network.eval()(torch.from_numpy(batch)).numpy()
    assert np.array_equal(loaded.forward(batch), expected)


def test_fp16_file_is_half_the_size_and_close(exported: dict[str, Path]) -> None:
    graph = onnx.load(str(exported["fp16"]))
    initializers = {onnx.TensorProto.DataType.Name(tensor.data_type) for tensor in graph.graph.initializer}
    assert "FLOAT16" in initializers
    assert exported["fp16"].stat().st_size < 0.6 * exported["fp32"].stat().st_size
    batch = real_batch(2)
    full, half = load_model(exported["fp32"]).forward(batch), load_model(exported["fp16"]).forward(batch)
    scores_full = full[..., 4] * full[..., 5:].max(-1)
    scores_half = half[..., 4] * half[..., 5:].max(-1)
    assert np.abs(scores_full - scores_half).max() < 0.05
    confident = scores_full > 0.3
    assert confident.sum() >= 5
    assert np.abs(full[confident][:, :4] - half[confident][:, :4]).max() < 2.0  # pixels at 256 px


def test_onnxslim_graph_is_smaller_and_gives_the_same_outputs(exported: dict[str, Path]) -> None:
    plain, slim = onnx.load(str(exported["fp32"])), onnx.load(str(exported["slim"]))
    assert len(slim.graph.node) < len(plain.graph.node)
    batch = real_batch(2)
    sessions = [
        onnxruntime.InferenceSession(str(exported[name]), providers=["CPUExecutionProvider"])
        for name in ("fp32", "slim")
    ]
    outputs = [session.run(None, {"images": batch})[0] for session in sessions]
    assert np.abs(outputs[0][..., 4:] - outputs[1][..., 4:]).max() < 1e-4
    assert np.abs(outputs[0][..., :4] - outputs[1][..., :4]).max() < 1e-2
    metadata = {prop.key: prop.value for prop in slim.metadata_props}
    assert json.loads(metadata["input_size"]) == list(INPUT_SIZE)  # onnxslim kept our metadata


def test_bad_model_files_are_refused_naming_the_file(exported: dict[str, Path], tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported["fp32"].read_bytes()[:50_000])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    foreign = tmp_path / "foreign.onnx"
    graph = onnx.load(str(exported["fp32"]))
    del graph.metadata_props[:]
    onnx.save(graph, str(foreign))
    unknown = tmp_path / "model.bin"
    unknown.write_bytes(b"weights")
    cases = [
        (truncated, CheckpointError, 1, "not a readable ONNX model"),
        (garbage, CheckpointError, 1, "not a readable ONNX model"),
        (foreign, WeightsError, 1, "without yolox-sdk's metadata"),
        (unknown, ConfigError, 2, "No installed runtime reads"),
    ]
    for path, error_type, exit_code, words in cases:
        with pytest.raises(error_type, match=words):
            load_model(path)
        for command in (
            ["eval", str(path), *COCO8_EVAL],
            ["predict", str(path), str(BCCD_IMAGES[0]), "--out", str(tmp_path / "o")],
        ):
            code, output = invoke(*command)
            assert code == exit_code, (path, output)
            assert str(path) in output and words in output and "Traceback" not in output
