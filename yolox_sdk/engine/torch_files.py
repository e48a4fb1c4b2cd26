"""Reading and writing ``.pt``/``.pth`` files safely: atomic writes, clear errors for unreadable files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from yolox_sdk.errors import CheckpointError

# Temporary files are ``.<final name>.<random>.tmp``; a ``kill -9`` mid-write can leave one behind.
TEMPORARY_SUFFIX = ".tmp"


def atomic_torch_save(payload: Any, path: Path, keep_previous: Path | None = None) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash or ``kill -9`` at any moment leaves either the previous file or the new one, never half a file.
    With ``keep_previous``, the file being replaced is renamed there just before the new one takes its
    place, once the new one is fully on disk: a kill between the two renames leaves ``keep_previous`` and
    no ``path``, which readers looking for a fallback handle (``yolox_sdk.engine.resume``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
        if keep_previous is not None and path.is_file():
            os.replace(path, keep_previous)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_torch_file(path: Path) -> Any:
    """``torch.load`` on CPU, turning any failure into a ``CheckpointError`` that names the file.

    ``weights_only=False`` because our checkpoints carry plain-Python metadata (config, RNG states); only
    load files you trust, as with any pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(
            f"Cannot read checkpoint {path}: {str(error).rstrip('.')}. The file is truncated, corrupt, or not a PyTorch "
            "checkpoint; use an earlier checkpoint."
        ) from error
