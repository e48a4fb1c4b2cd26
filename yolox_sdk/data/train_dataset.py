"""The training dataset: augmented, letterboxed samples with targets in the layout YOLOX's loss expects.

``TrainDataset[index]`` loads the image (resized to fit the input, see ``image_cache``), runs the
augmentation steps, letterboxes the result and returns ``(image, targets)``: a ``3 x H x W`` uint8 BGR
tensor (``loader.batch_to_device`` makes the batch float32 on the device: a quarter of the bytes go
through worker queues, pinned memory and the host-to-device copy) and a ``(max_labels, 5)`` float32
tensor of ``[class, cx, cy, w, h]`` rows in input pixels, valid rows first and the rest zero
(``YOLOXHead.get_losses`` counts rows with a non-zero sum as objects).

Randomness comes from a generator seeded with ``(seed, epoch, index)``, so a sample depends on nothing
else: not on the worker that builds it, the number of workers, or what was drawn before. This is what
makes runs reproducible and resumable mid-epoch.

Two deliberate differences from YOLOX's ``TrainTransform``: when no box survives the minimum-size filter
we train on the augmented image as a background image (YOLOX falls back to the un-flipped image with its
unfiltered, possibly zero-size boxes), and images without boxes get HSV and flip like any other.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from yolox_sdk.data.image_cache import build_image_source
from yolox_sdk.data.preprocess import letterbox
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.errors import DatasetError
from yolox_sdk.plugins.interfaces import Augmentation, AugmentationContext, Sample

log = logging.getLogger(__name__)

MAX_LABELS = 120
MIN_BOX_SIZE = 1.0  # TrainTransform keeps boxes with min(w, h) > 1 input pixel


def letterbox_targets(
    sample: Sample, input_size: tuple[int, int], max_labels: int = MAX_LABELS
) -> tuple[np.ndarray, np.ndarray]:
    """Letterbox ``sample`` and turn its boxes into YOLOX's padded ``[class, cx, cy, w, h]`` targets.

    Boxes are scaled with the image, those narrower or lower than ``MIN_BOX_SIZE`` pixels are dropped,
    and at most ``max_labels`` are kept (the first ones, as YOLOX).
    """
    image, ratio = letterbox(sample.image, input_size, np.uint8)
    boxes = sample.boxes.astype(np.float32) * np.float32(ratio)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    rows = np.stack(
        [
            sample.labels.astype(np.float32),
            boxes[:, 0] + widths * 0.5,
            boxes[:, 1] + heights * 0.5,
            widths,
            heights,
        ],
        axis=1,
    )
    rows = rows[np.minimum(widths, heights) > MIN_BOX_SIZE][:max_labels]
    targets = np.zeros((max_labels, 5), dtype=np.float32)
    targets[: len(rows)] = rows
    return image, targets


class TrainDataset(torch.utils.data.Dataset):
    """Augmented training samples of a ``DetectionDataset``.

    Args:
        dataset: the training records.
        input_size: network input ``(height, width)``.
        augmentations: steps applied in order (see ``yolox_sdk.data.pipeline.build_augmentations``).
        seed: the run's seed; with the epoch and the index it fixes every random draw.
        cache_mode: ``none`` (decode on every access), ``ram`` or ``disk``; see ``image_cache``.
        max_labels: rows of the targets tensor (YOLOX uses 120).
        cache_dir: where the disk cache lives (default ``$YOLOX_SDK_HOME/image_cache``).

    Raises:
        DatasetError: the dataset is empty, or a cache cannot be built.
    """

    def __init__(
        self,
        dataset: DetectionDataset,
        input_size: tuple[int, int],
        augmentations: Sequence[Augmentation],
        seed: int,
        cache_mode: str = "none",
        max_labels: int = MAX_LABELS,
        cache_dir: Path | None = None,
    ) -> None:
        if len(dataset) == 0:
            where = f" {dataset.source}" if dataset.source else ""
            raise DatasetError(f"The training set{where} has no images; check data.train_path and its split.")
        self.records = list(dataset.records)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.augmentations = list(augmentations)
        self.seed = int(seed)
        self.max_labels = int(max_labels)
        # Shared memory, so persistent data-loader workers see epoch and mode changes made by the trainer.
        self._epoch = multiprocessing.Value("q", 0, lock=False)
        self._no_aug = multiprocessing.Value("b", 0, lock=False)
        self.source = build_image_source(self.records, self.input_size, cache_mode, cache_dir)
        self._skipped = multiprocessing.Value("q", 0)  # shared with forked data-loader workers
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def epoch(self) -> int:
        """The epoch whose random draws ``__getitem__`` makes."""
        return int(self._epoch.value)

    @property
    def no_aug(self) -> bool:
        """Whether YOLOX's last-epochs mode (no mosaic, affine or mixup) is on."""
        return bool(self._no_aug.value)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__`` makes."""
        self._epoch.value = int(epoch)

    def set_no_aug(self, no_aug: bool = True) -> None:
        """Switch YOLOX's last-epochs mode on or off.

        Mirrors the official trainer's ``close_mosaic``: mosaic (and so the affine and mixup, which act on
        mosaics only) stops, while ``TrainTransform``'s HSV and flip go on. Every step whose
        ``disabled_in_no_aug`` attribute is true is skipped.
        """
        self._no_aug.value = int(bool(no_aug))

    @property
    def skipped_samples(self) -> int:
        """How many times an unreadable image was replaced by the next readable one, in all workers."""
        return int(self._skipped.value)

    def active_augmentations(self) -> list[Augmentation]:
        """The steps applied in the current mode."""
        if not self.no_aug:
            return list(self.augmentations)
        return [step for step in self.augmentations if not getattr(step, "disabled_in_no_aug", False)]

    def load_sample(self, index: int) -> Sample:
        """The un-augmented sample at ``index`` (resized to fit the input), or, when that image cannot be
        read, the next readable one, with a warning; training never stops on one bad file.

        Raises:
            DatasetError: no image of the dataset can be read.
        """
        size = len(self.records)
        for offset in range(size):
            candidate = (int(index) + offset) % size
            try:
                image, ratio = self.source.get(candidate)
            except DatasetError as error:
                self._count_skip(candidate, error)
                continue
            record = self.records[candidate]
            return Sample(image, record.boxes * np.float32(ratio), record.labels.copy())
        raise DatasetError("None of the training images can be read; check the dataset's image files.")

    def _count_skip(self, index: int, error: DatasetError) -> None:
        with self._skipped.get_lock():
            self._skipped.value += 1
        if index not in self._warned:
            self._warned.add(index)
            log.warning("%s Training continues with the next image instead.", error)

    def augmented_sample(self, index: int) -> Sample:
        """The sample at ``index`` after every active augmentation, before letterboxing."""
        seed_sequence = np.random.SeedSequence([self.seed % 2**63, self.epoch, int(index)])
        context = AugmentationContext(
            input_size=self.input_size,
            rng=np.random.default_rng(seed_sequence),
            load_sample=self.load_sample,
            dataset_size=len(self.records),
        )
        sample = self.load_sample(index)
        for step in self.active_augmentations():
            sample = step(sample, context)
        return sample

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, targets = letterbox_targets(self.augmented_sample(index), self.input_size, self.max_labels)
        return torch.from_numpy(image), torch.from_numpy(targets)
