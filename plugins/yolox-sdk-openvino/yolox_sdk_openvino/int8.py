"""The ``openvino-int8`` exporter: an INT8 OpenVINO IR (NNCF) that loses at most ``max_ap_drop`` AP50:95 points.

The float IR comes from this plugin's ``openvino`` exporter with raw head outputs (``decode_in_graph:
false``: decoded pixel coordinates do not survive 8 bits; the runtime decodes in numpy), verified against
PyTorch as usual. ``nncf.quantize`` then quantizes it, calibrated on images drawn (seeded) from the
checkpoint's training data and letterboxed as in evaluation, and the shared budget search
(``yolox_sdk.export.budget_search``) picks which YOLOX blocks stay float: NNCF's ``ignored_scope`` gets
the names of their operations, which the IR keeps from the ONNX graph (``/backbone/backbone/stem/...``),
so ``yolox_sdk.export.quantization.node_block`` groups them exactly as for ``onnx-int8``. Every mix is
evaluated on the validation data with the SDK's evaluator through this plugin's runtime, exactly as
``yolox-sdk eval`` of the file would.

NNCF's own ``quantize_with_accuracy_control`` was measured against this search (README): it ranks each
quantized operation separately (122 on yolox-nano, one evaluation of the validation data each) before
reverting any: 274 evaluations against 35 block mixes on BCCD, for 0.3 AP more at the same speed, and its
report cannot name YOLOX blocks, so it is not used.

The IR carries the ``openvino`` exporter's metadata with ``precision: int8`` and ``quantization`` (the
report: float blocks, AP, drop, latencies vs the float IR). The pair is written under temporary names in
the output folder and renamed into place last, so a failed export leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from yolox_sdk.errors import ExportError
from yolox_sdk.export import budget_search
from yolox_sdk.export.quantization import HEAD_OUTPUT_BLOCK, node_block
from yolox_sdk.plugins.interfaces import (
    METADATA_CLASS_NAMES,
    METADATA_FILE_STEM,
    METADATA_INPUT_SIZE,
    ExportResult,
)
from yolox_sdk_openvino import OpenVinoExportOptions, OpenVinoInt8Options, OpenVinoRuntimeOptions
from yolox_sdk_openvino.ir import PRECISION, WEIGHTS_DIGEST, file_digest, import_openvino, write_metadata

if TYPE_CHECKING:
    import torch

    from yolox_sdk.data.records import DetectionDataset

log = logging.getLogger(__name__)

FORMAT = "openvino-int8"
REMEDIES = (
    "Raise export.options.openvino-int8.max_ap_drop or max_float_fraction, try preset=mixed or more "
    "calibration_images, or deploy the float openvino export."
)
# Operations that are neither quantized nor worth a block of their own.
_NOT_OPERATIONS = frozenset({"Constant", "Parameter", "Result"})
_CONVOLUTIONS = frozenset({"Convolution", "GroupConvolution"})
LATENCY_RUNS = 30


def import_nncf() -> Any:
    """The ``nncf`` module, or an ``ExportError`` saying how to install it."""
    try:
        import nncf
    except ImportError as error:
        raise ExportError(
            "The openvino-int8 exporter needs NNCF, which is not installed here: `pip install 'nncf>=2.12'` "
            "(or reinstall the plugin with its extra: `pip install './plugins/yolox-sdk-openvino[int8]'`)."
        ) from error
    return nncf


class OpenVinoInt8Exporter:
    """Writes ``<file_stem>.int8.xml``/``.bin``; see the module docstring."""

    uses_training_config = True  # export_checkpoint passes training_config= (the Exporter protocol)

    def __init__(self, options: OpenVinoInt8Options | None = None) -> None:
        self.options = options or OpenVinoInt8Options()

    def export(
        self,
        model: torch.nn.Module,
        metadata: Mapping[str, Any],
        out_dir: Path,
        sample_images: Sequence[Path],
        training_config: Mapping[str, Any] | None = None,
    ) -> ExportResult:
        """Quantize ``model`` with NNCF within the AP budget.

        Args:
            model: a YOLOX network.
            metadata: as for the ``openvino`` exporter (``input_size``, ``class_names``, ``file_stem``).
            out_dir: created if needed.
            sample_images: checks the float IR against PyTorch; also timed.
            training_config: the checkpoint's saved config (training data to calibrate on, validation data
                to measure the drop on, evaluation thresholds).

        Raises:
            PluginError: openvino is not installed.
            ExportError: NNCF is not installed, no calibration or validation data, or no mix within budget.
        """
        ov = import_openvino()
        nncf = import_nncf()
        options = self.options
        config = dict(training_config or {})
        if METADATA_INPUT_SIZE not in metadata:
            raise ExportError("The openvino-int8 exporter needs metadata['input_size'] = (height, width).")
        input_size = (int(metadata[METADATA_INPUT_SIZE][0]), int(metadata[METADATA_INPUT_SIZE][1]))
        class_names = tuple(metadata[METADATA_CLASS_NAMES])
        calibration, skipped = budget_search.calibration_arrays(FORMAT, options, config, input_size)
        val = budget_search.validation_data(FORMAT, options, config, class_names)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        xml = out_dir / f"{budget_search.int8_file_stem(metadata)}.xml"
        budget = budget_search.Budget(
            FORMAT, options.max_ap_drop, options.max_float_fraction, "OpenVINO", REMEDIES
        )
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="yolox-openvino-int8-") as scratch:
            work = Path(scratch)
            float_xml = _float_ir(model, metadata, work, sample_images)
            backend = NncfBackend(ov, nncf, float_xml, work, calibration, val, config, input_size, options)
            result = budget_search.search(backend, float_xml, backend.blocks(), budget, len(val.records))
            result, built_with = _final_mix(backend, result)
            search_seconds = time.perf_counter() - started
            checked = budget_search.sample_arrays(sample_images, input_size) or calibration[:1]
            fp32_ms, int8_ms, threads = median_latencies_ms([float_xml, result.chosen_path], checked[0])
            difference = _max_abs_difference(float_xml, result.chosen_path, checked)
            report = {
                **budget_search.search_report(result, budget),
                "float_nodes": backend.float_nodes(result.chosen.float_blocks),
                **budget_search.sensitivity_report(result),
                "calibration_images": len(calibration),
                "calibration_skipped": skipped,
                "built_with": built_with,
                "preset": options.preset,
                "fast_bias_correction": options.fast_bias_correction,
                "val_images": len(val.records),
                **budget_search.latency_report(fp32_ms, int8_ms),
                "latency_threads": threads,
                "search_seconds": round(search_seconds, 1),
                "nncf_version": nncf.__version__,
            }
            _write_final(ov, result.chosen_path, xml, report)
        calibration_note = f"NNCF {nncf.__version__}, preset {options.preset}"
        notes = [
            *budget_search.report_notes(report, budget.reference, calibration_note),
            f"search took {search_seconds:.0f} s; latency measured with {threads} CPU thread(s)",
            f"max abs diff of the raw outputs vs the float IR: {difference:.3g}",
        ]
        for line in notes:
            log.info("openvino-int8: %s", line)
        return ExportResult(path=xml, format=FORMAT, max_abs_diff=difference, notes=tuple(notes))


def _final_mix(
    backend: NncfBackend, result: budget_search.SearchResult
) -> tuple[budget_search.SearchResult, str]:
    """The chosen mix rebuilt by NNCF with its float blocks in ``ignored_scope``, when that scores at
    least as well as the reverted model the search measured (same float operations, so same speed)."""
    if not result.chosen.float_blocks:
        return result, "nncf.quantize"
    rebuilt = backend.rebuilt(result.chosen.float_blocks)
    ap, ap50 = backend.evaluate(rebuilt)
    log.info(
        "%s: %s rebuilt with ignored_scope -> AP50:95 %.2f", FORMAT, list(result.chosen.float_blocks), ap
    )
    if ap < result.chosen.ap:
        return result, "reverted"
    chosen = budget_search.Trial(result.chosen.float_blocks, ap, ap50)
    return attrs.evolve(result, chosen=chosen, chosen_path=rebuilt), "ignored_scope"


def _float_ir(
    model: torch.nn.Module, metadata: Mapping[str, Any], work: Path, sample_images: Sequence[Path]
) -> Path:
    """The verified float32 IR with raw outputs, from the ``openvino`` exporter."""
    from yolox_sdk_openvino.exporter import OpenVinoExporter

    float_options = OpenVinoExportOptions(precision="fp32", decode_in_graph=False)
    entries = {**metadata, METADATA_FILE_STEM: "float"}
    try:
        return OpenVinoExporter(float_options).export(model, entries, work, sample_images).path
    except ExportError as error:
        raise ExportError(
            f"openvino-int8 starts from the float IR of the openvino exporter (decode_in_graph: false), which "
            f"failed; its files were in a temporary folder, now removed: {error}"
        ) from error


class NncfBackend:
    """The budget search's backend: NNCF-quantized IRs of the float IR, evaluated through the runtime."""

    def __init__(
        self,
        ov: Any,
        nncf: Any,
        float_xml: Path,
        work: Path,
        calibration: list[np.ndarray],
        val: DetectionDataset,
        config: Mapping[str, Any],
        input_size: tuple[int, int],
        options: OpenVinoInt8Options,
    ) -> None:
        self.ov, self.nncf, self.float_xml, self.work, self.val = ov, nncf, float_xml, work, val
        self.options, self.input_size = options, input_size
        self.settings = budget_search.evaluation_settings(config)
        self.calibration = nncf.Dataset([image[None] for image in calibration])
        self.subset_size = len(calibration)
        self.model = ov.Core().read_model(str(float_xml))
        self.int8: Any = None
        self.float_operations = {
            operation.get_friendly_name(): operation for operation in self.model.get_ordered_ops()
        }
        self.operations: dict[str, list[str]] = {}
        self.convolutions: set[str] = set()
        for operation in self.model.get_ordered_ops():
            if operation.get_type_name() in _NOT_OPERATIONS:
                continue
            name = operation.get_friendly_name()
            self.operations.setdefault(node_block(name), []).append(name)
            if operation.get_type_name() in _CONVOLUTIONS:
                self.convolutions.add(name)

    def blocks(self) -> list[budget_search.Block]:
        """Every block of the IR in graph order, with its share of the convolutions."""
        total = max(len(self.convolutions), 1)
        return [
            budget_search.Block(
                name,
                sum(operation in self.convolutions for operation in operations) / total,
                name == HEAD_OUTPUT_BLOCK or any(operation in self.convolutions for operation in operations),
            )
            for name, operations in self.operations.items()
        ]

    def float_nodes(self, float_blocks: Sequence[str]) -> list[str]:
        return [name for block in float_blocks for name in self.operations[block]]

    def candidate(self, float_blocks: Sequence[str]) -> Path:
        """The all-INT8 IR with ``float_blocks`` reverted to float (saved once per mix).

        NNCF runs once (``quantize``); a mix is that model with the blocks' operations fed their float
        inputs again: activation ``FakeQuantize`` ops bypassed, and weights and biases (constants, which
        NNCF compressed to int8 or moved by bias correction) copied back from the float IR. A call of
        ``nncf.quantize`` costs 5-10 s on yolox-nano (pattern matching, statistics, bias correction), a
        revert a fraction of a second, and the search tries ~35 mixes.
        """
        xml = self._path("int8", float_blocks)
        if not xml.exists():
            model = self.quantize(()) if not float_blocks else self._reverted(float_blocks)
            self._save(model, xml)
        return xml

    def rebuilt(self, float_blocks: Sequence[str]) -> Path:
        """The mix quantized afresh by NNCF with ``float_blocks`` in ``ignored_scope`` (bias correction
        then sees the float blocks as they run)."""
        xml = self._path("ignored", float_blocks)
        if not xml.exists():
            self._save(self.quantize(float_blocks), xml)
        return xml

    def quantize(self, float_blocks: Sequence[str]) -> Any:
        """``nncf.quantize`` of the float IR with ``float_blocks`` ignored (the all-INT8 model is kept)."""
        if not float_blocks and self.int8 is not None:
            return self.int8
        nncf = self.nncf
        ignored = nncf.IgnoredScope(names=self.float_nodes(float_blocks), validate=False)
        try:
            quantized = nncf.quantize(
                self.model,
                self.calibration,
                preset=nncf.QuantizationPreset(self.options.preset),
                subset_size=self.subset_size,
                fast_bias_correction=self.options.fast_bias_correction,
                ignored_scope=ignored,
            )
        except Exception as error:  # noqa: BLE001 - NNCF raises many types
            raise ExportError(f"NNCF could not quantize the float IR: {error}") from error
        if not float_blocks:
            self.int8 = quantized
        return quantized

    def _reverted(self, float_blocks: Sequence[str]) -> Any:
        from openvino import op as ov_op

        model = self.quantize(()).clone()
        names = set(self.float_nodes(float_blocks))
        for operation in model.get_ordered_ops():
            reference = self.float_operations.get(operation.get_friendly_name())
            if reference is None or operation.get_friendly_name() not in names:
                continue
            for index, port in enumerate(operation.inputs()):
                source = port.get_source_output().get_node()
                original = (
                    reference.input_value(index).get_node() if index < reference.get_input_size() else None
                )
                if original is not None and original.get_type_name() == "Constant":
                    port.replace_source_output(ov_op.Constant(original.get_data()).output(0))
                elif source.get_type_name() == "FakeQuantize":
                    port.replace_source_output(source.input_value(0))
        model.validate_nodes_and_infer_types()
        return model

    def _path(self, kind: str, float_blocks: Sequence[str]) -> Path:
        key = "-".join(sorted(float_blocks)) or "all"
        return self.work / f"{kind}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.xml"

    def _save(self, model: Any, xml: Path) -> None:
        """Save with the digest of the new weights (the float IR's, carried over by NNCF, no longer fits)."""
        try:
            self.ov.save_model(model, str(xml), compress_to_fp16=False)
            write_metadata(model, {WEIGHTS_DIGEST: file_digest(xml.with_suffix(".bin")), PRECISION: "int8"})
            self.ov.save_model(model, str(xml), compress_to_fp16=False)
        except (OSError, RuntimeError) as error:
            raise ExportError(f"openvino.save_model could not write {xml}: {error}") from error

    def evaluate(self, path: Path) -> tuple[float, float]:
        from yolox_sdk_openvino.runtime import OpenVinoRuntime

        loaded = OpenVinoRuntime(OpenVinoRuntimeOptions()).load(path, "cpu")
        return budget_search.ap_points(loaded, self.val, self.input_size, self.settings)


