"""Numeric precision for training: fp32, or mixed precision where it helps.

``amp: true`` means, by device:

* CUDA: bf16 autocast where the GPU supports it (Ampere and later; no loss scaling needed), else fp16
  autocast with a gradient scaler.
* CPU: bf16 autocast only where it is faster than fp32, else fp32 with a log line saying why. The rule
  (``choose_cpu_precision``): a CPU without native bf16 instructions (AMX-BF16 or AVX512-BF16 on x86,
  the BF16 extension or SVE-BF16 on Arm) converts every bf16 value in software, which makes training
  several times slower (4-5x for a conv forward+backward on an AVX2 machine), so it gets fp32 without a
  probe. On a CPU that has them, the model's own training step (2 images at 160 px, on a copy) is timed
  in both precisions (about a second) and bf16 is chosen when it takes under ``BF16_MAX_TIME_RATIO``
  (90 %) of the fp32 time; without a model, a tiny conv forward+backward is timed instead (decided once
  per process). The conv probe alone was misleading: on a 2-core AVX512-BF16 EPYC it timed bf16 faster
  while training was slower end to end, and on a 2-core AVX512-BF16 Xeon yolox-nano's step is 1.16x
  slower in bf16 (its convolutions' backward, ``benchmarks/precision_profile.py``).
* MPS: bf16 autocast.

``amp: bf16`` / ``amp: fp16`` ask for one precision: bf16 runs wherever autocast supports it (warning
that it is emulated, so slow, on a CPU without bf16 instructions), fp16 on CUDA only; a device that cannot
run the one asked for trains in fp32 with a warning naming ``training.amp``, never silently.

A non-finite loss skips the step; with a gradient scaler the loss scale is also lowered by the scaler's
backoff factor (see ``Precision.lower_loss_scale``), as the scaler itself does for non-finite gradients.
"""

from __future__ import annotations

import contextlib
import copy
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
MODEL_PROBE_SIZE = 160  # px: the model's own step, small enough to cost about a second for yolox-s
_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


@attrs.frozen
class CpuPrecisionChoice:
    """What ``amp: true`` runs on this CPU, and why (logged when training starts)."""

    dtype: torch.dtype | None  # torch.bfloat16, or None for fp32
    reason: str


def native_bf16_instructions(capabilities: Mapping[str, Any]) -> list[str]:
    """The bf16 instruction sets among ``capabilities`` (the mapping of ``torch.cpu.get_capabilities()``)."""
    return [name for name in NATIVE_BF16_CAPABILITIES if capabilities.get(name)]


def _best_of(step: Callable[[], None], repeats: int) -> float:
    """Fewest seconds ``step`` took in ``repeats`` calls, after one untimed call (one-off set-up)."""
    step()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        timings.append(time.perf_counter() - start)
    return min(timings)


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

    return _best_of(step, repeats)


def time_model_step(model: nn.Module, dtype: torch.dtype | None, repeats: int = PROBE_REPEATS) -> float:
    """Best-of-``repeats`` seconds of ``model``'s own training step (forward with YOLOX's loss, backward)
    on a copy, 2 images at ``MODEL_PROBE_SIZE`` px with one box each, channels-last, under ``dtype``.

    The network's own layers decide: on a 2-core AVX512-BF16 Xeon yolox-nano's step is 1.16x slower in
    bf16, its convolutions' backward taking 1.8x the fp32 time (``benchmarks/precision_profile.py``),
    which a dense conv probe does not show. A copy, so the model's weights, BatchNorm statistics and
    gradients are untouched.
    """
    probe = copy.deepcopy(model).train().to(memory_format=torch.channels_last)
    size = MODEL_PROBE_SIZE
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.zeros(2, 1, 5)
    targets[:, 0] = torch.tensor([0.0, size / 2, size / 2, size / 4, size / 4])

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = probe(images, targets)["total_loss"]
        loss.float().backward()
        probe.zero_grad(set_to_none=True)

    return _best_of(step, repeats)


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


