"""The ``tflite-int8`` exporter: an INT8 ``.tflite`` that loses at most ``max_ap_drop`` AP50:95 points.

1. Convert the float network with raw head outputs (``decode_in_graph: false``: pixel coordinates and
   probabilities in one 8-bit tensor would share one scale; the runtime decodes raw rows in numpy) with
   litert-torch, as the ``tflite`` exporter does.
2. Calibrate once with ai-edge-quantizer (static ``int8`` activations, per-channel ``int8`` weights) on
   images drawn (seeded) from the checkpoint's training data, letterboxed exactly as in evaluation.
3. Run the shared accuracy-budget search (``yolox_sdk.export.budget_search``) over YOLOX's blocks
   (stem, dark2..dark5, the PAFPN stages, the head per level, the head's output ops): each candidate is
   the same calibrated model with some blocks given ai-edge-quantizer's ``no_quantize``, evaluated on the
   validation split with the SDK's evaluator through this plugin's runtime.

Why ai-edge-quantizer on the converted file rather than litert-torch's PT2E path (``prepare_pt2e`` with a
quantizer whose per-module-name overrides keep blocks float): PT2E quantizes the PyTorch graph before
conversion, so every mix the search tries would cost a calibration and a litert-torch conversion (~45 s
for yolox-nano on 2 cores, ~30 mixes); the quantizer calibrates once (seconds) and writes a mix in a
fraction of a second. Blocks are found from the module paths litert-torch writes into tensor names.
"""

from __future__ import annotations

import hashlib
import logging
import re
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from yolox_sdk.errors import ExportError
from yolox_sdk.export import budget_search
from yolox_sdk.plugins.interfaces import METADATA_CLASS_NAMES, METADATA_FILE_STEM, ExportResult
from yolox_sdk_tflite import TfliteInt8Options, TfliteRuntimeOptions
from yolox_sdk_tflite.exporter import (
    convert,
    file_metadata,
    fractions,
    input_size_of,
    keep_failed,
    output_path,
    prepared_network,
    quiet_root_logger,
    sample_batch,
    write_atomically,
)
from yolox_sdk_tflite.flatbuffer import embed_metadata, import_converter

if TYPE_CHECKING:
    import torch

    from yolox_sdk.data.records import DetectionDataset

log = logging.getLogger(__name__)

FORMAT = "tflite-int8"
HEAD_OUTPUT_BLOCK = "head.output"
CONFIDENT = 0.3  # anchors PyTorch scores at least this are compared with PyTorch after export
CONVOLUTIONS = ("CONV_2D", "DEPTHWISE_CONV_2D")
SIGNATURE = "serving_default"
REMEDIES = (
    "Raise export.options.tflite-int8.max_ap_drop or max_float_fraction, try more calibration_images, or "
    "deploy the float tflite export (precision fp16 halves the file with no measurable AP loss)."
)


def scope_block(scope: str) -> str:
    """The YOLOX block of a TFLite op, from the module path litert-torch writes into its output's name.

    A path is ``yolox.models.yolox.YoloxModule/...YoloPafpn_backbone/...CspDarknet_backbone/
    torch.nn.modules.container.Sequential_dark2/...``: each step is ``<class>_<attribute>``. The first
    name of a fused op decides. ``dark2``, ``stem``, ``C3_p4``, ``lateral_conv0``...; head layers are
    ``head.<level>`` (litert-torch names a ``ModuleList`` item by its index only, so a level's class,
    regression and objectness layers go together), the head's concatenation and decoding ``head.output``.
    """
    first = scope.split(";")[0]
    attributes = []
    for step in first.split("/"):
        leaf = step.rsplit(".", 1)[-1]
        if "_" in leaf:
            attributes.append(leaf.split("_", 1)[1])
    if len(attributes) >= 3 and attributes[:2] == ["backbone", "backbone"]:
        return attributes[2]
    if len(attributes) >= 2 and attributes[0] == "backbone":
        return attributes[1]
    if len(attributes) >= 2 and attributes[0] == "head":
        return f"head.{attributes[1]}"
    if attributes and attributes[0] == "head":
        return HEAD_OUTPUT_BLOCK
    return attributes[0] if attributes else "graph"


