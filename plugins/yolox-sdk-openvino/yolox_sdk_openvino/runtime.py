"""The ``openvino`` runtime: IR files (``.xml`` + ``.bin``) written by the ``openvino`` exporter.

Class names, input size and the recommended threshold come from the IR's ``rt_info``
(``yolox_sdk_openvino.ir``); an ``.xml`` without them (a VOC annotation, someone else's IR) is refused
with a message naming it. The ``.bin`` is checked against the digest the exporter stored, since OpenVINO
runs damaged weights of the right size without complaint. The model is compiled in float32 by default
(``inference_precision``), so its results match PyTorch's; files exported with ``decode_in_graph: false``
are decoded in numpy, and a file with a fixed batch is run in pieces.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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
from yolox_sdk_openvino import OpenVinoRuntimeOptions
from yolox_sdk_openvino.ir import DECODED, WEIGHTS_DIGEST, file_digest, import_openvino, read_metadata

log = logging.getLogger(__name__)

_KEPT_BATCH_SIZES = 4
_PRECISION_HINTS = {"f32": "f32", "bf16": "bf16", "f16": "f16"}  # "auto": no hint, the device decides


@attrs.define
class OpenVinoModel:
    """An IR, compiled once per batch size it is run at, and the metadata the exporter wrote into it.

    OpenVINO runs a graph with static shapes faster than the dynamic-batch IR (yolox-nano 416 on 2 CPU
    threads: 9.0 against 11.3 ms at batch 1), so each batch size gets its own compiled model; the few
    most recent are kept (an evaluation needs two: its batch size and the last, smaller, batch).
    """

    compile_for: Callable[[int], Any]
    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    recommended_conf: float | None
    decoded: bool
    fixed_batch: int | None
    evaluation: dict[str, Any] | None = None
    runtime: str = "openvino"
    requests: dict[int, Any] = attrs.field(factory=dict)

    def request(self, size: int) -> Any:
        """The infer request of the model compiled for batches of ``size``."""
        if size not in self.requests:
            if len(self.requests) >= _KEPT_BATCH_SIZES:
                self.requests.pop(next(iter(self.requests)))
            self.requests[size] = self.compile_for(size).create_infer_request()
        return self.requests[size]

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Decoded rows for ``batch``, run in pieces of ``fixed_batch`` when the IR's batch is fixed."""
        step = self.fixed_batch or len(batch)
        pieces = []
        for start in range(0, len(batch), step):
            piece = np.ascontiguousarray(batch[start : start + step], dtype=np.float32)
            pieces.append(np.array(self.request(len(piece)).infer({0: piece})[0], np.float32))
        rows = np.concatenate(pieces)
        if not self.decoded:
            from yolox_sdk.runtimes.decoding import decode_raw_output

            rows = decode_raw_output(rows, self.input_size)
        return rows


class OpenVinoRuntime:
    """Loads ``.xml`` IR files; see the module docstring."""

    suffixes = (".xml",)

    def __init__(self, options: OpenVinoRuntimeOptions | None = None) -> None:
        self.options = options or OpenVinoRuntimeOptions()

    def accepts(self, path: Path) -> bool:
        return Path(path).suffix.lower() in self.suffixes

    def load(self, path: Path, device: str) -> OpenVinoModel:
        """Raises ``CheckpointError`` for an IR OpenVINO cannot read or whose ``.bin`` is missing or damaged,
        ``WeightsError`` for an ``.xml`` without yolox-sdk's metadata or whose graph does not fit it."""
        path = Path(path)
        ov = import_openvino()
        core = ov.Core()
        model = _read(core, path)
        metadata = read_metadata(model)
        class_names, input_size = _required_metadata(path, metadata)
        _check_weights(path, metadata)
        fixed_batch = _check_shapes(path, model, class_names, input_size)
        if str(device).startswith("cuda"):
            log.warning("OpenVINO does not run on CUDA devices: running %s on %s", path, self.options.device)
        conf = metadata.get(METADATA_RECOMMENDED_CONF)
        loaded = OpenVinoModel(
            compile_for=lambda size: _compile(core, model, path, self.options, None if fixed_batch else size),
            class_names=class_names,
            input_size=input_size,
            recommended_conf=float(conf) if _is_probability(conf) else None,
            decoded=metadata.get(DECODED, True) is not False,
            fixed_batch=fixed_batch,
            evaluation=evaluation_metadata(metadata.get(METADATA_EVALUATION), str(path)),
        )
        loaded.request(fixed_batch or 1)  # compile now: a device or setting OpenVINO refuses fails at load
        return loaded


