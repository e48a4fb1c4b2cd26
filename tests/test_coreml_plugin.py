"""The first-party CoreML plugin in ``plugins/yolox-sdk-coreml``: the ``coreml`` exporter and runtime.

Registration, options, the install hints and the runtime's refusals (a folder that is not a package; any
package off macOS, where CoreML does not exist) are tested without coremltools. The real test needs
coremltools, which the project venv does not carry: when it is not importable it is pip-installed into a
temporary folder (from the local wheel mirror) with the plugin itself, so the entry point is found exactly
as after ``pip install ./plugins/yolox-sdk-coreml``. A subprocess that appends that folder to ``sys.path``
then runs the CLI: export of the COCO yolox-nano to fp16 and fp32 packages, a failing check, a bad option,
and ``predict``/``eval`` of a package (refused off macOS). The packages are then read back with coremltools
directly, not through the plugin. The test fails rather than skips when coremltools cannot be installed: CI
must run it. CoreML prediction itself (macOS) is not run here.
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

import pytest
from click.testing import CliRunner
from conftest import ASSETS

from yolox_sdk.config.plugin_options import resolve_options
from yolox_sdk.errors import CheckpointError, ConfigError, PluginError, WeightsError
from yolox_sdk.plugins import build_plugin_manager, reset_plugins
from yolox_sdk.plugins.manager import PLUGINS_ENV
from yolox_sdk.plugins.registry import Registry

REPO_ROOT = Path(__file__).resolve().parents[1]
COREML_PLUGIN = REPO_ROOT / "plugins" / "yolox-sdk-coreml"
INPUT_SIZE = (256, 224)  # not square: a swapped height and width would show in the shapes
RECOMMENDED_CONF = 0.37
BUILTINS_ONLY = "onnx,onnx_int8,pytorch_runtime,onnxruntime_runtime,yolo,voc,coco"
# coremltools 9.0's requirements (its METADATA), by the module each provides.
COREMLTOOLS_REQUIREMENTS = {
    "numpy": "numpy",
    "google.protobuf": "protobuf",
    "sympy": "sympy",
    "tqdm": "tqdm",
    "packaging": "packaging",
    "attr": "attrs",
    "cattrs": "cattrs",
    "pyaml": "pyaml",
    "yaml": "pyyaml",
}
off_macos = pytest.mark.skipif(sys.platform == "darwin", reason="tests the refusal CoreML-less systems give")


@pytest.fixture
def coreml_plugin(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The plugin package, imported from its source folder."""
    monkeypatch.syspath_prepend(str(COREML_PLUGIN))
    import yolox_sdk_coreml

    return yolox_sdk_coreml


