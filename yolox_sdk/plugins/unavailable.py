"""Features users ask for by name that yolox-sdk deliberately does not ship, and what to do instead.

TensorRT is the one today. Its Python package (``tensorrt`` on PyPI) is a chain of source packages whose last
step downloads the libraries from NVIDIA's own index, so it does not install from the package registries this
project is built and tested against, and the GPU machines the project is tested on carry no TensorRT either.
An exporter or runtime that cannot be run anywhere we test would be unverified code, so instead of one,
``--format tensorrt`` (and a ``.engine`` file given to predict or eval) answers with this explanation and the
route that does work: TensorRT builds an engine from the SDK's ONNX export, whose graph and metadata are
verified here.
"""

from __future__ import annotations

from collections.abc import Mapping

TENSORRT = (
    "TensorRT is not built into yolox-sdk: the `tensorrt` Python package installs only from NVIDIA's own "
    "index, which the registries yolox-sdk is built and tested against do not reach, and no GPU machine with "
    "TensorRT was available to verify an engine, so yolox-sdk ships no TensorRT code it could not run. Build "
    "the engine from the verified ONNX export on the machine that will run it, with TensorRT's trtexec: "
    "`yolox-sdk export best.pt --format onnx --option onnx.dynamic_batch=true`, then `trtexec "
    "--onnx=export/best.onnx --saveEngine=best.engine --fp16 --minShapes=images:1x3xHxW "
    "--optShapes=images:1x3xHxW --maxShapes=images:8x3xHxW` (H and W: the export's input size; for INT8, "
    "calibrate with TensorRT's own tools). Then evaluate the engine's outputs on your validation data before "
    "shipping it; docs/guides/deployment.md (TensorRT) has the details."
)

# (kind, name) -> why yolox-sdk has no such plugin and what to do instead.
UNAVAILABLE_FEATURES: Mapping[tuple[str, str], str] = {
    ("exporter", "tensorrt"): TENSORRT,
    ("runtime", "tensorrt"): TENSORRT,
}

# Model-file suffixes of those features, for predict/eval/benchmark given such a file.
UNAVAILABLE_SUFFIXES: Mapping[str, str] = {".engine": TENSORRT, ".plan": TENSORRT, ".trt": TENSORRT}
