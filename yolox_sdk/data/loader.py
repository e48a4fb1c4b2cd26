"""The training data loader: seeded, resumable batches, plus YOLOX's multi-scale resizing of a batch.

The sampler's order depends only on ``(seed, epoch)`` and it can start anywhere in an epoch, so a run
resumed at ``(epoch, iteration)`` sees exactly the batches the interrupted run would have seen (the
samples themselves are fixed by ``TrainDataset``'s ``(seed, epoch, index)`` generator). Call
``set_loader_epoch`` before iterating each epoch. Workers are persistent (starting them every epoch
cost more than it saved on a GPU machine); they see the dataset's epoch and no-aug mode through shared
memory.

Default worker count, measured on the 2-core development machine (BCCD train split, 205 images, 416 px,
batch 8, yolox-nano's recipe: mosaic 0.5, scale 0.5-1.5, HSV, flip, no mixup). Loading alone, one epoch
took 1.31 s with 0 workers, 1.76 s with 1 and 1.23 s with 2 (no cache), 0.58 / 1.16 / 1.03 s with the RAM
cache. With the yolox-nano train step in the loop an epoch took 26.3 s with 0 workers and 25.7 s with 2:
loading is under a tenth of the epoch and workers take the cores the model step needs. So
``default_num_workers`` is 0 below 4 cores; with more cores a worker has a core of its own and it returns
``min(4, cores // 2)`` (a judgement, not measured here).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.nn import functional

from yolox_sdk.data.train_dataset import TrainDataset

STRIDE = 32


class TrainSampler(torch.utils.data.Sampler[int]):
    """Indices of one epoch: a permutation fixed by ``(seed, epoch)``, from ``start_index`` on.

    In multi-process training every process builds the same permutation and ``shard`` makes it keep its
    own slice of each global batch, so N processes see exactly the batches one process would.
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True) -> None:
        self.size = int(size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        self.start_index = 0
        self.rank, self.world_size, self.global_batch = 0, 1, 1

    def set_epoch(self, epoch: int, start_index: int = 0) -> None:
        """Select the epoch's order and skip its first ``start_index`` indices (for resuming)."""
        self.epoch = int(epoch)
        self.start_index = int(start_index)

    def shard(self, rank: int, world_size: int, global_batch: int) -> None:
        """Keep process ``rank``'s ``global_batch / world_size`` indices of every whole global batch."""
        if global_batch % world_size:
            raise ValueError(f"A global batch of {global_batch} does not split over {world_size} processes")
        self.rank, self.world_size, self.global_batch = int(rank), int(world_size), int(global_batch)

    def order(self) -> np.ndarray:
        """The full index order of the current epoch."""
        if not self.shuffle:
            return np.arange(self.size)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed % 2**63, self.epoch]))
        return rng.permutation(self.size)

    def order_length(self) -> int:
        """``len(self.order())`` without computing the order."""
        return self.size

    def _indices(self) -> np.ndarray:
        order = self.order()
        if self.world_size > 1:
            per_rank = self.global_batch // self.world_size
            whole = len(order) // self.global_batch
            batches = order[: whole * self.global_batch].reshape(whole, self.world_size, per_rank)
            order = batches[:, self.rank, :].reshape(-1)
        return order[self.start_index :]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices().tolist())

    def __len__(self) -> int:
        length = self.order_length()
        if self.world_size > 1:
            length = length // self.global_batch * (self.global_batch // self.world_size)
        return max(0, length - self.start_index)


