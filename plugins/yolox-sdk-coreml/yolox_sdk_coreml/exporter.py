"""The ``coreml`` exporter: a YOLOX model as a CoreML ML Program (``<stem>.mlpackage``), verified.

The network (decoding included) is traced with ``torch.jit.trace`` at batch 1 and converted with
``coremltools.convert(convert_to="mlprogram")`` in the chosen ``compute_precision``. The input is a float
tensor ``images``, not a CoreML image: an image input hands resizing and padding to CoreML/Vision, which
scale and centre differently from our letterbox (top-left, pad 114); a tensor makes the package compute
exactly what the PyTorch model computes on ``yolox_sdk.data.preprocess``'s arrays. Only ``nms: true``
takes an image (BGR, pixel values unscaled), because Vision requires one (``yolox_sdk_coreml.pipeline``).

The package is written under a temporary name in the output folder and checked there, on every OS:

1. read back with ``MLModel(path, skip_model_load=True)`` (no CoreML needed): ML Program (or, with NMS,
   pipeline) type, input and output names, shapes and types, the NMS stage's thresholds and labels, every
   metadata value, and the stored weights' dtype (float16 for ``fp16``, float32 for ``fp32``);
2. the saved ML Program itself evaluated on the sample images (``yolox_sdk_coreml.program``) and compared
   with PyTorch: decoded rows with boxes as fractions of the input, or with NMS the two tensors its NMS
   stage reads (scores, and boxes as fractions);
3. on macOS only, also ``MLModel.predict`` on the same images, i.e. CoreML itself (not run in CI).

Above the precision's tolerance the package is kept as ``<stem>.failed.mlpackage`` and ``ExportError`` is
raised (an earlier export's ``<stem>.mlpackage`` is removed then, so it cannot pass for this one); any other
failure removes the new package and leaves the folder as it was. Only a checked package gets the final name.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from yolox_sdk.errors import ExportError
from yolox_sdk.export.samples import sample_batch as _sample_batch
from yolox_sdk.plugins.interfaces import (
    METADATA_CLASS_NAMES,
    METADATA_FILE_STEM,
    METADATA_INPUT_SIZE,
    METADATA_SDK_VERSION,
    ExportResult,
)
from yolox_sdk_coreml import CoreMLExportOptions
from yolox_sdk_coreml.package import (
    INPUT_NAME,
    OUTPUT_NAME,
    PRECISION,
    SUFFIX,
    encode,
    import_coremltools,
    interface_problems,
    metadata_problems,
    quiet_coremltools,
    read_metadata,
)
from yolox_sdk_coreml.pipeline import (
    CONFIDENCE,
    COORDINATES,
    IMAGE_INPUT,
    RAW_CONFIDENCE,
    RAW_COORDINATES,
    NmsSettings,
    nms_problems,
    nms_settings,
    nms_spec,
    vision_outputs,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

LETTERBOX = "letterbox top-left keeping aspect, pad 114, BGR, 0..255 float, NCHW"
OUTPUT_LAYOUT = "cx,cy,w,h,objectness,class probabilities (input pixels)"
NMS_OUTPUT_LAYOUT = (
    "after CoreML NMS: confidence (boxes x classes, objectness x class probability), coordinates (boxes x 4: "
    "cx,cy,w,h as fractions of the input)"
)


class CoreMLExporter:
    """Writes ``<file_stem>.mlpackage`` (``model`` by default) and verifies it; see the module docstring."""

    def __init__(self, options: CoreMLExportOptions | None = None) -> None:
        self.options = options or CoreMLExportOptions()

    def export(
        self,
        model: torch.nn.Module,
        metadata: Mapping[str, Any],
        out_dir: Path,
        sample_images: Sequence[Path],
    ) -> ExportResult:
        """Export ``model`` to an ML Program and check it on ``sample_images``.

        Raises:
            PluginError: coremltools is not installed (the message says how to install it).
            ExportError: tracing, conversion, saving or a check fails, or the package differs from PyTorch
                by more than the precision's tolerance.
        """
        ct = import_coremltools()
        if METADATA_INPUT_SIZE not in metadata:
            raise ExportError("The CoreML exporter needs metadata['input_size'] = (height, width).")
        input_size = (int(metadata[METADATA_INPUT_SIZE][0]), int(metadata[METADATA_INPUT_SIZE][1]))
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = str(metadata.get(METADATA_FILE_STEM) or "model")
        final, failed = out_dir / f"{stem}{SUFFIX}", out_dir / f"{stem}.failed{SUFFIX}"
        shutil.rmtree(failed, ignore_errors=True)  # from an earlier failed run
        nms = (
            nms_settings(metadata, self.options.iou_threshold, self.options.confidence_threshold)
            if self.options.nms
            else None
        )
        network = _reference_network(model, input_size, nms)
        batch, notes = _sample_batch(sample_images, input_size)
        entries = self._metadata_entries(metadata, nms)

        scratch = Path(tempfile.mkdtemp(prefix=f".{stem}.", suffix=".partial", dir=out_dir))
        package = scratch / final.name
        try:
            started = time.perf_counter()
            converted = self._convert(ct, network, batch[:1], nms is not None)
            if nms is not None:
                converted = _with_nms(ct, converted, entries, nms)
            _describe(converted, entries, nms)
            try:
                with quiet_coremltools():
                    converted.save(str(package))
            except Exception as error:  # noqa: BLE001 - coremltools raises many types
                raise ExportError(f"coremltools could not save {final}: {error}") from error
            seconds = time.perf_counter() - started
            checks = _verify(package, network, batch, entries, self.options.precision, nms)
            difference = checks.pop("difference")
            if not difference <= self.options.check_tolerance:  # written so that NaN fails too
                shutil.rmtree(
                    final, ignore_errors=True
                )  # an earlier export's package would pass for this one
                package.replace(failed)
                raise ExportError(
                    f"The CoreML package disagrees with PyTorch: max abs difference {difference:.3g} > "
                    f"tolerance {self.options.check_tolerance:g} on the sample images "
                    f"({self.options.precision}). It was kept as {failed} for inspection. Try precision: fp32, "
                    "or raise export.options.coreml.tolerance/fp16_tolerance if the difference is acceptable."
                )
            shutil.rmtree(final, ignore_errors=True)
            package.replace(final)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        log.info("CoreML export %s: %.2f s, max abs diff vs PyTorch %.3g", final, seconds, difference)
        layout = "ML Program + NMS pipeline" if nms is not None else "ML Program"
        notes.insert(
            0,
            f"exported in {seconds:.2f} s (coremltools {ct.__version__}, {layout}, {self.options.precision}, "
            f"{self.options.minimum_deployment_target}+)",
        )
        if nms is not None:
            notes.append(
                f"NMS stage: {', '.join(nms.sources)}, {'per class' if nms.per_class else 'class-agnostic'}"
            )
        notes.extend(str(note) for note in checks.values())
        return ExportResult(path=final, format="coreml", max_abs_diff=difference, notes=tuple(notes))

    def _metadata_entries(self, metadata: Mapping[str, Any], nms: NmsSettings | None) -> dict[str, Any]:
        entries = {key: value for key, value in metadata.items() if key != METADATA_FILE_STEM}
        entries.update(
            {
                PRECISION: self.options.precision,
                "minimum_deployment_target": self.options.minimum_deployment_target,
                "decoded": True,
                "preprocessing": LETTERBOX,
                "output_layout": NMS_OUTPUT_LAYOUT if nms is not None else OUTPUT_LAYOUT,
                "nms": nms is not None,
            }
        )
        if nms is not None:
            entries.update(
                {
                    "nms_iou_threshold": nms.iou_threshold,
                    "nms_confidence_threshold": nms.confidence_threshold,
                    "nms_per_class": nms.per_class,
                }
            )
        return entries

    def _convert(self, ct: Any, network: torch.nn.Module, example: torch.Tensor, image_input: bool) -> Any:
        """Trace and convert; coremltools' progress bars and untested-version notices go to the debug log."""
        import torch

        target = getattr(ct.target, self.options.minimum_deployment_target, None)
        if target is None:
            raise ExportError(
                f"export.options.coreml.minimum_deployment_target: coremltools {ct.__version__} does not know "
                f"{self.options.minimum_deployment_target!r}; upgrade coremltools or choose an older target."
            )
        precision = ct.precision.FLOAT16 if self.options.precision == "fp16" else ct.precision.FLOAT32
        shape = tuple(example.shape)
        if image_input:  # pixel values as they are (scale 1, no bias), channels in BGR order
            inputs = [ct.ImageType(name=IMAGE_INPUT, shape=shape, color_layout=ct.colorlayout.BGR, scale=1.0)]
            outputs = [ct.TensorType(name=RAW_CONFIDENCE), ct.TensorType(name=RAW_COORDINATES)]
        else:
            inputs = [ct.TensorType(name=INPUT_NAME, shape=shape, dtype=np.float32)]
            outputs = [ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)]
        captured = io.StringIO()
        try:
            # ERROR: its only warnings on a YOLOX are int64 shape constants stored as int32.
            with (
                warnings.catch_warnings(),
                contextlib.redirect_stderr(captured),
                quiet_coremltools(logging.ERROR),
            ):
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace's deprecation notice
                with torch.no_grad():
                    traced = torch.jit.trace(network, example)
                return ct.convert(
                    traced,
                    inputs=inputs,
                    outputs=outputs,
                    convert_to="mlprogram",
                    compute_precision=precision,
                    minimum_deployment_target=target,
                )
        except Exception as error:  # noqa: BLE001 - tracing and conversion raise many types
            raise ExportError(f"coremltools could not convert the traced model: {error}") from error
        finally:
            if captured.getvalue():
                log.debug("coremltools conversion output:\n%s", captured.getvalue()[-5000:])