_NOT_OURS = (
    "Only files written by `yolox-sdk export --format openvino` (an .xml with its .bin beside it) can be used "
    "for predict, eval and benchmark; export the checkpoint again."
)


def _read(core: Any, path: Path) -> Any:
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise CheckpointError(
            f"{path}: its weights file {weights.name} is missing (an OpenVINO IR is an .xml and a .bin of the "
            f"same name in the same folder). {_NOT_OURS}"
        )
    try:
        return core.read_model(str(path), str(weights))
    except Exception as error:  # noqa: BLE001 - OpenVINO raises its own exception types
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{path} is not a readable OpenVINO IR (not an IR at all, or it or {weights.name} is truncated or "
            f"damaged): {reason}. {_NOT_OURS}"
        ) from error


def _required_metadata(path: Path, metadata: dict[str, Any]) -> tuple[tuple[str, ...], tuple[int, int]]:
    return required_metadata(path, metadata, "an OpenVINO IR", "under rt_info/yolox_sdk", _NOT_OURS)


def _check_weights(path: Path, metadata: dict[str, Any]) -> None:
    expected = metadata.get(WEIGHTS_DIGEST)
    if expected is None:
        return  # an IR re-saved by other tools; OpenVINO's own checks apply
    weights = path.with_suffix(".bin")
    if file_digest(weights) != expected:
        raise CheckpointError(
            f"{weights} is damaged: its SHA-256 is not the one {path.name} records for it (the file was changed, "
            f"truncated or copied from another export). Copy it again with {path.name}, or export again."
        )


def _static(dimension: Any) -> int | None:
    return dimension.get_length() if dimension.is_static else None


def _check_shapes(
    path: Path, model: Any, class_names: tuple[str, ...], input_size: tuple[int, int]
) -> int | None:
    """The IR's fixed batch (``None`` when dynamic), after checking its graph fits the metadata."""
    inputs, outputs = model.inputs, model.outputs
    input_shape = inputs[0].get_partial_shape() if len(inputs) == 1 else None
    if input_shape is None or input_shape.rank.is_dynamic or len(input_shape) != 4 or not outputs:
        raise WeightsError(
            f"{path} does not look like a YOLOX export: expected one (N, 3, H, W) input and an output, got "
            f"{len(inputs)} input(s) {[str(item.get_partial_shape()) for item in inputs]} and {len(outputs)} "
            "output(s)."
        )
    height, width = _static(input_shape[2]), _static(input_shape[3])
    if (height is not None and height != input_size[0]) or (width is not None and width != input_size[1]):
        raise WeightsError(
            f"{path}: its metadata says input_size {list(input_size)} but the graph's input is {input_shape}."
        )
    output_shape = outputs[0].get_partial_shape()
    columns = _static(output_shape[-1]) if output_shape.rank.is_static and len(output_shape) else None
    if columns is not None and columns != 5 + len(class_names):
        raise WeightsError(
            f"{path}: the output has {columns} columns per box but its metadata names {len(class_names)} classes "
            f"(expected 5 + {len(class_names)})."
        )
    return _static(input_shape[0])


def _compile(core: Any, model: Any, path: Path, options: OpenVinoRuntimeOptions, batch: int | None) -> Any:
    """``model`` compiled for ``options.device``, for batches of ``batch`` (``None``: as the IR says)."""
    if batch is not None:
        height, width = (_static(side) or -1 for side in model.inputs[0].get_partial_shape()[2:])
        model.reshape(
            [batch, 3, height, width]
        )  # compile_model copies it: earlier compiled models keep theirs
    config: dict[str, Any] = {}
    if options.inference_precision in _PRECISION_HINTS:
        config["INFERENCE_PRECISION_HINT"] = _PRECISION_HINTS[options.inference_precision]
    if options.threads:
        config["INFERENCE_NUM_THREADS"] = int(options.threads)
    try:
        return core.compile_model(model, options.device, config)
    except Exception as error:  # noqa: BLE001 - OpenVINO raises its own exception types
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise WeightsError(
            f"OpenVINO cannot compile {path} for device {options.device} with {config or 'default settings'}: "
            f"{reason}. Available devices here: {', '.join(core.available_devices) or 'none'}; set "
            "runtime.openvino.device, or inference_precision: auto."
        ) from error


def _is_probability(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