def graph_blocks(content: bytes) -> tuple[dict[str, list[str]], dict[str, int]]:
    """The op scopes of each block (graph order) and each block's number of convolutions."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as utils

    model = utils.read_model(bytearray(content))
    codes = model.operatorCodes
    scopes: dict[str, list[str]] = {}
    convolutions: dict[str, int] = {}
    for op in model.subgraphs[0].operators:
        scope = utils.get_op_scope(op, model.subgraphs[0].tensors)
        block = scope_block(scope)
        scopes.setdefault(block, []).append(scope)
        name = utils.TFL_OP_CODE_TO_NAME.get(codes[op.opcodeIndex].builtinCode)
        convolutions[block] = convolutions.get(block, 0) + (getattr(name, "value", name) in CONVOLUTIONS)
    return scopes, convolutions


def _scope_regex(scopes: Sequence[str]) -> str:
    """A regex matching exactly these op scopes (ai-edge-quantizer searches it in each op's scope)."""
    return "^(?:" + "|".join(sorted({_escape(scope) for scope in scopes})) + ")$"


def _escape(scope: str) -> str:
    return re.escape(scope)


def _short(scope: str) -> str:
    """The last module step of an op's first output name (``BaseConv_conv1/...Conv2d_conv``), for reports."""
    return "/".join(scope.split(";")[0].split("/")[-2:])


class TfliteInt8Exporter:
    """Writes ``<file_stem>.int8.tflite``; see the module docstring."""

    uses_training_config = True  # export_checkpoint passes training_config= (the Exporter protocol)

    def __init__(self, options: TfliteInt8Options | None = None) -> None:
        self.options = options or TfliteInt8Options()

    def export(
        self,
        model: torch.nn.Module,
        metadata: Mapping[str, Any],
        out_dir: Path,
        sample_images: Sequence[Path],
        training_config: Mapping[str, Any] | None = None,
    ) -> ExportResult:
        """Quantize ``model`` within the AP budget.

        Raises:
            PluginError: litert-torch or ai-edge-litert is not installed.
            ExportError: no calibration or validation data, a conversion failure, or no mix within
                ``max_ap_drop`` (the message names the best trade-off found).
        """
        litert_torch = import_converter()
        options = self.options
        config = dict(training_config or {})
        input_size = input_size_of(metadata)
        class_names = tuple(metadata[METADATA_CLASS_NAMES])
        calibration, skipped = budget_search.calibration_arrays(FORMAT, options, config, input_size)
        val = budget_search.validation_data(FORMAT, options, config, class_names)
        path = output_path(out_dir, {**metadata, METADATA_FILE_STEM: budget_search.int8_file_stem(metadata)})
        batch, _ = sample_batch(sample_images, input_size)
        started = time.perf_counter()
        float_content = convert(litert_torch, prepared_network(model, decode=False), batch[:1])
        conversion_seconds = time.perf_counter() - started
        budget = budget_search.Budget(
            FORMAT, options.max_ap_drop, options.max_float_fraction, "LiteRT fp32", REMEDIES
        )
        with tempfile.TemporaryDirectory(prefix="yolox-tflite-int8-") as work:
            backend = _QuantizerBackend(
                float_content, Path(work), calibration, val, config, metadata, options
            )
            float_path = Path(work) / "float.tflite"
            float_path.write_bytes(float_content)
            result = budget_search.search(
                backend, float_path, backend.search_blocks(), budget, len(val.records)
            )
            searched = [backend.load(float_path), backend.load(result.chosen_path)]
            fp32_ms, int8_ms = median_latencies_ms(searched, calibration[0])
            checked = budget_search.sample_arrays(sample_images, input_size) or calibration[:1]
            report = _report(
                result, budget, backend, fp32_ms, int8_ms, len(calibration), skipped, len(val.records)
            )
            entries = {**file_metadata(metadata, "int8", decoded=False), "quantization": report}
            write_atomically(path, embed_metadata(result.chosen_path.read_bytes(), entries))
            _check_written(path, searched[1], checked, options)
        difference, confident = _confident_difference(model, path, batch, input_size, options)
        notes = [
            f"converted in {conversion_seconds:.1f} s (litert-torch {litert_torch.__version__}), calibrated and "
            f"quantized with ai-edge-quantizer",
            *budget_search.report_notes(report, budget.reference, "minmax, int8 weights per channel"),
            f"max abs diff vs PyTorch on the {confident} anchors PyTorch scores >= {CONFIDENT} in the sample "
            f"images (boxes as fractions): {difference:.3g}",
        ]
        for line in notes:
            log.info("%s: %s", FORMAT, line)
        return ExportResult(path=path, format=FORMAT, max_abs_diff=difference, notes=tuple(notes))


def _check_written(
    path: Path, searched: Any, images: Sequence[np.ndarray], options: TfliteInt8Options
) -> None:
    """Load the written file as ``predict`` and ``eval`` will and check it computes what the search
    measured (the same graph: only the metadata was added)."""
    from yolox_sdk.errors import YoloxSdkError
    from yolox_sdk_tflite.runtime import TfliteRuntime

    batch = np.stack(images).astype(np.float32)
    try:
        written = (
            TfliteRuntime(TfliteRuntimeOptions(threads=options.threads)).load(path, "cpu").forward(batch)
        )
    except YoloxSdkError as error:
        failed = keep_failed(path)
        raise ExportError(
            f"{FORMAT}: the file just written cannot be loaded back (kept as {failed}): {error}"
        ) from error
    if not np.allclose(written, searched.forward(batch), rtol=0, atol=1e-5):
        failed = keep_failed(path)
        raise ExportError(
            f"{FORMAT}: the file written ({failed}) does not compute what the search evaluated."
        )


class _QuantizerBackend:
    """The budget search's backend for ai-edge-quantizer: mixes of the float file, calibrated once."""

    def __init__(
        self,
        float_content: bytes,
        work: Path,
        calibration: list[np.ndarray],
        val: DetectionDataset,
        config: Mapping[str, Any],
        metadata: Mapping[str, Any],
        options: TfliteInt8Options,
    ) -> None:
        self.float_content, self.work, self.val, self.options = float_content, work, val, options
        self.metadata = metadata
        self.input_size = input_size_of(metadata)
        self.settings = budget_search.evaluation_settings(config)
        self.scopes, self.convolutions = graph_blocks(float_content)
        self.ranges = self._calibrate(calibration)

    def _quantizer(self, float_blocks: Sequence[str]) -> Any:
        from ai_edge_quantizer import qtyping, quantizer
        from ai_edge_quantizer.algorithm_manager import AlgorithmName

        everything = qtyping.TFLOperationName.ALL_SUPPORTED
        mixed = quantizer.Quantizer(bytearray(self.float_content))
        mixed.add_static_config(
            regex=".*", operation_name=everything, activation_num_bits=8, weight_num_bits=8
        )
        for block in float_blocks:  # added after ".*": the later matching scope wins
            mixed.update_quantization_recipe(
                regex=_scope_regex(self.scopes[block]),
                operation_name=everything,
                algorithm_key=AlgorithmName.NO_QUANTIZE,
            )
        return mixed

    def _calibrate(self, calibration: list[np.ndarray]) -> Any:
        started = time.perf_counter()
        samples = [{self._input_name(): image[None].astype(np.float32)} for image in calibration]
        try:
            with quiet_root_logger():
                ranges = self._quantizer(()).calibrate(
                    {SIGNATURE: samples}, num_threads=self.options.threads or 2
                )
        except Exception as error:  # noqa: BLE001 - the quantizer raises many types
            raise ExportError(f"{FORMAT}: ai-edge-quantizer calibration failed: {error}") from error
        log.info(
            "%s: calibrated on %d images in %.1f s", FORMAT, len(calibration), time.perf_counter() - started
        )
        return ranges

    def _input_name(self) -> str:
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_content=self.float_content).get_signature_runner(SIGNATURE)
        return next(iter(runner.get_input_details()))

    def quantized(self, float_blocks: Sequence[str]) -> bytes:
        """The calibrated model with ``float_blocks`` kept float, as flatbuffer bytes."""
        try:
            with quiet_root_logger():
                result = self._quantizer(float_blocks).quantize(
                    self.ranges, enable_progress_bar=False, enable_progress_report=False
                )
        except Exception as error:  # noqa: BLE001 - the quantizer raises many types
            raise ExportError(
                f"{FORMAT}: ai-edge-quantizer could not quantize with {list(float_blocks) or 'nothing'} float: "
                f"{error}"
            ) from error
        return bytes(result.quantized_model)

    def search_blocks(self) -> list[budget_search.Block]:
        total = max(sum(self.convolutions.values()), 1)
        return [
            budget_search.Block(
                name,
                self.convolutions[name] / total,
                searchable=name == HEAD_OUTPUT_BLOCK or self.convolutions[name] > 0,
            )
            for name in self.scopes
        ]

    def candidate(self, float_blocks: Sequence[str]) -> Path:
        """The mix as a bare ``.tflite`` (no metadata: ``evaluate`` supplies the export's)."""
        key = "-".join(sorted(float_blocks)) or "all"
        path = self.work / f"int8-{hashlib.sha1(key.encode()).hexdigest()[:16]}.tflite"
        if not path.exists():
            path.write_bytes(self.quantized(float_blocks))
        return path

    def load(self, path: Path) -> Any:
        """A file of the search through the runtime, with the export's metadata when it has none."""
        from yolox_sdk_tflite.flatbuffer import read_metadata
        from yolox_sdk_tflite.runtime import model_from_content

        content = path.read_bytes()
        metadata = read_metadata(content) or file_metadata(self.metadata, "int8", decoded=False)
        return model_from_content(path, content, metadata, TfliteRuntimeOptions(threads=self.options.threads))

    def evaluate(self, path: Path) -> tuple[float, float]:
        return budget_search.ap_points(self.load(path), self.val, self.input_size, self.settings)


