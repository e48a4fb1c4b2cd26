"""The ``tflite`` runtime: ``.tflite`` files written by the ``tflite`` and ``tflite-int8`` exporters.

Class names, input size and the recommended threshold come from the file's ``yolox_sdk`` metadata
(``yolox_sdk_tflite.flatbuffer``); a ``.tflite`` without it (someone else's model) is refused with a
message naming it, and so is one whose weights no longer match the digest the exporter stored, or that
is truncated. The file runs with ``ai_edge_litert.interpreter`` (the successor of ``tflite-runtime``,
which fails under numpy 2). litert-torch writes a fixed batch of 1, so batches run image by image; INT8
files with an integer input or output are quantized and dequantized here with the scales they carry,
and files exported with ``decode_in_graph: false`` are decoded in numpy.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from yolox_sdk.errors import CheckpointError, WeightsError
from yolox_sdk.plugins.interfaces import (
    METADATA_EVALUATION,
    METADATA_RECOMMENDED_CONF,
)
from yolox_sdk.runtimes.metadata import evaluation_metadata, required_metadata
from yolox_sdk_tflite import TfliteRuntimeOptions
from yolox_sdk_tflite.flatbuffer import (
    DECODED,
    WEIGHTS_DIGEST,
    file_bytes,
    import_litert,
    read_metadata,
    weights_digest,
)

log = logging.getLogger(__name__)

_NOT_OURS = (
    "Only files written by `yolox-sdk export --format tflite` (or tflite-int8) can be used for predict, eval "
    "and benchmark; export the checkpoint again."
)


@attrs.define
class TfliteModel:
    """A LiteRT interpreter on one ``.tflite`` and the metadata the exporter wrote into it."""

    interpreter: Any
    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    recommended_conf: float | None
    decoded: bool
    fixed_batch: int
    input_detail: dict[str, Any]
    output_detail: dict[str, Any]
    evaluation: dict[str, Any] | None = None
    runtime: str = "tflite"

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Decoded rows for ``batch``, run in pieces of the file's fixed batch."""
        step = self.fixed_batch
        pieces = []
        for start in range(0, len(batch), step):
            piece = np.ascontiguousarray(batch[start : start + step], dtype=np.float32)
            count = len(piece)
            if count < step:  # a last, short piece: pad it, drop the padding's rows
                piece = np.concatenate([piece, np.zeros((step - count, *piece.shape[1:]), np.float32)])
            self.interpreter.set_tensor(self.input_detail["index"], _to_input(piece, self.input_detail))
            self.interpreter.invoke()
            rows = _from_output(self.interpreter.get_tensor(self.output_detail["index"]), self.output_detail)
            pieces.append(rows[:count])
        rows = np.concatenate(pieces)
        if not self.decoded:
            from yolox_sdk.runtimes.decoding import decode_raw_output

            rows = decode_raw_output(rows, self.input_size)
        return rows


