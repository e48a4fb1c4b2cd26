"""Adam and AdamW over YOLOX's parameter groups (no weight decay on BatchNorm weights and biases).

With Adam, ``training.lr`` usually wants to be 10-100x smaller than SGD's 0.01 (e.g. 0.001 per 64 images).
``training.momentum`` is used as beta1, so one config key means "how much history" for every optimizer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from yolox_sdk.builtin.optimizers.sgd import multi_tensor_update, yolox_parameter_groups
from yolox_sdk.config.validators import number
from yolox_sdk.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    import torch
    from torch import nn

    from yolox_sdk.config.schema import TrainingConfig


@attrs.frozen
class AdamOptions:
    """Options of ``adam`` and ``adamw`` (beta1 is ``training.momentum``)."""

    beta2: float = attrs.field(
        default=0.999, validator=number(0.0, 1.0, low_inclusive=False, high_inclusive=False)
    )
    eps: float = attrs.field(default=1e-8, validator=number(0.0, low_inclusive=False))
    amsgrad: bool = False


def _build(
    options: AdamOptions, model: nn.Module, training: TrainingConfig, decoupled: bool
) -> torch.optim.Optimizer:
    import torch

    groups = yolox_parameter_groups(model, training.weight_decay)
    optimizer_class = torch.optim.AdamW if decoupled else torch.optim.Adam
    return optimizer_class(
        groups,
        lr=0.0,
        betas=(training.momentum, options.beta2),
        eps=options.eps,
        amsgrad=options.amsgrad,
        **multi_tensor_update(model, fused=True),
    )


def build_adam(options: AdamOptions, model: nn.Module, training: TrainingConfig) -> torch.optim.Optimizer:
    """Adam with L2 weight decay on conv/linear weights."""
    return _build(options, model, training, decoupled=False)


def build_adamw(options: AdamOptions, model: nn.Module, training: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW: decoupled weight decay on conv/linear weights."""
    return _build(options, model, training, decoupled=True)


@hookimpl
def register_optimizers(register) -> None:
    register("adam", build_adam, options=AdamOptions, description="Adam, YOLOX parameter groups")
    register("adamw", build_adamw, options=AdamOptions, description="AdamW (decoupled weight decay)")
