"""Reading and writing ``.pt``/``.pth`` files safely.

Loading never runs code from the file: every read goes through ``torch.load(weights_only=True)``, whose
unpickler builds only tensors, containers and plain Python values. A checkpoint from a stranger can carry a
pickle ``__reduce__`` payload; the restricted unpickler refuses it before anything runs, and we turn that
refusal into a ``CheckpointError`` naming the file and the object it wanted. Besides torch's own allow-list,
NumPy arrays of plain numbers and torch's ``TorchVersion`` string are accepted, for checkpoints written
before the NumPy RNG key and the lineage's torch version were stored as a tensor and a str: rebuilding them
calls no user-chosen function, and what such an array contains goes through the same restricted unpickler.

Writing is atomic (temporary file, fsync, rename) and OS errors are kept: ``torch.save`` reports a full disk
as ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``, hiding ``ENOSPC``; we record the
``OSError`` the file raised underneath and raise that instead, so users read "No space left on device".
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from yolox_sdk.errors import CheckpointError

# Temporary files are ``.<final name>.<random>.tmp``; a ``kill -9`` mid-write can leave one behind.
TEMPORARY_SUFFIX = ".tmp"

# What torch's restricted unpickler may build beyond its defaults (see the module docstring).
_NUMPY_CORE = getattr(np, "_core", None) or np.core
_ALLOWED_GLOBALS: list[Any] = [
    np.ndarray,
    np.dtype,
    *{type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFD"},
    _NUMPY_CORE.multiarray._reconstruct,
    # Files pickled under NumPy 1 name the same function by its old module path.
    (_NUMPY_CORE.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
    # Lineage in checkpoints written before it stored torch's version as a plain str.
    torch.torch_version.TorchVersion,
]
# torch words its refusal in several ways across versions; each names the object after one of these.
_REFUSED_OBJECT = re.compile(r"(?:GLOBAL |got <class ')([\w.]+)")


class _ErrorRecordingStream:
    """A write-only view of a file that remembers the first ``OSError`` its writes raised.

    ``torch.save`` replaces that error with a ``RuntimeError`` that no longer says why; the recorded one does.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._stream.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self._stream.flush()


def atomic_torch_save(payload: Any, path: Path, keep_previous: Path | None = None) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash or ``kill -9`` at any moment leaves either the previous file or the new one, never half a file.
    With ``keep_previous``, the file being replaced is renamed there just before the new one takes its
    place, once the new one is fully on disk: a kill between the two renames leaves ``keep_previous`` and
    no ``path``, which readers looking for a fallback handle (``yolox_sdk.engine.resume``).

    Raises:
        OSError: the file system's own error (no space, permission, read-only), with ``filename`` set to
            ``path``; the previous file is untouched and the temporary one removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        os.chmod(temporary, _permissions_for_new_files())
        with os.fdopen(handle, "wb") as stream:
            recorder = _ErrorRecordingStream(stream)
            try:
                torch.save(payload, recorder)
            except RuntimeError as error:
                if recorder.error is None:
                    raise
                raise recorder.error from error
            stream.flush()
            os.fsync(stream.fileno())
        if keep_previous is not None and path.is_file():
            os.replace(path, keep_previous)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        named = _with_filename(error, path)
        if named is error:
            raise
        raise named from error
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _permissions_for_new_files() -> int:
    """What ``open()`` would give a new file under the current umask (``mkstemp`` makes it 0600, which would
    hide checkpoints from the rest of a team sharing a run folder)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _with_filename(error: OSError, path: Path) -> OSError:
    """The same OS error, naming the file we meant to write rather than a temporary name (or none)."""
    if error.filename == str(path) or error.errno is None:
        return error
    return type(error)(error.errno, error.strerror or str(error), str(path))


def load_torch_file(path: Path) -> Any:
    """``torch.load`` on CPU with the restricted unpickler; any failure becomes a ``CheckpointError``.

    Raises:
        CheckpointError: the file is missing, unreadable, truncated, not a PyTorch file, or needs arbitrary
            code to unpickle (refused before any of it runs).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    try:
        with torch.serialization.safe_globals(_ALLOWED_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise _unsafe_file_error(path, error) from None
    except OSError as error:
        raise CheckpointError(
            f"Cannot read checkpoint {path}: {error.strerror or error}. Check that the file exists and is readable."
        ) from error
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(
            f"Cannot read checkpoint {path}: {str(error).rstrip('.')}. The file is truncated, corrupt, or not a PyTorch "
            "checkpoint; use an earlier checkpoint."
        ) from error


def _unsafe_file_error(path: Path, error: pickle.UnpicklingError) -> CheckpointError:
    """Why a file was refused: it asks the unpickler to build an object that could run code, or it is no pickle."""
    match = _REFUSED_OBJECT.search(str(error))
    if match is None:
        return CheckpointError(
            f"Cannot read checkpoint {path}: its content is not a PyTorch file that holds tensors and plain data "
            "(damaged, truncated, or written by other software with pickle features yolox-sdk does not load). "
            "Nothing from it was executed. Use an earlier checkpoint, or the weights file you started from."
        )
    return CheckpointError(
        f"Refused to load {path}: it asks to build the Python object '{match.group(1)}', and yolox-sdk loads only "
        "tensors and plain data from checkpoints because unpickling anything else can run code hidden in the file. "
        "Nothing from it was executed. yolox-sdk checkpoints and official YOLOX .pth files never need this; if the "
        "file comes from other software you trust, load it there and save just its weights "
        "(torch.save(model.state_dict(), 'weights.pth')), then use that file."
    )
