"""Conformance checks for dataset format plugins: write then read back equals, and detection that coexists."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from yolox_sdk.data.formats import (
    KIND,
    DetectionDataset,
    create_format,
    detection_scores,
    save_with_format,
)
from yolox_sdk.plugins.registry import Registry

ANNOTATION_SUFFIXES = (".json", ".xml", ".csv", ".yaml", ".yml", ".txt")


def sample_exports(
    registry: Registry, dataset: DetectionDataset, out_dir: Path, names: Iterable[str] | None = None
) -> dict[Path, str]:
    """Write ``dataset`` in every registered format that can write (or those in ``names``), each into
    ``out_dir/<name>``, and map each export to the format that wrote it: the folder, and every annotation
    file at its top (a single-file format is detected from the file as well as its folder).

    A format whose ``save`` raises ``NotImplementedError`` (read-only) is left out.
    """
    samples: dict[Path, str] = {}
    for name in names if names is not None else registry.names(KIND):
        folder = Path(out_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        try:
            save_with_format(create_format(name, registry), dataset, folder)
        except NotImplementedError:
            continue
        samples[folder] = name
        for file in sorted(folder.iterdir()):
            if file.is_file() and file.suffix.lower() in ANNOTATION_SUFFIXES and file.name != "classes.txt":
                samples[file] = name
    return samples


def _named_boxes(dataset: DetectionDataset, record: Any) -> list[tuple[str, list[float]]]:
    pairs = [
        (dataset.class_names[label], box)
        for box, label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True)
    ]
    return sorted(pairs, key=lambda pair: (pair[0], [round(v, 2) for v in pair[1]]))


def check_round_trip(
    registry: Registry,
    name: str,
    dataset: DetectionDataset,
    out_dir: Path,
    *,
    options: Mapping[str, Any] | Any | None = None,
    atol: float = 1e-3,
    class_order: bool = False,
) -> DetectionDataset:
    """Write ``dataset`` with format ``name`` into ``out_dir``, read it back, and check it is the same.

    Same means: as many records, matched by image file name, each with the same size and the same boxes
    (within ``atol`` pixels) under the same class names; with ``class_order``, the same class list in
    the same order too (formats that store label names only cannot keep it). Image names in ``dataset``
    must be unique. Returns the dataset read back, for format-specific checks.

    Raises:
        AssertionError: naming the first image that differs and how.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [record.image_path.name for record in dataset.records]
    assert len(set(names)) == len(names), "check_round_trip needs a dataset whose image names are unique"
    save_with_format(create_format(name, registry, options), dataset, out_dir)
    again = create_format(name, registry, options).load(out_dir)
    assert len(again) == len(dataset), f"{name}: wrote {len(dataset)} images, read back {len(again)}"
    if class_order:
        assert again.class_names == dataset.class_names, (
            f"{name}: class list {again.class_names} read back, {dataset.class_names} written"
        )
    after = {record.image_path.name: record for record in again.records}
    for record in dataset.records:
        back = after.get(record.image_path.name)
        assert back is not None, f"{name}: {record.image_path.name} was not read back ({sorted(after)})"
        where = f"{name}: {record.image_path.name}"
        assert (back.width, back.height) == (record.width, record.height), f"{where}: size changed"
        written, read = _named_boxes(dataset, record), _named_boxes(again, back)
        assert [n for n, _ in read] == [n for n, _ in written], f"{where}: labels {read} != {written}"
        if written:
            difference = np.abs(np.array([b for _, b in read]) - np.array([b for _, b in written])).max()
            assert difference <= atol, f"{where}: boxes moved by {difference:.6f} px (> {atol})"
    return again


def check_detection(registry: Registry, name: str, samples: Mapping[Path, str]) -> None:
    """Check that format ``name`` wins ``format: auto`` alone on its own samples and claims no other's.

    Args:
        registry: a registry holding ``name`` and the formats it must coexist with.
        name: the format under test.
        samples: paths (files or folders) mapped to the format each is in, e.g. from ``sample_exports``
            (include real exports of the format, too).

    Raises:
        AssertionError: listing every sample where ``name`` lost its own (or tied), or scored at least
            as high as the sample's own format, with the scores.
    """
    assert name in samples.values(), f"no sample of {name} among the samples given"
    wrong = []
    for path, expected in samples.items():
        scores = detection_scores(path, registry)
        mine = scores.get(name, 0.0)
        if expected == name:
            rivals = {other: score for other, score in scores.items() if other != name and score >= mine}
            if mine <= 0.0 or rivals:
                wrong.append(f"{path} ({name}): scored {mine:g}; rivals at or above it: {rivals}")
        elif mine > 0.0 and mine >= scores.get(expected, 0.0):
            wrong.append(f"{path} ({expected}): {name} claims it with {mine:g}, scores {scores}")
    assert not wrong, "Detection clashes:\n" + "\n".join(wrong)
