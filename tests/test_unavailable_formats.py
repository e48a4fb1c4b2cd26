"""Formats yolox-sdk does not ship (TensorRT) or ships in a plugin that is not installed: asked for by name or
given as a file, each gets the reason and the route that works, never a did-you-mean guess or a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ASSETS

from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
from yolox_sdk.cli.main import cli
from yolox_sdk.errors import ConfigError, PluginError
from yolox_sdk.models import create_model
from yolox_sdk.plugins import reset_plugins
from yolox_sdk.plugins.manager import PLUGINS_ENV
from yolox_sdk.runtimes import load_model

BUILTINS_ONLY = "onnx,onnx_int8,pytorch_runtime,onnxruntime_runtime,yolo,voc,coco"
SAMPLE = sorted((ASSETS / "datasets" / "coco8" / "images" / "val").glob("*.jpg"))[0]


@pytest.fixture
def builtins_only(monkeypatch: pytest.MonkeyPatch):
    """The process-wide registry with the built-in plugins only, whatever else this machine has installed."""
    monkeypatch.setenv(PLUGINS_ENV, BUILTINS_ONLY)
    reset_plugins()
    yield
    monkeypatch.delenv(PLUGINS_ENV)
    reset_plugins()


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    model, spec, _ = create_model("yolox-nano", 2, pretrained=False, input_size=(64, 64))
    return save_checkpoint(tmp_path / "best.pt", Checkpoint(model.state_dict(), spec, ("a", "b"), config={}))


def test_export_to_tensorrt_says_why_not_and_gives_the_trtexec_route(
    builtins_only: None, checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    result = CliRunner().invoke(
        cli, ["export", str(checkpoint), "--format", "tensorrt", "--sample", str(SAMPLE), "--out", str(out)]
    )

    assert result.exit_code != 0 and "Traceback" not in result.output
    words = " ".join(result.output.split())
    assert "No exporter 'tensorrt'" in words and "NVIDIA's own index" in words
    assert "trtexec --onnx=export/best.onnx --saveEngine=best.engine" in words
    assert "Did you mean" not in words
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("suffix", [".engine", ".plan"])
def test_a_tensorrt_engine_given_to_predict_or_eval_gets_the_same_reason(
    builtins_only: None, tmp_path: Path, suffix: str
) -> None:
    engine = tmp_path / f"best{suffix}"
    engine.write_bytes(b"serialized engine")
    with pytest.raises(ConfigError, match="TensorRT is not built into yolox-sdk"):
        load_model(engine)
    for command in (
        ["predict", str(engine), str(SAMPLE), "--out", str(tmp_path / "p")],
        ["eval", str(engine), "--data", "coco8", "--split", "val", "--format", "yolo"],
    ):
        result = CliRunner().invoke(cli, command)
        words = " ".join(result.output.split())
        assert result.exit_code == 2 and str(engine) in words and "trtexec" in words, result.output


@pytest.mark.parametrize(
    ("name", "distribution"),
    [("model.tflite", "yolox-sdk-tflite"), ("model.xml", "yolox-sdk-openvino")],
)
def test_a_file_of_a_plugin_not_installed_names_the_plugin_to_install(
    builtins_only: None, tmp_path: Path, name: str, distribution: str
) -> None:
    model = tmp_path / name
    model.write_bytes(b"not read: no runtime accepts it")
    with pytest.raises(ConfigError, match=rf"`pip install \./plugins/{distribution}`"):
        load_model(model)


def test_the_tensorrt_runtime_is_refused_by_name_too(builtins_only: None) -> None:
    from yolox_sdk.plugins import get_registry

    with pytest.raises(PluginError, match="No runtime 'tensorrt'.*trtexec"):
        get_registry().get("runtime", "tensorrt")
