"""The sample images every exporter checks its file on, as one letterboxed batch.

Each exporter compares its file with PyTorch on the images ``export`` hands it (``--sample``, else the
checkpoint's validation images); called from the API it may get none, and a check on nothing would pass
anything, so a synthetic image stands in and the exporter says so in its notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

SYNTHETIC_NOTE = "no sample images given: checked on a synthetic image only"


def sample_batch(
    sample_images: Sequence[Path], input_size: tuple[int, int]
) -> tuple[torch.Tensor, list[str]]:
    """The sample images letterboxed into a batch, as evaluation letterboxes them, and the notes to report
    (one when a synthetic image replaced missing samples)."""
    from yolox_sdk.data.preprocess import images_to_batch, read_image

    notes: list[str] = []
    if sample_images:
        arrays = [read_image(Path(path)) for path in sample_images]
    else:
        generator = np.random.default_rng(0)
        arrays = [generator.integers(0, 256, (*input_size, 3), dtype=np.uint8)]
        notes.append(SYNTHETIC_NOTE)
    batch, _ = images_to_batch(arrays, input_size)
    return batch, notes
