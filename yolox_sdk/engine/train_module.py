"""The module a training step calls: the model itself, compiled (``training.compile``), or under torchrun
wrapped in ``DistributedDataParallel`` (compiled too when asked).

DDP fixes the parameters it synchronises when it is built, so unfreezing (``model.unfreeze_schedule``)
needs a new wrapper: ``rewrap_if_needed`` builds one when the set of trainable parameters changed.
"""

from __future__ import annotations

from typing import Any

import torch

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
