"""Class balancing by repeat-factor sampling (LVIS, Gupta et al. 2019): images of rare classes are seen more often.

For each class ``c``, ``f_c`` is the fraction of training images that contain it; with the threshold ``t``
(``data.repeat_factor_threshold``) its repeat factor is ``r_c = max(1, sqrt(t / f_c))``, so classes present
in at least a fraction ``t`` of the images are not repeated. An image's factor ``r_i`` is the largest factor
of the classes it contains (1 for a background image).

Each epoch, image ``i`` appears ``floor(r_i)`` times plus once more with probability about ``frac(r_i)``
(stochastic rounding), and the list is shuffled. The extra appearances are drawn by systematic sampling so
that every epoch has exactly ``round(sum r_i)`` samples: the learning-rate schedule, built from the number
of batches per epoch before training starts, stays exact. The draws come from a generator seeded with
``(seed, epoch)``, so an epoch's order is reproducible and a run resumed mid-epoch sees the same tail.

A repeated image must not be the same sample twice (with the same mosaic and flip): the sampler yields
``copy * num_images + i`` for the ``copy``-th appearance of image ``i``. ``TrainDataset`` loads the record
at that key modulo its size and seeds the sample's augmentation with the key itself, so every copy is
augmented independently.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import attrs
import numpy as np

from yolox_sdk.data.loader import TrainSampler
from yolox_sdk.data.records import DetectionDataset

log = logging.getLogger(__name__)


@attrs.frozen(eq=False)
class RepeatFactors:
    """The repeat factors of a training set.

    Attributes:
        threshold: ``t``, the image fraction under which a class is repeated.
        class_names: the dataset's classes.
        class_fractions: ``f_c`` per class, the fraction of images containing it.
        class_factors: ``r_c`` per class (1 for a class no image contains).
        image_factors: ``r_i`` per image, in record order.
    """

    threshold: float
    class_names: tuple[str, ...]
    class_fractions: np.ndarray
    class_factors: np.ndarray
    image_factors: np.ndarray

    @property
    def epoch_size(self) -> int:
        """Samples per epoch: ``sum r_i`` rounded half up."""
        return epoch_size(self.image_factors)

    def summary_lines(self) -> list[str]:
        """Human-readable lines: one per class, then the epoch size."""
        lines = []
        for name, fraction, factor in zip(
            self.class_names, self.class_fractions, self.class_factors, strict=True
        ):
            lines.append(f"{name}: in {fraction:.1%} of the images, repeat factor {factor:.3f}")
        repeated = int(np.count_nonzero(self.image_factors > 1))
        lines.append(
            f"epoch: {self.epoch_size} samples from {len(self.image_factors)} images "
            f"({repeated} images repeated, threshold {self.threshold:g})"
        )
        return lines


def epoch_size(image_factors: np.ndarray) -> int:
    """``sum(image_factors)`` rounded half up (Python's ``round`` rounds half to even)."""
    return int(math.floor(float(np.sum(image_factors)) + 0.5))


def compute_repeat_factors(dataset: DetectionDataset, threshold: float) -> RepeatFactors:
    """The class and image repeat factors of ``dataset`` for threshold ``t`` (see the module docstring).

    Raises:
        ValueError: ``threshold`` is not in ``(0, 1]``, or the dataset has no images.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"The repeat factor threshold must be in (0, 1], got {threshold!r}.")
    if len(dataset) == 0:
        raise ValueError("Repeat factors need at least one training image.")
    present = np.zeros((len(dataset), dataset.num_classes), dtype=bool)
    for row, record in enumerate(dataset.records):
        present[row, record.labels] = True
    fractions = present.mean(axis=0)
    with np.errstate(divide="ignore"):
        class_factors = np.where(fractions > 0, np.sqrt(threshold / fractions), 1.0)
    class_factors = np.maximum(1.0, class_factors)
    image_factors = np.where(present, class_factors, 1.0).max(axis=1, initial=1.0)
    return RepeatFactors(threshold, dataset.class_names, fractions, class_factors, image_factors)


def log_repeat_factors(factors: RepeatFactors) -> None:
    """Log ``factors.summary_lines()`` at INFO level."""
    log.info("Repeat-factor sampling:\n  %s", "\n  ".join(factors.summary_lines()))


def _inclusion_probabilities(fractions: np.ndarray, total: int) -> np.ndarray:
    """Probabilities proportional to ``fractions``, capped at 1, that sum to ``total``."""
    probabilities = np.zeros_like(fractions)
    free = fractions > 0
    remaining = float(total)
    while remaining > 0 and free.any():
        scaled = fractions[free] * (remaining / fractions[free].sum())
        if scaled.max() <= 1:
            probabilities[free] = scaled
            break
        # An image cannot appear more than once extra: it takes one certain draw, the rest is rescaled.
        capped = np.flatnonzero(free)[scaled > 1]
        probabilities[capped] = 1.0
        free[capped] = False
        remaining -= len(capped)
    return probabilities


def repeat_counts(image_factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """How often each image appears in one epoch: ``floor(r_i)`` plus one with probability about
    ``frac(r_i)``, for exactly ``epoch_size(image_factors)`` appearances in total.

    The extra appearances are drawn by systematic sampling over a random order of the images: each is
    included with probability ``frac(r_i) * k / sum frac(r)`` (``k`` the number of extras, so the total is
    fixed), which differs from ``frac(r_i)`` only by the rounding of ``k``. Uses ``rng`` only when there
    is something to draw.
    """
    base = np.floor(image_factors).astype(np.int64)
    extra = epoch_size(image_factors) - int(base.sum())
    if extra <= 0:
        return base
    probabilities = _inclusion_probabilities(image_factors - base, extra)
    order = rng.permutation(len(image_factors))
    edges = np.cumsum(probabilities[order])
    edges *= extra / edges[-1]  # exact total despite floating-point sums
    points = rng.uniform() + np.arange(extra)
    chosen = order[np.minimum(np.searchsorted(edges, points, side="right"), len(order) - 1)]
    counts = base.copy()
    counts[chosen] += 1
    return counts


class RepeatFactorSampler(TrainSampler):
    """Sample keys of one repeat-factor epoch, fixed by ``(seed, epoch)``, from ``start_index`` on.

    A key is ``copy * size + i`` for the ``copy``-th appearance of image ``i`` in the epoch (see the module
    docstring); every epoch has ``epoch_size(image_factors)`` keys. ``set_epoch`` works as in
    ``TrainSampler``.
    """

    def __init__(self, image_factors: Sequence[float] | np.ndarray, seed: int, shuffle: bool = True) -> None:
        factors = np.asarray(image_factors, dtype=np.float64).reshape(-1)
        if len(factors) == 0 or not np.all(np.isfinite(factors)) or factors.min() < 1:
            raise ValueError("Repeat factors must be finite numbers >= 1, one per training image.")
        super().__init__(len(factors), seed, shuffle)
        self.image_factors = factors
        self.epoch_size = epoch_size(factors)

    def order(self) -> np.ndarray:
        """Every key of the current epoch, in order."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed % 2**63, self.epoch]))
        counts = repeat_counts(self.image_factors, rng)
        images = np.repeat(np.arange(self.size), counts)
        # Number the appearances of each image 0, 1, ...: position minus the image's first position.
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        keys = (np.arange(len(images)) - starts) * self.size + images
        return rng.permutation(keys) if self.shuffle else keys

    def order_length(self) -> int:
        """Keys per epoch."""
        return self.epoch_size
