"""The training loop: a short, readable loop that fires callback events.

One epoch is: set the augmentation phase, iterate batches (multi-scale resize, learning rate from the
schedule, forward with YOLOX's loss, backward, optimizer step, EMA update), then evaluate when due, save
``last`` (and ``best``) checkpoints atomically and log. Everything optional hangs on loggers and callbacks
built from plugins; ``Trainer.fit`` returns a ``TrainResult``.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from tqdm import tqdm
from yolox.utils.ema import ModelEMA

from yolox_sdk.config.loader import config_to_dict, load_config
from yolox_sdk.config.schema import Config
from yolox_sdk.engine import setup
from yolox_sdk.engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from yolox_sdk.engine.devices import resolve_device
from yolox_sdk.engine.precision import Precision
from yolox_sdk.engine.run_dir import CONFIG_FILENAME, create_run_dir
from yolox_sdk.errors import CheckpointError, TrainingError
from yolox_sdk.plugins.manager import get_registry
from yolox_sdk.plugins.registry import Registry

log = logging.getLogger(__name__)

LAST, BEST = "last.pt", "best.pt"
MAX_NON_FINITE_STEPS = 10
LOSS_KEYS = ("total_loss", "iou_loss", "conf_loss", "cls_loss", "l1_loss")


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


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; optionally make torch pick deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{abs(value):.4f}"


def _scalar(value: torch.Tensor | float) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


class Trainer:
    """Trains one run; ``fit()`` does the work. Callbacks may set ``should_stop``."""

    def __init__(
        self,
        config: Config,
        registry: Registry | None = None,
        resume_dir: Path | None = None,
        from_best: bool = False,
    ) -> None:
        self.registry = registry or get_registry()
        self.resume_dir = Path(resume_dir) if resume_dir else None
        self.resume_file = BEST if from_best else LAST
        self.config = self._resumed_config(config) if self.resume_dir else config
        self.state = TrainState()
        self.should_stop = False
        self.run_dir: Path | None = None
        self._non_finite = 0

    def _resumed_config(self, config: Config) -> Config:
        saved = self.resume_dir / CONFIG_FILENAME
        if not (self.resume_dir / self.resume_file).is_file():
            raise CheckpointError(
                f"Cannot resume {self.resume_dir}: it has no {self.resume_file}. Is it a run directory?"
            )
        resumed = load_config(saved, registry=self.registry)
        if config_to_dict(resumed) != config_to_dict(config):
            log.warning(
                "Resuming with the run's own config %s (the config given now differs and is ignored).", saved
            )
        return resumed

    # ----- set-up -----------------------------------------------------------------------------------------

    def _build(self) -> None:
        c = self.config
        seed_everything(c.training.seed, c.training.deterministic)
        self.device = resolve_device(c.device)
        self.train_data, self.val_data = setup.load_training_data(c)
        self.class_names = tuple(self.train_data.class_names)
        self.spec = setup.model_spec_from_config(c, setup.resolve_num_classes(c, self.train_data))
        self.model, self.transfer = setup.build_training_model(c, self.spec)
        self.precision = Precision(self.device, c.training.amp)
        memory_format = torch.channels_last if c.training.channels_last else torch.preserve_format
        self.memory_format = memory_format
        self.model.to(self.device, memory_format=memory_format)
        self.ema = ModelEMA(self.model, c.training.ema_decay) if c.training.ema else None
        self._build_data()
        self.optimizer = setup.build_optimizer(c, self.model, self.registry)
        self.schedule = setup.build_schedule(c, len(self.loader), self.registry)
        self.run_dir = self.resume_dir or create_run_dir(c)
        self.loggers = setup.build_loggers(c, self.run_dir, self.registry)
        self.callbacks = setup.build_callbacks(c, self.registry)
        if self.resume_dir:
            self._restore(load_checkpoint(self.resume_dir / self.resume_file))

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
        )

    def _restore(self, checkpoint: Checkpoint) -> None:
        saved = checkpoint.training_state
        self.model.load_state_dict(checkpoint.model)
        if self.ema is not None and checkpoint.ema is not None:
            self.ema.ema.load_state_dict(checkpoint.ema)
            self.ema.updates = saved.get("ema_updates", 0)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.state = TrainState(**saved["state"])
        _restore_rng(saved["rng"])
        log.info(
            "Resumed %s from %s at epoch %d, iteration %d.",
            self.run_dir,
            self.resume_file,
            self.state.epoch,
            self.state.iteration,
        )

    # ----- events -----------------------------------------------------------------------------------------

    def fire(self, event: str, *args: Any) -> None:
        """Call ``event`` on every callback."""
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Send metrics to every logger."""
        for logger in self.loggers:
            logger.log_metrics(metrics, step)

    # ----- the loop ---------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Run (or continue) training to ``training.epochs`` and return where everything went."""
        start = time.perf_counter()
        self._build()
        self._log_start()
        self.fire("on_train_start")
        try:
            while self.state.epoch < self.config.training.epochs and not self.should_stop:
                self._run_epoch(self.state.epoch)
        finally:
            for logger in self.loggers:
                logger.close()
        self.fire("on_train_end")
        result = self._result(time.perf_counter() - start)
        log.info(
            "Trained %d epochs in %.0f s (%.1f train images/s); best %s %s at epoch %s; run dir %s",
            result.epochs_completed,
            result.wall_seconds,
            result.train_images_per_second,
            self.config.evaluation.save_best_metric,
            _fmt(self.state.best_value),
            self.state.best_epoch,
            self.run_dir,
        )
        return result

    def _log_start(self) -> None:
        params = {
            f"{section}.{key}": value
            for section, values in config_to_dict(self.config).items()
            if isinstance(values, dict)
            for key, value in values.items()
        }
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
        self.fire("on_epoch_start", epoch)
        epoch_start = time.perf_counter()
        losses = self._train_one_epoch(epoch)
        self.state.train_seconds += time.perf_counter() - epoch_start
        self.state.epoch = epoch + 1
        metrics = {
            "epoch": epoch + 1,
            **{f"train/{k}": v for k, v in losses.items()},
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        if self._evaluation_due(epoch, no_aug):
            metrics.update(self._evaluate(epoch))
        self.state.metrics = metrics
        self._save_checkpoints(epoch, metrics)
        self.log_metrics(metrics, self.state.epoch)
        self.fire("on_epoch_end", epoch, metrics)

    def _apply_freezing(self, epoch: int) -> None:
        m = self.config.model
        frozen = m.freeze_backbone and (m.freeze_until_epoch == 0 or epoch < m.freeze_until_epoch)
        changed = setup.freeze_backbone(self.model, frozen)
        if changed:
            log.info(
                "Epoch %d: backbone %s (%d parameters).",
                epoch + 1,
                "frozen" if frozen else "unfrozen",
                changed,
            )
        self.model.train()
        if frozen:
            self.model.backbone.backbone.eval()

    def _train_one_epoch(self, epoch: int) -> dict[str, float]:
        from yolox_sdk.data.loader import resize_batch, set_loader_epoch

        set_loader_epoch(self.loader, epoch)
        sums: dict[str, float] = defaultdict(float)
        steps = 0
        input_size = self._input_size(self.state.iteration)
        bar = tqdm(
            self.loader,
            desc=f"epoch {epoch + 1}/{self.config.training.epochs}",
            leave=False,
            disable=not self.config.monitoring.progress_bar,
            dynamic_ncols=True,
        )
        for batch_index, (images, targets) in enumerate(bar):
            images, targets = resize_batch(images, targets, input_size)
            step_losses = self._train_step(images, targets, last_in_epoch=batch_index + 1 == len(self.loader))
            self.state.iteration += 1
            self.state.images_seen += len(images)
            steps += 1
            for key, value in step_losses.items():
                sums[key] += value
            input_size = self._input_size(self.state.iteration)
            self._after_step(bar, step_losses, input_size)
        return {key: value / max(steps, 1) for key, value in sums.items()}

    def _input_size(self, iteration: int) -> tuple[int, int]:
        """YOLOX multi-scale: a new random size every ``multiscale_interval`` iterations, seeded by iteration."""
        from yolox_sdk.data.loader import random_multiscale_size

        t = self.config.training
        if t.multiscale_range == 0:
            return self.spec.input_size
        period = iteration // t.multiscale_interval
        if period == 0:
            return self.spec.input_size
        rng = np.random.default_rng([t.seed, period])
        return random_multiscale_size(self.spec.input_size, t.multiscale_range, rng)

    def _train_step(
        self, images: torch.Tensor, targets: torch.Tensor, last_in_epoch: bool
    ) -> dict[str, float]:
        """Forward and backward one batch; step the optimizer every ``training.accumulate`` batches (and at
        the end of an epoch, so a resumed run starts with no half-accumulated gradient)."""
        lr = self.schedule.lr_at(self.state.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        targets = targets.to(self.device, non_blocking=True)
        with self.precision.autocast():
            outputs = self.model(images, targets)
        loss = outputs["total_loss"]
        if not torch.isfinite(loss):
            return self._skip_non_finite(loss)
        self._non_finite = 0
        accumulate = self.config.training.accumulate
        self.precision.backward(loss / accumulate)
        if (self.state.iteration + 1) % accumulate == 0 or last_in_epoch:
            self.precision.step(self.optimizer, self.model, self.config.training.gradient_clip)
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update(self.model)
        values = {key: _scalar(outputs[key]) for key in LOSS_KEYS if key in outputs}
        values["lr"] = lr
        return values

    def _skip_non_finite(self, loss: torch.Tensor) -> dict[str, float]:
        self._non_finite += 1
        self.optimizer.zero_grad(set_to_none=True)
        log.warning("Iteration %d: loss is %s; step skipped.", self.state.iteration, float(loss))
        if self._non_finite >= MAX_NON_FINITE_STEPS:
            raise TrainingError(
                f"The loss was not finite for {MAX_NON_FINITE_STEPS} iterations in a row (last: {float(loss)}). "
                f"The last good checkpoint is {self.run_dir / LAST}. Lower training.lr, check the labels with "
                "`yolox-sdk data info`, or turn training.amp off."
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

    def _evaluate(self, epoch: int) -> dict[str, float]:
        from yolox_sdk.evaluation.coco_eval import evaluate

        e = self.config.evaluation
        start = time.perf_counter()
        result = evaluate(
            self.eval_model(),
            self.val_data,
            self.spec.input_size,
            batch_size=e.batch_size or self.config.data.batch_size,
            conf_threshold=e.conf_threshold,
            nms_threshold=e.nms_threshold,
            class_agnostic=e.class_agnostic_nms,
            device=str(self.device),
        )
        self.model.train()
        metrics = {f"val/{key}": value for key, value in result.metrics.items()}
        log.info(
            "Epoch %d: mAP %.4f, mAP50 %.4f (eval %.1fs)",
            epoch + 1,
            result.metrics["mAP"],
            result.metrics["mAP50"],
            time.perf_counter() - start,
        )
        self.fire("on_eval_end", epoch, result.metrics)
        return metrics

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
            training_state={
                "optimizer": self.optimizer.state_dict(),
                "ema_updates": self.ema.updates if self.ema is not None else 0,
                "state": attrs.asdict(self.state),
                "rng": _rng_state(),
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
            path = save_checkpoint(self.run_dir / filename, checkpoint)
            self.fire("on_checkpoint", path, kind)

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
