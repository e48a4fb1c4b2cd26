"""What the exporter and the runtime agree on: importing coremltools, the package's interface, its metadata.

An exported ``<stem>.mlpackage`` (a folder) holds one ML Program with one input ``images``, a float32
``(1, 3, H, W)`` letterboxed BGR 0..255 tensor exactly as ``yolox_sdk.data.preprocess`` makes it, and one
output ``output``, the decoded ``(1, anchors, 5 + classes)`` rows. yolox-sdk's metadata goes into the
model's ``user_defined_metadata`` (string values, JSON-encoded unless they are text), which Xcode shows and
``MLModel.get_spec()`` reads on any OS, so the package alone is a deployable model.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from yolox_sdk.errors import PluginError

INPUT_NAME = "images"
OUTPUT_NAME = "output"
SUFFIX = ".mlpackage"
PRECISION = "precision"
INSTALL = "pip install 'coremltools>=8.0'"
STRIDES = (8, 16, 32)  # YOLOX's three head levels


@contextlib.contextmanager
def quiet_coremltools(level: int = logging.WARNING) -> Iterator[None]:
    """Raise coremltools' logger to ``level`` for the block: its graph passes log every removed operation
    at INFO (hundreds of lines per conversion), which the CLI's INFO logging would otherwise print."""
    logger = logging.getLogger("coremltools")
    saved = logger.level
    logger.setLevel(max(level, saved))
    try:
        yield
    finally:
        logger.setLevel(saved)


def import_coremltools() -> Any:
    """The ``coremltools`` module, or a ``PluginError`` saying how to install it.

    Off macOS coremltools logs at import that it cannot load CoreML (``libcoremlpython``), and it warns
    about scikit-learn and torch versions it has not tested: nothing a user can act on, so those import-time
    records are dropped (warnings during conversion are kept).
    """
    try:
        with quiet_coremltools(logging.ERROR):
            import coremltools
    except ImportError as error:
        raise PluginError(
            f"The coreml plugin needs the coremltools package, which is not installed here: `{INSTALL}` "
            "(or reinstall the plugin: `pip install ./plugins/yolox-sdk-coreml`)."
        ) from error
    return coremltools


def encode(value: Any) -> str:
    """A metadata value as ``user_defined_metadata`` stores it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def decode(text: str) -> Any:
    """The inverse of ``encode``; text that is not JSON is returned as it is."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_metadata(spec: Any) -> dict[str, Any]:
    """Every ``user_defined_metadata`` entry of a model spec, decoded (coremltools' own included)."""
    return {str(key): decode(value) for key, value in spec.description.metadata.userDefined.items()}


def anchor_count(input_size: tuple[int, int]) -> int:
    """Rows YOLOX predicts for an input of ``(height, width)``: one per cell of the stride 8, 16, 32 grids."""
    height, width = input_size
    return sum((height // stride) * (width // stride) for stride in STRIDES)


def _array_shape(feature: Any) -> tuple[str, tuple[int, ...]] | None:
    """``(data type name, shape)`` of a multi-array feature, ``None`` for any other feature type."""
    if feature.type.WhichOneof("Type") != "multiArrayType":
        return None
    array = feature.type.multiArrayType
    data_type = array.DESCRIPTOR.fields_by_name["dataType"].enum_type.values_by_number[array.dataType].name
    return data_type, tuple(int(side) for side in array.shape)


def interface_problems(spec: Any, class_names: tuple[str, ...], input_size: tuple[int, int]) -> list[str]:
    """What in the spec's type, input and output does not fit a YOLOX export of ``class_names`` at
    ``input_size`` (empty when all fits)."""
    problems = []
    kind = spec.WhichOneof("Type")
    if kind != "mlProgram":
        problems.append(f"the model is a {kind}, not an ML Program (mlProgram)")
    inputs, outputs = list(spec.description.input), list(spec.description.output)
    expected_input = ("FLOAT32", (1, 3, *input_size))
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or _array_shape(inputs[0]) != expected_input:
        found = [(item.name, _array_shape(item)) for item in inputs]
        problems.append(f"expected one input {INPUT_NAME!r} {expected_input}, found {found}")
    expected_output = ("FLOAT32", (1, anchor_count(input_size), 5 + len(class_names)))
    if len(outputs) != 1 or outputs[0].name != OUTPUT_NAME or _array_shape(outputs[0]) != expected_output:
        found = [(item.name, _array_shape(item)) for item in outputs]
        problems.append(f"expected one output {OUTPUT_NAME!r} {expected_output}, found {found}")
    return problems


def metadata_problems(found: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Keys of ``expected`` missing from ``found`` or holding another value."""
    return [
        f"metadata {key!r} is {found.get(key, '<missing>')!r}, expected {value!r}"
        for key, value in expected.items()
        if found.get(key) != decode(encode(value))  # compare as stored: tuples come back as lists
    ]
