"""Splitting a dataset into train/val/test, reproducibly and stratified by which classes each image holds.

A random split of a small dataset easily leaves a rare class out of val or test, and then its AP cannot be
measured. ``split_dataset`` assigns images rarest class first (iterative stratification): each image goes
to the split that still lacks that class, or else wants most of it, among the splits that still have room.
Split sizes are exact (``round(N * fraction)`` for val and test, the rest for train), and the same seed
always gives the same split.

Images that are the same picture (byte-identical, or near-duplicates: see ``near_duplicates``) must not
be split, or val measures memory instead of generalisation. ``duplicate_image_groups`` finds them and
``split_dataset(groups=...)`` places each group as one unit: a unit holds the union of its images'
classes and takes as many places as it has images. Larger units are placed first within each class pass
so that they still fit; when one fits nowhere it goes to the split with the most room left, and sizes are
then as close to the fractions as the groups allow. Without groups the split is the same as before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import numpy as np

from yolox_sdk.data.near_duplicates import duplicate_groups, hash_images, near_duplicate_pairs
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


def duplicate_image_groups(
    dataset: DetectionDataset, max_distance: int, workers: int | None = None
) -> list[tuple[int, ...]]:
    """Groups (record indices, more than one each) of images that are byte-identical or whose dHashes
    differ in at most ``max_distance`` of 128 bits (0: byte-identical only); see ``near_duplicates``."""
    hashes = hash_images([record.image_path for record in dataset.records], workers)
    return duplicate_groups(len(dataset), near_duplicate_pairs(hashes, max_distance))


def split_dataset(
    dataset: DetectionDataset,
    val: float = 0.2,
    test: float = 0.0,
    seed: int = 0,
    groups: Sequence[Sequence[int]] = (),
) -> DatasetSplit:
    """Split ``dataset`` into train, val and (when ``test > 0``) test; see the module docstring.

    ``groups`` are sets of record indices that must land in one split (each index in one group at most).

    Raises:
        DatasetError: the fractions are negative or leave nothing for train, or an index is in two groups.
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
    units = _units(len(dataset), groups)
    rng = np.random.default_rng(seed)
    position = np.argsort(rng.permutation(len(dataset)))  # the record order an ungrouped split visits
    first_visit = [min(int(position[i]) for i in unit) for unit in units]
    order = sorted(range(len(units)), key=lambda unit: (-len(units[unit]), first_visit[unit]))
    classes_of = [{label for i in unit for label in dataset.records[i].labels.tolist()} for unit in units]
    images_with = np.zeros(dataset.num_classes, dtype=np.int64)
    for record in dataset.records:
        for label in set(record.labels.tolist()):
            images_with[label] += 1
    wanted = {name: images_with * fraction for name, fraction in fractions.items()}
    present = {name: np.zeros(dataset.num_classes, dtype=np.int64) for name in names}
    assigned: dict[str, list[int]] = {name: [] for name in names}
    remaining = set(range(len(units)))

    def place(unit: int, label: int | None) -> None:
        size = len(units[unit])
        open_splits = [name for name in names if capacity[name] >= size]
        if not open_splits:
            chosen = max(names, key=lambda name: capacity[name])
        elif label is None:
            chosen = max(open_splits, key=lambda name: capacity[name])
        else:
            chosen = max(
                open_splits,
                key=lambda name: (present[name][label] == 0, wanted[name][label], capacity[name]),
            )
        assigned[chosen].extend(units[unit])
        capacity[chosen] -= size
        remaining.discard(unit)
        for index in units[unit]:
            for other in set(dataset.records[index].labels.tolist()):
                wanted[chosen][other] -= 1
                present[chosen][other] += 1

    for label in np.argsort(images_with, kind="stable").tolist():
        for unit in order:
            if unit in remaining and label in classes_of[unit]:
                place(unit, label)
    for unit in order:
        if unit in remaining:
            place(unit, None)
    return DatasetSplit({name: tuple(sorted(assigned[name])) for name in names})


def _units(count: int, groups: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Every record index once: each group as one unit, the other indices alone, ordered by first index.

    Units are visited in the order of their first record in the ungrouped random order, so a few groups
    change a split little, and no groups change nothing."""
    unit_of: dict[int, tuple[int, ...]] = {}
    for group in groups:
        members = tuple(sorted({int(i) for i in group}))
        for index in members:
            if index in unit_of or not 0 <= index < count:
                raise DatasetError(f"Record index {index} is in two duplicate groups or out of range.")
            unit_of[index] = members
    units = [unit_of.get(index, (index,)) for index in range(count)]
    return sorted(dict.fromkeys(units), key=lambda unit: unit[0])


def class_box_counts(records: Sequence[ImageRecord], num_classes: int) -> list[int]:
    """Number of boxes of each class in ``records``."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for record in records:
        np.add.at(counts, record.labels, 1)
    return counts.tolist()


def list_entry(record: ImageRecord, root: Path) -> str:
    """The line a split list holds for ``record``: its image path relative to ``root`` when inside it."""
    path = Path(os.path.abspath(record.image_path))
    try:
        return path.relative_to(os.path.abspath(root)).as_posix()
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
