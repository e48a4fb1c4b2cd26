"""Stochastic Weight Averaging (SWA) of the raw weights over the last epochs, as the ``swa`` callback.

SWA (Izmailov et al., 2018) averages the weights the optimizer visits at the end of several late epochs;
the average usually sits in a flatter, better-generalising spot than any single snapshot. The average is
``torch.optim.swa_utils.AveragedModel`` over ``trainer.model`` (the raw weights, not EMA: EMA is already
an average, with a time constant of a few hundred iterations).

* **Window.** Epochs ``start_epoch..training.epochs`` (1-based, as in metrics.csv). Left out, the last
  quarter of the epochs is averaged (at least one), the length the SWA paper found good.
* **Learning rate.** With ``swa_lr`` set, the schedule is replaced inside the window: it anneals from the
  schedule's rate at the window's first optimizer step to ``swa_lr`` over ``anneal_epochs`` (cosine or
  linear, SWALR's two rules), then stays flat. ``SWALR`` itself is not used: the trainer asks its schedule
  for ``lr_at(step)`` every step and a resumed run must get the same rates, so the SWA rate is a pure
  function of the step wrapped around the run's schedule. Without ``swa_lr`` the schedule is untouched.
  Callbacks run in the first process only, so ``swa_lr`` is refused in multi-process training.
* **BatchNorm.** Averaged weights need their own BN statistics. At train end they are recomputed over the
  training data in no-aug mode (no mosaic, as the last YOLOX epochs): BN layers reset, switch to
  cumulative averaging (``momentum=None``, as ``torch.optim.swa_utils.update_bn``), and see the images
  with only the BN layers in train mode, so the YOLOX head runs its inference path and needs no targets.
  BN layers that training kept in eval mode (frozen layers, or all with ``model.freeze_bn``) keep theirs.
* **Results.** The average is evaluated like the trainer's own model, logged as ``val/swa_<metric>`` (in
  the last epoch's metrics.csv row), compared with the best checkpoint in the log, and saved as a regular
  checkpoint ``swa.pt`` (``eval``, ``predict``, ``export`` take it) plus a ``swa.json`` summary.
* **Stopping early.** A run ended by ``should_stop`` (early stopping) finishes the average it has; one
  that stopped before the window writes no ``swa.pt`` and says so.
* **Resuming.** After each averaged epoch the average is written atomically to ``swa_state.pt`` in the
  run directory; a resumed run reloads it (a resumed GPU run gave a ``swa.pt`` identical to a straight one). An average that holds epochs the run no longer has (after
  ``--from-best``) is discarded with a warning rather than mixed with the retrained epochs.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from yolox_sdk.config.validators import number, one_of
from yolox_sdk.errors import CheckpointError, ConfigError
from yolox_sdk.files import write_text_atomically
from yolox_sdk.plugins.hookspecs import hookimpl
from yolox_sdk.plugins.interfaces import Callback, LrSchedule

if TYPE_CHECKING:  # torch is imported when the callback runs, so loading plugins stays fast
    import torch
    from torch import nn
    from torch.optim.swa_utils import AveragedModel

log = logging.getLogger(__name__)

SWA_CHECKPOINT = "swa.pt"
SWA_SUMMARY = "swa.json"
SWA_STATE = "swa_state.pt"
DEFAULT_WINDOW_FRACTION = 0.25


@attrs.frozen
class SwaOptions:
    """Options of the ``swa`` callback (see the module docstring for what each one changes).

    Attributes:
        start_epoch: first averaged epoch, 1-based; ``None`` averages the last quarter of the epochs.
        swa_lr: constant learning rate inside the window; ``None`` keeps the run's schedule.
        anneal_epochs: epochs to go from the schedule's rate to ``swa_lr`` (0 jumps at once).
        anneal_strategy: ``cos`` or ``linear``, as ``torch.optim.swa_utils.SWALR``.
        bn_batches: training batches for the BatchNorm recomputation; ``None`` is one full epoch.
    """

    start_epoch: int | None = attrs.field(default=None, validator=number(1, optional=True))
    swa_lr: float | None = attrs.field(
        default=None, validator=number(0.0, low_inclusive=False, optional=True)
    )
    anneal_epochs: int = attrs.field(default=1, validator=number(0))
    anneal_strategy: str = attrs.field(default="cos", validator=one_of(("cos", "linear")))
    bn_batches: int | None = attrs.field(default=None, validator=number(1, optional=True))


def default_start_epoch(epochs: int) -> int:
    """The first epoch of the default window: the last quarter of ``epochs``, at least the last epoch."""
    return epochs - max(1, math.ceil(epochs * DEFAULT_WINDOW_FRACTION)) + 1


@attrs.frozen
class SwaSchedule:
    """The run's schedule before ``start_iteration``; from there SWALR's annealing to ``swa_lr``.

    A pure function of the iteration, like every schedule, so a resumed run gets the same rates.
    """

    base: LrSchedule
    start_iteration: int
    anneal_iterations: int
    swa_lr: float
    strategy: str = "cos"

    def lr_at(self, iteration: int) -> float:
        """Learning rate for global iteration ``iteration``."""
        if iteration < self.start_iteration:
            return self.base.lr_at(iteration)
        start_lr = self.base.lr_at(self.start_iteration)
        done = iteration - self.start_iteration
        progress = 1.0 if self.anneal_iterations <= 0 else min(1.0, done / self.anneal_iterations)
        weight = (1 - math.cos(math.pi * progress)) / 2 if self.strategy == "cos" else progress
        return start_lr + (self.swa_lr - start_lr) * weight


def _finite_or_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


class SwaCallback(Callback):
    """Averages ``trainer.model`` at the end of each epoch of the window; finishes the average at train end."""

    def __init__(self, options: SwaOptions) -> None:
        self.options = options
        self.start_epoch = options.start_epoch or 1
        self.averaged: AveragedModel | None = None
        self.epochs: list[int] = []

    # ----- training events ------------------------------------------------------------------------------

    def on_train_start(self, trainer: Any) -> None:
        """Fix the window, install the SWA learning rate, and reload a resumed run's average."""
        epochs = trainer.config.training.epochs
        self.start_epoch = self.options.start_epoch or default_start_epoch(epochs)
        if self.start_epoch > epochs:
            raise ConfigError(
                f"Invalid config: training.callbacks: the swa callback's start_epoch is {self.start_epoch} "
                f"but training.epochs is {epochs}, so no epoch would be averaged. Set start_epoch to at most "
                f"{epochs}, or leave it out to average the last quarter of the epochs."
            )
        if self.options.swa_lr is not None:
            trainer.schedule = self._swa_schedule(trainer)
        self._reload(trainer)
        log.info(
            "SWA: averaging the raw weights of epochs %d-%d%s.",
            self.start_epoch,
            epochs,
            f" at lr {self.options.swa_lr:g}" if self.options.swa_lr is not None else "",
        )

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: Mapping[str, float]) -> None:
        """Add this epoch's weights to the average when the epoch is in the window, and persist it."""
        from yolox_sdk.engine.averaging import new_average
        from yolox_sdk.engine.torch_files import atomic_torch_save

        number = epoch + 1
        if number < self.start_epoch:
            return
        if self.averaged is None:
            self.averaged = new_average(trainer.model)
        self.averaged.update_parameters(trainer.model)
        self.epochs.append(number)
        atomic_torch_save(
            {"averaged": self.averaged.state_dict(), "epochs": list(self.epochs)},
            trainer.run_dir / SWA_STATE,
        )

    def on_train_end(self, trainer: Any) -> None:
        """Recompute BN statistics, evaluate, save ``swa.pt`` and ``swa.json``, log the comparison."""
        if self.averaged is None:
            log.warning(
                "SWA: training ended after epoch %d, before the first averaged epoch %d; no %s written.",
                trainer.state.epoch,
                self.start_epoch,
                SWA_CHECKPOINT,
            )
            return
        model = self.averaged.module
        batches = self._recompute_batchnorm(trainer, model)
        metrics = self._evaluate(trainer, model) if trainer.val_data is not None else {}
        path = self._save_checkpoint(trainer, model)
        comparison = self._comparison(trainer, metrics)
        self._write_summary(trainer, metrics, comparison, batches)
        log.info("SWA: %s; saved %s", comparison["line"], path)
        trainer.fire("on_checkpoint", path, "swa")

    # ----- pieces ---------------------------------------------------------------------------------------

    def _swa_schedule(self, trainer: Any) -> SwaSchedule:
        """The schedule counts optimizer steps (``trainer.steps_per_epoch`` of them per epoch)."""
        dist = getattr(trainer, "dist", None)
        if dist is not None and dist.world_size > 1:
            raise ConfigError(
                "Invalid config: training.callbacks: the swa callback's swa_lr cannot be used in multi-process "
                f"training ({dist.world_size} processes): callbacks run in the first process only, so the "
                "others would keep the old learning rate. Leave swa_lr out (the weights are still averaged "
                "over the window), or train in one process."
            )
        steps_per_epoch = trainer.steps_per_epoch
        return SwaSchedule(
            base=trainer.schedule,
            start_iteration=(self.start_epoch - 1) * steps_per_epoch,
            anneal_iterations=self.options.anneal_epochs * steps_per_epoch,
            swa_lr=self.options.swa_lr,
            strategy=self.options.anneal_strategy,
        )

    def _reload(self, trainer: Any) -> None:
        """Reload the average a resumed run saved, unless it holds epochs the run has since rolled back."""
        from yolox_sdk.engine.averaging import new_average
        from yolox_sdk.engine.torch_files import load_torch_file

        path = trainer.run_dir / SWA_STATE
        if not path.is_file():
            return
        saved = load_torch_file(path)
        if not isinstance(saved, Mapping) or not {"averaged", "epochs"} <= set(saved):
            raise CheckpointError(
                f"{path} is not an SWA state written by the swa callback. Delete it to restart the average "
                "from the next epoch of the window."
            )
        done = trainer.state.epoch
        epochs = [int(number) for number in saved["epochs"]]
        if any(number > done for number in epochs):
            log.warning(
                "SWA: %s averages epochs up to %d but the run continues after epoch %d (rolled back); the "
                "average restarts and will hold only the epochs trained from now on.",
                path,
                max(epochs),
                done,
            )
            return
        self.averaged = new_average(trainer.model)
        self.averaged.load_state_dict(saved["averaged"])
        self.epochs = epochs
        missing = sorted(set(range(self.start_epoch, done + 1)) - set(epochs))
        if missing:
            log.warning("SWA: the average lacks epochs %s (interrupted before they were added).", missing)
        log.info("SWA: resumed the average of epochs %s from %s.", epochs, path)

    def _recompute_batchnorm(self, trainer: Any, model: nn.Module) -> int:
        """Recompute the statistics training let move: not those of frozen layers, none with freeze_bn."""
        from yolox_sdk.engine.averaging import batchnorm_layers, recompute_batchnorm
        from yolox_sdk.engine.freezing import batchnorm_is_frozen

        layers = batchnorm_layers(trainer.model)
        freeze_bn = trainer.config.model.freeze_bn
        frozen = {name for name, layer in layers.items() if batchnorm_is_frozen(layer, freeze_bn)}
        if len(frozen) == len(layers):
            log.info("SWA: BatchNorm statistics kept as they are (every BatchNorm layer is frozen).")
            return 0
        trainer.train_dataset.set_no_aug(True)
        with trainer.precision.autocast():
            seen = recompute_batchnorm(model, self._training_images(trainer), keep=frozen)
        log.info("SWA: recomputed BatchNorm statistics over %d training batches (no-aug mode).", seen)
        return seen

    def _training_images(self, trainer: Any) -> Iterator[torch.Tensor]:
        from yolox_sdk.data.loader import resize_batch, set_loader_epoch

        set_loader_epoch(trainer.loader, trainer.state.epoch)
        limit = self.options.bn_batches
        for index, (images, targets) in enumerate(trainer.loader):
            if limit is not None and index >= limit:
                return
            images, _ = resize_batch(images, targets, trainer.spec.input_size)
            yield images.to(trainer.device, non_blocking=True).contiguous(memory_format=trainer.memory_format)

    def _evaluate(self, trainer: Any, model: nn.Module) -> dict[str, float]:
        """Evaluate like the trainer; the metrics join the last epoch's row (metrics.csv keeps one per epoch)."""
        result = trainer.evaluate_model(model)
        metrics = {f"val/swa_{key}": value for key, value in result.metrics.items()}
        trainer.state.metrics.update(metrics)
        trainer.log_metrics(dict(trainer.state.metrics), trainer.state.epoch)
        return metrics

    def _save_checkpoint(self, trainer: Any, model: nn.Module) -> Path:
        from yolox_sdk.config.loader import config_to_dict
        from yolox_sdk.engine.checkpoint import Checkpoint, save_checkpoint

        checkpoint = Checkpoint(
            model=model.state_dict(),
            ema=None,
            spec=trainer.spec,
            class_names=tuple(trainer.class_names),
            config=config_to_dict(trainer.config),
            lineage=getattr(trainer, "lineage", {}),
            training_state={"swa": {"epochs": list(self.epochs)}},
        )
        return save_checkpoint(trainer.run_dir / SWA_CHECKPOINT, checkpoint)

    def _comparison(self, trainer: Any, metrics: Mapping[str, float]) -> dict[str, Any]:
        """SWA against the best checkpoint on ``evaluation.save_best_metric`` (mAP when best is by loss)."""
        name = trainer.config.evaluation.save_best_metric
        window = f"SWA of epochs {self.epochs[0]}-{self.epochs[-1]} ({len(self.epochs)} snapshots)"
        if not metrics:
            return {"line": f"{window}: not evaluated (no validation data)"}
        if name == "loss" or trainer.state.best_value is None:
            name, best, best_epoch = "mAP", trainer.state.metrics.get("val/mAP"), trainer.state.epoch
            reference = "last epoch"
        else:
            best, best_epoch, reference = (
                trainer.state.best_value,
                trainer.state.best_epoch,
                "best checkpoint",
            )
        swa_value = metrics[f"val/swa_{name}"]
        line = f"{window}: {name} {swa_value:.4f}"
        if best is not None:
            line += f" vs {reference} {best:.4f} (epoch {best_epoch}), difference {swa_value - best:+.4f}"
        return {
            "line": line,
            "metric": name,
            "swa": _finite_or_none(swa_value),
            "reference": reference,
            "reference_value": _finite_or_none(best),
            "reference_epoch": best_epoch,
        }

    def _write_summary(
        self, trainer: Any, metrics: Mapping[str, float], comparison: Mapping[str, Any], batches: int
    ) -> None:
        summary = {
            "checkpoint": SWA_CHECKPOINT,
            "epochs_averaged": list(self.epochs),
            "swa_lr": self.options.swa_lr,
            "batchnorm_batches": batches,
            "metrics": {key.removeprefix("val/swa_"): _finite_or_none(v) for key, v in metrics.items()},
            "comparison": {key: value for key, value in comparison.items() if key != "line"},
        }
        write_text_atomically(trainer.run_dir / SWA_SUMMARY, json.dumps(summary, indent=2) + "\n")


def build_swa(options: SwaOptions) -> SwaCallback:
    """One SWA callback per run (it holds that run's average)."""
    return SwaCallback(options)


@hookimpl
def register_callbacks(register) -> None:
    register(
        "swa",
        build_swa,
        options=SwaOptions,
        description="stochastic weight averaging over the last epochs, saved as swa.pt",
    )
