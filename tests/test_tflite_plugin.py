"""The first-party TFLite plugin in ``plugins/yolox-sdk-tflite``: the ``tflite``/``tflite-int8`` exporters and
the ``tflite`` runtime.

Registration, options, the install hints and the refusal of files that are not ours are tested without the
heavy packages. The real test needs litert-torch (the converter, ~1 GB with jax, transformers and their
pins) and ai-edge-litert, which the project venv does not carry: when they are not importable, a session
fixture makes a throw-away venv whose ``.pth`` adds the project venv's site-packages (so pip sees torch,
numpy and the SDK as installed and adds only what is missing, ~45 s from the local mirror) and installs the
plugin there as ``pip install ./plugins/yolox-sdk-tflite`` would. The CLI then runs in that venv's python:
export of the COCO yolox-nano to fp32, fp16 and INT8, ``eval`` on coco8 and ``predict`` on BCCD images of
the ``.tflite`` and of the ``.pt`` (the checkpoint's results, from the PyTorch path, are the expected
values), and damaged or foreign files refused. It fails rather than skips when the install fails: CI must
run it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ASSETS

from yolox_sdk.config.plugin_options import resolve_options
from yolox_sdk.errors import ConfigError, PluginError
from yolox_sdk.plugins import build_plugin_manager, reset_plugins
from yolox_sdk.plugins.manager import PLUGINS_ENV
from yolox_sdk.plugins.registry import Registry

REPO_ROOT = Path(__file__).resolve().parents[1]
TFLITE_PLUGIN = REPO_ROOT / "plugins" / "yolox-sdk-tflite"
INPUT_SIZE = (256, 256)
RECOMMENDED_CONF = 0.37
BUILTINS_ONLY = "onnx,onnx_int8,pytorch_runtime,onnxruntime_runtime,yolo,voc,coco"
HEAVY = ("litert-torch>=0.10", "ai-edge-litert>=2.3")


@pytest.fixture
def tflite_plugin(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The plugin package, imported from its source folder."""
    monkeypatch.syspath_prepend(str(TFLITE_PLUGIN))
    import yolox_sdk_tflite

    return yolox_sdk_tflite