def _with_nms(ct: Any, converted: Any, entries: Mapping[str, Any], nms: NmsSettings) -> Any:
    """The converted ML Program followed by an NMS model, as one pipeline."""
    names = list(entries.get(METADATA_CLASS_NAMES) or [])
    try:
        with quiet_coremltools():
            suppression = ct.models.MLModel(
                nms_spec(ct, converted.get_spec(), names, nms), skip_model_load=True
            )
            return ct.utils.make_pipeline(converted, suppression)
    except Exception as error:  # noqa: BLE001 - coremltools raises many types
        raise ExportError(f"coremltools could not build the ML Program + NMS pipeline: {error}") from error


def _describe(converted: Any, entries: Mapping[str, Any], nms: NmsSettings | None) -> None:
    """Metadata into ``user_defined_metadata`` (what ``get_spec`` reads anywhere), plus the descriptions
    Xcode shows."""
    names = entries.get(METADATA_CLASS_NAMES) or []
    converted.author = f"yolox-sdk {entries.get(METADATA_SDK_VERSION, '')}".strip()
    converted.short_description = (
        f"YOLOX detector ({entries.get('model_name', 'yolox')}, {len(names)} classes) exported by yolox-sdk; "
        "class names and preprocessing in the metadata."
    )
    converted.version = str(entries.get(METADATA_SDK_VERSION, ""))
    if nms is None:
        converted.input_description[INPUT_NAME] = f"(1, 3, H, W) float32: {LETTERBOX}"
        converted.output_description[OUTPUT_NAME] = (
            f"(1, anchors, 5 + classes) float32: {OUTPUT_LAYOUT}; class i is metadata class_names[i]"
        )
    else:
        converted.input_description[IMAGE_INPUT] = (
            "BGR image of exactly the input size, letterboxed top-left keeping aspect, padded with 114"
        )
        converted.output_description[CONFIDENCE] = "boxes x classes: objectness x class probability"
        converted.output_description[COORDINATES] = "boxes x 4: centre x, centre y, width, height (fractions)"
    for key, value in entries.items():
        converted.user_defined_metadata[str(key)] = encode(value)


