"""Checking the training state a checkpoint carries before ``--resume`` restores it.

A checkpoint can be well-formed for inference (weights, spec, class names) and still hold a training state
that was edited, forged or written by another version: a progress record whose epoch is a string, an
optimizer state that is a list, RNG states of the wrong shape. Restoring those would fail deep inside
torch, NumPy or attrs with errors that do not name the file. Resume checks them here first, so a bad file
is a ``CheckpointError`` naming it, and resume falls back to the run's earlier checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from yolox_sdk.engine.train_state import TrainState
from yolox_sdk.errors import CheckpointError
from yolox_sdk.plain_values import is_finite_number, is_whole_number

_COUNTERS = ("epoch", "iteration", "images_seen", "batch_in_epoch", "epoch_batches")
_OPTIONAL_NUMBERS = ("best_value",)
_OPTIONAL_COUNTERS = ("best_epoch",)
_NUMBER_MAPS = ("metrics", "epoch_loss_sums")


def checked_train_state(path: Path, training_state: Mapping[str, Any]) -> TrainState:
    """The ``TrainState`` of a checkpoint's training state, with every part resume restores checked.

    Raises:
        CheckpointError: naming ``path`` and the first part that is missing or of the wrong type.
    """
    problem = _state_problem(training_state)
    if problem:
        raise CheckpointError(
            f"Checkpoint {path} cannot be resumed: its training state {problem}. The file was edited or written "
            "by other software; resume from an earlier checkpoint of the run (last.prev.pt, epoch_N.pt) or start "
            "a new run from its weights with model.checkpoint."
        )
    return TrainState(**training_state["state"])


def _state_problem(saved: Mapping[str, Any]) -> str | None:
    progress = saved.get("state")
    if not isinstance(progress, Mapping):
        return "has no progress record ('state')"
    unknown = sorted(set(map(str, progress)) - {field.name for field in attrs.fields(TrainState)})
    if unknown:
        return f"has unknown progress fields {unknown}"
    for name in _COUNTERS + _OPTIONAL_COUNTERS:
        value = progress.get(name, 0)
        if not (value is None and name in _OPTIONAL_COUNTERS) and not _counter(value):
            return f"has '{name}' = {value!r:.60}, expected a whole number >= 0"
    for name in _OPTIONAL_NUMBERS + ("train_seconds",):
        value = progress.get(name)
        if value is not None and not is_finite_number(value):
            return f"has '{name}' = {value!r:.60}, expected a finite number"
    for name in _NUMBER_MAPS:
        values = progress.get(name, {})
        if not isinstance(values, Mapping) or not all(
            isinstance(k, str) and is_finite_number(v) for k, v in values.items()
        ):
            return f"has '{name}' that is not a mapping of names to numbers"
    for name in ("stopped_by", "stop_reason"):
        value = progress.get(name)
        if value is not None and not isinstance(value, str):
            return f"has '{name}' = {value!r:.60}, expected a string"
    return (
        _optimizer_problem(saved.get("optimizer"))
        or _rng_problem(saved.get("rng"))
        or _callbacks_problem(saved.get("callbacks", {}))
    )


def _callbacks_problem(callbacks: Any) -> str | None:
    """Callback states (``engine.callbacks``): a mapping of callback keys to mappings; what is inside
    each is the callback's own business (``load_state_dict`` refuses what does not fit)."""
    if not isinstance(callbacks, Mapping) or not all(
        isinstance(key, str) and isinstance(state, Mapping) for key, state in callbacks.items()
    ):
        return "has callback states ('callbacks') that are not a mapping of callback names to mappings"
    return None


def _optimizer_problem(optimizer: Any) -> str | None:
    if not isinstance(optimizer, Mapping) or not isinstance(optimizer.get("state"), Mapping):
        return "has no optimizer state"
    groups = optimizer.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(group, Mapping) for group in groups):
        return "has optimizer parameter groups that are not a list of mappings"
    return None


def _rng_problem(rng: Any) -> str | None:
    if not isinstance(rng, Mapping):
        return "has no random-number states ('rng')"
    python, numpy, torch_state = rng.get("python"), rng.get("numpy"), rng.get("torch")
    if not (
        isinstance(python, tuple)
        and len(python) == 3
        and isinstance(python[1], tuple)
        and len(python[1]) == 625
        and all(_counter(word) for word in python[1])
    ):
        return "has a Python random state of the wrong form"
    if not (
        isinstance(numpy, tuple | list) and len(numpy) == 5 and numpy[0] == "MT19937" and len(numpy[1]) == 624
    ):
        return "has a NumPy random state of the wrong form"
    if not (isinstance(torch_state, torch.Tensor) and torch_state.dtype == torch.uint8):
        return "has a torch random state that is not a byte tensor"
    return None


def _counter(value: Any) -> bool:
    return is_whole_number(value) and value >= 0
