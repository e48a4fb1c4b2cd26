"""One training batch: learning rate, forward with YOLOX's loss (plus the loss-term plugins' terms,
``loss_terms``), backward, and (every ``accumulate`` batches) the optimizer step and EMA update; a
non-finite loss or gradient skips the step.

The schedule advances by optimizer step, so accumulation and the process count do not change it. Under
torchrun, batches that only accumulate run inside DDP's ``no_sync`` (gradients are all-reduced once per
step), and every process agrees on the foreground count each loss is normalised by and on whether the
loss was finite, so all of them skip or step together.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

from yolox_sdk.data.loader import batch_to_device
from yolox_sdk.engine import distributed
from yolox_sdk.engine.memory import CompiledForward
from yolox_sdk.errors import TrainingError

log = logging.getLogger(__name__)

LOSS_KEYS = ("total_loss", "iou_loss", "conf_loss", "cls_loss", "l1_loss")


@attrs.define
class NonFiniteGuard:
    """Counts non-finite steps in a row and stops training at ``training.max_non_finite_steps``.

    Checkpoints are written only from finite steps, so ``last.pt`` stays the last good one.
    """

    limit: int
    where: Callable[[], tuple[int, int, Path]]  # iteration, epochs done, last.pt: for the messages
    in_a_row: int = 0

    def skipped(self, loss: torch.Tensor, what: str, parts: Any) -> None:
        """Log one skipped step (lowering the fp16 loss scale); raise once ``limit`` came in a row.

        Raises:
            TrainingError: naming the last good checkpoint and what to change.
        """
        self.in_a_row += 1
        iteration, epoch, last = self.where()
        value = float(loss.detach())
        parts.optimizer.zero_grad(set_to_none=True)
        scale = parts.precision.lower_loss_scale()
        log.warning(
            "Iteration %d: %s is not finite (loss %s); step skipped%s.",
            iteration,
            what,
            value,
            f", loss scale lowered to {scale:g}" if scale is not None else "",
        )
        if self.in_a_row < self.limit:
            return
        kept = (
            f"The last good checkpoint is {last} (epoch {epoch}); start a new run from it with "
            f"model.checkpoint={last}"
            if last.is_file()
            else "No checkpoint was written yet (it happened in the first epoch); start again"
        )
        raise TrainingError(
            f"The loss or its gradient was not finite for {self.limit} iterations in a row (last loss: {value}), "
            f"so training stopped (training.max_non_finite_steps is {self.limit}). {kept} and a lower "
            "training.lr, check the labels with `yolox-sdk data validate`, or turn training.amp off."
        )


def read_back(
    outputs: dict[str, Any], keys: tuple[str, ...], targets: torch.Tensor
) -> tuple[int, dict[str, float]]:
    """The batch's ground-truth count and its loss values, in one host synchronisation.

    The step must know on the host whether the loss is finite (to skip it) and how many boxes the batch
    has (the loss weight): reading the logged loss values in the same transfer costs nothing more, where
    reading each on its own (as ``float(tensor)``) waits for the device once per value, six times a step.
    """
    tensors = {key: outputs[key] for key in keys if isinstance(outputs.get(key), torch.Tensor)}
    packed = torch.stack(
        [(targets.sum(dim=2) > 0).sum().float(), *(t.detach().float().reshape(()) for t in tensors.values())]
    ).tolist()
    values = {key: float(outputs[key]) for key in keys if key in outputs and key not in tensors}
    values.update(zip(tensors, packed[1:], strict=True))
    return int(packed[0]), values


def _gradient_sync(module: Any, distributed_run: bool, steps_now: bool) -> Any:
    """DDP's ``no_sync`` for accumulation batches that do not step."""
    wrapped = module.model if isinstance(module, CompiledForward) else module
    if distributed_run and not steps_now:
        return wrapped.no_sync()
    return contextlib.nullcontext()


def train_step(
    parts: Any,
    module: Any,
    lr: float,
    images: torch.Tensor,
    targets: torch.Tensor,
    steps_now: bool,
    guard: NonFiniteGuard,
) -> dict[str, float]:
    """Train one batch with ``module`` (the model, or its DDP/compiled wrapper) at learning rate ``lr``.

    Args:
        parts: the run's ``TrainingParts`` (model, optimizer, precision, EMA, device, processes).
        steps_now: also step the optimizer (every ``training.accumulate`` batches and at an epoch's end,
            so a resumed run starts with no half-accumulated gradient).
        guard: counts the non-finite losses and gradients (their steps are skipped) and stops the run.

    Returns:
        The loss components (weighted like the backward, so their mean over processes is the loss of the
        global batch) and ``lr``; empty when the step was skipped.
    """
    for group in parts.optimizer.param_groups:
        group["lr"] = lr
    images, targets = batch_to_device(images, targets, parts.device, parts.memory_format)
    with _gradient_sync(module, parts.dist.enabled, steps_now):
        with parts.precision.autocast():
            with parts.losses.recording():
                outputs = module(images, targets)
            outputs = parts.losses.add_to(outputs, images, targets)  # loss-term plugins (distillation)
        loss = outputs["total_loss"]
        num_gts, values = read_back(outputs, (*LOSS_KEYS, *parts.losses.names), targets)
        weight, finite = distributed.step_agreement(
            distributed.foreground_count(outputs, targets, num_gts),
            math.isfinite(values["total_loss"]),
            parts.dist,
        )
        if not finite:
            guard.skipped(loss, "the loss", parts)
            return {}
        guard.in_a_row = 0
        parts.precision.backward(loss * (weight / parts.accumulate))
    if steps_now:
        if not parts.precision.step(parts.optimizer, parts.model, parts.config.training.gradient_clip):
            guard.skipped(loss, "the gradient", parts)
            return {}
        parts.optimizer.zero_grad(set_to_none=True)
        if parts.ema is not None:
            parts.ema.update(parts.model)
    values = {key: value * weight for key, value in values.items()}
    values["lr"] = lr
    return values
