"""INT8 quantization of an ONNX graph with onnxruntime, the graph-level half of the ``onnx-int8`` exporter.

Calibration is run once (``calibrate``) and its activation ranges reused for every mix of quantized and
float layers the sensitivity search tries (``quantize``), because calibrating is the slow part. Layers
are grouped into the blocks of YOLOX (``graph_blocks``: stem, dark2..dark5, the PAFPN stages, the head's
branches per level) by the module path torch.onnx writes into node names, so a search over ~25 blocks
replaces one over ~100 convolutions.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yolox_sdk.errors import ExportError

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# The head's top-level ops (concatenation of levels, sigmoid of scores) are named "/head/<Op>".
HEAD_OUTPUT_BLOCK = "head.output"


def node_block(node_name: str) -> str:
    """The YOLOX block a node belongs to, from the module path in its name.

    ``/backbone/backbone/dark3/...`` -> ``dark3``; ``/backbone/C3_p4/...`` -> ``C3_p4``;
    ``/head/cls_convs.1/...`` -> ``head.cls_convs.1``; ``/head/cls_preds.0/Conv`` -> ``head.cls_preds.0``.
    """
    parts = [part for part in node_name.split("/") if part]
    if len(parts) >= 3 and parts[0] == "backbone" and parts[1] == "backbone":
        return parts[2]
    if len(parts) >= 3 and parts[0] == "backbone":
        return parts[1]
    if len(parts) >= 3 and parts[0] == "head":
        return f"head.{parts[1]}"
    if parts and parts[0] == "head":
        return HEAD_OUTPUT_BLOCK
    return parts[0] if parts else "graph"


def graph_blocks(model_path: Path) -> dict[str, list[str]]:
    """Node names of ``model_path`` per block, blocks in graph order."""
    import onnx

    blocks: dict[str, list[str]] = {}
    for node in onnx.load(str(model_path), load_external_data=False).graph.node:
        blocks.setdefault(node_block(node.name), []).append(node.name)
    return blocks


class _BatchReader:
    """A ``CalibrationDataReader`` over letterboxed images, one image per feed (batch 1)."""

    def __init__(self, input_name: str, images: Sequence[np.ndarray]) -> None:
        self.input_name = input_name
        self.images = list(images)
        self._iterator: Iterator[np.ndarray] = iter(self.images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._iterator, None)
        return None if image is None else {self.input_name: image[None]}

    def rewind(self) -> None:
        self._iterator = iter(self.images)

    def __len__(self) -> int:
        return len(self.images)


def _calibration_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    return methods[name]


def calibrate(model_path: Path, input_name: str, images: Sequence[np.ndarray], method: str) -> Any:
    """Activation ranges of ``model_path`` on ``images`` (letterboxed CHW float32), as onnxruntime's
    ``TensorsData``; the same object feeds every later ``quantize`` call."""
    from onnxruntime.quantization.calibrate import create_calibrator

    if not images:
        raise ExportError("INT8 calibration needs at least one image; none was given or readable.")
    with tempfile.TemporaryDirectory(prefix="yolox-int8-") as folder:
        try:
            calibrator = create_calibrator(
                model_path,
                augmented_model_path=str(Path(folder) / "augmented.onnx"),
                calibrate_method=_calibration_method(method),
                providers=["CPUExecutionProvider"],
            )
            calibrator.collect_data(_BatchReader(input_name, images))
            return calibrator.compute_data()
        except Exception as error:  # noqa: BLE001 - onnxruntime raises many types
            raise ExportError(
                f"onnxruntime calibration ({method}) failed on {model_path}: {error}"
            ) from error


def quantize(
    model_path: Path,
    out_path: Path,
    ranges: Any,
    per_channel: bool,
    float_nodes: Sequence[str],
) -> None:
    """Write ``out_path``: ``model_path`` with QDQ int8 (uint8 activations, int8 weights) on every node but
    ``float_nodes``, using calibration ``ranges`` from ``calibrate``; metadata is carried over."""
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    model = load_model_with_shape_infer(Path(model_path))
    props = [(prop.key, prop.value) for prop in model.metadata_props]
    try:
        quantizer = QDQQuantizer(
            model,
            per_channel,
            False,  # reduce_range: only needed on CPUs without VNNI, and it costs accuracy
            QuantType.QInt8,
            QuantType.QUInt8,
            ranges,
            None,
            list(float_nodes),
            sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),
            {"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        quantizer.quantize_model()
    except Exception as error:  # noqa: BLE001 - onnxruntime raises many types
        raise ExportError(f"onnxruntime could not quantize {model_path}: {error}") from error
    quantized = quantizer.model.model
    del quantized.metadata_props[:]
    for key, value in props:
        prop = quantized.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(quantized, str(out_path))


def set_metadata(path: Path, entries: dict[str, str]) -> None:
    """Add or replace string ``metadata_props`` of the ONNX file at ``path``."""
    import onnx

    model = onnx.load(str(path))
    kept = [(prop.key, prop.value) for prop in model.metadata_props if prop.key not in entries]
    del model.metadata_props[:]
    for key, value in [*kept, *entries.items()]:
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))


def median_latencies_ms(
    paths: Sequence[Path], input_name: str, image: np.ndarray, runs: int = 30
) -> list[float]:
    """Median batch-1 CPU latency of each file in milliseconds, after 5 warm-up runs each.

    The files are timed in turns (one run of each per round), so load from other processes on a shared
    machine falls on all of them alike and their ratio stays meaningful.
    """
    import onnxruntime

    sessions = [onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]) for path in paths]
    feed = {input_name: image[None]}
    for session in sessions:
        for _ in range(5):
            session.run(None, feed)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(runs):
        for session, measured in zip(sessions, times, strict=True):
            started = time.perf_counter()
            session.run(None, feed)
            measured.append((time.perf_counter() - started) * 1000.0)
    return [statistics.median(measured) for measured in times]


def max_abs_difference(first: Path, second: Path, input_name: str, images: Sequence[np.ndarray]) -> float:
    """Largest absolute difference between two ONNX files' outputs on ``images`` (one at a time)."""
    import onnxruntime

    sessions = [
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for path in (first, second)
    ]
    differences = [
        np.max(
            np.abs(
                sessions[0].run(None, {input_name: image[None]})[0]
                - sessions[1].run(None, {input_name: image[None]})[0]
            )
        )
        for image in images
    ]
    return float(np.max(differences))
