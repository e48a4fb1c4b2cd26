"""The first-party OpenVINO plugin in ``plugins/yolox-sdk-openvino``: the ``openvino`` exporter and runtime.

Registration, options, the install hints and the refusal of non-IR files are tested without openvino. The
real test needs openvino, which the project venv does not carry: when it is not importable it is
pip-installed into a temporary folder (seconds from the local wheel mirror), with the plugin itself, so the
plugin's entry point is found exactly as after ``pip install ./plugins/yolox-sdk-openvino``. A subprocess that
appends that folder to ``sys.path`` (openvino's dependencies never shadow the venv's) then runs the CLI:
export of the COCO yolox-nano to IR fp32 and fp16, ``eval`` on coco8 and ``predict`` on BCCD images of the
``.xml`` and of the ``.pt``; the checkpoint's results, from the PyTorch path training uses, are the expected
values. The test fails rather than skips when openvino cannot be installed: CI must run it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
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
OPENVINO_PLUGIN = REPO_ROOT / "plugins" / "yolox-sdk-openvino"
INPUT_SIZE = (288, 288)
RECOMMENDED_CONF = 0.37
BUILTINS_ONLY = "onnx,onnx_int8,pytorch_runtime,onnxruntime_runtime,yolo,voc,coco"


@pytest.fixture
def openvino_plugin(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The plugin package, imported from its source folder."""
    monkeypatch.syspath_prepend(str(OPENVINO_PLUGIN))
    import yolox_sdk_openvino

    return yolox_sdk_openvino


@pytest.fixture
def registry(openvino_plugin: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A registry holding only the openvino plugin, registered as an application would."""
    monkeypatch.setenv(PLUGINS_ENV, "")
    return build_plugin_manager(extra_plugins=[("openvino", openvino_plugin)])[1]


def test_registers_the_exporter_and_the_runtime_with_their_options(
    registry: Registry, openvino_plugin: ModuleType
) -> None:
    exporter, runtime = registry.get("exporter", "openvino"), registry.get("runtime", "openvino")
    raw = {"precision": "fp16", "decode_in_graph": False, "tolerance": 1e-3, "fp16_tolerance": 0.2}

    options = resolve_options(registry, "exporter", "openvino", raw, "export.options.openvino")
    runtime_options = resolve_options(
        registry, "runtime", "openvino", {"threads": 2, "inference_precision": "auto"}, "runtime.openvino"
    )

    assert exporter.options is openvino_plugin.OpenVinoExportOptions and exporter.origin.plugin == "openvino"
    assert runtime.options is openvino_plugin.OpenVinoRuntimeOptions
    assert options == openvino_plugin.OpenVinoExportOptions("fp16", False, 1e-3, 0.2)
    assert options.check_tolerance == 0.2
    defaults = resolve_options(registry, "exporter", "openvino", {}, "export.options.openvino")
    assert (defaults.precision, defaults.decode_in_graph, defaults.check_tolerance) == ("fp32", True, 1e-4)
    assert runtime_options == openvino_plugin.OpenVinoRuntimeOptions(2, "CPU", "auto")
    assert runtime.factory(None).accepts(Path("best.XML")) and not runtime.factory(None).accepts(
        Path("a.onnx")
    )


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [
        ("exporter", {"precision": "fp8"}, "export.options.openvino.precision: expected one of fp32, fp16"),
        (
            "exporter",
            {"precison": "fp16"},
            "unknown key 'export.options.openvino.precison'. Did you mean 'precision'?",
        ),
        ("exporter", {"decode_in_graph": "yes"}, "export.options.openvino.decode_in_graph: expected bool"),
        ("exporter", {"tolerance": -1}, "export.options.openvino.tolerance: expected a number >= 0.0"),
        ("runtime", {"threads": 0}, "runtime.openvino.threads: expected a number >= 1"),
        ("runtime", {"device": "C PU"}, "runtime.openvino.device: expected an OpenVINO device name"),
        (
            "runtime",
            {"inference_precision": "bf32"},
            "runtime.openvino.inference_precision: expected one of f32",
        ),
    ],
)
def test_option_errors_name_the_yaml_path(registry: Registry, kind: str, raw: dict, message: str) -> None:
    path = "export.options.openvino" if kind == "exporter" else "runtime.openvino"
    with pytest.raises(ConfigError) as error:
        resolve_options(registry, kind, "openvino", raw, path)
    assert message in str(error.value)


def test_missing_openvino_package_says_how_to_install_it(
    openvino_plugin: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(
        sys.modules, "openvino", None
    )  # makes `import openvino` fail even where it is installed
    xml = tmp_path / "best.xml"
    xml.write_text("<net/>")

    with pytest.raises(PluginError, match=r"pip install 'openvino>=2024\.0'"):
        openvino_plugin.create_exporter().export(object(), {"input_size": [64, 64]}, tmp_path, [])
    with pytest.raises(PluginError, match=r"pip install 'openvino>=2024\.0'"):
        openvino_plugin.create_runtime().load(xml, "cpu")


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

    result = CliRunner().invoke(
        cli, ["export", str(checkpoint), "--format", "openvino", "--sample", str(sample)]
    )
    misspelt = CliRunner().invoke(
        cli, ["export", str(checkpoint), "--format", "onnxx", "--sample", str(sample)]
    )

    assert result.exit_code != 0
    assert "Unknown exporter 'openvino'" in result.output
    assert "`pip install ./plugins/yolox-sdk-openvino`" in result.output
    assert "Did you mean 'onnx'?" in misspelt.output and "pip install" not in misspelt.output


# --- the real thing: openvino installed, the CLI run on real files ---------------------------------------


@pytest.fixture(scope="session")
def openvino_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the plugin's distribution (its entry point), and openvino when it is not importable."""
    site = tmp_path_factory.mktemp("openvino_site")
    source = tmp_path_factory.mktemp("openvino_plugin_source") / "yolox-sdk-openvino"
    shutil.copytree(
        OPENVINO_PLUGIN, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    )
    commands = [[str(source), "--no-deps"]]  # built from a copy: no build/ or .egg-info in plugins/
    if importlib.util.find_spec("openvino") is None:
        commands.append(["openvino>=2024.0"])
    for arguments in commands:
        install = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(site), *arguments],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert install.returncode == 0, (
            f"pip could not install {arguments[0]} (needed by this test; CI must not skip it): "
            f"{install.stderr.strip()[-1500:]}"
        )
    return site