def _reference_network(
    model: torch.nn.Module, input_size: tuple[int, int], nms: NmsSettings | None
) -> torch.nn.Module:
    """What the package must compute, in PyTorch: the decoded rows, or with NMS what its NMS stage reads."""
    head = getattr(model, "head", None)
    if head is None or not hasattr(head, "decode_in_inference"):
        raise ExportError(
            f"The CoreML exporter expects a YOLOX network with a head (got {type(model).__name__}); "
            "export the model built by yolox_sdk.models."
        )
    network = copy.deepcopy(model).cpu().float().eval()
    network.head.decode_in_inference = True
    return vision_outputs(network, input_size) if nms is not None else network


def _comparable(outputs: Sequence[np.ndarray], input_size: tuple[int, int], nms: bool) -> np.ndarray:
    """One array on a scale where one tolerance fits every column: decoded rows with boxes as fractions of
    the input, or (with NMS) the fractional boxes beside the scores."""
    if nms:
        confidence, coordinates = outputs
        return np.concatenate([coordinates, confidence], axis=-1)
    rows = outputs[0]
    height, width = input_size
    scale = np.array([width, height, width, height], dtype=np.float32)
    return np.concatenate([rows[..., :4] / scale, rows[..., 4:]], axis=-1)


def _verify(
    package: Path,
    network: torch.nn.Module,
    batch: torch.Tensor,
    entries: Mapping[str, Any],
    precision: str,
    nms: NmsSettings | None,
) -> dict[str, Any]:
    """The checks of the module docstring; returns ``difference`` (the largest over the numeric checks)
    and a note per check. Raises ``ExportError`` for a spec that does not fit."""
    from yolox_sdk_coreml.program import UnsupportedProgram, load_program, run_program, weight_dtypes

    input_size = (int(batch.shape[2]), int(batch.shape[3]))
    try:
        spec, program = load_program(package)
    except Exception as error:  # noqa: BLE001 - coremltools raises many types
        raise ExportError(f"The CoreML package just written cannot be read back: {error}") from error
    names = tuple(entries.get(METADATA_CLASS_NAMES) or ())
    if nms is None:
        problems = interface_problems(spec, names, input_size)
    else:
        problems = nms_problems(spec, names, input_size, nms)
    problems += metadata_problems(read_metadata(spec), entries)
    dtypes = weight_dtypes(program)
    wanted = "float16" if precision == "fp16" else "float32"
    if set(dtypes) != {wanted}:
        problems.append(f"expected every stored weight in {wanted} ({precision}), found {dtypes}")
    if problems:
        raise ExportError(f"The CoreML package does not have the expected interface: {'; '.join(problems)}.")
    input_name, output_names = (
        (IMAGE_INPUT, (RAW_CONFIDENCE, RAW_COORDINATES)) if nms is not None else (INPUT_NAME, (OUTPUT_NAME,))
    )
    images = [batch[index : index + 1] for index in range(len(batch))]
    expected = [_comparable(_expected(network, image), input_size, nms is not None) for image in images]
    try:
        actual = []
        for image in images:
            outputs = run_program(program, {input_name: image.numpy()})
            actual.append(_comparable([outputs[name] for name in output_names], input_size, nms is not None))
    except UnsupportedProgram as error:
        raise ExportError(
            f"The saved ML Program cannot be checked off macOS: it holds {error}, which yolox-sdk-coreml's "
            "evaluator does not implement (it knows what coremltools 9.0 makes of a YOLOX). Export with "
            "coremltools 9.0, or on macOS, where CoreML checks it."
        ) from error
    difference = _largest_difference(actual, expected)
    checks: dict[str, Any] = {
        "spec": f"spec read back: {spec.WhichOneof('Type')}, input {input_name} {input_size[0]}x{input_size[1]}, "
        f"outputs as expected, {len(entries)} metadata keys, {sum(dtypes.values())} {wanted} weight tensors",
        "program": f"saved ML Program evaluated with PyTorch kernels (not CoreML) on {len(batch)} image(s): "
        f"max abs diff {difference:.3g}",
    }
    if sys.platform != "darwin":
        checks["coreml"] = "CoreML predict not run: it needs macOS" + (
            " (nor is the NMS stage)" if nms else ""
        )
    elif nms is None:
        predicted = [_comparable([rows], input_size, False) for rows in _coreml_rows(package, images)]
        coreml_difference = _largest_difference(predicted, expected)
        checks["coreml"] = f"CoreML predict (macOS, CPU only): max abs diff {coreml_difference:.3g}"
        difference = float(np.max([difference, coreml_difference]))
    else:
        checks["coreml"] = _coreml_nms_smoke(package, images[0], len(names))
    checks["difference"] = difference
    return checks


