"""Split list files: a subset of a dataset named by a text file of image paths, in any format.

``data split`` writes ``train.txt``/``val.txt``/``test.txt``; this module reads them back for every
command and config key that takes a split (``--split``, ``data.train_split``...), in the one place all of
them go through (``formats.load_dataset``), so no format has to know about them.

The rule (also in docs/guides/data.md):

* ``split`` is a list file when it ends in ``.txt`` or contains a path separator; anything else is a split
  name of the format (VOC ``ImageSets/Main/<name>.txt``, a YOLO ``data.yaml`` key...), as before.
* A relative list path is looked up in the current directory first, then in the dataset folder (the same
  way ``data.train_path`` is resolved: configs do not resolve paths against their own folder).
* Each non-blank line that does not start with ``#`` names one image, matched in this order: as a path
  relative to the dataset folder, as an absolute path, by file name (``BloodImage_00001.jpg``) when only
  one image has it, by file stem or image id (``BloodImage_00001``, what VOC lists hold) when only one
  image has it. Backslashes count as ``/``. A line repeated is one image; the list's order is kept.
* A line that matches no image is an error naming the list file, the line and how many failed: a list
  written for another copy of the dataset would otherwise silently train on less.

The records kept keep the whole dataset's class list, so the train and val lists of one dataset agree on
class indices.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs

from yolox_sdk.data.format_support import read_text
from yolox_sdk.data.records import DetectionDataset, ImageRecord, LoadReport
from yolox_sdk.errors import DatasetError

LIST_SUFFIX = ".txt"


def is_split_list(split: str | None) -> bool:
    """Whether ``split`` names a list file rather than a split of the format (see the module docstring)."""
    if not split:
        return False
    return split.lower().endswith(LIST_SUFFIX) or "/" in split or "\\" in split or os.sep in split


def written_split_name(split: str | None) -> str | None:
    """The split name a writer gets for data read with ``split``: a list file's stem (``val`` for
    ``splits/val.txt``), so a converted or fixed copy is read back with ``--split val``."""
    return Path(split.replace("\\", "/")).stem if split and is_split_list(split) else split


def find_split_list(split: str, dataset_root: Path) -> Path:
    """The list file ``split`` names: as given (absolute, or relative to the current directory), else
    relative to the dataset folder.

    Raises:
        DatasetError: no such file in either place.
    """
    given = Path(split).expanduser()
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, dataset_root / given]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = " or ".join(str(c) for c in candidates)
    raise DatasetError(
        f"Split list {split} not found (looked for {tried}). A split ending in .txt or holding a '/' is read "
        "as a list of image paths (what `yolox-sdk data split` writes): give an existing file, relative to "
        "the current directory or the dataset folder, or a split name of the format (train, val...)."
    )


def read_split_list(path: Path) -> list[tuple[int, str]]:
    """``(line number, entry)`` of each image line of ``path``: blank lines and ``#`` comments skipped,
    surrounding spaces dropped, backslashes turned into ``/``."""
    lines = read_text(path, "split list").splitlines()
    entries = [(number, line.strip().replace("\\", "/")) for number, line in enumerate(lines, start=1)]
    return [(number, entry) for number, entry in entries if entry and not entry.startswith("#")]


def _absolute(path: Path) -> str:
    return os.path.normpath(os.path.abspath(path))


def _unique_index(keys: Iterable[str]) -> dict[str, int]:
    """``key -> position`` for the keys that occur once (an ambiguous name matches nothing)."""
    seen: dict[str, int] = {}
    repeated = set()
    for position, key in enumerate(keys):
        if key in seen:
            repeated.add(key)
        seen[key] = position
    return {key: position for key, position in seen.items() if key not in repeated}


def entry_matcher(records: list[ImageRecord], root: Path) -> Callable[[str], int | None]:
    """A function giving the index in ``records`` of the image a list line names (``None`` when none);
    the matching order is the module docstring's."""
    by_path = {_absolute(record.image_path): index for index, record in enumerate(records)}
    by_resolved = _unique_index(str(record.image_path.resolve()) for record in records)
    by_name = _unique_index(record.image_path.name for record in records)
    by_stem = _unique_index(record.image_path.stem for record in records)
    by_id = _unique_index(record.image_id for record in records)

    def match(entry: str) -> int | None:
        candidate = Path(entry).expanduser()
        absolute = candidate if candidate.is_absolute() else root / candidate
        found = by_path.get(_absolute(absolute))
        if found is None and absolute.exists():
            found = by_resolved.get(str(absolute.resolve()))
        for index in (by_name, by_stem, by_id):
            if found is None and "/" not in entry:
                found = index.get(entry)
        return found

    return match


def select_listed(dataset: DetectionDataset, list_file: Path, root: Path) -> DetectionDataset:
    """The records of ``dataset`` that the list file names, in the list's order.

    Raises:
        DatasetError: the list has no image lines, or some line names no image of the dataset.
    """
    entries = read_split_list(list_file)
    if not entries:
        raise DatasetError(
            f"Split list {list_file} names no image (only blank or # lines). Write one image path per line."
        )
    match = entry_matcher(dataset.records, root)
    chosen: dict[int, None] = {}
    unmatched = []
    for number, entry in entries:
        index = match(entry)
        if index is None:
            unmatched.append((number, entry))
        else:
            chosen.setdefault(index, None)
    if unmatched:
        number, entry = unmatched[0]
        raise DatasetError(
            f"{list_file}, line {number}: '{entry}' is not an image of the dataset at {root} "
            f"({len(unmatched)} of {len(entries)} lines name no image). A line is matched as a path "
            "relative to the dataset folder, an absolute path, or a file name or id only one image has. "
            "Fix the list, or point the path at the dataset the list was written for."
        )
    records = [dataset.records[i] for i in chosen]
    report = report_for_records(dataset.report, records, dataset.records)
    return attrs.evolve(dataset, records=records, report=report)


def _names_in(text: str) -> set[str]:
    return {Path(token).stem for token in re.split(r"[\\/\s:(),]+", text) if token}


def report_for_records(report: LoadReport, kept: list[ImageRecord], every: list[ImageRecord]) -> LoadReport:
    """The part of the whole dataset's load report that concerns the ``kept`` records.

    A problem whose examples name images (by file or label-file stem) stays when one of them is kept,
    counted by the kept examples when the report holds every occurrence; a problem whose examples name no
    image at all (a whole-file problem) stays as it is, since it cannot be told apart.
    """
    kept_names = {r.image_path.stem for r in kept} | {r.image_id for r in kept}
    every_names = {r.image_path.stem for r in every} | {r.image_id for r in every}
    subset = LoadReport(severities=dict(report.severities))
    for problem, count in report.counts.items():
        examples = report.examples.get(problem, [])
        named = [example for example in examples if _names_in(example) & every_names]
        if not named:
            subset.counts[problem] = count
            subset.examples[problem] = list(examples)
            continue
        ours = [example for example in named if _names_in(example) & kept_names]
        if ours:
            subset.counts[problem] = len(ours) if count == len(examples) else count
            subset.examples[problem] = ours
    return subset
