"""The objects plugin factories return, as typing protocols and small base classes.

Plugins do not need to inherit from anything here (the protocols are structural), but ``Callback`` has
no-op methods so a callback only writes the events it cares about.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import numpy as np

if TYPE_CHECKING:
    import torch

    from yolox_sdk.data.records import DetectionDataset


@runtime_checkable
class DatasetFormat(Protocol):
    """Reads (and optionally writes) one annotation format."""

    def detect(self, path: Path) -> bool:
        """True when ``path`` (file or folder) looks like this format. Must be cheap: no full parse."""
        ...

    def load(self, path: Path, split: str | None = None) -> DetectionDataset:
        """Read the dataset at ``path``; ``split`` selects a subset where the format has splits."""
        ...

    def save(self, dataset: DetectionDataset, out_dir: Path) -> list[str]:
        """Write ``dataset`` under ``out_dir``; return warnings about what the format cannot hold."""
        ...


@attrs.define
class Sample:
    """One training sample flowing through the augmentation pipeline.

    ``image`` is HxWx3 uint8 BGR (OpenCV's order, what YOLOX weights were trained on), ``boxes`` absolute
    xyxy float32, ``labels`` int64 class indices. ``mosaic`` says whether the image is a mosaic canvas,
    which YOLOX's recipe uses to decide whether the random affine applies.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    mosaic: bool = False


@attrs.define
class AugmentationContext:
    """What an augmentation may use besides the sample itself.

    Attributes:
        input_size: target ``(height, width)`` of the network input.
        rng: the random generator of this sample; use it (not ``np.random``) so runs are reproducible.
        load_sample: ``load_sample(index)`` returns the un-augmented sample at ``index``.
        dataset_size: number of samples, for drawing random partners.
    """

    input_size: tuple[int, int]
    rng: np.random.Generator
    load_sample: Callable[[int], Sample]
    dataset_size: int


class Augmentation(Protocol):
    """A training augmentation step."""

    def __call__(self, sample: Sample, context: AugmentationContext) -> Sample: ...


class Logger(Protocol):
    """Receives hyperparameters once and metrics as training goes."""

    def log_hyperparameters(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


@attrs.frozen
class ScheduleSettings:
    """What a learning-rate schedule needs to know about the run.

    ``base_lr`` is already scaled to the batch size (``training.lr * batch_size / 64``); iteration counts
    are global (epoch * iters_per_epoch + step).
    """

    base_lr: float
    iters_per_epoch: int
    epochs: int
    warmup_epochs: float
    warmup_lr: float
    min_lr_ratio: float
    no_aug_epochs: int

    @property
    def total_iters(self) -> int:
        """Iterations in the whole run."""
        return self.iters_per_epoch * self.epochs


class LrSchedule(Protocol):
    """A learning rate as a pure function of the global iteration."""

    def lr_at(self, iteration: int) -> float: ...


class Callback:
    """Base class for trainer callbacks; override the events you need.

    ``trainer`` is the running ``yolox_sdk.engine.trainer.Trainer``; read its ``state`` (epoch, iteration,
    metrics) and set ``trainer.should_stop = True`` to end training after the current epoch.
    """

    def on_train_start(self, trainer: Any) -> None:
        """Called once, after the model, data and optimizer are built and before the first epoch."""

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Called before the first iteration of ``epoch`` (0-based)."""

    def on_iteration_end(self, trainer: Any, iteration: int, losses: Mapping[str, float]) -> None:
        """Called after each optimizer step with the detached loss components."""

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: Mapping[str, float]) -> None:
        """Called after each epoch with its mean losses (and evaluation metrics if it evaluated)."""

    def on_eval_end(self, trainer: Any, epoch: int, metrics: Mapping[str, float]) -> None:
        """Called after each evaluation with the COCO metrics."""

    def on_checkpoint(self, trainer: Any, path: Path, kind: str) -> None:
        """Called after a checkpoint was written atomically; ``kind`` is ``"last"``, ``"best"``, ``"epoch"``
        (``monitoring.save_interval``) or ``"swa"`` (the ``swa`` callback's ``swa.pt``)."""

    def on_train_end(self, trainer: Any) -> None:
        """Called once when training ends, normally or by ``should_stop``; the loggers are still open, so
        final metrics can go through ``trainer.log_metrics``."""


@attrs.frozen
class ExportResult:
    """What an exporter produced and how closely it matches PyTorch."""

    path: Path
    format: str
    max_abs_diff: float | None = None
    notes: tuple[str, ...] = ()


class Exporter(Protocol):
    """Writes a model to a deployment format and verifies it."""

    def export(
        self,
        model: torch.nn.Module,
        metadata: Mapping[str, Any],
        out_dir: Path,
        sample_images: Sequence[Path],
    ) -> ExportResult: ...
