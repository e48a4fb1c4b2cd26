"""Numeric precision for training: fp32, or mixed precision where it helps.

``amp: true`` means bf16 autocast where the device supports it (recent CPUs, Ampere+ GPUs; no loss
scaling needed) and fp16 autocast with a gradient scaler on older CUDA devices.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
from torch import nn

log = logging.getLogger(__name__)


class Precision:
    """Autocast context and backward/step for one device and ``amp`` setting."""

    def __init__(self, device: torch.device, amp: bool) -> None:
        self.device = device
        self.dtype: torch.dtype | None = None
        self.scaler: torch.amp.GradScaler | None = None
        if not amp:
            return
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            self.dtype = torch.float16
            self.scaler = torch.amp.GradScaler("cuda")
        else:
            self.dtype = torch.bfloat16
        log.info(
            "Mixed precision: %s autocast on %s%s",
            self.dtype,
            device.type,
            " with a grad scaler" if self.scaler else "",
        )

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Autocast when mixed precision is on, else nothing."""
        if self.dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate gradients of ``loss`` (scaled in fp16)."""
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, model: nn.Module, clip_norm: float | None) -> None:
        """Optional gradient clipping by norm, then the optimizer step (through the scaler in fp16)."""
        if self.scaler is None:
            if clip_norm:
                nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            optimizer.step()
            return
        if clip_norm:
            self.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        self.scaler.step(optimizer)
        self.scaler.update()
