"""What a training run carries between epochs and across a resume, and what it returns.

``TrainState`` is saved in every checkpoint and restored by ``--resume``; the random-number states of
Python, NumPy and torch travel with it so a resumed run draws what the uninterrupted one would have.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch


@attrs.define
class TrainState:
    """Progress that a resumed run restores."""

    epoch: int = 0
    iteration: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    metrics: dict[str, float] = attrs.field(factory=dict)
    images_seen: int = 0
    train_seconds: float = 0.0
    # Within an unfinished epoch (a mid-epoch checkpoint): batches done and their loss sums.
    batch_in_epoch: int = 0
    epoch_loss_sums: dict[str, float] = attrs.field(factory=dict)
    epoch_batches: int = 0
    # A callback's stop request (``TrainingView.request_stop``): its key and reason. A resumed run that
    # had stopped stops again while that callback is still configured.
    stopped_by: str | None = None
    stop_reason: str = ""

    def best_summary(self, metric: str) -> str:
        """``best mAP 0.4321 at epoch 7``, for the last log line of a run."""
        if self.best_value is None:
            return f"no {metric} was measured (no validation data), best.pt is the last epoch"
        return f"best {metric} {abs(self.best_value):.4f} at epoch {self.best_epoch}"


@attrs.frozen
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    metrics: dict[str, float]
    train_images_per_second: float
    wall_seconds: float
    epochs_completed: int

    @classmethod
    def of_run(cls, run_dir: Path, state: TrainState, wall_seconds: float) -> TrainResult:
        """The result of the run in ``run_dir`` as ``state`` leaves it (``best.pt`` falls back to ``last.pt``)."""
        best = run_dir / "best.pt"
        return cls(
            run_dir=run_dir,
            best_checkpoint=best if best.exists() else run_dir / "last.pt",
            last_checkpoint=run_dir / "last.pt",
            metrics=dict(state.metrics),
            train_images_per_second=state.images_seen / max(state.train_seconds, 1e-9),
            wall_seconds=wall_seconds,
            epochs_completed=state.epoch,
        )


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; optionally make torch pick deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def rng_state() -> dict[str, Any]:
    """The generator states of Python, NumPy and torch (CPU).

    NumPy's key array is stored as a tensor so that a checkpoint holds only tensors and plain data, which
    the restricted unpickler loads without any NumPy type (``checkpoints.torch_files``).
    """
    name, key, position, has_gauss, cached_gaussian = np.random.get_state()
    numpy_state = (name, torch.from_numpy(key.astype(np.int64)), position, has_gauss, cached_gaussian)
    return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what ``rng_state`` captured (also the NumPy array form of older checkpoints)."""
    random.setstate(state["python"])
    name, key, *rest = state["numpy"]
    key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
    np.random.set_state((name, key.astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
