"""The ``onnx-int8`` exporter: an INT8 (QDQ) ONNX graph that loses at most ``max_ap_drop`` AP50:95 points.

Quantizing every layer of YOLOX-Nano throws away half its detections, and no single tool picks which
layers to leave in float, so this exporter measures it:

1. export the float graph with raw head outputs (``decode_in_graph: false``: decoded box coordinates in
   pixels do not survive 8 bits; the runtime decodes raw rows in numpy);
2. calibrate activation ranges once on images drawn (seeded) from the checkpoint's training data,
   letterboxed as in evaluation;
3. evaluate the float file and the fully quantized one on the validation split with the SDK's evaluator;
   while the drop exceeds the budget, measure for each block (stem, dark2..dark5, neck stages, head
   branches) the AP regained by keeping it float, then keep the most sensitive blocks float, greedily,
   until the drop is within budget.

No mix within budget (with at most ``max_float_fraction`` of the convolutions float, beyond which there
is little left to speed up) raises ``ExportError`` naming the best trade-off found. The file carries the
``onnx`` exporter's metadata plus ``quantization`` (float blocks, AP, drop, latencies), so ``eval``,
``predict`` and ``benchmark`` load it through the ``onnxruntime`` runtime unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from yolox_sdk.config.validators import number
from yolox_sdk.export import budget_search, quantization
from yolox_sdk.export.budget_search import Trial
from yolox_sdk.plugins.hookspecs import Register, hookimpl
from yolox_sdk.plugins.interfaces import (
    METADATA_CLASS_NAMES,
    METADATA_FILE_STEM,
    METADATA_INPUT_SIZE,
    ExportResult,
)

if TYPE_CHECKING:
    import torch

    from yolox_sdk.data.records import DetectionDataset

log = logging.getLogger(__name__)

FORMAT = "onnx-int8"
CALIBRATION_SEED = budget_search.CALIBRATION_SEED
# The float graph's raw outputs include log-sizes, which float32 rounding moves by ~1e-3 on real images.
RAW_TOLERANCE = 1e-2


@attrs.frozen
class OnnxInt8Options:
    """Options of the ``onnx-int8`` exporter (``export.options.onnx-int8``).

    Attributes:
        max_ap_drop: largest accepted loss of AP50:95, in points (0-100 scale), on the validation data.
        calibration_images: how many training images to calibrate on (drawn with a fixed seed).
        calibration_folder: calibrate on the images of this folder instead of the training data.
        val_path: dataset to measure the AP drop on, instead of the checkpoint's validation data.
        val_split: its split (with ``val_path``).
        val_format: its format (with ``val_path``).
        eval_images: at most this many validation images (the first ones) per evaluation; all by default.
        per_channel: per-output-channel weight scales (more accurate for depthwise convolutions).
        calibration_method: ``minmax``, ``entropy`` or ``percentile``.
        max_float_fraction: the largest share of convolutions the search may keep float.
        opset: ONNX opset of the float graph (QDQ needs 13 or more).
    """

    max_ap_drop: float = attrs.field(default=1.0, validator=number(0.0, 100.0))
    calibration_images: int = attrs.field(default=100, validator=number(1, 100_000))
    calibration_folder: str | None = None
    val_path: str | None = None
    val_split: str | None = None
    val_format: str = "auto"
    eval_images: int | None = attrs.field(default=None, validator=number(1, 1_000_000, optional=True))
    per_channel: bool = True
    calibration_method: str = attrs.field(
        default="minmax", validator=attrs.validators.in_(quantization.CALIBRATION_METHODS)
    )
    max_float_fraction: float = attrs.field(default=0.5, validator=number(0.0, 1.0))
    opset: int = attrs.field(default=17, validator=number(13))


@hookimpl
def register_exporters(register: Register) -> None:
    """Register the ``onnx-int8`` exporter."""
    register(
        FORMAT,
        OnnxInt8Exporter,
        options=OnnxInt8Options,
        description="INT8 ONNX (onnxruntime QDQ), sensitive layers kept float to stay within an AP budget",
    )


__all__ = ["FORMAT", "OnnxInt8Exporter", "OnnxInt8Options", "Trial"]

REMEDIES = (
    "Raise export.options.onnx-int8.max_ap_drop or max_float_fraction, try calibration_method=percentile or more "
    "calibration_images, or deploy the float onnx export."
)


class OnnxInt8Exporter:
    """Writes ``<file_stem>.int8.onnx``; see the module docstring."""

    uses_training_config = True  # export_checkpoint passes training_config= (the Exporter protocol)

    def __init__(self, options: OnnxInt8Options | None = None) -> None:
        self.options = options or OnnxInt8Options()

    def export(
        self,
        model: torch.nn.Module,
        metadata: Mapping[str, Any],
        out_dir: Path,
        sample_images: Sequence[Path],
        training_config: Mapping[str, Any] | None = None,
    ) -> ExportResult:
        """Quantize ``model`` within the AP budget.

        Args:
            model: a YOLOX network (copied by the float export).
            metadata: as for the ``onnx`` exporter (``input_size``, ``class_names``, ``file_stem``).
            out_dir: created if needed.
            sample_images: used for the float graph's check against PyTorch and for latency.
            training_config: the checkpoint's saved config; its ``data`` section names the training
                (calibration) and validation data, its ``evaluation`` section the thresholds.

        Raises:
            ExportError: no calibration or validation data, or no mix within ``max_ap_drop``.
        """
        options = self.options
        config = dict(training_config or {})
        input_size = (int(metadata[METADATA_INPUT_SIZE][0]), int(metadata[METADATA_INPUT_SIZE][1]))
        class_names = tuple(metadata[METADATA_CLASS_NAMES])
        calibration, skipped = budget_search.calibration_arrays(FORMAT, options, config, input_size)
        val = budget_search.validation_data(FORMAT, options, config, class_names)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{budget_search.int8_file_stem(metadata)}.onnx"
        budget = _budget(options)
        with tempfile.TemporaryDirectory(prefix="yolox-int8-") as work:
            float_path = _float_graph(model, metadata, Path(work), sample_images, options.opset)
            backend = _OnnxBackend(float_path, Path(work), calibration, val, config, input_size, options)
            result = budget_search.search(
                backend, float_path, backend.search_blocks(), budget, len(val.records)
            )
            shutil.copyfile(result.chosen_path, path)
            fp32_ms, int8_ms = quantization.median_latencies_ms([float_path, path], "images", calibration[0])
            checked = budget_search.sample_arrays(sample_images, input_size) or calibration[:1]
            difference = quantization.max_abs_difference(float_path, path, "images", checked)
        report = _report(
            result, budget, backend, fp32_ms, int8_ms, len(calibration), skipped, len(val.records)
        )
        quantization.set_metadata(path, {"quantization": json.dumps(report), "precision": "int8"})
        calibration_note = f"{options.calibration_method}, per_channel {options.per_channel}"
        notes = [
            *budget_search.report_notes(report, budget.reference, calibration_note),
            f"max abs diff of the raw outputs vs the float graph: {difference:.3g}",
        ]
        for line in notes:
            log.info("onnx-int8: %s", line)
        return ExportResult(path=path, format=FORMAT, max_abs_diff=difference, notes=tuple(notes))


def _budget(options: OnnxInt8Options) -> budget_search.Budget:
    return budget_search.Budget(FORMAT, options.max_ap_drop, options.max_float_fraction, "ORT", REMEDIES)


def _float_graph(
    model: torch.nn.Module, metadata: Mapping[str, Any], work: Path, samples: Sequence[Path], opset: int
) -> Path:
    from yolox_sdk.builtin.exporters.onnx import OnnxExporter, OnnxOptions

    float_options = OnnxOptions(
        opset=opset, dynamic_batch=True, decode_in_graph=False, tolerance=RAW_TOLERANCE
    )
    stem_metadata = {**metadata, METADATA_FILE_STEM: "float"}
    return OnnxExporter(float_options).export(model, stem_metadata, work, samples).path


class _OnnxBackend:
    """The budget search's backend for onnxruntime: QDQ files of the float graph, calibrated once."""

    def __init__(
        self,
        float_path: Path,
        work: Path,
        calibration: list[np.ndarray],
        val: DetectionDataset,
        config: Mapping[str, Any],
        input_size: tuple[int, int],
        options: OnnxInt8Options,
    ) -> None:
        self.float_path, self.work, self.val, self.options = float_path, work, val, options
        self.input_size = input_size
        self.settings = budget_search.evaluation_settings(config)
        self.ranges = quantization.calibrate(float_path, "images", calibration, options.calibration_method)
        self.all_blocks = quantization.graph_blocks(float_path)
        self.convolutions = _convolutions(float_path)

    def search_blocks(self) -> list[budget_search.Block]:
        """Every block in graph order with its share of the convolutions."""
        total = max(len(self.convolutions), 1)
        return [
            budget_search.Block(
                name,
                sum(1 for node in nodes if node in self.convolutions) / total,
                _searchable(name, nodes, self.convolutions),
            )
            for name, nodes in self.all_blocks.items()
        ]

    def candidate(self, float_blocks: Sequence[str]) -> Path:
        """The quantized file with ``float_blocks`` kept float (written once per mix)."""
        key = "-".join(sorted(float_blocks)) or "all"
        path = self.work / f"int8-{hashlib.sha1(key.encode()).hexdigest()[:16]}.onnx"
        if not path.exists():
            nodes = [node for block in float_blocks for node in self.all_blocks[block]]
            quantization.quantize(self.float_path, path, self.ranges, self.options.per_channel, nodes)
        return path

    def evaluate(self, path: Path) -> tuple[float, float]:
        from yolox_sdk.builtin.runtimes.onnx_runtime import OnnxRuntimeRuntime

        loaded = OnnxRuntimeRuntime().load(path, "cpu")
        return budget_search.ap_points(loaded, self.val, self.input_size, self.settings)


def _searchable(block: str, nodes: list[str], convolutions: frozenset[str]) -> bool:
    """Blocks worth trying float: those with convolutions, and the head's output ops."""
    return block == quantization.HEAD_OUTPUT_BLOCK or any(node in convolutions for node in nodes)


def _convolutions(float_path: Path) -> frozenset[str]:
    import onnx

    graph = onnx.load(str(float_path)).graph
    return frozenset(node.name for node in graph.node if node.op_type == "Conv")


def _report(
    result: budget_search.SearchResult,
    budget: budget_search.Budget,
    backend: _OnnxBackend,
    fp32_ms: float,
    int8_ms: float,
    calibration: int,
    skipped: int,
    val_images: int,
) -> dict[str, Any]:
    options = backend.options
    return {
        **budget_search.search_report(result, budget),
        "float_nodes": [node for block in result.chosen.float_blocks for node in backend.all_blocks[block]],
        **budget_search.sensitivity_report(result),
        "calibration_images": calibration,
        "calibration_skipped": skipped,
        "calibration_method": options.calibration_method,
        "per_channel": options.per_channel,
        "val_images": val_images,
        **budget_search.latency_report(fp32_ms, int8_ms),
    }
