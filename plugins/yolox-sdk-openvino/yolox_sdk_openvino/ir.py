"""What the exporter and the runtime agree on: importing openvino, and yolox-sdk's metadata in an IR.

The metadata lives in the IR's ``rt_info`` under ``yolox_sdk/<key>`` (the ``<rt_info>`` element at the
end of the ``.xml``), every value a string, JSON-encoded unless it is one already, so the ``.xml`` and
``.bin`` pair alone is a deployable model. ``weights_sha256`` is the digest of the ``.bin``: OpenVINO
reads a damaged weights file of the right size without complaint, so the runtime checks it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yolox_sdk.errors import PluginError

SECTION = "yolox_sdk"
WEIGHTS_DIGEST = "weights_sha256"
PRECISION = "precision"
DECODED = "decoded"
INSTALL = "pip install 'openvino>=2024.0'"


def import_openvino() -> Any:
    """The ``openvino`` module, or a ``PluginError`` saying how to install it."""
    try:
        import openvino
    except ImportError as error:
        raise PluginError(
            f"The openvino plugin needs the openvino package, which is not installed here: `{INSTALL}` "
            "(or reinstall the plugin: `pip install ./plugins/yolox-sdk-openvino`)."
        ) from error
    return openvino


def encode(value: Any) -> str:
    """A metadata value as ``rt_info`` stores it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def decode(text: str) -> Any:
    """The inverse of ``encode``; text that is not JSON is returned as it is."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def write_metadata(model: Any, entries: Mapping[str, Any]) -> None:
    """Set each entry under ``rt_info["yolox_sdk"]`` of the ``openvino.Model``."""
    for key, value in entries.items():
        model.set_rt_info(encode(value), [SECTION, str(key)])


def read_metadata(model: Any) -> dict[str, Any]:
    """Every entry of ``rt_info["yolox_sdk"]``, decoded; empty when the IR has none."""
    if not model.has_rt_info([SECTION]):
        return {}
    section = model.get_rt_info()[SECTION]
    keys = section.keys() if hasattr(section, "keys") else ()
    return {str(key): decode(model.get_rt_info([SECTION, str(key)]).astype(str)) for key in keys}


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