_CLI_SCRIPT = r"""
import json, shutil, sys
from pathlib import Path
plugin, site, checkpoint, bccd_images, out = sys.argv[1:6]
sys.path.append(site)  # after site-packages: openvino's dependencies never replace the venv's
sys.path.insert(0, plugin)  # the plugin's code from the source tree, its entry point from site
from click.testing import CliRunner
import openvino
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
found = {"plugins": invoke("plugins")}
found["export_fp32"] = invoke("export", checkpoint, "--format", "openvino", "--out", out / "fp32", *samples)
found["export_fp16"] = invoke(
    "export", checkpoint, "--format", "openvino", "--option", "openvino.precision=fp16", "--out", out / "fp16", *samples
)
stem = Path(checkpoint).stem
fp32, fp16 = out / "fp32" / f"{stem}.xml", out / "fp16" / f"{stem}.xml"
if not (fp32.is_file() and fp16.is_file()):
    print(json.dumps(found))
    sys.exit(0)
found["sizes"] = {name: (path.with_suffix(".bin").stat().st_size if path.is_file() else None) for name, path in (("fp32", fp32), ("fp16", fp16))}
found["eval"] = {"pt": evaluate(checkpoint, "pt"), "fp32": evaluate(fp32, "fp32"), "fp16": evaluate(fp16, "fp16")}
found["predict"] = {"pt": predict(checkpoint, "pt"), "fp32": predict(fp32, "ov_fp32")}

# The metadata as OpenVINO itself reads it back, not through the plugin.
model = openvino.Core().read_model(str(fp32))
found["rt_info"] = {key: model.get_rt_info(["yolox_sdk", key]).astype(str) for key in model.get_rt_info()["yolox_sdk"]}
found["input"] = str(model.input(0).get_partial_shape())

# A damaged .bin (same size, some bytes changed), a missing .bin, and an .xml that is a VOC annotation.
broken = out / "broken"
shutil.copytree(out / "fp32", broken)
weights = bytearray((broken / f"{stem}.bin").read_bytes())
weights[len(weights) // 2 : len(weights) // 2 + 64] = bytes(64)
(broken / f"{stem}.bin").write_bytes(bytes(weights))
found["corrupt_bin"] = predict(broken / f"{stem}.xml", "corrupt")
truncated = out / "truncated"
shutil.copytree(out / "fp32", truncated)
(truncated / f"{stem}.bin").write_bytes(bytes(weights[:1000]))
found["truncated_bin"] = predict(truncated / f"{stem}.xml", "truncated")
(truncated / f"{stem}.bin").unlink()
found["missing_bin"] = predict(truncated / f"{stem}.xml", "missing")
annotation = out / "BloodImage_00000.xml"
shutil.copy(Path(bccd_images).parent / "BloodImage_00000.xml", annotation)
annotation.with_suffix(".bin").write_bytes(b"")
found["voc_xml"] = predict(annotation, "voc")
print(json.dumps(found))
"""


