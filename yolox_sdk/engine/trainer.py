"""The training loop: epochs of batches, evaluation when due, callbacks at fixed events.

An epoch sets the augmentation phase and what trains (``freezing``), trains each batch at its multi-scale
size (``multiscale``, ``training_step``), evaluates when due, lets the callbacks see the epoch, then the
always-on checkpoint policy (``checkpoint_policy``) writes the epoch's files and the loggers get its row.
What the loop delegates: building the parts (``setup``), resuming (``resume``, ``restore``), callbacks and
their states (``callbacks``, ``training_view``), multi-process training (``distributed``, ``train_module``),
lineage (``lineage``), the run directory's lock (``run_lock``) and SIGTERM/SIGINT (``interruption``).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs
import torch

from yolox_sdk.config.schema import Config
from yolox_sdk.engine import distributed, restore, setup
from yolox_sdk.engine.callbacks import CallbackList, agree_on_stop, callback_keys
from yolox_sdk.engine.checkpoint_policy import BEST, CheckpointPolicy
from yolox_sdk.engine.epoch_evaluation import evaluate_epoch, evaluation_due
from yolox_sdk.engine.interruption import SignalReceived, StopOnSignal, interrupted_error, saved_position
from yolox_sdk.engine.lineage import record_lineage
from yolox_sdk.engine.multiscale import input_size_at
from yolox_sdk.engine.progress import EpochProgress, RunClock, epoch_metrics, log_run_end, log_run_start
from yolox_sdk.engine.resources import ResourceMonitor
from yolox_sdk.engine.resume import LAST, ResumePoint
from yolox_sdk.engine.run_lock import RunLock
from yolox_sdk.engine.time_budget import fit_to_budget, log_budget_kept
from yolox_sdk.engine.train_module import begin_epoch, initial_train_module
from yolox_sdk.engine.train_state import TrainResult, TrainState, seed_everything
from yolox_sdk.engine.training_step import NonFiniteGuard, train_step
from yolox_sdk.engine.training_view import CallbackRequests, TrainingView
from yolox_sdk.errors import TrainingInterrupted
from yolox_sdk.evaluation.runner import evaluate_model, evaluation_settings
from yolox_sdk.plugins.manager import get_registry
from yolox_sdk.plugins.registry import Registry

log = logging.getLogger(__name__)


class Trainer:
    """Trains one run; ``fit()`` does the work. Callbacks see it through a ``TrainingView``."""

    def __init__(
        self,
        config: Config,
        registry: Registry | None = None,
        resume_dir: Path | None = None,
        from_best: bool = False,
    ) -> None:
        self.registry = registry or get_registry()
        self.resume_dir, self._why = restore.run_to_resume(config, self.registry, resume_dir)
        self.resume_file = BEST if from_best else LAST
        if self.resume_dir is not None:
            config = restore.resumed_config(config, self.resume_dir, self.resume_file, self.registry)
        self.config = config
        self.dist = distributed.context_from_environment()
        self.state, self.requests, self.step = TrainState(), CallbackRequests(), 0
        self.view = TrainingView(self)
        self.parts: setup.TrainingParts | None = None
        self.run_dir: Path | None = None
        self.schedule: Any = None
        self.train_module: Any = None
        self.loggers: list[Any] = []
        self.lineage: dict[str, Any] = {}
        self.callbacks = CallbackList([], [], self.view)
        self.checkpoints: CheckpointPolicy | None = None
        self.resources = ResourceMonitor(torch.device("cpu"))
        self.guard = NonFiniteGuard(config.training.max_non_finite_steps, self._position)
        self._trainable: tuple[bool, ...] = ()
        self._lock = RunLock(self.resume_dir) if self.resume_dir else None
        self._signals = StopOnSignal()
        self.clock = RunClock()  # the whole run's ETA in the progress, across its epochs
        self._started = time.perf_counter()  # fit() sets it again: the time budget counts from there
        self._saved_at = ""  # where the run's last.pt stands, for the message when a signal stops it

    def fit(self) -> TrainResult:
        """Run (or continue) training to ``training.epochs`` and return where everything went.

        Raises:
            RunLockedError: another process is training this run directory.
            TrainingInterrupted: SIGTERM or SIGINT stopped training (after saving a resume point).
        """
        start = self._started = time.perf_counter()
        try:
            with self._signals:
                point = self._lock_and_load()
                self._build(point)
                log_run_start(self.config, self.parts, self.loggers, self.run_dir)
                self.fire("on_train_start")
                self._train_epochs()
        except SignalReceived as received:
            raise self._interrupted(received.signum, abandoned=received.second) from None
        finally:
            self._release_run()
        result = TrainResult.of_run(self.run_dir, self.state, time.perf_counter() - start)
        log_run_end(result, self.state.best_summary(self.config.evaluation.save_best_metric))
        if self.config.training.time_budget is not None and self.dist.is_main:
            log_budget_kept(self.config.training.time_budget, time.perf_counter() - start)
        return result

    # ----- set-up -----------------------------------------------------------------------------------------

    def _lock_and_load(self) -> ResumePoint | None:
        point = restore.lock_and_load(
            self.resume_dir, self.resume_file, self._lock, self.dist, self._why, self.config.training.epochs
        )
        if point is not None:
            self.resume_file, self._saved_at = point.path.name, saved_position(point.path, point.state)
        return point

    def _build(self, point: ResumePoint | None) -> None:
        c = self.config
        seed_everything(c.training.seed, c.training.deterministic)
        self.parts = parts = setup.build_training_parts(c, self.registry, self.dist)
        if c.training.time_budget is not None and point is None:  # a resumed run keeps its chosen epochs
            self.config = c = fit_to_budget(c, parts, self.registry, self._evaluate_on, self._started)
            self.parts = parts = setup.with_epochs(parts, c, self.registry)
        self.schedule = parts.schedule
        if self.dist.is_main and self.resume_dir is None:
            self.run_dir, self._lock = setup.create_run_dir(c)
        self.run_dir = distributed.broadcast_object(self.resume_dir or self.run_dir)
        if self.dist.is_main:
            self.loggers = setup.build_loggers(c, self.run_dir, self.registry)
            initial = parts.transfer.source if parts.transfer is not None else None
            resumed = point.path if point is not None else None
            self.lineage = record_lineage(c, self.run_dir, parts.train_data, parts.val_data, initial, resumed)
        built = setup.build_callbacks(c, self.registry)
        self.callbacks = CallbackList(callback_keys(setup.callback_names(c), built), built, self.view)
        self.checkpoints = CheckpointPolicy(c, lambda: self.state, self._checkpoint, self._saved_at)
        self.train_module = initial_train_module(parts)
        self.resources = ResourceMonitor(parts.device)
        if point is not None:
            self.state = restore.continue_run(point, parts, self.callbacks, self.run_dir, self.log_metrics)
            self.step = self.state.epoch * parts.steps_per_epoch

    # ----- events -----------------------------------------------------------------------------------------

    def fire(self, event: str, *args: Any) -> None:
        """Call ``event`` on every callback (in every process), then apply a schedule one asked for."""
        self.callbacks.fire(event, *args)
        if self.requests.schedule is not None:
            self.schedule, self.requests.schedule = self.requests.schedule, None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Send metrics to every logger."""
        for logger in self.loggers:
            logger.log_metrics(metrics, step)

    def add_metrics(self, metrics: dict[str, float]) -> None:
        """Join ``metrics`` to the last epoch's row and send the row to the loggers again."""
        self.state.metrics.update(metrics)
        self.log_metrics(dict(self.state.metrics), self.state.epoch)

    # ----- the loop ---------------------------------------------------------------------------------------

    def _train_epochs(self) -> None:
        """The epochs; a signal that came during one stops training once the epoch's files are saved."""
        try:
            while self.state.epoch < self.config.training.epochs and self.state.stopped_by is None:
                with self._signals.deferred():
                    self._run_epoch(self.state.epoch)
                if self._signals.requested_on_any_process(self.dist.enabled):
                    raise self._interrupted(self._signals.received)
            self.fire("on_train_end")  # before the loggers close: callbacks may log final metrics (SWA's)
        finally:
            for logger in self.loggers:
                logger.close()
            distributed.shutdown()

    def _run_epoch(self, epoch: int) -> None:
        parts = self.parts
        module, self._trainable = begin_epoch(parts, epoch, self._trainable)
        if module is not None:
            self.train_module = module
        self.fire("on_epoch_start", epoch)
        epoch_start, images_before = time.perf_counter(), self.state.images_seen
        self.resources.start_epoch()
        losses = distributed.average_metrics(self._train_one_epoch(epoch))
        self.state.train_seconds += time.perf_counter() - epoch_start
        self.state.epoch = epoch + 1
        metrics = epoch_metrics(epoch, losses, parts)
        metrics.update(self.resources.end_epoch(self.state.images_seen - images_before))
        if evaluation_due(self.config, epoch, parts.val_data is not None):
            found = evaluate_epoch(self.evaluate_model, self.view.eval_model, parts.model, self.dist, epoch)
            self.fire("on_eval_end", epoch, found)
            metrics.update({f"val/{key}": value for key, value in found.items()})
        metrics["resources/epoch_seconds"] = time.perf_counter() - epoch_start  # training and evaluation
        self.state.metrics = metrics
        self.fire("on_epoch_end", epoch, metrics)
        agree_on_stop(self.requests, self.state, self.dist)
        self.checkpoints.on_epoch_end(self.view, epoch, metrics)  # after the others: their states are saved
        self.requests.checkpoint = False
        if self.dist.is_main:
            self.log_metrics(metrics, self.state.epoch)

    def _train_one_epoch(self, epoch: int) -> dict[str, float]:
        from yolox_sdk.data.loader import batch_to_device, resize_batch, set_loader_epoch

        parts = self.parts
        first = self.state.batch_in_epoch  # > 0 when resuming from a mid-epoch checkpoint
        set_loader_epoch(parts.loader, epoch, start_batch=first)
        sums: dict[str, float] = defaultdict(float, self.state.epoch_loss_sums)
        bar = EpochProgress(
            self.config, parts.loader, epoch, parts.batches_per_epoch, first, self.dist.is_main, self.clock
        )
        for batch_index, (images, targets) in enumerate(self.resources.timed(bar), start=first):
            self.step = epoch * parts.steps_per_epoch + batch_index // parts.accumulate
            input_size = input_size_at(self.step, self.config.training, parts.spec.input_size)
            images, targets = batch_to_device(images, targets, parts.device, parts.memory_format)
            images, targets = resize_batch(images, targets, input_size)  # on the device
            done = batch_index + 1
            steps_now = done % parts.accumulate == 0 or done == parts.batches_per_epoch
            lr = self.schedule.lr_at(self.step)
            step_losses = train_step(parts, self.train_module, lr, images, targets, steps_now, self.guard)
            self.state.iteration += 1
            self.state.images_seen += len(images) * self.dist.world_size
            self.state.epoch_batches += 1
            for key, value in step_losses.items():
                sums[key] += value
            if step_losses:
                self.fire("on_iteration_end", self.state.iteration, step_losses)
                bar.batch_done(step_losses, input_size, self.state.iteration, self.loggers)
            if steps_now:
                self._after_optimizer_step(done, sums)
        losses = {key: value / max(self.state.epoch_batches, 1) for key, value in sums.items()}
        self.state.batch_in_epoch, self.state.epoch_loss_sums, self.state.epoch_batches = 0, {}, 0
        return losses

    def _after_optimizer_step(self, batches_done: int, sums: dict[str, float]) -> None:
        """A mid-epoch ``last.pt`` when the policy says one is due, and before a signal stops training (at
        an optimizer-step boundary: resumable at the next batch). The epoch's last step is left to its end."""
        if batches_done == self.parts.batches_per_epoch:
            return
        stop = self._signals.requested_on_any_process(self.dist.enabled)
        if (stop or self.checkpoints.resume_point_due(self.requests.checkpoint)) and self.dist.is_main:
            self.state.batch_in_epoch, self.state.epoch_loss_sums = batches_done, dict(sums)
            self.checkpoints.save_resume_point(self.view)
            self.requests.checkpoint = False
        if stop:
            distributed.barrier()  # the other processes wait for the main process's save before they stop
            raise self._interrupted(self._signals.received)

    # ----- evaluation and checkpoints ---------------------------------------------------------------------

    def evaluate_model(self, model: Any) -> Any:
        """COCO metrics (an ``EvalResult``) of ``model`` on the validation data, as every evaluation of the
        SDK computes them (``evaluation.runner``); callbacks evaluate other weights (SWA's) the same way."""
        return self._evaluate_on(model, self.parts.val_data)

    def _evaluate_on(self, model: Any, dataset: Any) -> Any:
        """``evaluate_model`` on ``dataset`` (the validation data, or the few images the time budget's
        probe times)."""
        parts = self.parts
        settings = evaluation_settings(self.config)
        return evaluate_model(model, dataset, parts.spec.input_size, settings, parts.device, self.registry)

    def _checkpoint(self) -> Any:
        return restore.resume_checkpoint(self.parts, self.state, self.lineage, self.callbacks)

    # ----- stopping ---------------------------------------------------------------------------------------

    def _position(self) -> tuple[int, int, Path]:
        """Iteration, epochs done and ``last.pt``, for the non-finite guard's messages."""
        return self.state.iteration, self.state.epoch, self.run_dir / LAST

    def _interrupted(self, signum: int, abandoned: bool = False) -> TrainingInterrupted:
        saved = self.checkpoints.saved_at if self.checkpoints is not None else self._saved_at
        return interrupted_error(signum, abandoned, self.run_dir or self.resume_dir, saved, self.dist.rank)

    def _release_run(self) -> None:
        """Stop the DataLoader workers and release the run directory's lock: at every exit, so neither
        outlives the run (a Python caller's process, or a traceback holding this trainer, goes on)."""
        if self.parts is not None:
            setup.stop_loader_workers(self.parts.loader)
        if self._lock is not None:
            self._lock.release()


def train(
    config: Config,
    run_dir: Path | None = None,
    resume_dir: Path | None = None,
    registry: Registry | None = None,
    from_best: bool = False,
) -> TrainResult:
    """Train a model as ``config`` says; ``resume_dir`` continues an earlier run exactly where it stopped
    (or, with ``from_best``, from its best checkpoint: a rollback that retrains the epochs after it).

    ``run_dir`` is accepted for API symmetry with the CLI; new runs always get a fresh directory under
    ``monitoring.output_dir`` so an earlier run is never overwritten.
    """
    if run_dir is not None:
        monitoring = attrs.evolve(
            config.monitoring, output_dir=str(Path(run_dir).parent), run_name=Path(run_dir).name
        )
        config = attrs.evolve(config, monitoring=monitoring)
    return Trainer(config, registry, resume_dir, from_best).fit()
