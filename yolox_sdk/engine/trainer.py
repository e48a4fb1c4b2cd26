"""The training loop: a short, readable loop that fires callback events.

One epoch is: set the augmentation phase, iterate batches (multi-scale resize, learning rate from the
schedule, forward with YOLOX's loss, backward, optimizer step, EMA update), then evaluate when due, save
``last`` (and ``best``) checkpoints atomically and log. Everything optional hangs on loggers and callbacks
built from plugins; ``Trainer.fit`` returns a ``TrainResult``. What the loop delegates: building the pieces
(``setup``), freezing (``freezing``), precision (``precision``), multi-process training under torchrun
(``distributed``), resuming and checkpoint fallback (``resume``), progress state (``train_state``), the
run directory's lock (``run_lock``) and stopping on SIGTERM/SIGINT (``interruption``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from tqdm import tqdm
from yolox.utils.ema import ModelEMA

from yolox_sdk.config.loader import config_to_dict, flatten_dict, load_config
from yolox_sdk.config.schema import Config
from yolox_sdk.engine import distributed, freezing, setup
from yolox_sdk.engine.callbacks import CallbackList, callback_keys
from yolox_sdk.engine.checkpoint import Checkpoint, save_checkpoint
from yolox_sdk.engine.devices import resolve_device
from yolox_sdk.engine.interruption import SignalReceived, StopOnSignal, interrupted_error, saved_position
from yolox_sdk.engine.lineage import record_lineage
from yolox_sdk.engine.memory import CompiledForward, compile_for_training, enable_gradient_checkpointing
from yolox_sdk.engine.precision import Precision
from yolox_sdk.engine.resume import (
    LAST,
    PREVIOUS_LAST,
    ResumePoint,
    check_resumable,
    find_run_to_resume,
    load_resume_checkpoint,
    log_completed,
    resume_identity,
)
from yolox_sdk.engine.run_dir import CONFIG_FILENAME, new_run_dir, write_run_config
from yolox_sdk.engine.run_lock import RunLock
from yolox_sdk.engine.train_state import TrainResult, TrainState, restore_rng, rng_state, seed_everything
from yolox_sdk.engine.training_view import CallbackRequests, TrainingView
from yolox_sdk.errors import CheckpointError, TrainingError, TrainingInterrupted
from yolox_sdk.plugins.manager import get_registry
from yolox_sdk.plugins.registry import Registry

log = logging.getLogger(__name__)

BEST = "best.pt"
LOSS_KEYS = ("total_loss", "iou_loss", "conf_loss", "cls_loss", "l1_loss")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{abs(value):.4f}"


def _scalar(value: torch.Tensor | float) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


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
        self._auto_resumed = False
        if resume_dir is None and config.training.auto_resume:
            resume_dir = find_run_to_resume(config, self.registry)
            self._auto_resumed = resume_dir is not None
        self.resume_dir = Path(resume_dir) if resume_dir else None
        self.resume_file = BEST if from_best else LAST
        self.resume_point: ResumePoint | None = None
        self.config = self._resumed_config(config) if self.resume_dir else config
        self.state = TrainState()
        self.requests = CallbackRequests()
        self.step = 0
        self.run_dir: Path | None = None
        self._non_finite = 0
        self.dist = distributed.context_from_environment()
        self._lock = RunLock(self.resume_dir) if self.resume_dir else None
        self._signals = StopOnSignal()
        self._saved_at = ""  # where the run's last.pt stands, for the message when a signal stops it

    def _resumed_config(self, config: Config) -> Config:
        """The run's own config (read only: nothing is written before the run is locked in ``fit``)."""
        saved = self.resume_dir / CONFIG_FILENAME
        check_resumable(self.resume_dir, self.resume_file)
        resumed = load_config(saved, registry=self.registry)
        if resume_identity(resumed) != resume_identity(config):
            log.warning(
                "Resuming with the run's own config %s (the config given now differs and is ignored).", saved
            )
        return resumed

    def _lock_and_load_resume_point(self) -> None:
        """Lock the run to resume (rank 0), then pick its checkpoint (``engine.resume``: the newest intact
        one, or none when the run was killed in its first epoch and restarts from scratch)."""
        if self.resume_dir is None:
            return
        if self.dist.is_main:
            why = (
                "training.auto_resume chose it, the most recent run of this config"
                if self._auto_resumed
                else ""
            )
            self._lock.acquire(why)
        self.resume_point = load_resume_checkpoint(
            self.resume_dir, self.resume_file, remove_temporaries=self.dist.is_main
        )
        if self.resume_point is not None:
            self.resume_file = self.resume_point.path.name
            self._saved_at = saved_position(self.resume_point.path, self.resume_point.state)
        log_completed(self.resume_point, self.resume_dir, self.config.training.epochs)

    def _create_run_dir(self) -> Path:
        """A fresh run directory, locked before anything (its config.yaml) is written into it."""
        run_dir = new_run_dir(self.config)
        self._lock = RunLock(run_dir)
        self._lock.acquire()
        write_run_config(run_dir, self.config)
        return run_dir

    # ----- set-up -----------------------------------------------------------------------------------------

    def _build(self) -> None:
        c = self.config
        seed_everything(c.training.seed, c.training.deterministic)
        self._join_process_group()
        self.train_data, self.val_data = setup.load_training_data(c)
        self.class_names = tuple(self.train_data.class_names)
        self.spec = setup.model_spec_from_config(c, setup.resolve_num_classes(c, self.train_data))
        self.model, self.transfer = setup.build_training_model(c, self.spec)
        # Resolved now, so a freeze pattern that matches nothing fails before a run directory exists.
        self._freeze_plan = freezing.plan_freezing(c.model, self.model, c.training.epochs)
        if c.training.gradient_checkpointing:
            enable_gradient_checkpointing(self.model)
        self.precision = Precision(self.device, c.training.amp)
        memory_format = torch.channels_last if c.training.channels_last else torch.preserve_format
        self.memory_format = memory_format
        self.model.to(self.device, memory_format=memory_format)
        self.model = setup.sync_batchnorm(self.model, c.training.sync_bn, self.dist.enabled, self.device)
        self.ema = ModelEMA(self.model, c.training.ema_decay) if c.training.ema else None
        self._build_data_in_rank_order()
        self.optimizer = setup.build_optimizer(c, self.model, self.registry)
        self.batches_per_epoch = len(self.loader)
        self.steps_per_epoch = -(-self.batches_per_epoch // setup.accumulation_steps(c))
        self._last_save = time.monotonic()
        self.schedule = setup.build_schedule(c, self.steps_per_epoch, self.registry)
        self.run_dir = distributed.broadcast_object(
            (self.resume_dir or self._create_run_dir()) if self.dist.is_main else None
        )
        self.loggers = setup.build_loggers(c, self.run_dir, self.registry) if self.dist.is_main else []
        self.lineage = self._record_lineage() if self.dist.is_main else {}
        built = setup.build_callbacks(c, self.registry)
        keys = callback_keys(setup.callback_names(c), built)
        self.callbacks = CallbackList(keys, built, TrainingView(self))
        # Under torchrun, _wrap_for_ddp builds (and compiles) the DDP wrapper at the first epoch instead.
        self.train_module = (
            self.model
            if self.dist.enabled
            else compile_for_training(self.model, c.training.compile, self.device)
        )
        self._trainable: tuple[bool, ...] = ()
        if self.resume_point is not None:
            self._restore(self.resume_point)
            self.resume_point = None
            self._check_saved_stop()
            # A kill between saving last.pt and logging leaves metrics.csv one row short: write it again.
            if self.state.metrics:
                self.log_metrics(self.state.metrics, self.state.epoch)

    def _record_lineage(self) -> dict[str, Any]:
        """Lineage (parent weights, data fingerprint, versions, git) for lineage.json and every checkpoint."""
        return record_lineage(
            self.config,
            self.run_dir,
            self.train_data,
            self.val_data,
            initial_weights=self.transfer.source if self.transfer is not None else None,
            resumed_from=self.resume_point.path if self.resume_point is not None else None,
        )

    def _join_process_group(self) -> None:
        """Pick the device; under ``torchrun`` also join the process group and quieten ranks above 0."""
        c = self.config
        if not self.dist.enabled:
            self.device = resolve_device(c.device)
            return
        self.device = distributed.device_for_rank(self.dist, c.device.type, c.device.gpu_ids)
        distributed.init_distributed(self.dist, self.device)
        if not self.dist.is_main:
            logging.getLogger("yolox_sdk").setLevel(logging.WARNING)

    def _build_data_in_rank_order(self) -> None:
        """Rank 0 builds the data first (it may write caches), then the others read them."""
        if not self.dist.is_main:
            distributed.barrier()
        self._build_data()
        if self.dist.enabled and self.dist.is_main:
            distributed.barrier()

    def _wrap_for_ddp(self) -> None:
        """(Re)wrap the model in ``DistributedDataParallel`` when the set of trainable parameters changed.

        DDP fixes the parameters it synchronises when it is built, so unfreezing needs a new wrapper.
        """
        trainable = tuple(p.requires_grad for p in self.model.parameters())
        if not self.dist.enabled or trainable == self._trainable:
            return
        self._trainable = trainable
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        wrapped = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        self.train_module = compile_for_training(wrapped, self.config.training.compile, self.device)

    def _build_data(self) -> None:
        from yolox_sdk.data.loader import build_train_loader
        from yolox_sdk.data.pipeline import build_augmentations
        from yolox_sdk.data.train_dataset import TrainDataset

        c = self.config
        self.train_dataset = TrainDataset(
            self.train_data,
            self.spec.input_size,
            build_augmentations(c.augmentation, self.registry),
            seed=c.training.seed,
            cache_mode=c.data.cache_mode,
        )
        repeat_factors = None
        if c.data.repeat_factor_threshold is not None:
            from yolox_sdk.data.balancing import compute_repeat_factors, log_repeat_factors

            factors = compute_repeat_factors(self.train_data, c.data.repeat_factor_threshold)
            log_repeat_factors(factors)
            repeat_factors = factors.image_factors
        self.loader = build_train_loader(
            self.train_dataset,
            c.data.batch_size,
            c.data.num_workers,
            c.training.seed,
            repeat_factors=repeat_factors,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )

    def _restore(self, point: ResumePoint) -> None:
        checkpoint, saved = point.checkpoint, point.checkpoint.training_state
        try:
            self.model.load_state_dict(checkpoint.model)
            if self.ema is not None and checkpoint.ema is not None:
                self.ema.ema.load_state_dict(checkpoint.ema)
                self.ema.updates = int(saved.get("ema_updates", 0))
            self.optimizer.load_state_dict(saved["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as error:  # torch's words for "does not fit"
            raise CheckpointError(
                f"Checkpoint {point.path} does not fit the run it is resumed into "
                f"({str(error).splitlines()[0]}). It was edited or belongs to another run; resume from an earlier "
                "checkpoint of the run, or start a new run from its weights with model.checkpoint."
            ) from None
        self.state = attrs.evolve(point.state)
        self.step = self.state.epoch * self.steps_per_epoch
        self.callbacks.load_state_dict(saved.get("callbacks", {}), point.path)
        restore_rng(saved["rng"])
        if self.precision.scaler is not None and saved.get("grad_scaler"):
            self.precision.scaler.load_state_dict(saved["grad_scaler"])  # fp16: resume at the learned scale
        log.info(
            "Resumed %s from %s at epoch %d, iteration %d%s.",
            self.run_dir,
            self.resume_file,
            self.state.epoch,
            self.state.iteration,
            f" (batch {self.state.batch_in_epoch} of epoch {self.state.epoch + 1})"
            if self.state.batch_in_epoch
            else "",
        )

    # ----- events -----------------------------------------------------------------------------------------

    def _check_saved_stop(self) -> None:
        """A run a callback had stopped stays stopped, unless that callback is no longer configured."""
        by = self.state.stopped_by
        if by is None:
            return
        if by in self.callbacks.keys:
            log.info(
                "Run %s was stopped after epoch %d by callback %s (%s); nothing to train, returning its result.",
                self.run_dir,
                self.state.epoch,
                by,
                self.state.stop_reason or "no reason given",
            )
            return
        log.info(
            "Run %s was stopped by callback %s, which is no longer configured: training goes on.",
            self.run_dir,
            by,
        )
        self.state.stopped_by, self.state.stop_reason = None, ""

    def fire(self, event: str, *args: Any) -> None:
        """Call ``event`` on every callback (in every process), then apply a schedule one asked for."""
        self.callbacks.fire(event, *args)
        if self.requests.schedule is not None:
            self.schedule, self.requests.schedule = self.requests.schedule, None

    def _agree_on_stop(self) -> None:
        """Record a callback's stop request; under torchrun one process asking stops every process."""
        asked = self.requests.stop_by is not None
        if (
            self.dist.enabled
            and distributed.average_metrics({"stop": float(asked)})["stop"] > 0
            and not asked
        ):
            self.requests.stop_by = "a callback in another process"
        if self.requests.stop_by is not None and self.state.stopped_by is None:
            self.state.stopped_by, self.state.stop_reason = self.requests.stop_by, self.requests.stop_reason
            log.info(
                "Stopping after epoch %d: callback %s asked to (%s).",
                self.state.epoch,
                self.state.stopped_by,
                self.state.stop_reason or "no reason given",
            )

    def add_metrics(self, metrics: dict[str, float]) -> None:
        """Join ``metrics`` to the last epoch's row and send the row to the loggers again."""
        self.state.metrics.update(metrics)
        if self.dist.is_main:
            self.log_metrics(dict(self.state.metrics), self.state.epoch)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Send metrics to every logger."""
        for logger in self.loggers:
            logger.log_metrics(metrics, step)

    # ----- the loop ---------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Run (or continue) training to ``training.epochs`` and return where everything went.

        Raises:
            RunLockedError: another process is training this run directory.
            TrainingInterrupted: SIGTERM or SIGINT stopped training (after saving a resume point).
        """
        start = time.perf_counter()
        try:
            with self._signals:
                self._lock_and_load_resume_point()
                self._build()
                self._log_start()
                self.fire("on_train_start")
                self._train_epochs()
        except SignalReceived as received:
            raise self._interrupted(received.signum, abandoned=received.second) from None
        finally:
            self._release_run()
        result = self._result(time.perf_counter() - start)
        log.info(
            "Trained %d epochs in %.0f s (%.1f train images/s); %s; run dir %s",
            result.epochs_completed,
            result.wall_seconds,
            result.train_images_per_second,
            self._best_summary(),
            self.run_dir,
        )
        return result

    def _train_epochs(self) -> None:
        """The epochs; a signal that came during one (in its evaluation, say) stops training once the
        epoch's checkpoints are saved."""
        try:
            while self.state.epoch < self.config.training.epochs and self.state.stopped_by is None:
                with self._signals.deferred():
                    self._run_epoch(self.state.epoch)
                if self._signals.requested_on_any_process(self.dist.enabled):
                    raise self._interrupted(self._signals.received)
            # Before the loggers close: on_train_end callbacks may log final metrics (e.g. SWA's).
            self.fire("on_train_end")
        finally:
            for logger in self.loggers:
                logger.close()
            distributed.shutdown()

    def _best_summary(self) -> str:
        metric = self.config.evaluation.save_best_metric
        if self.state.best_value is None:
            return f"no {metric} was measured (no validation data), best.pt is the last epoch"
        return f"best {metric} {_fmt(self.state.best_value)} at epoch {self.state.best_epoch}"

    def _log_start(self) -> None:
        params = flatten_dict(config_to_dict(self.config))
        for logger in self.loggers:
            logger.log_hyperparameters(params)
        log.info(
            "Training %s (%d classes: %s) on %s: %d train images, %s val images, run dir %s",
            self.spec.name,
            self.spec.num_classes,
            ", ".join(self.class_names),
            self.device,
            len(self.train_data),
            len(self.val_data) if self.val_data else "no",
            self.run_dir,
        )

    def _in_no_aug_phase(self, epoch: int) -> bool:
        return epoch >= self.config.training.epochs - self.config.training.no_aug_epochs

    def _run_epoch(self, epoch: int) -> None:
        no_aug = self._in_no_aug_phase(epoch)
        self.train_dataset.set_no_aug(no_aug)
        self.model.head.use_l1 = no_aug
        self._apply_freezing(epoch)
        self._wrap_for_ddp()
        self.fire("on_epoch_start", epoch)
        epoch_start = time.perf_counter()
        losses = distributed.average_metrics(self._train_one_epoch(epoch))
        self.state.train_seconds += time.perf_counter() - epoch_start
        self.state.epoch = epoch + 1
        metrics = {
            "epoch": epoch + 1,
            **{f"train/{k}": v for k, v in losses.items()},
            "lr": self.optimizer.param_groups[0]["lr"],
            "trainable_params": freezing.count_trainable_parameters(self.model),
        }
        if self._evaluation_due(epoch, no_aug):
            metrics.update(self._evaluate(epoch))
        self.state.metrics = metrics
        # Before the save: what callbacks record for this epoch (and a stop) is in its checkpoints.
        self.fire("on_epoch_end", epoch, metrics)
        self._agree_on_stop()
        if self.dist.is_main:
            self._save_checkpoints(epoch, metrics)
            self.log_metrics(metrics, self.state.epoch)

    def _apply_freezing(self, epoch: int) -> None:
        """Freeze what ``model.freeze``/``model.unfreeze_schedule`` say for this epoch; train mode otherwise.

        The plan was resolved against the model in ``_build``, so a bad pattern fails before any work.
        """
        freezing.apply_freezing(self.model, self._freeze_plan, epoch + 1)

    def _train_one_epoch(self, epoch: int) -> dict[str, float]:
        from yolox_sdk.data.loader import resize_batch, set_loader_epoch

        first = self.state.batch_in_epoch  # > 0 when resuming from a mid-epoch checkpoint
        set_loader_epoch(self.loader, epoch, start_batch=first)
        sums: dict[str, float] = defaultdict(float, self.state.epoch_loss_sums)
        bar = tqdm(
            self.loader,
            desc=f"epoch {epoch + 1}/{self.config.training.epochs}",
            leave=False,
            disable=not (self.config.monitoring.progress_bar and self.dist.is_main),
            dynamic_ncols=True,
            initial=first,
            total=self.batches_per_epoch,
        )
        accumulate = setup.accumulation_steps(self.config)
        for batch_index, (images, targets) in enumerate(bar, start=first):
            step = epoch * self.steps_per_epoch + batch_index // accumulate
            input_size = self._input_size(step)
            images, targets = resize_batch(images, targets, input_size)
            steps_now = (batch_index + 1) % accumulate == 0 or batch_index + 1 == self.batches_per_epoch
            self.step = step
            step_losses = self._train_step(images, targets, step, steps_now)
            self.state.iteration += 1
            self.state.images_seen += len(images) * self.dist.world_size
            self.state.epoch_batches += 1
            for key, value in step_losses.items():
                sums[key] += value
            self._after_step(bar, step_losses, input_size)
            if steps_now:
                self._after_optimizer_step(batch_index + 1, sums)
        losses = {key: value / max(self.state.epoch_batches, 1) for key, value in sums.items()}
        self.state.batch_in_epoch, self.state.epoch_loss_sums, self.state.epoch_batches = 0, {}, 0
        return losses

    def _after_optimizer_step(self, batches_done: int, sums: dict[str, float]) -> None:
        """Mid-epoch ``last.pt`` at an optimizer-step boundary (no half-accumulated gradient), resumable at
        the next batch exactly as the uninterrupted run would continue: every
        ``monitoring.save_every_minutes`` (a crash in a long epoch loses minutes, not the epoch), and
        after SIGTERM/SIGINT, which then stops training. The epoch's last step is left to the epoch end."""
        if batches_done == self.batches_per_epoch:
            return
        stop = self._signals.requested_on_any_process(self.dist.enabled)
        minutes = self.config.monitoring.save_every_minutes
        due = minutes is not None and time.monotonic() - self._last_save >= minutes * 60
        due = due or self.requests.checkpoint
        if (stop or due) and self.dist.is_main:
            self.state.batch_in_epoch, self.state.epoch_loss_sums = batches_done, dict(sums)
            self._write_checkpoint(LAST, self._checkpoint(), "last")
            log.debug("Mid-epoch checkpoint after batch %d of epoch %d.", batches_done, self.state.epoch + 1)
        if stop:
            distributed.barrier()  # the other processes wait for rank 0's save before they stop
            raise self._interrupted(self._signals.received)

    def _input_size(self, step: int) -> tuple[int, int]:
        """YOLOX multi-scale: a new random size every ``multiscale_interval`` optimizer steps, seeded by the
        step (so every micro-batch of a step, and every process, uses the same size)."""
        from yolox_sdk.data.loader import random_multiscale_size

        t = self.config.training
        if t.multiscale_range == 0:
            return self.spec.input_size
        period = step // t.multiscale_interval
        if period == 0:
            return self.spec.input_size
        rng = np.random.default_rng([t.seed, period])
        return random_multiscale_size(self.spec.input_size, t.multiscale_range, rng)

    def _train_step(
        self, images: torch.Tensor, targets: torch.Tensor, step: int, steps_now: bool
    ) -> dict[str, float]:
        """Forward and backward one batch; ``steps_now`` (every ``training.accumulate`` batches and at the
        end of an epoch, so a resumed run starts with no half-accumulated gradient) also steps the optimizer.
        The schedule advances by optimizer step, so accumulation and the process count do not change it."""
        lr = self.schedule.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        targets = targets.to(self.device, non_blocking=True)
        with self._gradient_sync(steps_now):
            with self.precision.autocast():
                outputs = self.train_module(images, targets)
            loss = outputs["total_loss"]
            weight, finite = distributed.step_agreement(
                distributed.foreground_count(outputs, targets), bool(torch.isfinite(loss)), self.dist
            )
            if not finite:
                return self._skip_non_finite(loss)
            self._non_finite = 0
            self.precision.backward(loss * (weight / setup.accumulation_steps(self.config)))
        if steps_now:
            if not self.precision.step(self.optimizer, self.model, self.config.training.gradient_clip):
                return self._skip_non_finite(loss, "the gradient")
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update(self.model)
        # Weighted like the backward, so the mean over processes is the loss of the global batch.
        values = {key: _scalar(outputs[key]) * weight for key in LOSS_KEYS if key in outputs}
        values["lr"] = lr
        return values

    def _gradient_sync(self, steps_now: bool) -> Any:
        """DDP's ``no_sync`` for accumulation batches that do not step: gradients are all-reduced once per step."""
        module = self.train_module
        wrapped = module.model if isinstance(module, CompiledForward) else module
        if self.dist.enabled and not steps_now:
            return wrapped.no_sync()
        return contextlib.nullcontext()

    def _skip_non_finite(self, loss: torch.Tensor, what: str = "the loss") -> dict[str, float]:
        """Skip the step of a non-finite loss (lowering the fp16 loss scale); stop after too many in a row.

        Checkpoints are written only at epoch ends from finite steps, so ``last.pt`` stays the last good one.
        """
        self._non_finite += 1
        value = float(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        scale = self.precision.lower_loss_scale()
        log.warning(
            "Iteration %d: %s is not finite (loss %s); step skipped%s.",
            self.state.iteration,
            what,
            value,
            f", loss scale lowered to {scale:g}" if scale is not None else "",
        )
        limit = self.config.training.max_non_finite_steps
        if self._non_finite >= limit:
            last = self.run_dir / LAST
            kept = (
                f"The last good checkpoint is {last} (epoch {self.state.epoch}); start a new run from it with "
                f"model.checkpoint={last}"
                if last.is_file()
                else "No checkpoint was written yet (it happened in the first epoch); start again"
            )
            raise TrainingError(
                f"The loss or its gradient was not finite for {limit} iterations in a row (last loss: {value}), so training "
                f"stopped (training.max_non_finite_steps is {limit}). {kept} and a lower training.lr, check "
                "the labels with `yolox-sdk data validate`, or turn training.amp off."
            )
        return {}

    def _after_step(self, bar: Any, losses: dict[str, float], input_size: tuple[int, int]) -> None:
        if not losses:
            return
        self.fire("on_iteration_end", self.state.iteration, losses)
        bar.set_postfix(
            loss=f"{losses['total_loss']:.3f}",
            iou=f"{losses['iou_loss']:.3f}",
            cls=f"{losses['cls_loss']:.3f}",
            lr=f"{losses['lr']:.2e}",
            size=input_size[0],
            refresh=False,
        )
        if self.state.iteration % self.config.monitoring.log_interval == 0:
            self.log_metrics({f"iter/{k}": v for k, v in losses.items()}, self.state.iteration)
            log.debug("iter %d: %s", self.state.iteration, losses)

    # ----- evaluation and checkpoints ---------------------------------------------------------------------

    def _evaluation_due(self, epoch: int, no_aug: bool) -> bool:
        if self.val_data is None:
            return False
        last = epoch + 1 == self.config.training.epochs
        return last or no_aug or (epoch + 1) % self.config.evaluation.eval_interval == 0

    def eval_model(self) -> torch.nn.Module:
        """The model evaluation uses: the EMA weights when EMA is on."""
        return self.ema.ema if self.ema is not None else self.model

    def evaluate_model(self, model: torch.nn.Module) -> Any:
        """COCO metrics (an ``EvalResult``) of ``model`` on the validation data with the run's evaluation
        settings: callbacks evaluate other weights (an SWA average) exactly as the trainer evaluates its own."""
        from yolox_sdk.evaluation.coco_eval import evaluate

        e = self.config.evaluation
        return evaluate(
            model,
            self.val_data,
            self.spec.input_size,
            batch_size=e.batch_size or self.config.data.batch_size,
            conf_threshold=e.conf_threshold,
            nms_threshold=e.nms_threshold,
            class_agnostic=e.class_agnostic_nms,
            device=str(self.device),
        )

    def _evaluate(self, epoch: int) -> dict[str, float]:
        """Evaluate in the main process; every process gets the metrics (its callbacks decide on them)."""
        found = None
        if self.dist.is_main:
            start = time.perf_counter()
            found = dict(self.evaluate_model(self.eval_model()).metrics)
            self.model.train()
            log.info(
                "Epoch %d: mAP %.4f, mAP50 %.4f (eval %.1fs)",
                epoch + 1,
                found["mAP"],
                found["mAP50"],
                time.perf_counter() - start,
            )
        found = distributed.broadcast_object(found)
        self.fire("on_eval_end", epoch, found)
        return {f"val/{key}": value for key, value in found.items()}

    def _best_value(self, metrics: dict[str, float]) -> float | None:
        name = self.config.evaluation.save_best_metric
        if name == "loss":
            return -metrics["train/total_loss"] if "train/total_loss" in metrics else None
        return metrics.get(f"val/{name}")

    def _checkpoint(self) -> Checkpoint:
        return Checkpoint(
            model=self.model.state_dict(),
            ema=self.ema.ema.state_dict() if self.ema is not None else None,
            spec=self.spec,
            class_names=self.class_names,
            config=config_to_dict(self.config),
            lineage=self.lineage,
            training_state={
                "optimizer": self.optimizer.state_dict(),
                "ema_updates": self.ema.updates if self.ema is not None else 0,
                "state": attrs.asdict(self.state),
                "rng": rng_state(),
                "grad_scaler": self.precision.scaler.state_dict() if self.precision.scaler else None,
                "callbacks": self.callbacks.state_dict(),
            },
        )

    def _save_checkpoints(self, epoch: int, metrics: dict[str, float]) -> None:
        value = self._best_value(metrics)
        improved = value is not None and (self.state.best_value is None or value > self.state.best_value)
        if improved:
            self.state.best_value, self.state.best_epoch = value, epoch + 1
        # Without any value of the best metric (no validation data), "best" follows "last".
        no_metric = value is None and self.state.best_value is None
        checkpoint = self._checkpoint()
        paths = [(LAST, "last")]
        if improved or no_metric:
            paths.append((BEST, "best"))
        interval = self.config.monitoring.save_interval
        if interval and (epoch + 1) % interval == 0:
            paths.append((f"epoch_{epoch + 1}.pt", "epoch"))
        for filename, kind in paths:
            self._write_checkpoint(filename, checkpoint, kind)

    def _write_checkpoint(self, filename: str, checkpoint: Checkpoint, kind: str) -> None:
        """Save atomically (the replaced ``last.pt`` kept as ``last.prev.pt``, resume's fallback) and tell
        the callbacks; a fresh ``last.pt`` restarts the ``save_every_minutes`` clock."""
        keep = self.run_dir / PREVIOUS_LAST if filename == LAST else None
        path = save_checkpoint(self.run_dir / filename, checkpoint, keep_previous=keep)
        if filename == LAST:
            self._last_save = time.monotonic()
            self.requests.checkpoint = False
            self._saved_at = saved_position(path, self.state)
        self.fire("on_checkpoint", path, kind)

    # ----- stopping ---------------------------------------------------------------------------------------

    def _interrupted(self, signum: int, abandoned: bool = False) -> TrainingInterrupted:
        run_dir = self.run_dir or self.resume_dir
        return interrupted_error(signum, abandoned, run_dir, self._saved_at, self.dist.rank)

    def _release_run(self) -> None:
        """Stop the DataLoader workers and release the run directory's lock: at every exit, so neither
        outlives the run (a Python caller's process, or a traceback holding this trainer, goes on)."""
        loader = getattr(self, "loader", None)
        if loader is not None:
            setup.stop_loader_workers(loader)
        if self._lock is not None:
            self._lock.release()

    def _result(self, wall_seconds: float) -> TrainResult:
        best = self.run_dir / BEST
        if not best.exists():
            best = self.run_dir / LAST
        return TrainResult(
            run_dir=self.run_dir,
            best_checkpoint=best,
            last_checkpoint=self.run_dir / LAST,
            metrics=dict(self.state.metrics),
            train_images_per_second=self.state.images_seen / max(self.state.train_seconds, 1e-9),
            wall_seconds=wall_seconds,
            epochs_completed=self.state.epoch,
        )


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
        config = attrs.evolve(
            config,
            monitoring=attrs.evolve(
                config.monitoring, output_dir=str(Path(run_dir).parent), run_name=Path(run_dir).name
            ),
        )
    return Trainer(config, registry, resume_dir, from_best).fit()
