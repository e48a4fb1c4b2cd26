"""Numeric precision for training: fp32, or mixed precision where it helps.

``amp: true`` means, by device:

* CUDA: bf16 autocast where the GPU supports it (Ampere and later; no loss scaling needed), else fp16
  autocast with a gradient scaler.
* CPU: bf16 autocast only where it is faster than fp32, else fp32 with a log line saying why. The rule
  (``choose_cpu_precision``): a CPU without native bf16 instructions (AMX-BF16 or AVX512-BF16 on x86,
  the BF16 extension or SVE-BF16 on Arm) converts every bf16 value in software, which makes training
  several times slower (4-5x for a conv forward+backward on an AVX2 machine), so it gets fp32 without a
  probe. On a CPU that has them, a tiny conv forward+backward is timed in both precisions (a fraction
  of a second there) and bf16 is chosen when it takes under ``BF16_MAX_TIME_RATIO`` (90 %) of the fp32
  time. The decision is made once per process and cached.
* MPS: bf16 autocast.

A non-finite loss skips the step; with a gradient scaler the loss scale is also lowered by the scaler's
backoff factor (see ``Precision.lower_loss_scale``), as the scaler itself does for non-finite gradients.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import torch
from torch import nn

log = logging.getLogger(__name__)

BF16_MAX_TIME_RATIO = 0.9  # bf16 must take under 90 % of the fp32 time: a tie is not worth the lost precision
NATIVE_BF16_CAPABILITIES = ("amx_bf16", "avx512_bf16", "bf16", "sve_bf16")  # torch.cpu.get_capabilities()
PROBE_REPEATS = 3


@attrs.frozen
class CpuPrecisionChoice:
    """What ``amp: true`` runs on this CPU, and why (logged when training starts)."""

    dtype: torch.dtype | None  # torch.bfloat16, or None for fp32
    reason: str


def native_bf16_instructions(capabilities: Mapping[str, Any]) -> list[str]:
    """The bf16 instruction sets among ``capabilities`` (the mapping of ``torch.cpu.get_capabilities()``)."""
    return [name for name in NATIVE_BF16_CAPABILITIES if capabilities.get(name)]


def time_conv_step(dtype: torch.dtype | None, repeats: int = PROBE_REPEATS) -> float:
    """Best-of-``repeats`` seconds of a small conv-BN-SiLU-conv forward+backward (channels-last, like
    training) under ``dtype`` autocast (``None``: fp32). One untimed call first absorbs one-off set-up."""
    generator = torch.Generator().manual_seed(0)
    network = nn.Sequential(
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.SiLU(), nn.Conv2d(64, 64, 3, padding=1)
    ).to(memory_format=torch.channels_last)
    images = torch.randn(2, 32, 48, 48, generator=generator).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            output = network(images)
        output.float().sum().backward()

    step()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        timings.append(time.perf_counter() - start)
    return min(timings)


def choose_cpu_precision(
    capabilities: Mapping[str, Any], probe: Callable[[torch.dtype | None], float] = time_conv_step
) -> CpuPrecisionChoice:
    """bf16 or fp32 for ``amp: true`` on a CPU with ``capabilities`` (rule in the module docstring).

    ``probe(dtype)`` returns the seconds of one training-like step in that precision (``None``: fp32).
    """
    native = native_bf16_instructions(capabilities)
    if not native:
        return CpuPrecisionChoice(
            None,
            "this CPU has no native bf16 instructions (AMX-BF16, AVX512-BF16, Arm BF16); bf16 would be "
            "emulated and several times slower than fp32",
        )
    fp32_seconds, bf16_seconds = probe(None), probe(torch.bfloat16)
    timing = (
        f"a conv forward+backward took {bf16_seconds * 1e3:.1f} ms in bf16 and {fp32_seconds * 1e3:.1f} ms "
        f"in fp32 ({', '.join(native)} present)"
    )
    if bf16_seconds < BF16_MAX_TIME_RATIO * fp32_seconds:
        return CpuPrecisionChoice(torch.bfloat16, timing)
    return CpuPrecisionChoice(None, f"bf16 is not faster on this CPU: {timing}")


@functools.lru_cache(maxsize=1)
def cpu_precision_choice() -> CpuPrecisionChoice:
    """``choose_cpu_precision`` for this machine, decided once per process (the probe costs time)."""
    return choose_cpu_precision(torch.cpu.get_capabilities())


class Precision:
    """Autocast context and backward/step for one device and ``amp`` setting."""

    def __init__(self, device: torch.device, amp: bool) -> None:
        self.device = device
        self.dtype: torch.dtype | None = None
        self.scaler: torch.amp.GradScaler | None = None
        if not amp:
            return
        if device.type == "cpu":
            choice = cpu_precision_choice()
            if choice.dtype is None:
                log.warning("training.amp: training in fp32 on this CPU: %s.", choice.reason)
                return
            self.dtype = choice.dtype
            log.info("Mixed precision: bf16 autocast on cpu (%s).", choice.reason)
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

    def step(self, optimizer: torch.optim.Optimizer, model: nn.Module, clip_norm: float | None) -> bool:
        """Optional gradient clipping by norm, then the optimizer step (through the scaler in fp16).

        Returns False when the step was skipped because a gradient was not finite: a finite loss can still
        overflow in the backward pass, and one such step would turn every weight into NaN. The scaler
        checks this itself in fp16; in fp32/bf16 the gradient norm is checked here (one cheap reduction).
        """
        if self.scaler is None:
            gradients = [p.grad for p in model.parameters() if p.grad is not None]
            norm = nn.utils.get_total_norm(gradients) if gradients else torch.zeros(())
            if not torch.isfinite(norm):
                optimizer.zero_grad(set_to_none=True)
                return False
            if clip_norm:
                nn.utils.clip_grads_with_norm_(model.parameters(), clip_norm, norm)
            optimizer.step()
            return True
        if clip_norm:
            self.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        self.scaler.step(optimizer)
        self.scaler.update()
        return True

    def lower_loss_scale(self) -> float | None:
        """After a non-finite loss: multiply the gradient scaler's scale by its backoff factor (0.5 by
        default) and return the new scale; ``None`` without a scaler (fp32 and bf16 need none).

        The scaler lowers its scale by itself only when the scaled gradients overflow; a loss that is
        already non-finite never reaches ``step``, so without this the next steps would run at the same
        scale. ``state_dict``/``load_state_dict`` are used because they work before the scaler's first
        ``scale`` call too (``update(new_scale=...)`` does not).
        """
        if self.scaler is None or not self.scaler.is_enabled():
            return None
        state = self.scaler.state_dict()
        state["scale"] = self.scaler.get_scale() * self.scaler.get_backoff_factor()
        self.scaler.load_state_dict(state)
        return float(state["scale"])
