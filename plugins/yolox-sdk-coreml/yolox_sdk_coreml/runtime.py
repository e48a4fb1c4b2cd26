"""The ``coreml`` runtime: ``.mlpackage`` folders written by the ``coreml`` exporter, run by CoreML on macOS.

CoreML is part of macOS (and iOS): coremltools can read and write packages anywhere but can only predict
on a Mac. Elsewhere ``load`` therefore refuses with a ``WeightsError`` that points at the formats that run
on Linux, after checking the path is a package at all. On macOS the package's interface is checked against
its own metadata (class names, input size) before it is used; the package's batch is 1, so a batch is run
image by image. The macOS path is written against coremltools' documented API but is not run in CI.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from yolox_sdk.errors import CheckpointError, WeightsError
from yolox_sdk.plugins.interfaces import METADATA_EVALUATION, METADATA_RECOMMENDED_CONF
from yolox_sdk.runtimes.metadata import evaluation_metadata, required_metadata
from yolox_sdk_coreml import CoreMLRuntimeOptions
from yolox_sdk_coreml.package import (
    INPUT_NAME,
    OUTPUT_NAME,
    SUFFIX,
    import_coremltools,
    interface_problems,
    read_metadata,
)

_NOT_OURS = (
    "Only packages written by `yolox-sdk export --format coreml` can be used for predict, eval and benchmark; "
    "export the checkpoint again."
)
_LINUX_FORMATS = (
    "To run the model here, export it to a format with a runtime on this OS: `--format onnx` (ONNX Runtime, "
    "built in) or `--format openvino` (`pip install ./plugins/yolox-sdk-openvino`), or use the .pt checkpoint "
    "itself; `yolox-sdk plugins` lists the runtimes installed."
)


@attrs.define
class CoreMLModel:
    """A loaded package and the metadata the exporter wrote into it."""

    model: Any
    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    recommended_conf: float | None
    evaluation: dict[str, Any] | None = None
    runtime: str = "coreml"

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Decoded rows for ``batch``, image by image (the package's batch is 1)."""
        rows = [
            np.asarray(
                self.model.predict({INPUT_NAME: np.ascontiguousarray(batch[index : index + 1], np.float32)})[
                    OUTPUT_NAME
                ],
                np.float32,
            )
            for index in range(len(batch))
        ]
        return np.concatenate(rows)


class CoreMLRuntime:
    """Loads ``.mlpackage`` folders; see the module docstring."""

    suffixes = (SUFFIX,)

    def __init__(self, options: CoreMLRuntimeOptions | None = None) -> None:
        self.options = options or CoreMLRuntimeOptions()

    def accepts(self, path: Path) -> bool:
        return Path(path).suffix.lower() == SUFFIX

    def load(self, path: Path, device: str) -> CoreMLModel:
        """Raises ``WeightsError`` off macOS (CoreML prediction needs it) and for a package without
        yolox-sdk's metadata or whose interface does not fit it; ``CheckpointError`` for a path that is not a
        readable package."""
        path = Path(path)
        if not (path / "Manifest.json").is_file():
            raise CheckpointError(
                f"{path} is not a CoreML package: an .mlpackage is a folder holding Manifest.json and "
                f"Data/com.apple.CoreML/ (copy the whole folder, not a file inside it). {_NOT_OURS}"
            )
        if sys.platform != "darwin":
            raise WeightsError(
                f"{path} is a CoreML package, and CoreML prediction needs macOS (CoreML is part of Apple's "
                f"operating systems; coremltools cannot run a model on {sys.platform}). {_LINUX_FORMATS}"
            )
        ct = import_coremltools()
        try:
            model = ct.models.MLModel(
                str(path), compute_units=getattr(ct.ComputeUnit, self.options.compute_units)
            )
        except Exception as error:  # noqa: BLE001 - CoreML raises many types
            reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
            raise CheckpointError(
                f"CoreML cannot load {path} (damaged or incomplete): {reason}. {_NOT_OURS}"
            ) from error
        spec = model.get_spec()
        metadata = read_metadata(spec)
        class_names, input_size = required_metadata(
            path, metadata, "a CoreML package", "in user_defined_metadata", _NOT_OURS
        )
        if spec.WhichOneof("Type") == "pipeline" or metadata.get("nms") is True:
            raise WeightsError(
                f"{path} was exported with nms: true, for apps using Apple's Vision framework: it returns boxes "
                "after CoreML's NMS, not the decoded rows predict and eval run their own NMS on. Export again "
                "without export.options.coreml.nms to use it here."
            )
        problems = interface_problems(spec, class_names, input_size)
        if problems:
            raise WeightsError(f"{path} does not fit its own metadata: {'; '.join(problems)}. {_NOT_OURS}")
        conf = metadata.get(METADATA_RECOMMENDED_CONF)
        probability = isinstance(conf, int | float) and not isinstance(conf, bool) and 0 <= conf <= 1
        evaluation = evaluation_metadata(metadata.get(METADATA_EVALUATION), str(path))
        return CoreMLModel(model, class_names, input_size, float(conf) if probability else None, evaluation)
