"""What a callback sees of a running training, and the few things it may ask for.

Callbacks get a ``TrainingView`` instead of the trainer: a read-only window on the run (progress, the
models, the optimizer, where files go, which process this is) plus a short list of requests (stop, save,
a new learning-rate schedule, metrics for the last epoch's row). Everything else the trainer owns stays
private, so the trainer can change without breaking a plugin, and what a callback can do to a run is
written down in one place (``yolox_sdk.plugins.interfaces.Callback`` documents the contract).

The view reads the trainer live: ``view.epoch`` is always the current value, never a copy taken when
the view was made. Attributes cannot be assigned (``view.should_stop = True``, the old way to stop, still
works with a ``DeprecationWarning`` and is the same as ``request_stop``).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import torch
    from torch import nn

    from yolox_sdk.config.schema import Config
    from yolox_sdk.models.variants import ModelSpec
    from yolox_sdk.plugins.interfaces import LrSchedule


@attrs.define
class CallbackRequests:
    """What callbacks asked for since the trainer last looked; the trainer acts on these and clears them.

    Attributes:
        stop_by: key of the callback that asked to stop (``None``: nobody did).
        stop_reason: its reason, for the log.
        checkpoint: a ``last.pt`` save was asked for (written at the next optimizer-step boundary, or by
            the epoch's own save).
        schedule: a learning-rate schedule that replaces the run's (``None``: keep it).
    """

    stop_by: str | None = None
    stop_reason: str = ""
    checkpoint: bool = False
    schedule: Any = None


class TrainingView:
    """The read-only state of a training run that callbacks receive (see ``Callback`` for the contract)."""

    __slots__ = ("_trainer", "_caller")

    def __init__(self, trainer: Any) -> None:
        object.__setattr__(self, "_trainer", trainer)
        object.__setattr__(self, "_caller", "")

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "should_stop" and value:
            warnings.warn(
                "Setting trainer.should_stop in a callback is deprecated; call view.request_stop(reason).",
                DeprecationWarning,
                stacklevel=2,
            )
            self.request_stop("should_stop was set")
            return
        raise AttributeError(
            f"The training view is read-only (tried to set '{name}'). A callback changes a run through its "
            "requests: request_stop(), request_checkpoint(), set_lr_schedule(), add_metrics()."
        )

    def _called_by(self, key: str) -> None:
        """Set by the trainer before each callback runs, so a request says who made it."""
        object.__setattr__(self, "_caller", key)

    # ----- progress ----------------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """Epochs completed (0 before the first ends; in ``on_epoch_end(view, epoch, ...)`` it is ``epoch + 1``)."""
        return self._trainer.state.epoch

    @property
    def epochs(self) -> int:
        """``training.epochs``, the epochs the run trains in all."""
        return self._trainer.config.training.epochs

    @property
    def iteration(self) -> int:
        """Batches trained so far over the whole run (the ``step`` loggers get for ``iter/*`` metrics)."""
        return self._trainer.state.iteration

    @property
    def step(self) -> int:
        """Global optimizer step the schedule is at (``lr_schedule.lr_at(step)``); with
        ``training.accumulate`` > 1 it advances once per accumulated batch group."""
        return self._trainer.step

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (the unit a learning-rate schedule counts in)."""
        return self._trainer.parts.steps_per_epoch

    @property
    def metrics(self) -> Mapping[str, float]:
        """The last finished epoch's row of metrics.csv (``train/*``, ``val/*``, ``lr``, ...), read-only."""
        return MappingProxyType(dict(self._trainer.state.metrics))

    @property
    def best_value(self) -> float | None:
        """Best value of ``evaluation.save_best_metric`` so far (the negated loss when it is ``loss``)."""
        return self._trainer.state.best_value

    @property
    def best_epoch(self) -> int | None:
        """1-based epoch of ``best.pt``, ``None`` before any value was measured."""
        return self._trainer.state.best_epoch

    # ----- the run -----------------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The run's resolved config (frozen)."""
        return self._trainer.config

    @property
    def run_dir(self) -> Path:
        """The run directory: write files here, and only from the main process (``is_main``)."""
        return self._trainer.run_dir

    @property
    def is_main(self) -> bool:
        """True in the process that logs and writes files (the only one outside torchrun)."""
        return self._trainer.dist.is_main

    @property
    def rank(self) -> int:
        """This process's rank under torchrun (0 otherwise)."""
        return self._trainer.dist.rank

    @property
    def world_size(self) -> int:
        """Processes training together (1 outside torchrun)."""
        return self._trainer.dist.world_size

    @property
    def device(self) -> torch.device:
        """The device this process trains on."""
        return self._trainer.parts.device

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names, index = class id."""
        return self._trainer.parts.class_names

    @property
    def spec(self) -> ModelSpec:
        """The model spec (variant, class count, input size)."""
        return self._trainer.parts.spec

    @property
    def lineage(self) -> Mapping[str, Any]:
        """The run's lineage record (``engine.lineage``), empty outside the main process."""
        return MappingProxyType(self._trainer.lineage)

    # ----- the models --------------------------------------------------------------------------------

    @property
    def model(self) -> nn.Module:
        """The raw model being trained (never the DDP or compile wrapper). Read it; do not step it."""
        return self._trainer.parts.model

    @property
    def ema_model(self) -> nn.Module | None:
        """The EMA model, ``None`` with ``training.ema: false``."""
        ema = self._trainer.parts.ema
        return ema.ema if ema is not None else None

    @property
    def eval_model(self) -> nn.Module:
        """The model evaluation and ``best.pt`` use: the EMA model when EMA is on, else ``model``."""
        return self.ema_model if self.ema_model is not None else self.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer (read its ``param_groups``; the trainer sets their ``lr`` every step)."""
        return self._trainer.parts.optimizer

    @property
    def lr_schedule(self) -> LrSchedule:
        """The learning-rate schedule in use (``lr_at(step)``), e.g. to wrap it in ``set_lr_schedule``."""
        return self._trainer.schedule

    @property
    def has_val_data(self) -> bool:
        """Whether the run has validation data (``evaluate`` needs it)."""
        return self._trainer.parts.val_data is not None

    def evaluate(self, model: nn.Module) -> Any:
        """COCO metrics (an ``EvalResult``) of ``model`` on the validation data, computed exactly as the
        trainer evaluates its own model. Main process only; the model is left in eval mode."""
        return self._trainer.evaluate_model(model)

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """The run's mixed-precision autocast (a no-op in fp32), for forward passes a callback makes."""
        return self._trainer.parts.precision.autocast()

    def training_batches(self, limit: int | None = None) -> Iterator[torch.Tensor]:
        """Training images without mosaic or mixup (the no-aug phase), on the device, at the input size:
        what BatchNorm statistics of averaged weights are recomputed over. At most ``limit`` batches
        (``None``: one epoch). Switches the dataset to no-aug mode: call it at train end only."""
        from yolox_sdk.data.loader import batch_to_device, resize_batch, set_loader_epoch

        parts = self._trainer.parts
        parts.train_dataset.set_no_aug(True)
        set_loader_epoch(parts.loader, self.epoch)
        for index, (images, targets) in enumerate(parts.loader):
            if limit is not None and index >= limit:
                return
            images, targets = batch_to_device(images, targets, parts.device, parts.memory_format)
            yield resize_batch(images, targets, parts.spec.input_size)[0]

    # ----- requests ----------------------------------------------------------------------------------

    def request_stop(self, reason: str = "") -> None:
        """End training after the current epoch (its checkpoints are saved). The decision is saved with
        the run: ``--resume`` of a stopped run stops too, while this callback is still configured. Under
        torchrun one process asking stops them all."""
        requests = self._trainer.requests
        if requests.stop_by is None:
            requests.stop_by, requests.stop_reason = self._caller or "callback", reason

    def request_checkpoint(self) -> None:
        """Save ``last.pt`` (a resume point) at the next optimizer-step boundary, or with the epoch's own
        save when asked at epoch end. Honoured by the main process, which writes every checkpoint."""
        self._trainer.requests.checkpoint = True

    def set_lr_schedule(self, schedule: LrSchedule) -> None:
        """Replace the learning-rate schedule from the next step on. ``schedule.lr_at(step)`` must be a
        pure function of the step, so a resumed run gets the same rates; set it on every process (in
        ``on_train_start``, which runs again on resume), or the processes train at different rates."""
        self._trainer.requests.schedule = schedule

    def add_metrics(self, metrics: Mapping[str, float]) -> None:
        """Add ``metrics`` to the last epoch's row: ``TrainResult.metrics``, metrics.csv and the other
        loggers (sent again with the whole row; loggers keep one row per step). For train-end results."""
        self._trainer.add_metrics(dict(metrics))

    def notify_checkpoint(self, path: Path, kind: str) -> None:
        """Tell the callbacks (``on_checkpoint``) about a checkpoint this callback wrote (``swa.pt``)."""
        self._trainer.callbacks.fire("on_checkpoint", path, kind)

    def save_model_checkpoint(self, model: nn.Module, filename: str, extra: Mapping[str, Any]) -> Path:
        """Save ``model``'s weights as an inference checkpoint of this run (spec, class names, config,
        lineage) at ``run_dir / filename``, atomically; ``extra`` becomes its training state. Main only."""
        from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
        from yolox_sdk.config.loader import config_to_dict

        checkpoint = Checkpoint(
            model=model.state_dict(),
            ema=None,
            spec=self.spec,
            class_names=tuple(self.class_names),
            config=config_to_dict(self.config),
            lineage=dict(self.lineage),
            training_state=dict(extra),
        )
        return save_checkpoint(self.run_dir / filename, checkpoint)
