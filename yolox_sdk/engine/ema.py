"""The exponential moving average of the weights that YOLOX evaluates and exports, updated in a few fused
kernels instead of two per tensor.

The ``yolox`` package's ``ModelEMA`` walks the state dict and runs ``v *= d; v += (1 - d) * m`` tensor by
tensor: about 900 small kernel launches per step for yolox-nano, each a host round trip on a GPU. This
class keeps the same average (YOLOX's decay ramp ``decay * (1 - exp(-updates / 2000))``, parameters and
floating-point buffers, integer buffers untouched) and the same interface (``ema``, ``updates``,
``decay(updates)``, ``update(model)``), so checkpoints and resume see no difference, but updates every
tensor of one device and dtype at once with ``torch._foreach_mul_``/``_foreach_add_``.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

RAMP_UPDATES = 2000.0  # YOLOX's ramp: the average follows the weights closely in the first updates


class WeightAverage:
    """YOLOX's weight EMA of ``model`` (a copy in eval mode, gradients off), updated with fused kernels."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, updates: int = 0) -> None:
        self.ema = copy.deepcopy(model).eval()
        self.updates = updates
        self.base_decay = decay
        for parameter in self.ema.parameters():
            parameter.requires_grad_(False)

    def decay(self, updates: int) -> float:
        """The decay used at update number ``updates`` (ramped up from 0 towards ``base_decay``)."""
        return self.base_decay * (1.0 - math.exp(-updates / RAMP_UPDATES))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights (the raw model, not a DDP wrapper).

        Tensors are grouped by (device, dtype) because one fused call needs them alike; the state dicts
        are read afresh each time, since moving a model (``.to``) replaces its buffers.
        """
        self.updates += 1
        kept = self.decay(self.updates)
        current = model.state_dict()
        groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for name, average in self.ema.state_dict().items():
            if average.dtype.is_floating_point:
                averages, values = groups.setdefault((average.device, average.dtype), ([], []))
                averages.append(average)
                values.append(current[name].detach())
        for averages, values in groups.values():
            torch._foreach_mul_(averages, kept)
            torch._foreach_add_(averages, values, alpha=1.0 - kept)
