"""Stopping training cleanly on SIGTERM and SIGINT.

Schedulers, Kubernetes and ``timeout`` stop a job with SIGTERM (then SIGKILL after a grace period); a
user presses Ctrl-C (SIGINT). ``StopOnSignal`` turns the first of those into a request that the trainer
honours at the next optimizer-step boundary: it writes ``last.pt`` there (a mid-epoch resume point, so
``--resume`` continues bit-identically) and stops with exit code 128 + the signal number (143, 130).

What a signal does depends on where training is:

- Inside ``deferred()`` (the epoch loop: training steps, the epoch-end evaluation and save) the first
  signal is only recorded. A signal during the epoch-end evaluation lets it finish and the epoch's
  checkpoints be written, then stops: abandoning it would lose the epoch, and its result decides
  ``best.pt``. A second signal raises ``SignalReceived`` at once: the current step (or save, or
  evaluation) is abandoned and the previous checkpoint is kept (saves are atomic).
- Outside it (building the datasets and model before the first step; ``on_train_end`` callbacks) there is
  nothing worth finishing: the first signal raises ``SignalReceived`` at once.

``SignalReceived`` derives from ``BaseException`` like ``KeyboardInterrupt``, so no ``except Exception``
on its way (a plugin's, a per-file error handler's) can swallow it. The previous handlers are restored
when training ends, so the Python API leaves none installed; in a thread other than the main one Python
cannot install handlers, and training runs without them. In a forked DataLoader worker (which inherits
the handlers) a signal is ignored: the main process stops the workers when it stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from yolox_sdk.engine.run_dir import CONFIG_FILENAME
from yolox_sdk.errors import TrainingInterrupted

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SignalReceived(BaseException):
    """Raised from the signal handler when training must stop at once."""

    def __init__(self, signum: int, second: bool) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.second = second


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopOnSignal:
    """Installs SIGTERM and SIGINT handlers for the duration of a ``with`` block (main thread only)."""

    def __init__(self) -> None:
        self.received: int | None = None  # the first signal, once one came
        self._deferring = False
        self._previous: dict[int, Any] = {}
        self._pid = os.getpid()

    @property
    def stop_requested(self) -> bool:
        return self.received is not None

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is not threading.main_thread():
            log.debug("Not in the main thread: training runs without SIGTERM/SIGINT handlers.")
            return self
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def requested_on_any_process(self, distributed: bool) -> bool:
        """``stop_requested``; under torchrun, whether any process got a signal (one tiny all-reduce, so
        every process stops at the same step: one stopping alone would leave the others blocked)."""
        if not distributed:
            return self.stop_requested
        from yolox_sdk.engine.distributed import average_metrics

        anywhere = average_metrics({"stop": float(self.stop_requested)})["stop"] > 0
        if anywhere and self.received is None:
            self.received = signal.SIGTERM  # what torchrun sends to every process when it stops a job
        return anywhere

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Within this block a first signal is only recorded (``stop_requested``), not raised."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker: the main process decides
            return
        if self.received is not None:
            raise SignalReceived(signum, second=True)
        self.received = signum
        if not self._deferring:
            raise SignalReceived(signum, second=False)
        log.warning(
            "%s received: finishing the current step, then saving a resume point and stopping "
            "(send it again to stop at once, keeping the previous checkpoint).",
            signal_name(signum),
        )


def saved_position(path: Path, state: Any) -> str:
    """``PATH holds the run up to epoch 2`` (or ``... batch 5 of epoch 3``) for a ``TrainState``."""
    if state.batch_in_epoch:
        return f"{path} holds the run up to batch {state.batch_in_epoch} of epoch {state.epoch + 1}"
    return f"{path} holds the run up to epoch {state.epoch}"


def interrupted_error(
    signum: int, abandoned: bool, run_dir: Path | None, saved: str, rank: int = 0
) -> TrainingInterrupted:
    """The error a signal ends training with: what stopped it, what is on disk (``saved``, from
    ``saved_position``, empty when nothing was), and the command that resumes. Under torchrun only
    process 0 (``rank``) writes checkpoints; the others say so instead."""
    name = signal_name(signum)
    if abandoned:
        what = f"A second {name} stopped training at once: the current step was abandoned."
    else:
        what = f"{name} stopped training."
    if run_dir is None:
        return TrainingInterrupted(f"{what} It had not started: nothing was written.", signum)
    if rank:
        state = f"Process {rank} stopped together with process 0, which wrote the resume point."
    elif saved:
        state = f"{saved} ({'kept' if abandoned else 'saved'})."
    else:
        state = "No checkpoint was written yet, so resuming starts the run again in the same directory."
    return TrainingInterrupted(f"{what} {state}", signum, run_dir, run_dir / CONFIG_FILENAME)