def _compiled(path: Path) -> Any:
    from yolox_sdk_openvino.runtime import OpenVinoRuntime

    return OpenVinoRuntime(OpenVinoRuntimeOptions()).load(path, "cpu")


def median_latencies_ms(paths: Sequence[Path], image: np.ndarray) -> tuple[float, float, int]:
    """Median batch-1 latency (ms) of two IRs loaded by the runtime with its defaults, timed in turns so
    load from other processes falls on both alike, and the CPU threads OpenVINO used."""
    loaded = [_compiled(path) for path in paths]
    batch = np.ascontiguousarray(image[None], dtype=np.float32)
    requests = [model.request(1) for model in loaded]
    for request in requests:
        for _ in range(5):
            request.infer({0: batch})
    times: list[list[float]] = [[] for _ in requests]
    for _ in range(LATENCY_RUNS):
        for request, measured in zip(requests, times, strict=True):
            begun = time.perf_counter()
            request.infer({0: batch})
            measured.append((time.perf_counter() - begun) * 1000.0)
    threads = int(requests[0].get_compiled_model().get_property("INFERENCE_NUM_THREADS"))
    fp32_ms, int8_ms = (statistics.median(measured) for measured in times)
    return fp32_ms, int8_ms, threads


def _max_abs_difference(first: Path, second: Path, images: Sequence[np.ndarray]) -> float:
    """Largest absolute difference of the two IRs' raw outputs on ``images`` (informative: INT8 moves them)."""
    models = [_compiled(path) for path in (first, second)]
    differences = []
    for image in images:
        batch = np.ascontiguousarray(image[None], dtype=np.float32)
        outputs = [np.array(model.request(1).infer({0: batch})[0]) for model in models]
        differences.append(float(np.max(np.abs(outputs[0] - outputs[1]))))
    return float(np.max(differences))


def _write_final(ov: Any, chosen: Path, xml: Path, report: Mapping[str, Any]) -> None:
    """Save the chosen IR with the report as ``xml``/``.bin``: under temporary names beside them, renamed
    into place only once both are complete (``.bin`` first, so the ``.xml`` never points at old weights)."""
    model = ov.Core().read_model(str(chosen))
    partial = xml.with_name(f".{xml.stem}.partial.xml")
    partial_bin = partial.with_suffix(".bin")
    try:
        write_metadata(model, {"quantization": dict(report), PRECISION: "int8"})
        ov.save_model(model, str(partial), compress_to_fp16=False)
        if file_digest(partial_bin) != file_digest(chosen.with_suffix(".bin")):
            raise ExportError(f"OpenVINO wrote different weights to {partial_bin}; export again.")
        partial_bin.replace(xml.with_suffix(".bin"))
        partial.replace(xml)
    except (OSError, RuntimeError) as error:
        raise ExportError(f"openvino.save_model could not write {xml}: {error}") from error
    finally:
        partial.unlink(missing_ok=True)
        partial_bin.unlink(missing_ok=True)
