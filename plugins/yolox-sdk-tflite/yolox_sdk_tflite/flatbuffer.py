"""What the exporters and the runtime agree on: importing LiteRT, and yolox-sdk's metadata in a ``.tflite``.

A TFLite file is a flatbuffer whose root ``Model`` table has a ``metadata`` list of named pointers into
its ``buffers``. The exporters add one entry named ``yolox_sdk`` whose buffer holds the metadata as UTF-8
JSON, so the ``.tflite`` alone is a deployable model (LiteRT ignores metadata names it does not know). It
is written with the flatbuffer object API that ai-edge-litert ships (``schema_py_generated`` and
``tools.flatbuffer_utils``), and read with the same generated accessors, which read only the tables they
are asked for, so loading a file costs no copy of its weights.

``weights_sha256`` is a digest of every other buffer (weights, constants, the converter's own metadata):
LiteRT runs a file whose weights were changed without complaint, so the runtime checks it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from yolox_sdk.errors import PluginError

METADATA_NAME = "yolox_sdk"
WEIGHTS_DIGEST = "weights_sha256"
PRECISION = "precision"
DECODED = "decoded"
FILE_IDENTIFIER = b"TFL3"
RUNTIME_INSTALL = "pip install 'ai-edge-litert>=2.3'"
CONVERTER_INSTALL = "pip install 'litert-torch>=0.10' 'ai-edge-litert>=2.3'"
_REINSTALL = "(or reinstall the plugin: `pip install ./plugins/yolox-sdk-tflite`)"


def import_litert() -> Any:
    """The ``ai_edge_litert`` package (runtime and flatbuffer schema), or a ``PluginError`` saying how to
    install it."""
    try:
        import ai_edge_litert
        from ai_edge_litert import interpreter, schema_py_generated  # noqa: F401 - checks they import
    except ImportError as error:
        raise PluginError(
            f"The tflite plugin needs the ai-edge-litert package, which is not installed here: "
            f"`{RUNTIME_INSTALL}` {_REINSTALL}."
        ) from error
    return ai_edge_litert


def import_converter() -> Any:
    """The ``litert_torch`` converter, or a ``PluginError`` saying how to install it."""
    import_litert()
    try:
        import litert_torch
    except ImportError as error:
        raise PluginError(
            f"The tflite exporters need the litert-torch converter, which is not installed here: "
            f"`{CONVERTER_INSTALL}` {_REINSTALL}."
        ) from error
    litert_torch.config.show_progress = False  # its per-stage progress lines say nothing to act on
    # jax (a litert-torch dependency) logs at INFO that it found no TPU, on every CPU-only machine.
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    return litert_torch


def embed_metadata(content: bytes, entries: Mapping[str, Any]) -> bytes:
    """``content`` (a ``.tflite``) with ``entries`` as its ``yolox_sdk`` metadata and, inside it, the
    digest of every other buffer, replacing an earlier ``yolox_sdk`` entry.

    The digest is computed on the unpacked model, whose buffer indices are final (the reader compacts
    empty buffers), and checked again on the packed bytes, as the runtime will compute it.
    """
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    model.metadata = list(model.metadata or [])
    ours = [entry for entry in model.metadata if _text(entry.name) == METADATA_NAME]
    if ours:
        index = int(ours[0].buffer)
    else:
        model.buffers.append(schema.BufferT())
        index = len(model.buffers) - 1
        entry = schema.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = index
        model.metadata.append(entry)
    body = {key: value for key, value in entries.items() if key != WEIGHTS_DIGEST}
    body[WEIGHTS_DIGEST] = _digest(
        (position, bytes(buffer.data) if buffer.data is not None else b"")
        for position, buffer in enumerate(model.buffers)
        if position != index
    )
    model.buffers[index].data = np.frombuffer(json.dumps(body).encode(), dtype=np.uint8)
    packed = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    if weights_digest(packed) != body[WEIGHTS_DIGEST]:
        raise RuntimeError("packing the model changed its weights buffers")  # a bug, not bad input
    return packed


def _digest(buffers: Iterable[tuple[int, bytes]]) -> str:
    digest = hashlib.sha256()
    for index, data in buffers:
        digest.update(f"{index}:{len(data)}:".encode())
        digest.update(data)
    return digest.hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def root(content: bytes) -> Any:
    """The file's ``Model`` table; ``ValueError`` when it is not a TFLite flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    if len(content) < 8 or content[4:8] != FILE_IDENTIFIER:
        raise ValueError("its first bytes are not those of a TFLite flatbuffer (identifier TFL3)")
    return schema.Model.GetRootAs(content, 0)


def _metadata_buffer(model: Any) -> int | None:
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if _text(entry.Name()) == METADATA_NAME:
            return int(entry.Buffer())
    return None


def _buffer_bytes(content: bytes, buffer: Any) -> bytes:
    """A buffer's bytes, inline or (files over 2 GB) at an offset of the file."""
    if buffer.Offset() > 1:
        end = buffer.Offset() + buffer.Size()
        if end > len(content):
            raise ValueError("a weights buffer lies past the end of the file")
        return bytes(content[buffer.Offset() : end])
    return buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""


def read_metadata(content: bytes) -> dict[str, Any]:
    """The ``yolox_sdk`` metadata of a ``.tflite`` (empty when it has none); ``ValueError`` when the file is
    not a readable TFLite flatbuffer or its entry is not a JSON object."""
    model = root(content)
    index = _metadata_buffer(model)
    if index is None:
        return {}
    if index >= model.BuffersLength():
        raise ValueError("its metadata points at a buffer the file does not have")
    value = json.loads(_buffer_bytes(content, model.Buffers(index)).decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("its yolox_sdk metadata is not a JSON object")
    return value


def weights_digest(content: bytes) -> str:
    """SHA-256 over every buffer but the ``yolox_sdk`` metadata, each prefixed by its index and length."""
    model = root(content)
    skipped = _metadata_buffer(model)
    return _digest(
        (index, _buffer_bytes(content, model.Buffers(index)))
        for index in range(model.BuffersLength())
        if index != skipped
    )


def file_bytes(path: Path) -> bytes:
    """The whole file (``.tflite`` models are a few MB; LiteRT reads it from memory too)."""
    return Path(path).read_bytes()