def _to_input(batch: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return batch.astype(dtype, copy=False)
    scale, zero_point = detail["quantization"]
    limits = np.iinfo(dtype)
    return np.clip(np.round(batch / scale) + zero_point, limits.min, limits.max).astype(dtype)


def _from_output(rows: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if np.issubdtype(rows.dtype, np.floating):
        return rows.astype(np.float32, copy=False)
    scale, zero_point = detail["quantization"]
    return ((rows.astype(np.float32) - zero_point) * scale).astype(np.float32)


class TfliteRuntime:
    """Loads ``.tflite`` files; see the module docstring."""

    suffixes = (".tflite",)

    def __init__(self, options: TfliteRuntimeOptions | None = None) -> None:
        self.options = options or TfliteRuntimeOptions()

    def accepts(self, path: Path) -> bool:
        return Path(path).suffix.lower() in self.suffixes

    def load(self, path: Path, device: str) -> TfliteModel:
        """Raises ``CheckpointError`` for a truncated or damaged file, ``WeightsError`` for a ``.tflite``
        without yolox-sdk's metadata or whose graph does not fit it."""
        path = Path(path)
        import_litert()
        content = _read(path)
        metadata = _metadata(path, content)
        _required_metadata(path, metadata)
        _check_weights(path, content, metadata)
        if str(device).startswith("cuda"):
            log.warning("The tflite runtime runs on the CPU (LiteRT's interpreter): running %s there", path)
        return model_from_content(path, content, metadata, self.options)


def model_from_content(
    path: Path, content: bytes, metadata: dict[str, Any], options: TfliteRuntimeOptions
) -> TfliteModel:
    """A ``TfliteModel`` of flatbuffer ``content`` described by ``metadata`` (``path`` names it in errors).

    ``load`` calls it once the file's own metadata and digest are checked; the INT8 search calls it on the
    candidates it has just quantized, with the export's metadata, to skip embedding it in each of them.
    """
    class_names, input_size = _required_metadata(path, metadata)
    interpreter = _interpreter(path, content, options)
    input_detail, output_detail, fixed_batch = _check_shapes(path, interpreter, class_names, input_size)
    conf = metadata.get(METADATA_RECOMMENDED_CONF)
    return TfliteModel(
        interpreter=interpreter,
        class_names=class_names,
        input_size=input_size,
        recommended_conf=float(conf) if _is_probability(conf) else None,
        decoded=metadata.get(DECODED, True) is not False,
        fixed_batch=fixed_batch,
        input_detail=input_detail,
        output_detail=output_detail,
        evaluation=evaluation_metadata(metadata.get(METADATA_EVALUATION), str(path)),
    )


def _read(path: Path) -> bytes:
    try:
        return file_bytes(path)
    except OSError as error:
        raise CheckpointError(f"{path} cannot be read: {error.strerror or error}.") from error


def _metadata(path: Path, content: bytes) -> dict[str, Any]:
    try:
        return read_metadata(content)
    except Exception as error:  # noqa: BLE001 - a damaged flatbuffer fails in struct, numpy, JSON or UTF-8
        reason = str(error).strip()[:300] or type(error).__name__
        raise CheckpointError(
            f"{path} is not a readable TFLite model (not TFLite at all, or truncated or damaged): {reason}. "
            f"{_NOT_OURS}"
        ) from error


def _required_metadata(path: Path, metadata: dict[str, Any]) -> tuple[tuple[str, ...], tuple[int, int]]:
    return required_metadata(path, metadata, "a TFLite model", "in its 'yolox_sdk' metadata entry", _NOT_OURS)


def _check_weights(path: Path, content: bytes, metadata: dict[str, Any]) -> None:
    expected = metadata.get(WEIGHTS_DIGEST)
    if expected is None:
        raise WeightsError(f"{path} carries yolox-sdk metadata without its weights digest. {_NOT_OURS}")
    try:
        actual = weights_digest(content)
    except Exception as error:  # noqa: BLE001 - a damaged flatbuffer fails in struct or numpy
        raise CheckpointError(
            f"{path} is truncated or damaged: its weights cannot be read ({error})."
        ) from error
    if actual != expected:
        raise CheckpointError(
            f"{path} is damaged: the SHA-256 of its weights is not the one its metadata records (the file was "
            "changed or truncated after export). Copy it again, or export again."
        )


def _interpreter(path: Path, content: bytes, options: TfliteRuntimeOptions) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=content, num_threads=options.threads)
        interpreter.allocate_tensors()
    except Exception as error:  # noqa: BLE001 - LiteRT raises ValueError/RuntimeError with C++ messages
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"LiteRT cannot load {path} (truncated, damaged, or made for ops this runtime lacks): {reason}. "
            f"{_NOT_OURS}"
        ) from error
    return interpreter


def _check_shapes(
    path: Path, interpreter: Any, class_names: tuple[str, ...], input_size: tuple[int, int]
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The input and output details and the file's batch, after checking the graph fits the metadata."""
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    shape = [int(side) for side in inputs[0]["shape"]] if len(inputs) == 1 else []
    if len(shape) != 4 or shape[1] != 3 or len(outputs) != 1:
        raise WeightsError(
            f"{path} does not look like a YOLOX export: expected one (N, 3, H, W) input and one output, got "
            f"{len(inputs)} input(s) {[list(item['shape']) for item in inputs]} and {len(outputs)} output(s)."
        )
    if tuple(shape[2:]) != tuple(input_size):
        raise WeightsError(
            f"{path}: its metadata says input_size {list(input_size)} but the graph's input is {shape}."
        )
    columns = int(outputs[0]["shape"][-1]) if len(outputs[0]["shape"]) else None
    if columns != 5 + len(class_names):
        raise WeightsError(
            f"{path}: the output has {columns} columns per box but its metadata names {len(class_names)} classes "
            f"(expected 5 + {len(class_names)})."
        )
    return inputs[0], outputs[0], max(shape[0], 1)


def _is_probability(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