@pytest.fixture
def registry(tflite_plugin: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A registry holding only the tflite plugin, registered as an application would."""
    monkeypatch.setenv(PLUGINS_ENV, "")
    return build_plugin_manager(extra_plugins=[("tflite", tflite_plugin)])[1]


def test_registers_the_exporters_and_the_runtime_with_their_options(
    registry: Registry, tflite_plugin: ModuleType
) -> None:
    exporter, int8, runtime = (
        registry.get("exporter", "tflite"),
        registry.get("exporter", "tflite-int8"),
        registry.get("runtime", "tflite"),
    )
    raw = {"precision": "fp16", "decode_in_graph": False, "tolerance": 1e-3, "fp16_tolerance": 0.2}

    options = resolve_options(registry, "exporter", "tflite", raw, "export.options.tflite")
    int8_options = resolve_options(
        registry,
        "exporter",
        "tflite-int8",
        {"max_ap_drop": 2.0, "calibration_images": 8, "eval_images": 4, "threads": 2},
        "export.options.tflite-int8",
    )
    runtime_options = resolve_options(registry, "runtime", "tflite", {"threads": 2}, "runtime.tflite")

    assert exporter.options is tflite_plugin.TfliteExportOptions and exporter.origin.plugin == "tflite"
    assert int8.options is tflite_plugin.TfliteInt8Options
    assert options == tflite_plugin.TfliteExportOptions("fp16", False, 1e-3, 0.2)
    assert options.check_tolerance == 0.2
    defaults = resolve_options(registry, "exporter", "tflite", {}, "export.options.tflite")
    assert (defaults.precision, defaults.decode_in_graph, defaults.check_tolerance) == ("fp32", True, 5e-4)
    assert (int8_options.max_ap_drop, int8_options.calibration_images, int8_options.eval_images) == (
        2.0,
        8,
        4,
    )
    assert tflite_plugin.TfliteInt8Options().max_ap_drop == 1.0  # the default budget
    assert runtime_options == tflite_plugin.TfliteRuntimeOptions(2)
    assert runtime.factory(None).accepts(Path("best.TFLITE")) and not runtime.factory(None).accepts(
        Path("a.onnx")
    )
    assert getattr(int8.factory(None), "uses_training_config", False)  # it gets the checkpoint's data


@pytest.mark.parametrize(
    ("kind", "name", "raw", "message"),
    [
        (
            "exporter",
            "tflite",
            {"precision": "int8"},
            "export.options.tflite.precision: expected one of fp32, fp16",
        ),
        ("exporter", "tflite", {"precison": "fp16"}, "unknown key 'export.options.tflite.precison'"),
        (
            "exporter",
            "tflite",
            {"decode_in_graph": "yes"},
            "export.options.tflite.decode_in_graph: expected bool",
        ),
        (
            "exporter",
            "tflite",
            {"tolerance": -1},
            "export.options.tflite.tolerance: expected a number >= 0.0",
        ),
        (
            "exporter",
            "tflite-int8",
            {"max_ap_drop": -1},
            "export.options.tflite-int8.max_ap_drop: expected a number",
        ),
        (
            "exporter",
            "tflite-int8",
            {"calibration_images": 0},
            "export.options.tflite-int8.calibration_images",
        ),
        ("runtime", "tflite", {"threads": 0}, "runtime.tflite.threads: expected a number >= 1"),
    ],
)
def test_option_errors_name_the_yaml_path(
    registry: Registry, kind: str, name: str, raw: dict, message: str
) -> None:
    path = f"export.options.{name}" if kind == "exporter" else f"runtime.{name}"
    with pytest.raises(ConfigError) as error:
        resolve_options(registry, kind, name, raw, path)
    assert message in str(error.value)


def test_missing_packages_say_how_to_install_them(
    tflite_plugin: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(
        sys.modules, "ai_edge_litert", None
    )  # `import ai_edge_litert` fails even if installed
    model_file = tmp_path / "best.tflite"
    model_file.write_bytes(b"\x1c\x00\x00\x00TFL3")

    with pytest.raises(
        PluginError, match=r"pip install 'litert-torch>=0\.10'|pip install 'ai-edge-litert>=2\.3'"
    ):
        tflite_plugin.create_exporter().export(object(), {"input_size": [64, 64]}, tmp_path, [])
    with pytest.raises(PluginError, match=r"pip install 'ai-edge-litert>=2\.3'"):
        tflite_plugin.create_runtime().load(model_file, "cpu")
    with pytest.raises(PluginError, match=r"pip install ./plugins/yolox-sdk-tflite"):
        tflite_plugin.create_int8_exporter().export(object(), {"input_size": [64, 64]}, tmp_path, [])


def test_block_names_come_from_the_module_paths_litert_torch_writes(tflite_plugin: ModuleType) -> None:
    from yolox_sdk_tflite.int8 import scope_block

    root = "yolox.models.yolox.YoloxModule/yolox.models.yolo_pafpn.YoloPafpn_backbone"
    darknet = f"{root}/yolox.models.darknet.CspDarknet_backbone"
    head = "yolox.models.yolox.YoloxModule/yolox.models.yolo_head.YoloxHead_head"
    conv = "yolox.models.network_blocks.BaseConv_conv1/torch.nn.modules.conv.Conv2d_conv;"
    assert scope_block(f"{darknet}/torch.nn.modules.container.Sequential_dark2/{conv}") == "dark2"
    assert scope_block(f"{darknet}/yolox.models.network_blocks.Focus_stem/{conv}") == "stem"
    assert scope_block(f"{root}/yolox.models.network_blocks.CspLayer_C3_p4/{conv};;{head}/x_1;") == "C3_p4"
    assert scope_block(f"{head}/torch.nn.modules.container.Sequential_1/{conv}") == "head.1"
    assert scope_block(f"{head};40") == "head.output"


@pytest.fixture
def builtins_only(monkeypatch: pytest.MonkeyPatch):
    """The process-wide registry rebuilt with the built-in plugins only (as if the plugin were not installed)."""
    monkeypatch.setenv(PLUGINS_ENV, BUILTINS_ONLY)
    reset_plugins()
    yield
    monkeypatch.delenv(PLUGINS_ENV)
    reset_plugins()


def test_export_without_the_plugin_says_which_pip_install_brings_it(
    builtins_only: None, tmp_path: Path
) -> None:
    from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
    from yolox_sdk.cli.main import cli
    from yolox_sdk.models import create_model

    model, spec, _ = create_model("yolox-nano", 3, pretrained=False, input_size=(64, 64))
    checkpoint = save_checkpoint(
        tmp_path / "best.pt", Checkpoint(model.state_dict(), spec, ("a", "b", "c"), config={})
    )
    sample = sorted((ASSETS / "datasets" / "coco8" / "images" / "val").glob("*.jpg"))[0]

    for name in ("tflite", "tflite-int8"):
        result = CliRunner().invoke(
            cli, ["export", str(checkpoint), "--format", name, "--sample", str(sample)]
        )
        assert result.exit_code != 0
        assert f"Unknown exporter '{name}'" in result.output
        assert "`pip install ./plugins/yolox-sdk-tflite`" in result.output


# --- the real thing: litert-torch and ai-edge-litert installed, the CLI run on real files -------------------


@pytest.fixture(scope="session")
def tflite_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a venv that sees the project venv's packages plus the plugin (its entry point) and,
    when they are not importable here, litert-torch and ai-edge-litert."""
    venv = tmp_path_factory.mktemp("tflite_venv")
    base = getattr(sys, "_base_executable", sys.executable)
    created = subprocess.run(
        [base, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True, timeout=120
    )
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # addsitedir (not a plain path line) so the project venv's own .pth files, the editable SDK's among
    # them, are processed too; packages installed in this venv come first on sys.path.
    project_site = sysconfig.get_paths()["purelib"]
    (site / "_yolox_sdk_project.pth").write_text(f"import site; site.addsitedir({project_site!r})\n")
    source = tmp_path_factory.mktemp("tflite_plugin_source") / "yolox-sdk-tflite"
    shutil.copytree(
        TFLITE_PLUGIN, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    )
    commands = [["--no-deps", str(source)]]  # built from a copy: no build/ or .egg-info in plugins/
    if importlib.util.find_spec("litert_torch") is None or importlib.util.find_spec("ai_edge_litert") is None:
        commands.append(list(HEAVY))
    for arguments in commands:
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *arguments],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert install.returncode == 0, (
            f"pip could not install {arguments} (needed by this test; CI must not skip it): "
            f"{install.stderr.strip()[-1500:]}"
        )
    return python


_CLI_SCRIPT = r"""
import json, shutil, sys
from pathlib import Path
plugin, checkpoint, bccd_images, out, bccd_root = sys.argv[1:6]
sys.path.insert(0, plugin)  # the plugin's code from the source tree, its entry point from the venv
from click.testing import CliRunner
from yolox_sdk.cli.main import cli
out = Path(out)
coco8_val = ["--data", "coco8", "--split", "val", "--format", "yolo", "--device", "cpu"]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    return {"code": result.exit_code, "output": result.output[-3000:]}


def evaluate(model, name):
    run = invoke("eval", model, *coco8_val, "--out", out / f"{name}.json")
    run["metrics"] = json.loads((out / f"{name}.json").read_text())["metrics"] if run["code"] == 0 else None
    return run


def predict(model, name):
    run = invoke("predict", model, bccd_images, "--out", out / name, "--device", "cpu", "--conf", "0.1")
    path = out / name / "detections.json"
    run["images"] = json.loads(path.read_text())["images"] if path.is_file() else None
    return run


samples = [part for image in sorted((Path(checkpoint).parent / "samples").iterdir()) for part in ("--sample", image)]
stem = Path(checkpoint).stem
found = {"plugins": invoke("plugins")}
found["export_fp32"] = invoke("export", checkpoint, "--format", "tflite", "--out", out / "fp32", *samples)
found["export_fp16"] = invoke(
    "export", checkpoint, "--format", "tflite", "--option", "tflite.precision=fp16", "--out", out / "fp16", *samples
)
int8_options = ["--option", "tflite-int8.calibration_images=4", "--option", "tflite-int8.threads=2"]
found["export_int8"] = invoke(
    "export", checkpoint, "--format", "tflite-int8", *int8_options, "--out", out / "int8", *samples
)
found["export_int8_impossible"] = invoke(
    "export", checkpoint, "--format", "tflite-int8", *int8_options, "--option", "tflite-int8.max_ap_drop=0",
    "--option", "tflite-int8.max_float_fraction=0", "--out", out / "impossible", *samples
)
found["impossible_left"] = sorted(path.name for path in (out / "impossible").glob("*")) if (out / "impossible").exists() else []
(out / "empty").mkdir()
found["export_int8_empty"] = invoke(
    "export", checkpoint, "--format", "tflite-int8", "--option", f"tflite-int8.calibration_folder={out / 'empty'}",
    "--out", out / "empty_out", *samples
)
found["export_int8_other_classes"] = invoke(
    "export", checkpoint, "--format", "tflite-int8", "--option", f"tflite-int8.val_path={bccd_root}",
    "--option", "tflite-int8.val_format=voc", "--option", "tflite-int8.val_split=val", "--out", out / "other", *samples
)
fp32, fp16 = (out / name / f"{stem}.tflite" for name in ("fp32", "fp16"))
int8 = out / "int8" / f"{stem}.int8.tflite"
if not (fp32.is_file() and fp16.is_file()):
    print(json.dumps(found))
    sys.exit(0)
found["sizes"] = {name: path.stat().st_size for name, path in (("fp32", fp32), ("fp16", fp16)) if path.is_file()}
found["eval"] = {"pt": evaluate(checkpoint, "pt"), "fp32": evaluate(fp32, "fp32"), "fp16": evaluate(fp16, "fp16")}
if int8.is_file():
    found["eval"]["int8"] = evaluate(int8, "int8")
found["predict"] = {"pt": predict(checkpoint, "pt"), "fp32": predict(fp32, "tfl_fp32")}

# The metadata as the flatbuffer itself holds it, read with LiteRT's schema, not through the runtime.
from ai_edge_litert import schema_py_generated as schema
def embedded(path):
    content = path.read_bytes()
    model = schema.Model.GetRootAs(content, 0)
    for index in range(model.MetadataLength()):
        if model.Metadata(index).Name() == b"yolox_sdk":
            return json.loads(model.Buffers(model.Metadata(index).Buffer()).DataAsNumpy().tobytes())
found["metadata"] = {"fp32": embedded(fp32), "int8": embedded(int8) if int8.is_file() else None}
from ai_edge_litert.interpreter import Interpreter
found["input_shape"] = [int(side) for side in Interpreter(model_path=str(fp32)).get_input_details()[0]["shape"]]

# Changed weights (same size), a truncated file, a .tflite without our metadata, a text file named .tflite.
content = bytearray(fp32.read_bytes())
changed = out / "changed.tflite"
middle = len(content) // 2
changed.write_bytes(bytes(content[:middle]) + bytes(64) + bytes(content[middle + 64 :]))
found["changed"] = predict(changed, "changed")
truncated = out / "truncated.tflite"
truncated.write_bytes(bytes(content[: len(content) // 3]))
found["truncated"] = predict(truncated, "truncated")
from ai_edge_litert.tools import flatbuffer_utils
model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
model.metadata = [entry for entry in model.metadata if entry.name not in (b"yolox_sdk", "yolox_sdk")]
foreign = out / "foreign.tflite"
foreign.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
found["foreign"] = predict(foreign, "foreign")
text = out / "notes.tflite"
text.write_text("not a model")
found["text"] = predict(text, "text")
print(json.dumps(found))
"""


def _coco_checkpoint(folder: Path) -> Path:
    """The COCO yolox-nano at ``INPUT_SIZE`` as one of our checkpoints, with coco8's class names and data."""
    from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
    from yolox_sdk.data.formats import load_dataset
    from yolox_sdk.models import create_model

    names = load_dataset("coco8", split="val", format="yolo").class_names
    model, spec, _ = create_model("yolox-nano", 80, pretrained=True, input_size=INPUT_SIZE)
    data = {
        "train_path": "coco8",
        "train_split": "train",
        "val_path": "coco8",
        "val_split": "val",
        "format": "yolo",
    }
    checkpoint = Checkpoint(
        model.state_dict(), spec, names, config={"data": data}, recommended_conf=RECOMMENDED_CONF
    )
    path = save_checkpoint(folder / "nano.pt", checkpoint)
    (folder / "samples").mkdir()
    for image in sorted((ASSETS / "datasets" / "coco8" / "images" / "val").glob("*.jpg")):
        shutil.copy(image, folder / "samples" / image.name)
    return path


def _assert_same_detections(expected: list[dict], measured: list[dict], pixels: float) -> None:
    assert [image["file"] for image in measured] == [image["file"] for image in expected]
    for want, got in zip(expected, measured, strict=True):
        assert [box["class_name"] for box in got["detections"]] == [
            box["class_name"] for box in want["detections"]
        ]
        for want_box, got_box in zip(want["detections"], got["detections"], strict=True):
            assert np.abs(np.subtract(got_box["box"], want_box["box"])).max() <= pixels


@pytest.mark.slow  # installs litert-torch when missing, converts twice, searches an INT8 mix, evaluates four models
def test_exported_tflite_evaluates_and_predicts_like_the_checkpoint(
    tmp_path: Path, bccd_dir: Path, tflite_python: Path
) -> None:
    checkpoint = _coco_checkpoint(tmp_path)
    bccd_images = tmp_path / "bccd"
    bccd_images.mkdir()
    for image in sorted((bccd_dir / "JPEGImages").glob("*.jpg"))[:3]:
        shutil.copy(image, bccd_images / image.name)
    environment = {key: value for key, value in os.environ.items() if key != PLUGINS_ENV}
    arguments = [str(TFLITE_PLUGIN), str(checkpoint), str(bccd_images), str(tmp_path / "out"), str(bccd_dir)]

    result = subprocess.run(
        [str(tflite_python), "-c", _CLI_SCRIPT, *arguments],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=1500,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert "yolox-sdk-tflite" in found["plugins"]["output"]
    for name in ("export_fp32", "export_fp16", "export_int8"):
        assert found[name]["code"] == 0, (name, found[name]["output"])
    assert found["sizes"]["fp16"] < 0.6 * found["sizes"]["fp32"]  # float16 weights: about half the file

    evals = found["eval"]
    for name, run in evals.items():
        assert run["code"] == 0, (name, run["output"])
    expected = evals["pt"]["metrics"]
    assert expected["mAP"] > 0.2  # the COCO nano finds coco8's objects: the comparison is not of zeros
    for key in ("mAP", "mAP50", "mAP75", "AR100"):
        assert evals["fp32"]["metrics"][key] == pytest.approx(expected[key], abs=1e-3), key
    for key in ("mAP", "mAP50"):
        assert evals["fp16"]["metrics"][key] == pytest.approx(expected[key], abs=0.02), key

    predictions = found["predict"]
    assert predictions["pt"]["code"] == 0 and predictions["fp32"]["code"] == 0, predictions["fp32"]["output"]
    assert sum(len(image["detections"]) for image in predictions["pt"]["images"]) >= 3
    _assert_same_detections(predictions["pt"]["images"], predictions["fp32"]["images"], 1.0)

    from yolox_sdk.checkpoints.format import load_checkpoint

    stored = load_checkpoint(checkpoint)
    metadata = found["metadata"]["fp32"]
    assert metadata["class_names"] == list(stored.class_names)
    assert metadata["input_size"] == list(INPUT_SIZE)
    assert metadata["recommended_conf"] == RECOMMENDED_CONF
    assert metadata["model_name"] == "yolox-nano" and metadata["precision"] == "fp32"
    assert metadata["sdk_version"] and "letterbox" in metadata["preprocessing"]
    assert len(metadata["weights_sha256"]) == 64
    assert found["input_shape"] == [1, 3, *INPUT_SIZE]

    # INT8 within the default budget of 1.0 AP50:95, measured on coco8's val split by the SDK's evaluator.
    report = found["metadata"]["int8"]["quantization"]
    assert found["metadata"]["int8"]["precision"] == "int8" and found["metadata"]["int8"]["decoded"] is False
    assert report["max_ap_drop"] == 1.0 and report["calibration_images"] == 4
    assert report["fp32_ap"] == pytest.approx(100 * expected["mAP"], abs=0.5)  # LiteRT float == PyTorch
    assert report["ap_drop"] <= 1.0 + 1e-6
    assert report["fp32_ap"] - report["all_int8_ap"] > 1.0  # naive INT8 is out of budget: the search worked
    assert report["float_blocks"] and set(report["float_blocks"]) <= set(report["sensitivity"]) | {
        "head.output"
    }
    assert report["int8_ap"] == pytest.approx(100 * evals["int8"]["metrics"]["mAP"], abs=1e-3)
    assert report["fp32_latency_ms"] > 0 and report["int8_latency_ms"] > 0 and report["speedup"] > 0
    assert "speed-up" in found["export_int8"]["output"]

    impossible = found["export_int8_impossible"]
    assert impossible["code"] != 0 and "Traceback" not in impossible["output"]
    assert "tflite-int8: no mix of INT8 and float layers loses at most max_ap_drop=0" in impossible["output"]
    assert "Best trade-off found: AP50:95" in impossible["output"]
    assert not [name for name in found["impossible_left"] if name.endswith(".tflite")]
    empty = found["export_int8_empty"]
    assert empty["code"] != 0 and "No images" in empty["output"] and "empty" in empty["output"]
    assert "Traceback" not in empty["output"]

    other = found["export_int8_other_classes"]
    assert other["code"] != 0 and "Traceback" not in other["output"]
    assert "tflite-int8: " in other["output"] and "has boxes of classes the model" in other["output"]
    assert "RBC" in other["output"]

    for name, says in (
        ("changed", ("changed.tflite is damaged: the SHA-256 of its weights",)),
        ("truncated", ("truncated.tflite", "truncated or damaged")),
        ("foreign", ("foreign.tflite is a TFLite model without yolox-sdk's metadata",)),
        ("text", ("notes.tflite is not a readable TFLite model",)),
    ):
        run = found[name]
        assert run["code"] != 0 and all(part in run["output"] for part in says), (name, run["output"])
        assert "Traceback" not in run["output"]
