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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from yolox_sdk.config.validators import number
from yolox_sdk.errors import DatasetError, ExportError
from yolox_sdk.export import quantization
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
CALIBRATION_SEED = 0
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


@attrs.frozen
class Trial:
    """One mix that was evaluated: the blocks kept float and the AP50:95 / AP50 it reached (points)."""

    float_blocks: tuple[str, ...]
    ap: float
    ap50: float


class OnnxInt8Exporter:
    """Writes ``<file_stem>.onnx`` in INT8; see the module docstring."""

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
        calibration, skipped = _calibration_arrays(options, config, input_size)
        val = _validation_data(options, config, class_names)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{metadata.get(METADATA_FILE_STEM) or 'model'}.onnx"
        with tempfile.TemporaryDirectory(prefix="yolox-int8-") as work:
            float_path = _float_graph(model, metadata, Path(work), sample_images, options.opset)
            search = _Search(float_path, Path(work), calibration, val, config, input_size, options)
            best, fp32 = search.run()
            shutil.copyfile(search.candidate(best.float_blocks), path)
            fp32_ms, int8_ms = quantization.median_latencies_ms([float_path, path], "images", calibration[0])
            checked = _sample_arrays(sample_images, input_size) or calibration[:1]
            difference = quantization.max_abs_difference(float_path, path, "images", checked)
        report = _report(fp32, best, fp32_ms, int8_ms, len(calibration), skipped, len(val.records), search)
        quantization.set_metadata(path, {"quantization": json.dumps(report), "precision": "int8"})
        notes = [*_notes(report), f"max abs diff of the raw outputs vs the float graph: {difference:.3g}"]
        for line in notes:
            log.info("onnx-int8: %s", line)
        return ExportResult(path=path, format=FORMAT, max_abs_diff=difference, notes=tuple(notes))


def _float_graph(
    model: torch.nn.Module, metadata: Mapping[str, Any], work: Path, samples: Sequence[Path], opset: int
) -> Path:
    from yolox_sdk.builtin.exporters.onnx import OnnxExporter, OnnxOptions

    float_options = OnnxOptions(
        opset=opset, dynamic_batch=True, decode_in_graph=False, tolerance=RAW_TOLERANCE
    )
    stem_metadata = {**metadata, METADATA_FILE_STEM: "float"}
    return OnnxExporter(float_options).export(model, stem_metadata, work, samples).path


def _sample_arrays(sample_images: Sequence[Path], input_size: tuple[int, int]) -> list[np.ndarray]:
    from yolox_sdk.data.preprocess import letterbox, read_image

    return [letterbox(read_image(Path(path)), input_size)[0] for path in sample_images]


def _calibration_paths(options: OnnxInt8Options, config: Mapping[str, Any]) -> list[Path]:
    from yolox_sdk.evaluation.predict import list_images

    if options.calibration_folder:
        return list_images(options.calibration_folder)[: options.calibration_images]
    data = config.get("data") or {}
    if not data.get("train_path"):
        raise ExportError(
            "onnx-int8 needs calibration images: the checkpoint's config names no training data "
            "(data.train_path). Pass --option onnx-int8.calibration_folder=FOLDER (images like the deployment's), "
            "and --option onnx-int8.val_path=DATASET if it has no validation data either."
        )
    dataset = _load(
        data["train_path"], data.get("train_split"), data.get("format", "auto"), "data.train_path"
    )
    paths = [record.image_path for record in dataset.records]
    generator = np.random.default_rng(CALIBRATION_SEED)
    chosen = generator.permutation(len(paths))[: options.calibration_images]
    return [paths[index] for index in sorted(chosen)]


def _calibration_arrays(
    options: OnnxInt8Options, config: Mapping[str, Any], input_size: tuple[int, int]
) -> tuple[list[np.ndarray], int]:
    """Letterboxed calibration images and how many were skipped as unreadable."""
    from yolox_sdk.data.preprocess import letterbox, read_image

    paths = _calibration_paths(options, config)
    arrays, skipped = [], 0
    for path in paths:
        try:
            arrays.append(letterbox(read_image(path), input_size)[0])
        except DatasetError as error:
            log.warning("onnx-int8: calibration image skipped: %s", error)
            skipped += 1
    if not arrays:
        source = options.calibration_folder or "the checkpoint's training data"
        raise ExportError(
            f"onnx-int8 has no calibration images: {len(paths)} found in {source}, {skipped} unreadable. Pass "
            "--option onnx-int8.calibration_folder=FOLDER with readable images like the deployment's."
        )
    return arrays, skipped


def _load(path: str, split: str | None, format_name: str, key: str) -> DetectionDataset:
    from yolox_sdk.data.formats import load_dataset

    try:
        return load_dataset(path, split=split, format=format_name)
    except DatasetError as error:
        raise ExportError(f"onnx-int8 cannot read {key} ({path}): {error}") from error