def collate_train_batch(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(image, targets)`` pairs into ``(B, 3, H, W)`` images and ``(B, max_labels, 5)`` targets."""
    images, targets = zip(*batch, strict=True)
    return torch.stack(images), torch.stack(targets)


def default_num_workers(cpu_count: int | None = None) -> int:
    """Data-loading worker processes worth starting on this machine (see the module docstring)."""
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return 0 if cores < 4 else min(4, cores // 2)


def build_train_loader(
    train_dataset: TrainDataset,
    batch_size: int,
    num_workers: int | None = None,
    seed: int = 0,
    shuffle: bool = True,
    drop_last: bool | None = None,
    repeat_factors: Sequence[float] | np.ndarray | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` over ``train_dataset`` with a ``TrainSampler`` and ``collate_train_batch``.

    Args:
        num_workers: worker processes; ``None`` picks ``default_num_workers()``.
        seed: fixes the order of every epoch.
        drop_last: drop the last, partial batch. ``None`` drops it when there is at least one full
            batch: YOLOX's infinite sampler never yields a partial batch either, and a batch of one or
            two images gives a noisy step at the full learning rate.
        repeat_factors: one factor ``>= 1`` per image for class balancing: the sampler is then a
            ``RepeatFactorSampler`` (see ``yolox_sdk.data.balancing``) and an epoch has
            ``round(sum(repeat_factors))`` samples.
        rank, world_size: in multi-process training, ``batch_size`` is the global batch and this
            process's loader yields its ``batch_size / world_size`` share of each one (whole global
            batches only).
    """
    sampler: TrainSampler
    if repeat_factors is None:
        sampler = TrainSampler(len(train_dataset), seed, shuffle)
    else:
        from yolox_sdk.data.balancing import RepeatFactorSampler  # it builds on TrainSampler

        if len(repeat_factors) != len(train_dataset):
            raise ValueError(
                f"{len(repeat_factors)} repeat factors for a training set of {len(train_dataset)} images"
            )
        sampler = RepeatFactorSampler(repeat_factors, seed, shuffle)
    if world_size > 1:
        sampler.shard(rank, world_size, batch_size)
        batch_size, drop_last = batch_size // world_size, True
    if drop_last is None:
        drop_last = len(sampler) >= batch_size
    workers = default_num_workers() if num_workers is None else int(num_workers)
    return torch.utils.data.DataLoader(
        train_dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_train_batch,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
    )


def set_loader_epoch(loader: torch.utils.data.DataLoader, epoch: int, start_batch: int = 0) -> None:
    """Prepare ``loader`` for ``epoch``, skipping its first ``start_batch`` batches (resuming mid-epoch)."""
    sampler = loader.sampler
    if not isinstance(sampler, TrainSampler):
        raise TypeError("set_loader_epoch needs a loader made by build_train_loader")
    sampler.set_epoch(epoch, start_batch * (loader.batch_size or 1))
    dataset = loader.dataset
    if isinstance(dataset, TrainDataset):
        dataset.set_epoch(epoch)


def batch_to_device(
    images: torch.Tensor,
    targets: torch.Tensor,
    device: torch.device | str,
    memory_format: torch.memory_format = torch.preserve_format,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader batch on ``device``: the uint8 images copied as they are, then made float32 there.

    Copying uint8 moves a quarter of the bytes of float32, and on a GPU the conversion (and the
    multi-scale resize after it) runs on the device instead of the loader's host thread.
    """
    images = images.to(device, non_blocking=True)
    images = images.to(dtype=torch.float32, memory_format=memory_format)
    return images, targets.to(device, non_blocking=True)


def resize_batch(
    images: torch.Tensor, targets: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize a batch to ``size`` (h, w) for multi-scale training, as YOLOX's ``exp.preprocess``.

    Images are interpolated bilinearly (uint8 batches are made float32 first); the targets' ``cx, w``
    scale by the width ratio and ``cy, h`` by the height ratio. Returns new tensors; the inputs are left
    untouched.
    """
    if not images.is_floating_point():
        images = images.float()
    height, width = images.shape[-2:]
    scale_y, scale_x = size[0] / height, size[1] / width
    if scale_x == 1 and scale_y == 1:
        return images, targets
    resized = functional.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False)
    scaled = targets.clone()
    scaled[..., 1::2] *= scale_x
    scaled[..., 2::2] *= scale_y
    return resized, scaled


def random_multiscale_size(
    base_size: tuple[int, int], multiscale_range: int, rng: np.random.Generator
) -> tuple[int, int]:
    """A random input size for the next iterations, as YOLOX's ``random_resize``.

    The height is ``32 * k`` with ``k`` within ``multiscale_range`` of ``base_height / 32``; the width
    keeps the base aspect ratio, rounded down to a multiple of 32.
    """
    base_h, base_w = base_size
    aspect = base_w / base_h
    center = int(base_h / STRIDE)
    factor = int(rng.integers(max(1, center - multiscale_range), center + multiscale_range, endpoint=True))
    return STRIDE * factor, STRIDE * max(1, int(factor * aspect))
