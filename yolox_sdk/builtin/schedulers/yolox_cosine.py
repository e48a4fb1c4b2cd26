"""YOLOX's learning-rate schedule: quadratic warm-up, cosine decay, flat minimum for the no-aug epochs.

The formula is YOLOX's own ``yolox_warm_cos_lr`` (imported, not copied), so a run matches the official
trainer iteration for iteration.
"""

from __future__ import annotations

import attrs

from yolox_sdk.plugins.hookspecs import hookimpl
from yolox_sdk.plugins.interfaces import ScheduleSettings


@attrs.frozen
class YoloxCosineSchedule:
    """``lr_at(iteration)`` for YOLOX's warm cosine schedule."""

    settings: ScheduleSettings

    def lr_at(self, iteration: int) -> float:
        """Learning rate for global iteration ``iteration`` (YOLOX counts from 1, hence the +1)."""
        from yolox.utils.lr_scheduler import yolox_warm_cos_lr

        s = self.settings
        warmup_iters = int(s.warmup_epochs * s.iters_per_epoch)
        no_aug_iters = s.no_aug_epochs * s.iters_per_epoch
        return yolox_warm_cos_lr(
            s.base_lr,
            s.min_lr_ratio,
            s.total_iters,
            max(warmup_iters, 1e-9),
            s.warmup_lr,
            no_aug_iters,
            iteration + 1,
        )


def build_yolox_cosine(options: None, settings: ScheduleSettings) -> YoloxCosineSchedule:
    """The schedule for one run."""
    return YoloxCosineSchedule(settings)


@hookimpl
def register_schedulers(register) -> None:
    register(
        "yolox_cosine",
        build_yolox_cosine,
        description="YOLOX warm-up + cosine, flat minimum during no-aug epochs",
    )
