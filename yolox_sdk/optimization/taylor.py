"""Loss gradients for Taylor importance: a few training batches through YOLOX's own loss.

Taylor importance scores a channel by how much the loss would change without it (weight x gradient), so it
needs real images with their boxes. We take them from the SDK's training loader (the same letterboxing and
targets training uses, augmentation included, as the gradients should reflect training), run the model in
train mode (its forward returns YOLOX's loss with SimOTA assignment) and sum the gradients of ``batches``
batches into the parameters' ``.grad``. BatchNorm statistics are left as they were: the model runs in
train mode only for the loss, and its running statistics are restored afterwards.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


def accumulate_loss_gradients(
    model: nn.Module, config: Any, input_size: tuple[int, int], batches: int
) -> int:
    """Sum the loss gradients of ``batches`` training batches of ``config``'s data into ``model``'s ``.grad``.

    Returns:
        The number of images used.

    Raises:
        ConfigError: when the training data holds no images.
    """
    from yolox_sdk.optimization.calibration import training_batches

    data = training_batches(config, input_size, batches, augment=True, purpose="Taylor importance")
    saved = _batchnorm_statistics(model)
    model.train()
    images_used = 0
    for images, targets in data:
        outputs = model(images, targets)
        outputs["total_loss"].backward()
        images_used += len(images)
    model.load_state_dict(saved, strict=False)
    model.eval()
    log.info("Taylor importance: loss gradients of %d training images.", images_used)
    return images_used


def _batchnorm_statistics(model: nn.Module) -> Mapping[str, torch.Tensor]:
    """The BatchNorms' running statistics (what a train-mode forward changes)."""
    return {
        name: copy.deepcopy(tensor)
        for name, tensor in model.state_dict().items()
        if name.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }
