"""Stochastic Weight Averaging (SWA) of the raw weights over the last epochs, as the ``swa`` callback.

SWA (Izmailov et al., 2018) averages the weights the optimizer visits at the end of several late epochs;
the average usually sits in a flatter, better-generalising spot than any single snapshot. The average is
``torch.optim.swa_utils.AveragedModel`` over ``view.model`` (the raw weights, not EMA: EMA is already
an average, with a time constant of a few hundred iterations).

* **Window.** Epochs ``start_epoch..training.epochs`` (1-based, as in metrics.csv). Left out, the last
  quarter of the epochs is averaged (at least one), the length the SWA paper found good.
* **Learning rate.** With ``swa_lr`` set, the schedule is replaced inside the window: it anneals from the
  schedule's rate at the window's first optimizer step to ``swa_lr`` over ``anneal_epochs`` (cosine or
  linear, SWALR's two rules), then stays flat. ``SWALR`` itself is not used: the trainer asks its schedule
  for ``lr_at(step)`` every step and a resumed run must get the same rates, so the SWA rate is a pure
  function of the step wrapped around the run's schedule. Without ``swa_lr`` the schedule is untouched.
  Every process installs the same SWA schedule, so ``swa_lr`` works under torchrun too; the average is
  kept, finished and written by the main process only (the others train the same weights).
* **BatchNorm.** Averaged weights need their own BN statistics. At train end they are recomputed over the
  training data in no-aug mode (no mosaic, as the last YOLOX epochs): BN layers reset, switch to
  cumulative averaging (``momentum=None``, as ``torch.optim.swa_utils.update_bn``), and see the images
  with only the BN layers in train mode, so the YOLOX head runs its inference path and needs no targets.
  BN layers that training kept in eval mode (frozen layers, or all with ``model.freeze_bn``) keep theirs.
* **Results.** The average is evaluated like the trainer's own model, logged as ``val/swa_<metric>`` (in
  the last epoch's metrics.csv row), compared with the best checkpoint in the log, and saved as a regular
  checkpoint ``swa.pt`` (``eval``, ``predict``, ``export`` take it) plus a ``swa.json`` summary.
* **Stopping early.** A run ended by a stop request (early stopping) finishes the average it has; one
  that stopped before the window writes no ``swa.pt`` and says so.
* **Resuming.** The average (its weights, count and epochs) is the callback's state, saved in every
  checkpoint, so a resumed run (from ``last.pt``, a mid-epoch resume point or ``--from-best``'s
  ``best.pt``) continues with exactly the average its checkpoint had. Runs started before callback
  states existed kept the average in ``swa_state.pt``: when a checkpoint has no SWA state that file is
  still read (an average holding epochs the run no longer has is discarded with a warning); new runs
  no longer write it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from yolox_sdk.config.validators import number, one_of
from yolox_sdk.errors import CheckpointError, ConfigError
from yolox_sdk.files import write_text_atomically
from yolox_sdk.plugins.hookspecs import hookimpl
from yolox_sdk.plugins.interfaces import Callback, LrSchedule

if TYPE_CHECKING:  # torch is imported when the callback runs, so loading plugins stays fast
    from torch import nn
    from torch.optim.swa_utils import AveragedModel

    from yolox_sdk.engine.training_view import TrainingView

log = logging.getLogger(__name__)

SWA_CHECKPOINT = "swa.pt"
SWA_SUMMARY = "swa.json"
SWA_STATE = "swa_state.pt"  # read for runs started before callback states existed; no longer written
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
    """Averages ``view.model`` at the end of each epoch of the window; finishes the average at train end."""

    def __init__(self, options: SwaOptions) -> None:
        self.options = options
        self.start_epoch = options.start_epoch or 1
        self.averaged: AveragedModel | None = None
        self.epochs: list[int] = []
        self._saved: dict[str, Any] | None = None  # a checkpoint's state, made an average at train start

    # ----- state ----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The average's weights and count (tensors) and the epochs it holds."""
        if self.averaged is None:
            return {"epochs": list(self.epochs)}
        return {"averaged": self.averaged.state_dict(), "epochs": list(self.epochs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._saved = {"averaged": state.get("averaged"), "epochs": [int(n) for n in state["epochs"]]}

    # ----- training events ------------------------------------------------------------------------------

    def on_train_start(self, view: TrainingView) -> None:
        """Fix the window, install the SWA learning rate, and restore a resumed run's average."""
        epochs = view.epochs
        self.start_epoch = self.options.start_epoch or default_start_epoch(epochs)
        if self.start_epoch > epochs:
            raise ConfigError(
                f"Invalid config: training.callbacks: the swa callback's start_epoch is {self.start_epoch} "
                f"but training.epochs is {epochs}, so no epoch would be averaged. Set start_epoch to at most "
                f"{epochs}, or leave it out to average the last quarter of the epochs."
            )
        if self.options.swa_lr is not None:
            view.set_lr_schedule(self._swa_schedule(view))
        if view.is_main:
            self._restore(view)
        log.info(
            "SWA: averaging the raw weights of epochs %d-%d%s.",
            self.start_epoch,
            epochs,
            f" at lr {self.options.swa_lr:g}" if self.options.swa_lr is not None else "",
        )

    def on_epoch_end(self, view: TrainingView, epoch: int, metrics: Mapping[str, float]) -> None:
        """Add this epoch's weights to the average when the epoch is in the window (main process)."""
        from yolox_sdk.engine.averaging import new_average

        number = epoch + 1
        if number < self.start_epoch or not view.is_main:
            return
        if self.averaged is None:
            self.averaged = new_average(view.model)
        self.averaged.update_parameters(view.model)
        self.epochs.append(number)

    def on_train_end(self, view: TrainingView) -> None:
        """Recompute BN statistics, evaluate, save ``swa.pt`` and ``swa.json``, log the comparison."""
        if not view.is_main:
            return
        if self.averaged is None:
            log.warning(
                "SWA: training ended after epoch %d, before the first averaged epoch %d; no %s written.",
                view.epoch,
                self.start_epoch,
                SWA_CHECKPOINT,
            )
            return
        model = self.averaged.module
        batches = self._recompute_batchnorm(view, model)
        metrics = self._evaluate(view, model) if view.has_val_data else {}
        path = view.save_model_checkpoint(model, SWA_CHECKPOINT, {"swa": {"epochs": list(self.epochs)}})
        comparison = self._comparison(view, metrics)
        self._write_summary(view, metrics, comparison, batches)
        log.info("SWA: %s; saved %s", comparison["line"], path)
        view.notify_checkpoint(path, "swa")

    # ----- pieces ---------------------------------------------------------------------------------------

    def _swa_schedule(self, view: TrainingView) -> SwaSchedule:
        """The schedule counts optimizer steps (``view.steps_per_epoch`` of them per epoch)."""
        steps_per_epoch = view.steps_per_epoch
        return SwaSchedule(
            base=view.lr_schedule,
            start_iteration=(self.start_epoch - 1) * steps_per_epoch,
            anneal_iterations=self.options.anneal_epochs * steps_per_epoch,
            swa_lr=self.options.swa_lr,
            strategy=self.options.anneal_strategy,
        )

    def _restore(self, view: TrainingView) -> None:
        """The average the checkpoint carried, or for older runs the one in ``swa_state.pt``."""
        from yolox_sdk.engine.averaging import new_average

        saved, self._saved = self._saved, None
        if saved is None:
            saved = self._legacy_state(view)
        if saved is None or saved.get("averaged") is None:
            return
        self.averaged = new_average(view.model)
        self.averaged.load_state_dict(saved["averaged"])
        self.epochs = list(saved["epochs"])
        missing = sorted(set(range(self.start_epoch, view.epoch + 1)) - set(self.epochs))
        if missing:
            log.warning("SWA: the average lacks epochs %s (interrupted before they were added).", missing)
        log.info("SWA: resumed the average of epochs %s.", self.epochs)

    def _legacy_state(self, view: TrainingView) -> dict[str, Any] | None:
        """``swa_state.pt`` of a run started before callback states, unless it holds rolled-back epochs."""
        from yolox_sdk.checkpoints.torch_files import load_torch_file

        path = view.run_dir / SWA_STATE
        if not path.is_file():
            return None
        saved = load_torch_file(path)
        if not isinstance(saved, Mapping) or not {"averaged", "epochs"} <= set(saved):
            raise CheckpointError(
                f"{path} is not an SWA state written by the swa callback. Delete it to restart the average "
                "from the next epoch of the window."
            )
        done = view.epoch
        epochs = [int(number) for number in saved["epochs"]]
        if any(number > done for number in epochs):
            log.warning(
                "SWA: %s averages epochs up to %d but the run continues after epoch %d (rolled back); the "
                "average restarts and will hold only the epochs trained from now on.",
                path,
                max(epochs),
                done,
            )
            return None
        log.info("SWA: reading the average of a run started before callback states from %s.", path)
        return {"averaged": saved["averaged"], "epochs": epochs}

    def _recompute_batchnorm(self, view: TrainingView, model: nn.Module) -> int:
        """Recompute the statistics training let move: not those of frozen layers, none with freeze_bn."""
        from yolox_sdk.engine.averaging import batchnorm_layers, recompute_batchnorm
        from yolox_sdk.engine.freezing import batchnorm_is_frozen

        layers = batchnorm_layers(view.model)
        freeze_bn = view.config.model.freeze_bn
        frozen = {name for name, layer in layers.items() if batchnorm_is_frozen(layer, freeze_bn)}
        if len(frozen) == len(layers):
            log.info("SWA: BatchNorm statistics kept as they are (every BatchNorm layer is frozen).")
            return 0
        with view.autocast():
            seen = recompute_batchnorm(model, view.training_batches(self.options.bn_batches), keep=frozen)
        log.info("SWA: recomputed BatchNorm statistics over %d training batches (no-aug mode).", seen)
        return seen

    def _evaluate(self, view: TrainingView, model: nn.Module) -> dict[str, float]:
        """Evaluate like the trainer; the metrics join the last epoch's row (metrics.csv keeps one per epoch)."""
        result = view.evaluate(model)
        metrics = {f"val/swa_{key}": value for key, value in result.metrics.items()}
        view.add_metrics(metrics)
        return metrics

    def _comparison(self, view: TrainingView, metrics: Mapping[str, float]) -> dict[str, Any]:
        """SWA against the best checkpoint on ``evaluation.save_best_metric`` (mAP when best is by loss)."""
        name = view.config.evaluation.save_best_metric
        window = f"SWA of epochs {self.epochs[0]}-{self.epochs[-1]} ({len(self.epochs)} snapshots)"
        if not metrics:
            return {"line": f"{window}: not evaluated (no validation data)"}
        if name == "loss" or view.best_value is None:
            name, best, best_epoch = "mAP", view.metrics.get("val/mAP"), view.epoch
            reference = "last epoch"
        else:
            best, best_epoch, reference = view.best_value, view.best_epoch, "best checkpoint"
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
        self, view: TrainingView, metrics: Mapping[str, float], comparison: Mapping[str, Any], batches: int
    ) -> None:
        summary = {
            "checkpoint": SWA_CHECKPOINT,
            "epochs_averaged": list(self.epochs),
            "swa_lr": self.options.swa_lr,
            "batchnorm_batches": batches,
            "metrics": {key.removeprefix("val/swa_"): _finite_or_none(v) for key, v in metrics.items()},
            "comparison": {key: value for key, value in comparison.items() if key != "line"},
        }
        write_text_atomically(view.run_dir / SWA_SUMMARY, json.dumps(summary, indent=2) + "\n")


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
