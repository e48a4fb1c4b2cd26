"""The formats ``yolox-sdk benchmark`` knows by name, and how each is produced from a checkpoint.

A format is an exporter plugin and its options (``onnx-fp16`` is the ``onnx`` exporter with ``fp16: true``),
or ``pytorch``: the checkpoint itself. Any other name is taken as an exporter plugin's name with default
options, so a format added by a plugin (``openvino``) is benchmarked without an edit here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

PYTORCH = "pytorch"


@attrs.frozen
class BenchmarkFormat:
    """One row of the benchmark: which exporter makes the file (``None``: the checkpoint) and with what.

    Attributes:
        name: what ``--formats`` says.
        exporter: the exporter plugin's name, or ``None`` for the checkpoint itself.
        options: the exporter's options (``export.options.<exporter>``).
    """

    name: str
    exporter: str | None
    options: Mapping[str, Any] = attrs.field(factory=dict)


# Dynamic batch so that the same file gives batch-1 latency and batched throughput.
KNOWN_FORMATS: dict[str, BenchmarkFormat] = {
    PYTORCH: BenchmarkFormat(PYTORCH, None),
    "onnx": BenchmarkFormat("onnx", "onnx", {"dynamic_batch": True}),
    "onnx-fp16": BenchmarkFormat("onnx-fp16", "onnx", {"dynamic_batch": True, "fp16": True}),
    "onnx-slim": BenchmarkFormat("onnx-slim", "onnx", {"dynamic_batch": True, "simplify": True}),
    # Always dynamic batch; not a default row: its accuracy search evaluates ~30 mixes on the val split.
    "onnx-int8": BenchmarkFormat("onnx-int8", "onnx-int8"),
    # Formats of first-party plugins (rows saying how to install them when they are not installed).
    "openvino-fp16": BenchmarkFormat("openvino-fp16", "openvino", {"precision": "fp16"}),
    "tflite-fp16": BenchmarkFormat("tflite-fp16", "tflite", {"precision": "fp16"}),
    "coreml-fp32": BenchmarkFormat("coreml-fp32", "coreml", {"precision": "fp32"}),
}
DEFAULT_FORMATS = (PYTORCH, "onnx", "onnx-fp16", "onnx-slim")


def benchmark_format(name: str) -> BenchmarkFormat:
    """The format ``name`` stands for: a known one, else the exporter plugin of that name."""
    return KNOWN_FORMATS.get(name) or BenchmarkFormat(name, name)
