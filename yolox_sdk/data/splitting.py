"""Splitting a dataset into train/val/test, reproducibly and stratified by which classes each image holds.

A random split of a small dataset easily leaves a rare class out of val or test, and then its AP cannot be
measured. ``split_dataset`` assigns images rarest class first (iterative stratification): each image goes
to the split that still lacks that class, or else wants most of it, among the splits that still have room.
Split sizes are exact (``round(N * fraction)`` for val and test, the rest for train), and the same seed
always gives the same split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import numpy as np

from yolox_sdk.data.records import DetectionDataset, ImageRecord
from yolox_sdk.errors import DatasetError

SPLIT_NAMES = ("train", "val", "test")


@attrs.frozen
class DatasetSplit:
    """Which records went to which split.

    Attributes:
        indices: split name -> sorted record indices into the dataset.
    """

    indices: Mapping[str, tuple[int, ...]]

    def records(self, dataset: DetectionDataset, name: str) -> list[ImageRecord]:
        """The records of split ``name``."""
        return [dataset.records[i] for i in self.indices[name]]

    def subset(self, dataset: DetectionDataset, name: str) -> DetectionDataset:
        """Split ``name`` as a dataset with the same classes (and no load report)."""
        return attrs.evolve(dataset, records=self.records(dataset, name), report=type(dataset.report)())


def split_sizes(total: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Image counts per split: ``round(total * fraction)`` for every split but train, which gets the rest."""
    sizes = {name: int(round(total * fraction)) for name, fraction in fractions.items() if name != "train"}
    sizes["train"] = total - sum(sizes.values())
    if sizes["train"] < 0:
        raise DatasetError(f"The split fractions {dict(fractions)} add up to more than 1.")
    return {name: sizes[name] for name in fractions}


def split_dataset(
    dataset: DetectionDataset, val: float = 0.2, test: float = 0.0, seed: int = 0
) -> DatasetSplit:
    """Split ``dataset`` into train, val and (when ``test > 0``) test; see the module docstring.

    Raises:
        DatasetError: the fractions are negative or leave nothing for train.
    """
    if val < 0 or test < 0 or val + test >= 1:
        raise DatasetError(
            f"Split fractions must be >= 0 and leave some images for train: got val={val}, test={test}."
        )
    fractions = {"train": 1.0 - val - test, "val": val}
    if test > 0:
        fractions["test"] = test
    names = list(fractions)
    capacity = split_sizes(len(dataset), fractions)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset)).tolist()
    classes_of = [set(record.labels.tolist()) for record in dataset.records]
    images_with = np.zeros(dataset.num_classes, dtype=np.int64)
    for classes in classes_of:
        for label in classes:
            images_with[label] += 1
    wanted = {name: images_with * fraction for name, fraction in fractions.items()}
    present = {name: np.zeros(dataset.num_classes, dtype=np.int64) for name in names}
    assigned: dict[str, list[int]] = {name: [] for name in names}
    remaining = set(range(len(dataset)))

    def place(index: int, label: int | None) -> None:
        open_splits = [name for name in names if capacity[name] > 0]
        if label is None:
            chosen = max(open_splits, key=lambda name: capacity[name])
        else:
            chosen = max(
                open_splits,
                key=lambda name: (present[name][label] == 0, wanted[name][label], capacity[name]),
            )
        assigned[chosen].append(index)
        capacity[chosen] -= 1
        remaining.discard(index)
        for other in classes_of[index]:
            wanted[chosen][other] -= 1
            present[chosen][other] += 1

    for label in np.argsort(images_with, kind="stable").tolist():
        for index in order:
            if index in remaining and label in classes_of[index]:
                place(index, label)
    for index in order:
        if index in remaining:
            place(index, None)
    return DatasetSplit({name: tuple(sorted(assigned[name])) for name in names})


def class_box_counts(records: Sequence[ImageRecord], num_classes: int) -> list[int]:
    """Number of boxes of each class in ``records``."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for record in records:
        np.add.at(counts, record.labels, 1)
    return counts.tolist()


def list_entry(record: ImageRecord, root: Path) -> str:
    """The line a split list holds for ``record``: its image path relative to ``root`` when inside it."""
    path = record.image_path
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def write_split_lists(dataset: DetectionDataset, split: DatasetSplit, out_dir: Path) -> list[Path]:
    """Write ``<split>.txt`` per split into ``out_dir``: one image path per line (relative to the dataset)."""
    root = dataset.source if dataset.source is not None else Path.cwd()
    root = root if root.is_dir() else root.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, indices in split.indices.items():
        path = out_dir / f"{name}.txt"
        path.write_text(
            "".join(f"{list_entry(dataset.records[i], root)}\n" for i in indices), encoding="utf-8"
        )
        written.append(path)
    return written
