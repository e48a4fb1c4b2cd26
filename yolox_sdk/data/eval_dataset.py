"""Un-augmented, letterboxed images of a ``DetectionDataset``, for evaluation.

Each item carries the record's index and the letterbox scale factor, which is all that is needed to map
predictions back to the original image and to its ground truth.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from yolox_sdk.data.preprocess import letterbox, read_image
from yolox_sdk.data.records import DetectionDataset

EvalItem = tuple[torch.Tensor, int, float]
EvalBatch = tuple[torch.Tensor, list[int], list[float]]


class EvalImageDataset(Dataset):
    """Yields ``(image CHW float32 tensor, record index, scale ratio)`` for each record."""

    def __init__(self, dataset: DetectionDataset, input_size: tuple[int, int]) -> None:
        self.dataset = dataset
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> EvalItem:
        image = read_image(self.dataset.records[index].image_path)
        array, ratio = letterbox(image, self.input_size)
        return torch.from_numpy(array), index, ratio


def collate_eval(items: list[EvalItem]) -> EvalBatch:
    """Stack the images; keep indices and ratios as lists (torch's default collate would tensorise them)."""
    images, indices, ratios = zip(*items, strict=True)
    return torch.stack(images), list(indices), list(ratios)


def make_eval_loader(
    dataset: DetectionDataset, input_size: tuple[int, int], batch_size: int = 8, num_workers: int = 0
) -> DataLoader:
    """A loader over ``dataset`` in record order.

    ``num_workers`` defaults to 0: on small CPUs decoding in the main process is as fast as workers
    (see ENVIRONMENT.md) and avoids their start-up cost on every evaluation.
    """
    return DataLoader(
        EvalImageDataset(dataset, input_size),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_eval,
    )