def _validation_data(
    options: OnnxInt8Options, config: Mapping[str, Any], class_names: tuple[str, ...]
) -> DetectionDataset:
    import attrs as attrs_module

    from yolox_sdk.evaluation.runner import dataset_for_checkpoint

    data = config.get("data") or {}
    if options.val_path:
        dataset = _load(
            options.val_path, options.val_split, options.val_format, "export.options.onnx-int8.val_path"
        )
    elif data.get("val_path"):
        dataset = _load(data["val_path"], data.get("val_split"), data.get("format", "auto"), "data.val_path")
    else:
        raise ExportError(
            "onnx-int8 measures the AP it loses on validation data, but the checkpoint's config names none "
            "(data.val_path). Pass --option onnx-int8.val_path=DATASET (and val_split=SPLIT)."
        )
    try:
        dataset = dataset_for_checkpoint(dataset, class_names)
    except DatasetError as error:
        raise ExportError(f"onnx-int8: {error}") from error
    if options.eval_images:
        dataset = attrs_module.evolve(dataset, records=list(dataset.records[: options.eval_images]))
    return dataset


class _Search:
    """Evaluates quantized mixes of the float graph and finds one within budget (module docstring)."""

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
        self.settings = _evaluation_settings(config)
        self.ranges = quantization.calibrate(float_path, "images", calibration, options.calibration_method)
        blocks = quantization.graph_blocks(float_path)
        self.all_blocks = blocks
        self.convolutions = _convolutions(float_path)
        self.blocks = {
            name: nodes for name, nodes in blocks.items() if _searchable(name, nodes, self.convolutions)
        }
        self.trials: list[Trial] = []
        self.sensitivity: dict[str, float] = {}
        self.all_int8: Trial | None = None

    def candidate(self, float_blocks: Sequence[str]) -> Path:
        """The quantized file with ``float_blocks`` kept float (written once per mix)."""
        key = "-".join(sorted(float_blocks)) or "all"
        path = self.work / f"int8-{hashlib.sha1(key.encode()).hexdigest()[:16]}.onnx"
        if not path.exists():
            nodes = [node for block in float_blocks for node in self.all_blocks[block]]
            quantization.quantize(self.float_path, path, self.ranges, self.options.per_channel, nodes)
        return path

    def float_share(self, float_blocks: Sequence[str]) -> float:
        kept = sum(
            1 for block in float_blocks for node in self.all_blocks[block] if node in self.convolutions
        )
        return kept / max(len(self.convolutions), 1)

    def evaluate(self, path: Path) -> tuple[float, float]:
        return _ap_points(path, self.val, self.input_size, self.settings)

    def all_but(self, block: str) -> tuple[str, ...]:
        """Every block but ``block`` (the mix where only ``block`` is INT8)."""
        return tuple(name for name in self.all_blocks if name != block)

    def trial(self, float_blocks: Sequence[str], log_as: str | None = None) -> Trial:
        ap, ap50 = self.evaluate(self.candidate(float_blocks))
        result = Trial(tuple(float_blocks), ap, ap50)
        self.trials.append(result)
        log.info("onnx-int8: %s -> AP50:95 %.2f", log_as or f"float {list(float_blocks) or 'nothing'}", ap)
        return result

    def run(self) -> tuple[Trial, Trial]:
        """The chosen mix and the float reference; raises ``ExportError`` when no mix is within budget."""
        fp32_ap, fp32_ap50 = self.evaluate(self.float_path)
        fp32 = Trial(tuple(self.all_blocks), fp32_ap, fp32_ap50)
        log.info("onnx-int8: float graph (ORT) AP50:95 %.2f on %d val images", fp32_ap, len(self.val.records))
        within = _within(fp32.ap, self.options.max_ap_drop)
        best = self.trial(())
        self.all_int8 = best
        if within(best):
            return best, fp32
        allowed = [
            block for block in self.blocks if self.float_share([block]) <= self.options.max_float_fraction
        ]
        # A block's sensitivity is the AP lost when it alone is INT8: restoring one block at a time from
        # the all-INT8 graph says nothing when two blocks (YOLOX-Nano's stem and dark2) each break it.
        self.sensitivity = {
            block: fp32.ap - self.trial(self.all_but(block), log_as=f"only {block} int8").ap
            for block in allowed
        }
        order = sorted(allowed, key=lambda block: -self.sensitivity[block])
        chosen: list[str] = []
        for block in order:
            if self.float_share([*chosen, block]) > self.options.max_float_fraction:
                continue
            chosen.append(block)
            current = self.trial(chosen)
            if current.ap > best.ap:
                best = current
            if within(current):
                return current, fp32
        raise ExportError(_no_mix_message(fp32, best, self.options, self.float_share(best.float_blocks)))


def _within(fp32_ap: float, budget: float) -> Callable[[Trial], bool]:
    return lambda trial: fp32_ap - trial.ap <= budget + 1e-9


