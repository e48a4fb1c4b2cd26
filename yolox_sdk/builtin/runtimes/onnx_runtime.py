"""The ``onnxruntime`` runtime: ``.onnx`` files written by the ``onnx`` exporter, run with ONNX Runtime.

Class names, input size and the recommended threshold are read from the file's ``metadata_props``, so
the file alone is enough. Files exported with ``decode_in_graph: false`` are decoded here in numpy
(``yolox_sdk.runtimes.decoding``), so both layouts give the evaluator the same rows. A file with a fixed
batch of 1 is run image by image.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from yolox_sdk.config.validators import number
from yolox_sdk.errors import CheckpointError, WeightsError
from yolox_sdk.plugins.hookspecs import Register, hookimpl
from yolox_sdk.plugins.interfaces import (
    METADATA_CLASS_NAMES,
    METADATA_EVALUATION,
    METADATA_INPUT_SIZE,
    METADATA_RECOMMENDED_CONF,
)
from yolox_sdk.runtimes.metadata import evaluation_metadata, required_metadata

log = logging.getLogger(__name__)


@attrs.frozen
class OnnxRuntimeOptions:
    """Options of the ``onnxruntime`` runtime.

    Attributes:
        threads: intra-op threads of the session; ``None`` lets ONNX Runtime choose (one per core).
    """

    threads: int | None = attrs.field(default=None, validator=number(1, 1024, optional=True))


@hookimpl
def register_runtimes(register: Register) -> None:
    """Register the ``onnxruntime`` runtime."""
    register(
        "onnxruntime",
        OnnxRuntimeRuntime,
        options=OnnxRuntimeOptions,
        description="ONNX files exported by yolox-sdk (.onnx), ONNX Runtime (CPU, CUDA when installed)",
    )


@attrs.define
class OnnxModel:
    """An ONNX Runtime session and the metadata the exporter wrote into the file."""

    session: Any
    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    recommended_conf: float | None
    decoded: bool
    fixed_batch: int | None
    input_name: str
    evaluation: dict[str, Any] | None = None
    runtime: str = "onnxruntime"

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Decoded rows for ``batch``, run in pieces of ``fixed_batch`` when the file's batch is fixed."""
        step = self.fixed_batch or len(batch)
        pieces = [
            self.session.run(None, {self.input_name: batch[start : start + step]})[0]
            for start in range(0, len(batch), step)
        ]
        rows = np.concatenate(pieces).astype(np.float32, copy=False)
        if not self.decoded:
            from yolox_sdk.runtimes.decoding import decode_raw_output

            rows = decode_raw_output(rows, self.input_size)
        return rows


class OnnxRuntimeRuntime:
    """Loads ``.onnx`` files; see the module docstring."""

    suffixes = (".onnx",)

    def __init__(self, options: OnnxRuntimeOptions | None = None) -> None:
        self.options = options or OnnxRuntimeOptions()

    def accepts(self, path: Path) -> bool:
        return Path(path).suffix.lower() in self.suffixes

    def load(self, path: Path, device: str) -> OnnxModel:
        """Raises ``CheckpointError`` for a file ONNX Runtime cannot read, ``WeightsError`` for an ONNX
        model without yolox-sdk's metadata or with outputs that do not fit it."""
        session = _session(Path(path), str(device), self.options)
        metadata = session.get_modelmeta().custom_metadata_map
        class_names, input_size = _required_metadata(Path(path), metadata)
        inputs, outputs = session.get_inputs(), session.get_outputs()
        _check_shapes(Path(path), inputs, outputs, class_names, input_size)
        batch = inputs[0].shape[0]
        return OnnxModel(
            session=session,
            class_names=class_names,
            input_size=input_size,
            recommended_conf=_optional_float(metadata.get(METADATA_RECOMMENDED_CONF)),
            decoded=_json(metadata.get("decoded", "true")) is not False,
            fixed_batch=batch if isinstance(batch, int) else None,
            input_name=inputs[0].name,
            evaluation=evaluation_metadata(metadata.get(METADATA_EVALUATION), str(path)),
        )


def _session(path: Path, device: str, options: OnnxRuntimeOptions) -> Any:
    import onnxruntime

    settings = onnxruntime.SessionOptions()
    if options.threads:
        settings.intra_op_num_threads = options.threads
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            log.warning(
                "onnxruntime has no CUDA provider here (onnxruntime-gpu not installed): running %s on CPU",
                path,
            )
    try:
        return onnxruntime.InferenceSession(str(path), settings, providers=providers)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{path} is not a readable ONNX model (truncated, damaged or not ONNX at all): {reason}. Export it "
            "again with `yolox-sdk export CHECKPOINT`."
        ) from error


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _optional_float(text: str | None) -> float | None:
    value = _json(text)
    return float(value) if isinstance(value, int | float) and 0 <= value <= 1 else None


def _required_metadata(path: Path, metadata: dict[str, str]) -> tuple[tuple[str, ...], tuple[int, int]]:
    decoded = {key: _json(metadata.get(key)) for key in (METADATA_CLASS_NAMES, METADATA_INPUT_SIZE)}
    return required_metadata(
        path,
        decoded,
        "an ONNX model",
        "in its metadata_props",
        "Only files written by `yolox-sdk export` (or the onnx exporter) can be used for predict, eval and "
        "benchmark.",
    )


def _check_shapes(
    path: Path,
    inputs: list[Any],
    outputs: list[Any],
    class_names: tuple[str, ...],
    input_size: tuple[int, int],
) -> None:
    if len(inputs) != 1 or len(outputs) < 1 or len(inputs[0].shape) != 4:
        raise WeightsError(
            f"{path} does not look like a YOLOX export: expected one (N, 3, H, W) input and an output, got "
            f"{len(inputs)} input(s) {[tuple(item.shape) for item in inputs]} and {len(outputs)} output(s)."
        )
    height, width = inputs[0].shape[2], inputs[0].shape[3]
    if (isinstance(height, int) and height != input_size[0]) or (
        isinstance(width, int) and width != input_size[1]
    ):
        raise WeightsError(
            f"{path}: its metadata says input_size {list(input_size)} but the graph's input is {inputs[0].shape}."
        )
    columns = outputs[0].shape[-1] if outputs[0].shape else None
    if isinstance(columns, int) and columns != 5 + len(class_names):
        raise WeightsError(
            f"{path}: the output has {columns} columns per box but its metadata names {len(class_names)} classes "
            f"(expected 5 + {len(class_names)})."
        )