def median_latencies_ms(models: Sequence[Any], image: np.ndarray, runs: int = 30) -> list[float]:
    """Median batch-1 latency of each loaded model, in milliseconds, timed in turns (one run of each per
    round) so load from other processes falls on all of them alike."""
    batch = image[None].astype(np.float32)
    for loaded in models:
        for _ in range(5):
            loaded.forward(batch)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(runs):
        for loaded, measured in zip(models, times, strict=True):
            started = time.perf_counter()
            loaded.forward(batch)
            measured.append((time.perf_counter() - started) * 1000.0)
    return [statistics.median(measured) for measured in times]


def _confident_difference(
    model: torch.nn.Module,
    path: Path,
    batch: torch.Tensor,
    input_size: tuple[int, int],
    options: TfliteInt8Options,
) -> tuple[float, int]:
    """Largest difference between the written file and PyTorch on the anchors PyTorch is confident about,
    and how many there were; ``ExportError`` above ``options.tolerance``.

    INT8 moves the scores of background anchors freely (the AP budget judges those), so only anchors that
    would become detections are compared: a file whose confident boxes moved far is broken.
    """
    import torch

    from yolox_sdk_tflite.runtime import TfliteRuntime

    network = prepared_network(model, decode=True)
    with torch.inference_mode():
        expected = network(batch).numpy()
    loaded = TfliteRuntime(TfliteRuntimeOptions(threads=options.threads)).load(path, "cpu")
    actual = loaded.forward(np.ascontiguousarray(batch.numpy()))
    confident = expected[..., 4] * expected[..., 5:].max(axis=-1) >= CONFIDENT
    if not confident.any():
        return 0.0, 0
    differences = np.abs(fractions(actual, input_size) - fractions(expected, input_size))[confident]
    difference = float(np.max(differences))
    if not difference <= options.tolerance:  # written so that NaN fails too
        failed = keep_failed(path)
        raise ExportError(
            f"{FORMAT}: the INT8 file disagrees with PyTorch on the boxes PyTorch is confident about: max abs "
            f"difference {difference:.3g} > tolerance {options.tolerance:g} (boxes as fractions of the input, "
            f"{int(confident.sum())} anchors scored >= {CONFIDENT} on the sample images). The file was kept as "
            f"{failed}. Lower export.options.tflite-int8.max_ap_drop, or raise tolerance if its AP is acceptable."
        )
    return difference, int(confident.sum())


def _report(
    result: budget_search.SearchResult,
    budget: budget_search.Budget,
    backend: _QuantizerBackend,
    fp32_ms: float,
    int8_ms: float,
    calibration: int,
    skipped: int,
    val_images: int,
) -> dict[str, Any]:
    return {
        **budget_search.search_report(result, budget),
        "float_nodes": [
            _short(scope) for block in result.chosen.float_blocks for scope in backend.scopes[block]
        ],
        **budget_search.sensitivity_report(result),
        "calibration_images": calibration,
        "calibration_skipped": skipped,
        "calibration_method": "minmax",
        "val_images": val_images,
        **budget_search.latency_report(fp32_ms, int8_ms),
        "threads": backend.options.threads,
    }
