"""The ONNX exporter plugin and the checkpoint export runner, checked with onnxruntime on BCCD images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from yolox_sdk.builtin.exporters.onnx import OnnxExporter, OnnxOptions
from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
from yolox_sdk.data.preprocess import images_to_batch, read_image
from yolox_sdk.errors import ConfigError, ExportError, PluginError
from yolox_sdk.export.runner import export_checkpoint
from yolox_sdk.models import create_model
from yolox_sdk.plugins import get_registry
from yolox_sdk.plugins.building import build_plugin

CLASSES = ["RBC", "WBC", "Platelets"]
ANCHORS_416 = 52 * 52 + 26 * 26 + 13 * 13


@pytest.fixture(scope="module")
def bccd_model(nano_weights: Path) -> torch.nn.Module:
    """yolox-nano with COCO weights and a fresh 3-class head, as at the start of a BCCD finetune."""
    model, _, _ = create_model("yolox-nano", len(CLASSES), pretrained=str(nano_weights))
    return model


@pytest.fixture(scope="module")
def samples(bccd_dir: Path) -> list[Path]:
    return sorted((bccd_dir / "JPEGImages").glob("*.jpg"))[:3]


def metadata() -> dict:
    return {"class_names": CLASSES, "input_size": [416, 416], "model_name": "yolox-nano"}


def letterboxed(samples: list[Path]) -> torch.Tensor:
    batch, _ = images_to_batch([read_image(path) for path in samples], (416, 416))
    return batch


def torch_output(model: torch.nn.Module, images: torch.Tensor, decode: bool) -> np.ndarray:
    model.eval()
    model.head.decode_in_inference = decode
    try:
        with torch.inference_mode():
            return model(images).numpy()
    finally:
        model.head.decode_in_inference = True
        model.train()


def test_export_matches_pytorch_on_real_images(
    bccd_model: torch.nn.Module, samples: list[Path], tmp_path: Path
) -> None:
    bccd_model.train()
    result = OnnxExporter(OnnxOptions()).export(bccd_model, metadata(), tmp_path, samples)
    assert result.path == tmp_path / "model.onnx" and result.format == "onnx"
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    assert bccd_model.training and bccd_model.head.decode_in_inference  # the caller's model is untouched

    graph = onnx.load(str(result.path))
    props = {prop.key: prop.value for prop in graph.metadata_props}
    assert json.loads(props["class_names"]) == CLASSES
    assert json.loads(props["input_size"]) == [416, 416]
    assert props["model_name"] == "yolox-nano" and props["decoded"] == "true"

    # checked again here, independently of the exporter's own comparison
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["output"]
    images = letterboxed(samples)[1:2]
    actual = session.run(["output"], {"images": images.numpy()})[0]
    expected = torch_output(bccd_model, images, decode=True)
    assert actual.shape == (1, ANCHORS_416, 5 + len(CLASSES))
    np.testing.assert_allclose(actual[..., :4], expected[..., :4], atol=0.02)  # pixels
    np.testing.assert_allclose(actual[..., 4:], expected[..., 4:], atol=1e-4)  # probabilities


def test_dynamic_batch(bccd_model: torch.nn.Module, samples: list[Path], tmp_path: Path) -> None:
    result = OnnxExporter(OnnxOptions(dynamic_batch=True)).export(bccd_model, metadata(), tmp_path, samples)
    assert result.max_abs_diff <= 1e-4
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str)  # symbolic batch dimension
    images = letterboxed(samples)
    actual = session.run(["output"], {"images": images.numpy()})[0]
    assert actual.shape == (3, ANCHORS_416, 5 + len(CLASSES))
    np.testing.assert_allclose(actual[..., 4:], torch_output(bccd_model, images, True)[..., 4:], atol=1e-4)


def test_raw_head_output(bccd_model: torch.nn.Module, samples: list[Path], tmp_path: Path) -> None:
    result = OnnxExporter(OnnxOptions(decode_in_graph=False)).export(
        bccd_model, metadata(), tmp_path, samples[:1]
    )
    assert result.max_abs_diff <= 1e-4
    props = {prop.key: prop.value for prop in onnx.load(str(result.path)).metadata_props}
    assert props["decoded"] == "false"
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    images = letterboxed(samples[:1])
    actual = session.run(["output"], {"images": images.numpy()})[0]
    expected = torch_output(bccd_model, images, decode=False)
    np.testing.assert_allclose(actual, expected, atol=1e-4)
    assert np.abs(expected[..., :4]).max() < 50  # offsets and log sizes, not pixels


def test_zero_tolerance_fails_loudly(
    bccd_model: torch.nn.Module, samples: list[Path], tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        OnnxExporter(OnnxOptions(tolerance=0.0)).export(bccd_model, metadata(), tmp_path, samples[:1])
    assert not (tmp_path / "model.onnx").exists()
    assert (tmp_path / "model.failed.onnx").is_file()


def test_a_graph_that_differs_from_eager_pytorch_is_refused(
    bccd_model: torch.nn.Module, samples: list[Path], tmp_path: Path
) -> None:
    # A hook that changes the eager output but is skipped while tracing: the exported graph is then
    # "wrong" by 0.01, which is what a bad operator conversion looks like from outside.
    handle = bccd_model.register_forward_hook(
        lambda module, inputs, output: output if torch.jit.is_tracing() else output + 0.01
    )
    try:
        with pytest.raises(ExportError, match=r"max abs difference 0\.01"):
            OnnxExporter(OnnxOptions()).export(bccd_model, metadata(), tmp_path, samples[:1])
    finally:
        handle.remove()


def test_simplify(bccd_model: torch.nn.Module, samples: list[Path], tmp_path: Path) -> None:
    plain = OnnxExporter(OnnxOptions()).export(bccd_model, metadata(), tmp_path / "plain", samples[:1])
    simple = OnnxExporter(OnnxOptions(simplify=True)).export(
        bccd_model, metadata(), tmp_path / "simple", samples[:1]
    )
    assert simple.max_abs_diff <= 1e-4
    assert len(onnx.load(str(simple.path)).graph.node) < len(onnx.load(str(plain.path)).graph.node)
    props = {prop.key for prop in onnx.load(str(simple.path)).metadata_props}
    assert {"class_names", "input_size"} <= props


def test_options_are_validated_through_the_registry() -> None:
    registry = get_registry()
    exporter = build_plugin(
        registry, "exporter", "onnx", {"opset": 13, "dynamic_batch": True}, "export.options.onnx"
    )
    assert exporter.options == OnnxOptions(opset=13, dynamic_batch=True)
    with pytest.raises(ConfigError, match="export.options.onnx.opset"):
        build_plugin(registry, "exporter", "onnx", {"opset": 7}, "export.options.onnx")
    with pytest.raises(ConfigError, match="Did you mean 'dynamic_batch'"):
        build_plugin(registry, "exporter", "onnx", {"dynamic_btch": True}, "export.options.onnx")


def test_checkpoint_round_trip(bccd_model: torch.nn.Module, samples: list[Path], tmp_path: Path) -> None:
    model, spec, _ = create_model("yolox-nano", len(CLASSES))
    model.load_state_dict(bccd_model.state_dict())
    path = save_checkpoint(
        tmp_path / "best.pt", Checkpoint(model=model.state_dict(), spec=spec, class_names=tuple(CLASSES))
    )
    results = export_checkpoint(
        path, ["onnx"], {"onnx": {"dynamic_batch": True}}, tmp_path / "export", samples
    )
    (result,) = results
    assert result.path == tmp_path / "export" / "best.onnx"
    assert result.max_abs_diff <= 1e-4
    props = {prop.key: prop.value for prop in onnx.load(str(result.path)).metadata_props}
    assert json.loads(props["class_names"]) == CLASSES
    assert json.loads(props["input_size"]) == [416, 416]
    assert props["model_name"] == "yolox-nano" and json.loads(props["num_classes"]) == 3
    assert props["sdk_version"] and "file_stem" not in props
    # the exported file computes what the checkpoint's model computes
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    images = letterboxed(samples[:2])
    np.testing.assert_allclose(
        session.run(["output"], {"images": images.numpy()})[0][..., 4:],
        torch_output(bccd_model, images, True)[..., 4:],
        atol=1e-4,
    )


def test_runner_errors_name_the_config_path(samples: list[Path], tmp_path: Path) -> None:
    model, spec, _ = create_model("yolox-nano", 2)
    path = save_checkpoint(
        tmp_path / "last.pt", Checkpoint(model=model.state_dict(), spec=spec, class_names=("a", "b"))
    )
    with pytest.raises(PluginError, match="Did you mean 'onnx'"):
        export_checkpoint(path, ["onxx"], {}, tmp_path / "out", samples)
    with pytest.raises(ConfigError, match="export.options.tflite"):
        export_checkpoint(path, ["onnx"], {"tflite": {}}, tmp_path / "out", samples)
    with pytest.raises(ConfigError, match="export.options.onnx.tolerance"):
        export_checkpoint(path, ["onnx"], {"onnx": {"tolerance": -1}}, tmp_path / "out", samples)
    assert not (tmp_path / "out").exists()  # options are checked before anything is loaded or written