@pytest.fixture
def registry(coreml_plugin: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A registry holding the built-in runtimes and the coreml plugin, registered as an application would."""
    monkeypatch.setenv(PLUGINS_ENV, BUILTINS_ONLY)
    return build_plugin_manager(extra_plugins=[("coreml", coreml_plugin)])[1]


def test_registers_the_exporter_and_the_runtime_with_their_options(
    registry: Registry, coreml_plugin: ModuleType
) -> None:
    exporter, runtime = registry.get("exporter", "coreml"), registry.get("runtime", "coreml")
    raw = {
        "precision": "fp32",
        "minimum_deployment_target": "iOS17",
        "tolerance": 1e-3,
        "fp16_tolerance": 0.2,
    }

    options = resolve_options(registry, "exporter", "coreml", raw, "export.options.coreml")
    defaults = resolve_options(registry, "exporter", "coreml", {}, "export.options.coreml")
    runtime_options = resolve_options(
        registry, "runtime", "coreml", {"compute_units": "CPU_ONLY"}, "runtime.coreml"
    )

    assert exporter.options is coreml_plugin.CoreMLExportOptions and exporter.origin.plugin == "coreml"
    assert runtime.options is coreml_plugin.CoreMLRuntimeOptions
    assert options == coreml_plugin.CoreMLExportOptions("fp32", "iOS17", 1e-3, 0.2)
    assert options.check_tolerance == 1e-3
    assert (defaults.precision, defaults.minimum_deployment_target, defaults.check_tolerance) == (
        "fp16",
        "iOS15",
        0.25,
    )
    assert runtime_options == coreml_plugin.CoreMLRuntimeOptions("CPU_ONLY")
    accepts = runtime.factory(None).accepts
    assert accepts(Path("best.mlpackage")) and accepts(Path("Best.MLPACKAGE"))
    assert not accepts(Path("best.mlmodel")) and not accepts(Path("best.onnx"))


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [
        ("exporter", {"precision": "int8"}, "export.options.coreml.precision: expected one of fp16, fp32"),
        (
            "exporter",
            {"precison": "fp32"},
            "unknown key 'export.options.coreml.precison'. Did you mean 'precision'?",
        ),
        (
            "exporter",
            {"minimum_deployment_target": "iOS14"},  # ML Programs need iOS 15
            "export.options.coreml.minimum_deployment_target: expected one of iOS15",
        ),
        ("exporter", {"tolerance": -1}, "export.options.coreml.tolerance: expected a number >= 0.0"),
        ("exporter", {"nms": "yes"}, "export.options.coreml.nms: expected bool"),
        (
            "exporter",
            {"iou_threshold": 1.5},
            "export.options.coreml.iou_threshold: expected a number >= 0.0 and <= 1.0",
        ),
        ("runtime", {"compute_units": "GPU"}, "runtime.coreml.compute_units: expected one of ALL"),
    ],
)
def test_option_errors_name_the_yaml_path(registry: Registry, kind: str, raw: dict, message: str) -> None:
    path = "export.options.coreml" if kind == "exporter" else "runtime.coreml"
    with pytest.raises(ConfigError) as error:
        resolve_options(registry, kind, "coreml", raw, path)
    assert message in str(error.value)


def test_missing_coremltools_says_how_to_install_it(
    coreml_plugin: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(
        sys.modules, "coremltools", None
    )  # makes `import coremltools` fail even where installed

    with pytest.raises(PluginError, match=r"pip install 'coremltools>=8\.0'"):
        coreml_plugin.create_exporter().export(object(), {"input_size": [64, 64]}, tmp_path, [])
    assert list(tmp_path.iterdir()) == []


def test_nms_thresholds_come_from_the_options_then_the_export_metadata_then_predicts_defaults(
    coreml_plugin: ModuleType,
) -> None:
    from yolox_sdk_coreml.pipeline import nms_settings

    metadata = {
        "recommended_conf": 0.41,
        "evaluation": {"conf_threshold": 0.01, "nms_threshold": 0.6, "class_agnostic_nms": True},
    }

    from_metadata = nms_settings(metadata, None, None)
    from_options = nms_settings(metadata, 0.5, 0.2)
    defaults = nms_settings({"evaluation": "not a mapping", "recommended_conf": True}, None, None)

    assert (from_metadata.iou_threshold, from_metadata.confidence_threshold, from_metadata.per_class) == (
        0.6,
        0.41,
        False,
    )
    assert (from_options.iou_threshold, from_options.confidence_threshold) == (0.5, 0.2)
    assert (defaults.iou_threshold, defaults.confidence_threshold, defaults.per_class) == (0.45, 0.3, True)
    assert "recommended" in from_metadata.sources[1] and "default" in defaults.sources[0]


def _fake_package(folder: Path) -> Path:
    """A folder laid out like an .mlpackage (Manifest.json, Data/com.apple.CoreML/); enough for the checks
    that come before CoreML is needed."""
    package = folder / "best.mlpackage"
    (package / "Data" / "com.apple.CoreML").mkdir(parents=True)
    (package / "Manifest.json").write_text("{}")
    return package


@off_macos
def test_loading_a_package_off_macos_says_coreml_needs_macos(registry: Registry, tmp_path: Path) -> None:
    from yolox_sdk.runtimes import load_model

    with pytest.raises(WeightsError) as error:
        load_model(_fake_package(tmp_path), registry=registry)

    message = str(error.value)
    assert "best.mlpackage is a CoreML package, and CoreML prediction needs macOS" in message
    assert "--format onnx" in message and "--format openvino" in message


def test_a_folder_that_is_not_a_package_is_refused_naming_it(registry: Registry, tmp_path: Path) -> None:
    from yolox_sdk.runtimes import load_model

    fake = tmp_path / "images.mlpackage"
    fake.mkdir()
    with pytest.raises(CheckpointError, match=r"images\.mlpackage is not a CoreML package: .*Manifest\.json"):
        load_model(fake, registry=registry)
    with pytest.raises(ConfigError, match="No installed runtime reads"):
        load_model(tmp_path, registry=registry)  # a plain folder: no runtime takes it


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
        cli, ["export", str(checkpoint), "--format", "coreml", "--sample", str(sample)]
    )
    package = _fake_package(tmp_path)
    predicted = CliRunner().invoke(cli, ["predict", str(package), str(sample), "--out", str(tmp_path / "p")])

    assert result.exit_code != 0
    assert "Unknown exporter 'coreml'" in result.output
    assert "`pip install ./plugins/yolox-sdk-coreml`" in result.output
    assert predicted.exit_code != 0 and "`pip install ./plugins/yolox-sdk-coreml`" in predicted.output


# --- the real thing: coremltools installed, the CLI run on real files -------------------------------------


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package of a dotted name is missing
        return False


@pytest.fixture(scope="session")
def coreml_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the plugin's distribution (its entry point), and coremltools when it is not importable."""
    site = tmp_path_factory.mktemp("coreml_site")
    source = tmp_path_factory.mktemp("coreml_plugin_source") / "yolox-sdk-coreml"
    shutil.copytree(
        COREML_PLUGIN, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    )
    commands = [[str(source), "--no-deps"]]  # built from a copy: no build/ or .egg-info in plugins/
    if importlib.util.find_spec("coremltools") is None:
        # Only the requirements the venv lacks (usually pyaml alone): resolving and unpacking numpy, sympy
        # and protobuf again took 25 s here against 4 s, and the venv's copies win on sys.path anyway.
        missing = [dist for module, dist in COREMLTOOLS_REQUIREMENTS.items() if not _importable(module)]
        commands.append(["coremltools>=8.0,<10", "--no-deps", *missing])
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
plugin, site, checkpoint, out = sys.argv[1:5]
sys.path.append(site)  # after site-packages: coremltools' dependencies never replace the venv's
sys.path.insert(0, plugin)  # the plugin's code from the source tree, its entry point from site
from click.testing import CliRunner
from yolox_sdk.cli.main import cli
out = Path(out)
samples = sorted((Path(checkpoint).parent / "samples").iterdir())
sample_args = [part for image in samples for part in ("--sample", image)]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    return {"code": result.exit_code, "output": result.output[-4000:]}


def listing(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*")) if folder.exists() else None


found = {"plugins": invoke("plugins")}
found["export_fp16"] = invoke("export", checkpoint, "--format", "coreml", "--out", out / "fp16", *sample_args)
found["export_fp32"] = invoke(
    "export", checkpoint, "--format", "coreml", "--option", "coreml.precision=fp32", "--out", out / "fp32", *sample_args
)
found["export_nms"] = invoke(
    "export", checkpoint, "--format", "coreml", "--option", "coreml.nms=true", "--option", "coreml.iou_threshold=0.5",
    "--out", out / "nms", *sample_args
)
(out / "strict" / "nano.mlpackage").mkdir(parents=True)  # an earlier export's, which must not survive a failure
found["export_strict"] = invoke(
    "export", checkpoint, "--format", "coreml", "--option", "coreml.fp16_tolerance=0", "--out", out / "strict", *sample_args
)
found["strict_listing"] = [name for name in listing(out / "strict") if name.count("/") == 0]
found["export_bad_option"] = invoke(
    "export", checkpoint, "--format", "coreml", "--option", "coreml.precision=int8", "--out", out / "bad", *sample_args
)
found["bad_listing"] = listing(out / "bad")
stem = Path(checkpoint).stem
fp16, fp32 = out / "fp16" / f"{stem}.mlpackage", out / "fp32" / f"{stem}.mlpackage"
found["fp16_listing"] = listing(out / "fp16")
if not (fp16.is_dir() and fp32.is_dir()):
    print(json.dumps(found))
    sys.exit(0)
found["predict"] = invoke("predict", fp16, samples[0], "--out", out / "predicted", "--device", "cpu")
found["eval"] = invoke("eval", fp32, "--data", "coco8", "--split", "val", "--format", "yolo", "--device", "cpu")
found["predicted_listing"] = listing(out / "predicted")

# The packages as coremltools itself reads them back, not through the plugin.
import coremltools as ct
from coremltools.proto import MIL_pb2, FeatureTypes_pb2

def describe(package):
    spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    def feature(item):
        array = item.type.multiArrayType
        return [item.name, FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType), list(array.shape)]
    function = spec.mlProgram.functions["main"]
    weights = {}
    for op in function.block_specializations[function.opset].operations:
        value = op.attributes["val"] if op.type == "const" else None
        if value is not None and value.WhichOneof("value") == "blobFileValue":
            name = MIL_pb2.DataType.Name(value.type.tensorType.dataType)
            weights[name] = weights.get(name, 0) + 1
    blob = package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    return {
        "type": spec.WhichOneof("Type"),
        "inputs": [feature(item) for item in spec.description.input],
        "outputs": [feature(item) for item in spec.description.output],
        "metadata": dict(spec.description.metadata.userDefined),
        "author": spec.description.metadata.author,
        "weights": weights,
        "weight_bytes": blob.stat().st_size,
    }

found["spec"] = {"fp16": describe(fp16), "fp32": describe(fp32)}
nms_package = out / "nms" / f"{stem}.mlpackage"
if nms_package.is_dir():
    spec = ct.models.MLModel(str(nms_package), skip_model_load=True).get_spec()
    image = spec.description.input[0]
    suppression = spec.pipeline.models[1].nonMaximumSuppression
    found["nms_spec"] = {
        "type": spec.WhichOneof("Type"),
        "stages": [model.WhichOneof("Type") for model in spec.pipeline.models],
        "input": [image.name, image.type.imageType.height, image.type.imageType.width, image.type.imageType.colorSpace == image.type.imageType.BGR],
        "outputs": [item.name for item in spec.description.output],
        "program_outputs": [[item.name, list(item.type.multiArrayType.shape)] for item in spec.pipeline.models[0].description.output],
        "labels": list(suppression.stringClassLabels.vector),
        "thresholds": [suppression.iouThreshold, suppression.confidenceThreshold, suppression.pickTop.perClass],
        "metadata": dict(spec.description.metadata.userDefined),
    }

# The off-macOS check reads the stored weights: a damaged weight.bin changes the evaluated program's output.
import numpy as np
from yolox_sdk.data.preprocess import images_to_batch, read_image
from yolox_sdk_coreml.program import load_program, run_program
damaged = out / "damaged" / fp32.name
shutil.copytree(fp32, damaged)
blob = damaged / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
data = bytearray(blob.read_bytes())
data[len(data) // 2 : len(data) // 2 + 4096] = bytes(4096)
blob.write_bytes(bytes(data))
batch, _ = images_to_batch([read_image(samples[0])], tuple(json.loads(found["spec"]["fp32"]["metadata"]["input_size"])))
rows = {name: run_program(load_program(path)[1], {"images": batch.numpy()})["output"] for name, path in (("intact", fp32), ("damaged", damaged))}
found["damage_changes_output"] = float(np.abs(rows["intact"] - rows["damaged"]).max())

# The SDK's exporter conformance check (tiny random model), on the NMS variant.
from yolox_sdk.testing.exporters import check_exporter
from yolox_sdk_coreml import CoreMLExportOptions, create_exporter
contract = check_exporter(create_exporter(CoreMLExportOptions(nms=True)), out / "contract")
found["contract"] = [contract.path.name, contract.format, sorted(path.name for path in (out / "contract").iterdir())]
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
    for image in sorted((ASSETS / "datasets" / "coco8" / "images" / "val").glob("*.jpg"))[:3]:
        shutil.copy(image, folder / "samples" / image.name)
    return path


def _reported_difference(output: str) -> float:
    return float(output.split("max abs diff vs PyTorch ")[-1].split(")")[0])


@pytest.mark.slow  # installs coremltools when missing and exports four times
def test_exported_packages_have_the_promised_spec_and_match_pytorch_off_macos(
    tmp_path: Path, coreml_site: Path
) -> None:
    checkpoint = _coco_checkpoint(tmp_path)
    environment = {key: value for key, value in os.environ.items() if key != PLUGINS_ENV}
    arguments = [str(COREML_PLUGIN), str(coreml_site), str(checkpoint), str(tmp_path / "out")]

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
    assert "yolox-sdk-coreml" in found["plugins"]["output"]
    for name in ("export_fp16", "export_fp32"):
        assert found[name]["code"] == 0, found[name]["output"]
        assert "Removing op" not in found[name]["output"]  # coremltools' pass logging stays out of the CLI
    assert _reported_difference(found["export_fp32"]["output"]) <= 1e-4
    assert 1e-4 < _reported_difference(found["export_fp16"]["output"]) <= 0.25  # float16 did round
    assert found["fp16_listing"][0] == "nano.mlpackage" and not any(
        "partial" in p for p in found["fp16_listing"]
    )

    from yolox_sdk.checkpoints.format import load_checkpoint

    stored = load_checkpoint(checkpoint)
    anchors = sum((INPUT_SIZE[0] // stride) * (INPUT_SIZE[1] // stride) for stride in (8, 16, 32))
    for precision, spec in found["spec"].items():
        assert spec["type"] == "mlProgram"
        assert spec["inputs"] == [["images", "FLOAT32", [1, 3, *INPUT_SIZE]]]
        assert spec["outputs"] == [["output", "FLOAT32", [1, anchors, 85]]]
        metadata = spec["metadata"]
        assert json.loads(metadata["class_names"]) == list(stored.class_names)
        assert json.loads(metadata["input_size"]) == list(INPUT_SIZE)
        assert float(metadata["recommended_conf"]) == RECOMMENDED_CONF
        assert metadata["precision"] == precision and metadata["model_name"] == "yolox-nano"
        assert (
            metadata["sdk_version"]
            and "letterbox" in metadata["preprocessing"]
            and "pad 114" in metadata["preprocessing"]
        )
        assert metadata["minimum_deployment_target"] == "iOS15" and spec["author"].startswith("yolox-sdk")
    assert set(found["spec"]["fp16"]["weights"]) == {"FLOAT16"}
    assert set(found["spec"]["fp32"]["weights"]) == {"FLOAT32"}
    assert found["spec"]["fp16"]["weight_bytes"] < 0.6 * found["spec"]["fp32"]["weight_bytes"]
    assert found["damage_changes_output"] > 1.0

    assert found["export_nms"]["code"] == 0, found["export_nms"]["output"]
    assert _reported_difference(found["export_nms"]["output"]) <= 0.25
    nms = found["nms_spec"]
    assert nms["type"] == "pipeline" and nms["stages"] == ["mlProgram", "nonMaximumSuppression"]
    assert nms["input"] == ["image", *INPUT_SIZE, True] and nms["outputs"] == ["confidence", "coordinates"]
    assert nms["program_outputs"] == [["raw_confidence", [anchors, 80]], ["raw_coordinates", [anchors, 4]]]
    assert nms["labels"] == list(stored.class_names)
    assert nms["thresholds"] == [
        pytest.approx(0.5),
        pytest.approx(RECOMMENDED_CONF),
        True,
    ]  # option; checkpoint's
    assert (
        json.loads(nms["metadata"]["nms"]) is True
        and json.loads(nms["metadata"]["class_names"]) == nms["labels"]
    )

    assert found["contract"] == ["tiny.mlpackage", "coreml", ["_samples", "tiny.mlpackage"]]

    strict = found["export_strict"]
    assert strict["code"] != 0 and "The CoreML package disagrees with PyTorch" in strict["output"]
    assert "Traceback" not in strict["output"]
    assert found["strict_listing"] == [
        "nano.failed.mlpackage"
    ]  # nothing under the final name, no temp folder
    bad = found["export_bad_option"]
    assert bad["code"] != 0 and "export.options.coreml.precision: expected one of fp16, fp32" in bad["output"]
    assert not found["bad_listing"]

    for name in ("predict", "eval"):
        run = found[name]
        if sys.platform == "darwin":  # not run in CI: CoreML predicts there
            assert run["code"] == 0, (name, run["output"])
            continue
        assert run["code"] != 0, (name, run["output"])
        assert "is a CoreML package, and CoreML prediction needs macOS" in run["output"], run["output"]
        assert "Traceback" not in run["output"]
        assert not found["predicted_listing"]
