"""The ``openvino`` exporter: a YOLOX model as an OpenVINO IR (``<stem>.xml`` + ``<stem>.bin``), verified.

The model goes through the SDK's own ONNX export (the built-in ``onnx`` exporter, dynamic batch, into a
temporary folder) and ``openvino.convert_model`` reads that file. Converting the torch module directly
(``convert_model(module, example_input=...)``) was measured too: on yolox-nano at 320 px it took 28 s
against 1.7 s for the ONNX file and gave no better match (max abs diff 1.4e-5 against 1e-5), and its
input has no name and a fully dynamic shape. ``save_model(compress_to_fp16=...)`` writes the weights in
the chosen precision; yolox-sdk's metadata goes into the IR's ``rt_info`` (``yolox_sdk_openvino.ir``).

After writing, the IR is loaded back through this plugin's runtime, exactly as ``predict`` and ``eval``
will load it, compiled for the CPU in float32 and run on the sample images; its decoded rows are compared
with PyTorch's (boxes as fractions of the input size). Above the precision's tolerance the files are
renamed ``<stem>.failed.xml``/``.bin`` and ``ExportError`` is raised.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from yolox_sdk.errors import ExportError, YoloxSdkError
from yolox_sdk.plugins.interfaces import METADATA_FILE_STEM, METADATA_INPUT_SIZE, ExportResult
from yolox_sdk_openvino import OpenVinoExportOptions, OpenVinoRuntimeOptions
from yolox_sdk_openvino.ir import (
    DECODED,
    PRECISION,
    WEIGHTS_DIGEST,
    file_digest,
    import_openvino,
    write_metadata,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Raw head rows (log sizes) of the float32 ONNX file differ from PyTorch by ~1.2e-4 on coco8 at 320 px,
# above the onnx exporter's default; a broken graph is off by far more.
INTERMEDIATE_TOLERANCE = 1e-2
LETTERBOX = "letterbox top-left keeping aspect, pad 114, BGR, 0..255 float, NCHW"


class OpenVinoExporter:
    """Writes ``<file_stem>.xml``/``.bin`` (``model`` by default) and verifies them; see the module docstring."""

    def __init__(self, options: OpenVinoExportOptions | None = None) -> None:
        self.options = options or OpenVinoExportOptions()

    def export(
        self,
        model: torch.nn.Module,
        metadata: Mapping[str, Any],
        out_dir: Path,
        sample_images: Sequence[Path],
    ) -> ExportResult:
        """Export ``model`` to an IR and check it on ``sample_images``.

        Raises:
            PluginError: openvino is not installed (the message says how to install it).
            ExportError: the ONNX step, the conversion or the check fails, or the IR differs from PyTorch
                by more than the precision's tolerance.
        """
        ov = import_openvino()
        if METADATA_INPUT_SIZE not in metadata:
            raise ExportError("The OpenVINO exporter needs metadata['input_size'] = (height, width).")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        xml = out_dir / f"{metadata.get(METADATA_FILE_STEM) or 'model'}.xml"
        for old in _failed_pair(xml):
            old.unlink(missing_ok=True)  # from an earlier failed run
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="yolox_sdk_openvino_") as scratch:
            onnx_path = self._intermediate_onnx(model, metadata, Path(scratch), sample_images)
            self._convert(ov, onnx_path, metadata, xml)
        seconds = time.perf_counter() - started
        difference, notes = _compare_with_torch(model, xml, sample_images, metadata)
        log.info("OpenVINO export %s: %.2f s, max abs diff vs PyTorch %.3g", xml, seconds, difference)
        notes.insert(
            0,
            f"exported in {seconds:.2f} s (ONNX, then openvino {ov.__version__.split('-')[0]}, {self.options.precision})",
        )
        notes.append(f"max abs diff vs PyTorch (OpenVINO CPU, f32 inference): {difference:.3g}")
        if not difference <= self.options.check_tolerance:  # written so that NaN fails too
            failed = _keep_failed(xml)
            raise ExportError(
                f"The OpenVINO IR disagrees with PyTorch: max abs difference {difference:.3g} > tolerance "
                f"{self.options.check_tolerance:g} on the sample images ({self.options.precision}). The files "
                f"were kept as {failed} for inspection. Try precision: fp32, or raise "
                "export.options.openvino.tolerance/fp16_tolerance if the difference is acceptable for your use."
            )
        return ExportResult(path=xml, format="openvino", max_abs_diff=difference, notes=tuple(notes))

    def _intermediate_onnx(
        self,
        model: torch.nn.Module,
        metadata: Mapping[str, Any],
        scratch: Path,
        sample_images: Sequence[Path],
    ) -> Path:
        """The model as ONNX through the built-in ``onnx`` exporter. Its onnxruntime check only tells an
        ONNX-stage failure from a conversion one (``INTERMEDIATE_TOLERANCE``): the IR gets the real check."""
        from yolox_sdk.builtin.exporters.onnx import OnnxExporter, OnnxOptions

        onnx_options = OnnxOptions(
            dynamic_batch=True, decode_in_graph=self.options.decode_in_graph, tolerance=INTERMEDIATE_TOLERANCE
        )
        entries = {**metadata, METADATA_FILE_STEM: "intermediate"}
        try:
            return Path(OnnxExporter(onnx_options).export(model, entries, scratch, sample_images).path)
        except ExportError as error:
            raise ExportError(
                f"The OpenVINO export starts from an ONNX export, which failed: {error}"
            ) from error

    def _convert(self, ov: Any, onnx_path: Path, metadata: Mapping[str, Any], xml: Path) -> None:
        """Convert, embed the metadata and save; the weights digest needs the saved ``.bin``, so the IR is
        saved twice (OpenVINO writes the same weights both times, which is checked)."""
        try:
            converted = ov.convert_model(str(onnx_path))
        except Exception as error:  # noqa: BLE001 - the converter raises many types
            raise ExportError(f"openvino.convert_model failed on the ONNX export: {error}") from error
        entries = {key: value for key, value in metadata.items() if key != METADATA_FILE_STEM}
        entries.update(
            {
                DECODED: self.options.decode_in_graph,
                PRECISION: self.options.precision,
                "preprocessing": LETTERBOX,
                "output_layout": "cx,cy,w,h,objectness,class probabilities (input pixels)"
                if self.options.decode_in_graph
                else "raw head output: dx,dy,log w,log h per anchor (stride 8,16,32 grids), objectness, classes",
            }
        )
        write_metadata(converted, entries)
        compress = self.options.precision == "fp16"
        bin_path = xml.with_suffix(".bin")
        try:
            ov.save_model(converted, str(xml), compress_to_fp16=compress)
            digest = file_digest(bin_path)
            write_metadata(converted, {WEIGHTS_DIGEST: digest})
            ov.save_model(converted, str(xml), compress_to_fp16=compress)
        except (OSError, RuntimeError) as error:
            raise ExportError(f"openvino.save_model could not write {xml}: {error}") from error
        if file_digest(bin_path) != digest:
            raise ExportError(
                f"OpenVINO wrote different weights to {bin_path} on a second save; export again."
            )


def _failed_pair(xml: Path) -> tuple[Path, Path]:
    failed = xml.with_name(f"{xml.stem}.failed.xml")
    return failed, failed.with_suffix(".bin")


def _keep_failed(xml: Path) -> Path:
    """Rename the pair to ``<stem>.failed.xml``/``.bin`` (OpenVINO finds a ``.bin`` by the ``.xml``'s stem)."""
    failed_xml, failed_bin = _failed_pair(xml)
    xml.with_suffix(".bin").replace(failed_bin)
    xml.replace(failed_xml)
    return failed_xml


def _sample_arrays(
    sample_images: Sequence[Path], input_size: tuple[int, int]
) -> tuple[list[np.ndarray], list[str]]:
    from yolox_sdk.data.preprocess import read_image

    if sample_images:
        return [read_image(Path(path)) for path in sample_images], []
    generator = np.random.default_rng(0)
    image = generator.integers(0, 256, (*input_size, 3), dtype=np.uint8)
    return [image], ["no sample images given: checked on a synthetic image only"]


def _reference_network(model: torch.nn.Module) -> torch.nn.Module:
    network = copy.deepcopy(model).cpu().float().eval()
    network.head.decode_in_inference = True
    return network


def _fractions(rows: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Decoded rows with boxes as fractions of the input, so one tolerance fits every column."""
    height, width = input_size
    scale = np.array([width, height, width, height], dtype=np.float32)
    return np.concatenate([rows[..., :4] / scale, rows[..., 4:]], axis=-1)


def _compare_with_torch(
    model: torch.nn.Module, xml: Path, sample_images: Sequence[Path], metadata: Mapping[str, Any]
) -> tuple[float, list[str]]:
    """Largest absolute difference between the IR (loaded by the runtime) and PyTorch, image by image and
    on a batch of two."""
    import torch

    from yolox_sdk.data.preprocess import images_to_batch
    from yolox_sdk_openvino.runtime import OpenVinoRuntime

    input_size = (int(metadata[METADATA_INPUT_SIZE][0]), int(metadata[METADATA_INPUT_SIZE][1]))
    arrays, notes = _sample_arrays(sample_images, input_size)
    batch, _ = images_to_batch(arrays, input_size)
    try:
        loaded = OpenVinoRuntime(OpenVinoRuntimeOptions()).load(xml, "cpu")
    except YoloxSdkError as error:
        raise ExportError(f"The OpenVINO IR just written cannot be loaded back: {error}") from error
    network = _reference_network(model)
    inputs = [batch[index : index + 1] for index in range(len(batch))]
    inputs.append(torch.cat([batch[:1], batch[-1:]]))
    differences = []
    for images in inputs:
        with torch.inference_mode():
            expected = network(images).numpy()
        try:
            actual = loaded.forward(np.ascontiguousarray(images.numpy()))
        except Exception as error:  # noqa: BLE001 - OpenVINO raises its own exception types
            raise ExportError(
                f"OpenVINO failed on an input of shape {tuple(images.shape)}: {error}"
            ) from error
        if actual.shape != expected.shape:
            raise ExportError(
                f"The OpenVINO IR returns shape {actual.shape} for input {tuple(images.shape)}; PyTorch returns "
                f"{expected.shape}."
            )
        differences.append(
            float(np.max(np.abs(_fractions(actual, input_size) - _fractions(expected, input_size))))
        )
    notes.append(f"checked on {len(arrays)} image(s) one by one and on a batch of 2")
    return float(np.max(differences)), notes  # np.max, unlike max(), keeps a NaN
