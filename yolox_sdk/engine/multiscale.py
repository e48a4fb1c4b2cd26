"""YOLOX multi-scale training: the input size of each optimizer step.

A new random size every ``training.multiscale_interval`` optimizer steps, drawn from a generator seeded
by the run's seed and the step's period, so every micro-batch of a step, every process under torchrun and
a resumed run all use the size the uninterrupted single-process run used. The first period keeps the
model's input size.
"""

from __future__ import annotations

import numpy as np

from yolox_sdk.config.schema import TrainingConfig


def input_size_at(step: int, training: TrainingConfig, input_size: tuple[int, int]) -> tuple[int, int]:
    """The ``(height, width)`` batches of optimizer step ``step`` are resized to."""
    from yolox_sdk.data.loader import random_multiscale_size

    if training.multiscale_range == 0:
        return input_size
    period = step // training.multiscale_interval
    if period == 0:
        return input_size
    rng = np.random.default_rng([training.seed, period])
    return random_multiscale_size(input_size, training.multiscale_range, rng)
