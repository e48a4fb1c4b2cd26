"""Training batches for pruning decisions, and BatchNorm statistics re-estimated after pruning.

Why BatchNorm recalibration: removing channels changes what every later layer receives, so the running
means and variances the BatchNorms learned no longer describe their inputs. Re-estimating them on a few
hundred training images (a forward pass, no gradients, no weight change) recovers much of what pruning
costs before any finetuning: on BCCD (nano, 256 px, 30 % of the channels, sensitivity allocation)
mAP50:95 went from 0.24 to 0.41.

The images come from the SDK's own training loader (its letterboxing and targets) in YOLOX's
no-augmentation mode (no mosaic or affine warp; flips and colour jitter stay), which is the distribution
the model was last trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import attrs
import torch
from torch import nn

from yolox_sdk.errors import ConfigError

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


def training_batches(
    config: Any, input_size: tuple[int, int], count: int, *, augment: bool = False, purpose: str = "pruning"
) -> list[Batch]:
    """Up to ``count`` batches of ``config``'s training data (``augment``: the full training
    augmentation; else YOLOX's no-augmentation mode).

    Raises:
        ConfigError: when the training data holds no images.
    """
    from yolox_sdk.data.training_data import build_training_loader, load_split
    from yolox_sdk.plugins.manager import get_registry

    dataset = load_split(config, "train")
    if dataset is None or not dataset.records:
        raise ConfigError(
            f"{purpose} needs training images, and {config.data.train_path} has none. Give --data (a dataset "
            "path or catalog name)."
        )
    # A few batches are read: decoding the whole set into RAM first (what auto may pick) would be waste;
    # every cache mode gives the same pixels.
    if config.data.cache_mode == "auto":
        config = attrs.evolve(config, data=attrs.evolve(config.data, cache_mode="none"))
    train_dataset, loader = build_training_loader(config, dataset, input_size, get_registry())
    train_dataset.set_no_aug(not augment)
    batches: list[Batch] = []
    for images, targets in loader:
        if len(batches) >= count:
            break
        batches.append((images.float(), targets))  # the loader's uint8, as the models take it
    return batches


def recalibrate_batchnorm(model: nn.Module, batches: Sequence[Batch]) -> int:
    """Replace every BatchNorm's running statistics by their average over ``batches`` (weights untouched).

    Returns:
        The number of images used.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over all batches, not an exponential one
    model.train()
    try:
        with torch.no_grad():
            for images, targets in batches:
                model(images, targets)  # train mode: YOLOX's forward wants targets (the loss is discarded)
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.eval()
    used = sum(len(images) for images, _ in batches)
    log.info("BatchNorm statistics re-estimated on %d training images.", used)
    return used
