"""The module a training step calls: the model itself, compiled (``training.compile``), or under torchrun
wrapped in ``DistributedDataParallel`` (compiled too when asked).

DDP fixes the parameters it synchronises when it is built, so unfreezing (``model.unfreeze_schedule``)
needs a new wrapper: ``rewrap_if_needed`` builds one when the set of trainable parameters changed.
``begin_epoch`` sets what an epoch trains and how: the augmentation phase, the L1 loss, freezing.
"""

from __future__ import annotations

from typing import Any

import torch

from yolox_sdk.engine import freezing
from yolox_sdk.engine.memory import compile_for_training


def initial_train_module(parts: Any) -> Any:
    """The model, compiled when asked; under torchrun the DDP wrapper is built at the first epoch."""
    if parts.dist.enabled:
        return parts.model
    return compile_for_training(parts.model, parts.config.training.compile, parts.device)


def rewrap_if_needed(parts: Any, trainable_before: tuple[bool, ...]) -> tuple[Any | None, tuple[bool, ...]]:
    """A new DDP wrapper when the trainable parameters changed (``None``: keep the current module),
    and the trainable flags it was built for."""
    trainable = tuple(p.requires_grad for p in parts.model.parameters())
    if not parts.dist.enabled or trainable == trainable_before:
        return None, trainable_before
    device_ids = [parts.device.index] if parts.device.type == "cuda" else None
    wrapped = torch.nn.parallel.DistributedDataParallel(parts.model, device_ids=device_ids)
    return compile_for_training(wrapped, parts.config.training.compile, parts.device), trainable


def begin_epoch(
    parts: Any, epoch: int, trainable_before: tuple[bool, ...]
) -> tuple[Any | None, tuple[bool, ...]]:
    """Set epoch ``epoch`` (0-based) up: YOLOX's last ``training.no_aug_epochs`` train without mosaic and
    mixup and with the L1 box loss; freezing follows ``model.freeze``/``unfreeze_schedule``. Returns
    ``rewrap_if_needed``'s answer for the parameters that now train."""
    training = parts.config.training
    no_aug = epoch >= training.epochs - training.no_aug_epochs
    parts.train_dataset.set_no_aug(no_aug)
    parts.model.head.use_l1 = no_aug
    freezing.apply_freezing(parts.model, parts.freeze_plan, epoch + 1)
    return rewrap_if_needed(parts, trainable_before)