def _coco_checkpoint(folder: Path) -> Path:
    """The COCO yolox-nano at ``INPUT_SIZE`` as one of our checkpoints, with coco8's class names."""
    from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
    from yolox_sdk.data.formats import load_dataset
    from yolox_sdk.models import create_model

    names = load_dataset("coco8", split="val", format="yolo").class_names
    model, spec, _ = create_model("yolox-nano", 80, pretrained=True, input_size=INPUT_SIZE)
    checkpoint = Checkpoint(model.state_dict(), spec, names, config={}, recommended_conf=RECOMMENDED_CONF)
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


@pytest.mark.slow  # installs openvino when missing, exports twice and evaluates three models
def test_exported_ir_evaluates_and_predicts_like_the_checkpoint(
    tmp_path: Path, bccd_dir: Path, openvino_site: Path
) -> None:
    checkpoint = _coco_checkpoint(tmp_path)
    bccd_images = tmp_path / "bccd"
    bccd_images.mkdir()
    for image in sorted((bccd_dir / "JPEGImages").glob("*.jpg"))[:3]:
        shutil.copy(image, bccd_images / image.name)
    shutil.copy(bccd_dir / "Annotations" / "BloodImage_00000.xml", tmp_path)
    environment = {key: value for key, value in os.environ.items() if key != PLUGINS_ENV}
    arguments = [
        str(OPENVINO_PLUGIN),
        str(openvino_site),
        str(checkpoint),
        str(bccd_images),
        str(tmp_path / "out"),
    ]

    result = subprocess.run(
        [sys.executable, "-c", _CLI_SCRIPT, *arguments],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=1200,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert "yolox-sdk-openvino" in found["plugins"]["output"]
    for name in ("export_fp32", "export_fp16"):
        assert found[name]["code"] == 0, found[name]["output"]
    assert found["sizes"]["fp16"] < 0.6 * found["sizes"]["fp32"]  # float16 weights: about half the .bin

    evals = found["eval"]
    for name, run in evals.items():
        assert run["code"] == 0, (name, run["output"])
    expected = evals["pt"]["metrics"]
    assert expected["mAP"] > 0.2  # the COCO nano finds coco8's objects: the comparison is not of zeros
    for key in ("mAP", "mAP50", "mAP75", "AR100"):
        assert evals["fp32"]["metrics"][key] == pytest.approx(expected[key], abs=1e-3), key
    for key in ("mAP", "mAP50"):
        assert evals["fp16"]["metrics"][key] == pytest.approx(expected[key], abs=0.01), key

    predictions = found["predict"]
    assert predictions["pt"]["code"] == 0 and predictions["fp32"]["code"] == 0, predictions["fp32"]["output"]
    assert sum(len(image["detections"]) for image in predictions["pt"]["images"]) >= 3
    _assert_same_detections(predictions["pt"]["images"], predictions["fp32"]["images"], 1.0)

    from yolox_sdk.checkpoints.format import load_checkpoint

    stored = load_checkpoint(checkpoint)
    rt_info = found["rt_info"]
    assert json.loads(rt_info["class_names"]) == list(stored.class_names)
    assert json.loads(rt_info["input_size"]) == list(INPUT_SIZE)
    assert float(rt_info["recommended_conf"]) == RECOMMENDED_CONF
    assert rt_info["model_name"] == "yolox-nano" and rt_info["precision"] == "fp32"
    assert rt_info["sdk_version"] and "letterbox" in rt_info["preprocessing"]
    assert found["input"] == f"[?,3,{INPUT_SIZE[0]},{INPUT_SIZE[1]}]"

    for name, says in (
        ("corrupt_bin", ("nano.bin is damaged: its SHA-256 is not the one nano.xml records",)),
        ("truncated_bin", ("nano.bin", "damaged")),
        ("missing_bin", ("nano.xml: its weights file nano.bin is missing",)),
        ("voc_xml", ("BloodImage_00000.xml is not a readable OpenVINO IR",)),
    ):
        run = found[name]
        assert run["code"] != 0 and all(part in run["output"] for part in says), (name, run["output"])
        assert "Traceback" not in run["output"]