def _expected(network: torch.nn.Module, images: torch.Tensor) -> list[np.ndarray]:
    import torch

    with torch.inference_mode():
        outputs = network(images)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return [output.numpy() for output in outputs]


def _largest_difference(actual: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> float:
    differences = []
    for got, want in zip(actual, expected, strict=True):
        if got.shape != want.shape:
            raise ExportError(f"The CoreML package returns shape {got.shape}; PyTorch returns {want.shape}.")
        differences.append(float(np.max(np.abs(got - want))))
    return float(np.max(differences))  # np.max, unlike max(), keeps a NaN


def _coreml_rows(package: Path, images: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """CoreML's own decoded rows, image by image (macOS only; never run in CI)."""
    ct = import_coremltools()
    try:
        model = ct.models.MLModel(str(package), compute_units=ct.ComputeUnit.CPU_ONLY)
        return [
            np.asarray(model.predict({INPUT_NAME: image.numpy()})[OUTPUT_NAME], np.float32)
            for image in images
        ]
    except Exception as error:  # noqa: BLE001 - CoreML raises many types
        raise ExportError(f"CoreML could not load or run the package just written: {error}") from error


def _coreml_nms_smoke(package: Path, image: torch.Tensor, classes: int) -> str:
    """Run the NMS pipeline once through CoreML and check the outputs' widths (macOS only; never run in
    CI). Its boxes are not compared: they come from Apple's NMS, not ours."""
    from PIL import Image

    ct = import_coremltools()
    pixels = (
        image[0].numpy().transpose(1, 2, 0)[..., ::-1].round().clip(0, 255).astype(np.uint8)
    )  # BGR -> RGB
    try:
        model = ct.models.MLModel(str(package), compute_units=ct.ComputeUnit.CPU_ONLY)
        result = model.predict({IMAGE_INPUT: Image.fromarray(np.ascontiguousarray(pixels))})
    except Exception as error:  # noqa: BLE001 - CoreML raises many types
        raise ExportError(f"CoreML could not load or run the package just written: {error}") from error
    confidence, coordinates = np.asarray(result[CONFIDENCE]), np.asarray(result[COORDINATES])
    if confidence.shape[-1:] != (classes,) or coordinates.shape[-1:] != (4,):
        raise ExportError(
            f"CoreML's NMS pipeline returned confidence {confidence.shape} and coordinates {coordinates.shape}; "
            f"expected (boxes, {classes}) and (boxes, 4)."
        )
    return f"CoreML predict (macOS, CPU only) of the NMS pipeline: {len(coordinates)} box(es), shapes as expected"
