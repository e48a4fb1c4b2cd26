"""The run's callbacks: named, fired on every process, their states saved in every checkpoint.

Each callback is keyed by its name in ``training.callbacks`` (``early_stopping``; a name listed twice gets
``early_stopping[1]`` for its second entry), and a callback added in code by its class name. The key is
where its ``state_dict()`` sits in a checkpoint, under ``training_state["callbacks"]``, so ``--resume``
hands each callback back what it saved. A saved state whose callback is no longer configured is dropped
with a warning; a configured callback with no saved state (added since, or a run started before callback
states existed) starts fresh.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from yolox_sdk.engine.training_view import TrainingView
from yolox_sdk.errors import CheckpointError

log = logging.getLogger(__name__)


def callback_keys(configured: Iterable[str], callbacks: list[Any]) -> list[str]:
    """One unique key per callback: its configured name, then class names for those added in code."""
    names = list(configured)[: len(callbacks)]
    names += [type(callback).__name__ for callback in callbacks[len(names) :]]
    keys, seen = [], {}
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        keys.append(name if count == 0 else f"{name}[{count}]")
    return keys


class CallbackList:
    """Fires events on the callbacks in order, and collects and restores their states."""

    def __init__(self, keys: list[str], callbacks: list[Any], view: TrainingView) -> None:
        self.items = list(zip(keys, callbacks, strict=True))
        self.view = view

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.items]

    def fire(self, event: str, *args: Any) -> None:
        """Call ``event(view, *args)`` on every callback (in every process: callbacks check ``is_main``)."""
        for key, callback in self.items:
            self.view._called_by(key)
            try:
                getattr(callback, event)(self.view, *args)
            finally:
                self.view._called_by("")

    def state_dict(self) -> dict[str, Any]:
        """``{key: callback.state_dict()}``: tensors and plain data, as ``torch.load(weights_only=True)``
        reads back."""
        return {key: dict(_state_of(callback)) for key, callback in self.items}

    def load_state_dict(self, states: Mapping[str, Any], path: Any) -> None:
        """Give each callback its saved state; warn about states nobody claims.

        Raises:
            CheckpointError: naming the checkpoint and callback when ``load_state_dict`` refuses its state.
        """
        for key, callback in self.items:
            if key not in states or not hasattr(callback, "load_state_dict"):
                continue
            try:
                callback.load_state_dict(dict(states[key]))
            except (KeyError, TypeError, ValueError, RuntimeError) as error:
                raise CheckpointError(
                    f"Checkpoint {path}: the saved state of callback '{key}' does not fit it "
                    f"({str(error).splitlines()[0] if str(error) else type(error).__name__}). It was written "
                    "by another version of the callback; resume without it, or start a new run."
                ) from None
        unclaimed = sorted(set(states) - set(self.keys))
        if unclaimed:
            log.warning(
                "Checkpoint %s holds the state of callbacks %s, which this run no longer has; it is dropped.",
                path,
                unclaimed,
            )


def _state_of(callback: Any) -> Mapping[str, Any]:
    state = callback.state_dict() if hasattr(callback, "state_dict") else {}
    if not isinstance(state, Mapping):
        raise TypeError(f"{type(callback).__name__}.state_dict() returned {type(state).__name__}, not a dict")
    return state


def agree_on_stop(requests: Any, state: Any, dist: Any) -> None:
    """Move a callback's stop request into the progress record (saved with the epoch's checkpoints);
    under torchrun one process asking stops every process (one tiny all-reduce, on every process)."""
    from yolox_sdk.engine import distributed

    asked = requests.stop_by is not None
    if dist.enabled and distributed.average_metrics({"stop": float(asked)})["stop"] > 0 and not asked:
        requests.stop_by = "a callback in another process"
    if requests.stop_by is None or state.stopped_by is not None:
        return
    state.stopped_by, state.stop_reason = requests.stop_by, requests.stop_reason
    log.info(
        "Stopping after epoch %d: callback %s asked to (%s).",
        state.epoch,
        state.stopped_by,
        state.stop_reason or "no reason given",
    )