def _mixed_dtype(device: torch.device, amp: bool | str, model: nn.Module | None) -> torch.dtype | None:
    """The autocast dtype ``training.amp`` asks for on ``device`` (``None``: fp32, with a warning saying
    why where the setting asked for more)."""
    if amp is True and device.type == "cpu":
        choice = _cpu_choice_for(model)
        if choice.dtype is None:
            log.warning("training.amp: training in fp32 on this CPU: %s.", choice.reason)
        else:
            log.info("Mixed precision: bf16 autocast on cpu (%s).", choice.reason)
        return choice.dtype
    if amp is True:
        bf16 = device.type != "cuda" or torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float16
    if amp == "fp16" and device.type != "cuda":
        log.warning(
            "training.amp: fp16 needs a CUDA GPU; training in fp32 on %s. Set training.amp: bf16 or true.",
            device.type,
        )
        return None
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        log.warning(
            "training.amp: this GPU has no bf16 support; training in fp32. Set training.amp: fp16 (or true, "
            "which picks fp16 with a gradient scaler here)."
        )
        return None
    if amp == "bf16" and device.type == "cpu" and not native_bf16_instructions(torch.cpu.get_capabilities()):
        log.warning(
            "training.amp: bf16 is emulated on this CPU (no AMX-BF16, AVX512-BF16 or Arm BF16), which makes "
            "training several times slower; set training.amp: true to use it only where it is faster."
        )
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _cpu_choice_for(model: nn.Module | None) -> CpuPrecisionChoice:
    """``choose_cpu_precision`` timing ``model``'s own step when given (the conv probe otherwise, or when
    the model's step cannot run in the probe, e.g. a network without YOLOX's training loss)."""
    if model is None:
        return cpu_precision_choice()
    capabilities = torch.cpu.get_capabilities()
    try:
        choice = choose_cpu_precision(capabilities, functools.partial(time_model_step, model))
    except (RuntimeError, TypeError, KeyError, IndexError) as error:
        log.debug("training.amp: the model's own probe step failed (%s); timing a conv step instead", error)
        return cpu_precision_choice()
    return attrs.evolve(
        choice, reason=choice.reason.replace("a conv forward+backward", "this model's training step")
    )


def autocast_works(device: torch.device, dtype: torch.dtype) -> str:
    """Run a tiny conv forward+backward under ``dtype`` autocast on ``device``; ``""`` when it works, else
    the error's first line (a missing kernel or an old driver shows here, not in the middle of an epoch)."""
    try:
        network = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.SiLU()).to(device)
        with torch.autocast(device.type, dtype=dtype):
            output = network(torch.rand(2, 3, 16, 16, device=device))
        output.float().sum().backward()
    except (RuntimeError, TypeError, NotImplementedError) as error:
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return ""


class Precision:
    """Autocast context and backward/step for one device and ``amp`` setting.

    ``amp``: ``False`` (fp32), ``True`` (mixed precision where it helps, rules in the module docstring),
    ``"bf16"`` or ``"fp16"`` (that precision where the device runs it; fp32 with a warning elsewhere). A
    precision whose autocast fails on the device falls back to fp32 with a warning naming the setting.
    """

    def __init__(self, device: torch.device, amp: bool | str, model: nn.Module | None = None) -> None:
        """``model``: the network to train; with ``amp: true`` on a CPU its own step is timed in both
        precisions (``time_model_step``), else a conv probe is."""
        self.device = device
        self.dtype: torch.dtype | None = None
        self.scaler: torch.amp.GradScaler | None = None
        if amp is False:
            return
        dtype = _mixed_dtype(device, amp, model)
        if dtype is None:
            return
        failure = autocast_works(device, dtype)
        if failure:
            log.warning(
                "training.amp: %s autocast does not work on %s (%s); training in fp32. Set training.amp: false "
                "to skip the attempt.",
                _NAMES[dtype],
                device.type,
                failure,
            )
            return
        self.dtype = dtype
        if dtype == torch.float16 and device.type == "cuda":
            self.scaler = torch.amp.GradScaler("cuda")
        if amp is not True or device.type != "cpu":  # the CPU rule logged its own reason
            log.info(
                "Mixed precision: %s autocast on %s%s",
                _NAMES[dtype],
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
