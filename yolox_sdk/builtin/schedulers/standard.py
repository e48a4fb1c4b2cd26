"""Standard learning-rate schedules: cosine, multistep, exponential and one-cycle, stepped per iteration.

Each is a pure function of the global iteration (so resumed runs continue exactly) and, except one-cycle
whose first phase is its warm-up, starts with a linear warm-up from ``training.warmup_lr`` to the base rate
over ``training.warmup_epochs`` epochs, or over ``warmup_iters`` iterations when that option is set.
"""

from __future__ import annotations

import math

import attrs

from yolox_sdk.config.validators import number
from yolox_sdk.plugins.hookspecs import hookimpl
from yolox_sdk.plugins.interfaces import ScheduleSettings


def _positive_list(instance: object, attribute: attrs.Attribute, value: list[float]) -> None:
    from yolox_sdk.config.validators import FieldError

    if any(item <= 0 for item in value) or list(value) != sorted(value):
        raise FieldError(attribute.name, "increasing positive epoch numbers, e.g. [30, 60]", value)


@attrs.frozen
class WarmupOptions:
    """Warm-up in iterations instead of ``training.warmup_epochs`` (``null`` keeps the epochs)."""

    warmup_iters: int | None = attrs.field(default=None, validator=number(0, optional=True))


@attrs.frozen
class MultistepOptions(WarmupOptions):
    """Multiply the rate by ``gamma`` at each epoch in ``milestones``."""

    milestones: list[float] = attrs.field(factory=lambda: [0.7, 0.9], validator=_positive_list)
    gamma: float = attrs.field(default=0.1, validator=number(0.0, 1.0, low_inclusive=False))
    relative: bool = True


@attrs.frozen
class ExponentialOptions(WarmupOptions):
    """Multiply the rate by ``gamma`` every epoch (continuously, per iteration)."""

    gamma: float = attrs.field(default=0.95, validator=number(0.0, 1.0, low_inclusive=False))


@attrs.frozen
class OneCycleOptions:
    """Rise from ``base/div_factor`` to the base rate over ``pct_start`` of the run, then anneal to
    ``base/final_div_factor`` (cosine both ways)."""

    pct_start: float = attrs.field(
        default=0.3, validator=number(0.0, 1.0, low_inclusive=False, high_inclusive=False)
    )
    div_factor: float = attrs.field(default=25.0, validator=number(1.0))
    final_div_factor: float = attrs.field(default=1e4, validator=number(1.0))


@attrs.frozen
class WarmupSchedule:
    """Linear warm-up, then ``after(progress)`` where progress runs from 0 to 1 over the remaining iterations."""

    settings: ScheduleSettings
    kind: str
    options: WarmupOptions

    @property
    def warmup_iters(self) -> int:
        """Warm-up length in iterations."""
        if self.options.warmup_iters is not None:
            return self.options.warmup_iters
        return int(self.settings.warmup_epochs * self.settings.iters_per_epoch)

    def lr_at(self, iteration: int) -> float:
        """Learning rate of global iteration ``iteration``."""
        s, warmup = self.settings, self.warmup_iters
        if iteration < warmup:
            return s.warmup_lr + (s.base_lr - s.warmup_lr) * (iteration + 1) / warmup
        return self._after(iteration - warmup, max(s.total_iters - warmup, 1))

    def _after(self, step: int, steps: int) -> float:
        s = self.settings
        if self.kind == "cosine":
            floor = s.base_lr * s.min_lr_ratio
            return floor + 0.5 * (s.base_lr - floor) * (1 + math.cos(math.pi * min(step / steps, 1.0)))
        epoch = (step + self.warmup_iters) / s.iters_per_epoch
        if self.kind == "exponential":
            return s.base_lr * self.options.gamma**epoch
        milestones = self.options.milestones
        if self.options.relative and all(m < 1 for m in milestones):
            milestones = [m * s.epochs for m in milestones]
        return s.base_lr * self.options.gamma ** sum(epoch >= m for m in milestones)


@attrs.frozen
class OneCycleSchedule:
    """Cosine one-cycle over the whole run."""

    settings: ScheduleSettings
    options: OneCycleOptions

    def lr_at(self, iteration: int) -> float:
        """Learning rate of global iteration ``iteration``."""
        s, o = self.settings, self.options
        peak, start, end = s.base_lr, s.base_lr / o.div_factor, s.base_lr / o.final_div_factor
        rise = max(int(o.pct_start * s.total_iters), 1)
        if iteration < rise:
            return peak + (start - peak) * 0.5 * (1 + math.cos(math.pi * iteration / rise))
        fall = max(s.total_iters - rise, 1)
        return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * min((iteration - rise) / fall, 1.0)))


@hookimpl
def register_schedulers(register) -> None:
    register(
        "cosine",
        lambda o, s: WarmupSchedule(s, "cosine", o),
        options=WarmupOptions,
        description="linear warm-up, cosine to base*min_lr_ratio",
    )
    register(
        "multistep",
        lambda o, s: WarmupSchedule(s, "multistep", o),
        options=MultistepOptions,
        description="linear warm-up, x gamma at milestone epochs (fractions of the run by default)",
    )
    register(
        "exponential",
        lambda o, s: WarmupSchedule(s, "exponential", o),
        options=ExponentialOptions,
        description="linear warm-up, x gamma per epoch",
    )
    register(
        "onecycle",
        lambda o, s: OneCycleSchedule(s, o),
        options=OneCycleOptions,
        description="cosine one-cycle",
    )