def _no_mix_message(fp32: Trial, best: Trial, options: OnnxInt8Options, share: float) -> str:
    return (
        f"onnx-int8: no mix of INT8 and float layers loses at most max_ap_drop={options.max_ap_drop:g} AP50:95 "
        f"points (float AP50:95 {fp32.ap:.2f}). Best trade-off found: AP50:95 {best.ap:.2f} "
        f"(drop {fp32.ap - best.ap:.2f}) with {list(best.float_blocks) or 'nothing'} kept float ({share:.0%} of "
        f"the convolutions; at most max_float_fraction={options.max_float_fraction:g} may be). Raise "
        "export.options.onnx-int8.max_ap_drop or max_float_fraction, try calibration_method=percentile or more "
        "calibration_images, or deploy the float onnx export."
    )


def _searchable(block: str, nodes: list[str], convolutions: frozenset[str]) -> bool:
    """Blocks worth trying float: those with convolutions, and the head's output ops."""
    return block == quantization.HEAD_OUTPUT_BLOCK or any(node in convolutions for node in nodes)


def _convolutions(float_path: Path) -> frozenset[str]:
    import onnx

    graph = onnx.load(str(float_path)).graph
    return frozenset(node.name for node in graph.node if node.op_type == "Conv")


def _evaluation_settings(config: Mapping[str, Any]) -> Any:
    from yolox_sdk.evaluation.runner import checkpoint_evaluation_settings

    # It reads only the saved config's evaluation section, which is what the exporter holds.
    return checkpoint_evaluation_settings(SimpleNamespace(config=config))  # type: ignore[arg-type]


def _ap_points(
    path: Path, dataset: DetectionDataset, input_size: tuple[int, int], settings: Any
) -> tuple[float, float]:
    """AP50:95 and AP50 of the ONNX file at ``path`` on ``dataset``, in points, via the SDK's evaluator."""
    import math

    from yolox_sdk.builtin.runtimes.onnx_runtime import OnnxRuntimeRuntime
    from yolox_sdk.evaluation.runner import evaluate_model
    from yolox_sdk.runtimes import as_torch_module

    module = as_torch_module(OnnxRuntimeRuntime().load(path, "cpu"))
    metrics = evaluate_model(module, dataset, input_size, settings, "cpu").metrics
    ap, ap50 = metrics["mAP"], metrics["mAP50"]
    return (0.0 if math.isnan(ap) else 100 * ap), (0.0 if math.isnan(ap50) else 100 * ap50)


def _report(
    fp32: Trial,
    best: Trial,
    fp32_ms: float,
    int8_ms: float,
    calibration: int,
    skipped: int,
    val_images: int,
    search: _Search,
) -> dict[str, Any]:
    return {
        "fp32_ap": round(fp32.ap, 3),
        "fp32_ap50": round(fp32.ap50, 3),
        "int8_ap": round(best.ap, 3),
        "int8_ap50": round(best.ap50, 3),
        "ap_drop": round(fp32.ap - best.ap, 3),
        "all_int8_ap": round(search.all_int8.ap, 3) if search.all_int8 else None,
        "max_ap_drop": search.options.max_ap_drop,
        "float_blocks": list(best.float_blocks),
        "float_nodes": [node for block in best.float_blocks for node in search.blocks[block]],
        "sensitivity": {block: round(gain, 3) for block, gain in search.sensitivity.items()},
        "trials": len(search.trials),
        "calibration_images": calibration,
        "calibration_skipped": skipped,
        "calibration_method": search.options.calibration_method,
        "per_channel": search.options.per_channel,
        "val_images": val_images,
        "fp32_latency_ms": round(fp32_ms, 3),
        "int8_latency_ms": round(int8_ms, 3),
        "speedup": round(fp32_ms / int8_ms, 3) if int8_ms > 0 else None,
    }


def _notes(report: Mapping[str, Any]) -> list[str]:
    skipped = f", {report['calibration_skipped']} unreadable skipped" if report["calibration_skipped"] else ""
    return [
        f"fp32 (ORT) AP50:95 {report['fp32_ap']:.2f}, AP50 {report['fp32_ap50']:.2f} on {report['val_images']} "
        "val images",
        f"int8 AP50:95 {report['int8_ap']:.2f}, AP50 {report['int8_ap50']:.2f}: drop {report['ap_drop']:.2f} "
        f"(budget {report['max_ap_drop']:g})",
        f"everything int8: AP50:95 {report['all_int8_ap']:.2f}",
        f"kept float: {', '.join(report['float_blocks']) or 'nothing'} ({len(report['float_nodes'])} nodes; "
        f"{report['trials']} mixes evaluated)",
        f"latency batch 1 (median, CPU): fp32 {report['fp32_latency_ms']:.2f} ms, int8 "
        f"{report['int8_latency_ms']:.2f} ms, speed-up {report['speedup']}x",
        f"calibrated on {report['calibration_images']} images ({report['calibration_method']}, per_channel "
        f"{report['per_channel']}){skipped}",
    ]
