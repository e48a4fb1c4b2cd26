"""A sha256 over what a checkpoint holds, computed from the values rather than from the file's bytes.

Why over values: the digest is stored inside the very file it protects, so it cannot cover that file's
bytes, and hashing a second serialization of the payload would double the memory a save needs. Walking
the payload (tensors as dtype, shape and raw bytes; plain Python by type and ``repr``) gives the same
digest before saving and after loading on any machine, whatever pickle or zip layout ``torch.save``
chose, and catches a changed weight, optimizer buffer, RNG state or metric alike.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def content_digest(value: Any) -> str:
    """The hex sha256 of ``value``'s content (nested dicts, lists, tuples, tensors, arrays, scalars)."""
    hasher = hashlib.sha256()
    _update(hasher, value)
    return hasher.hexdigest()


def _update(hasher: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        _update_tensor(hasher, value)
    elif isinstance(value, np.ndarray):
        _update_array(hasher, value)
    elif isinstance(value, Mapping):
        _update_mapping(hasher, value)
    elif isinstance(value, list | tuple):
        _tag(hasher, f"{type(value).__name__}:{len(value)}")
        for item in value:
            _update(hasher, item)
    elif value is None or isinstance(value, bool | int | float | str | np.generic | torch.dtype):
        _tag(hasher, f"{type(value).__name__}:{value!r}")
    else:
        # Anything else is rare in a checkpoint (a plugin optimizer's state); pickle is stable for the
        # plain objects that end up there.
        _tag(hasher, f"object:{type(value).__qualname__}")
        hasher.update(pickle.dumps(value, protocol=4))


def _update_mapping(hasher: Any, mapping: Mapping) -> None:
    """Keys sorted by type and repr: insertion order is not part of the content."""
    items = sorted(mapping.items(), key=lambda item: (type(item[0]).__name__, repr(item[0])))
    _tag(hasher, f"mapping:{len(items)}")
    for key, item in items:
        _tag(hasher, f"key:{type(key).__name__}:{key!r}")
        _update(hasher, item)


def _update_tensor(hasher: Any, tensor: torch.Tensor) -> None:
    """dtype, shape and the raw bytes, read as uint8 so bfloat16 and friends need no NumPy dtype."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    _tag(hasher, f"tensor:{flat.dtype}:{tuple(tensor.shape)}")
    if flat.numel():
        hasher.update(flat.view(torch.uint8).numpy())


def _update_array(hasher: Any, array: np.ndarray) -> None:
    _tag(hasher, f"array:{array.dtype.str}:{array.shape}")
    hasher.update(np.ascontiguousarray(array).tobytes())


def _tag(hasher: Any, text: str) -> None:
    """A length-prefixed marker, so that two different structures never feed the same byte stream."""
    data = text.encode()
    hasher.update(len(data).to_bytes(8, "little"))
    hasher.update(data)
