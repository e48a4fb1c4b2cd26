"""Converting a dataset between formats: read with any registered format, write with another's ``save``.

Everything goes through ``DetectionDataset``, so any reader pairs with any writer, third-party ones
included. What the target cannot hold (category ids, class order, ...) is not guessed away: the target's
``save`` returns warnings, which are handed back to the caller to show.

Writing a dataset into a folder that holds an earlier one (``--force``) first empties that folder, so old
and new files never mix; to make sure only a dataset is ever deleted, the folder must hold the marker file
every written dataset gets (``OUTPUT_MARKER``), or be a dataset a format recognises made only of image and
annotation files. Anything else is refused, and so is any folder that is, holds or lies in the source.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.data.formats import (
    KIND,
    detecting_formats,
    load_dataset,
    resolve_dataset_path,
    save_with_format,
)
from yolox_sdk.data.image_check import IMAGE_SUFFIXES
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.data.split_lists import written_split_name
from yolox_sdk.errors import DatasetError
from yolox_sdk.plugins.manager import get_registry
from yolox_sdk.plugins.registry import Registry


@attrs.frozen
class ConversionResult:
    """What ``convert_dataset`` read and wrote.

    Attributes:
        dataset: the dataset as read from the source.
        out_dir: where the target format was written.
        warnings: what the target format could not hold, as its writer said.
        removed: how many files of an earlier dataset in ``out_dir`` were deleted first (``force``).
    """

    dataset: DetectionDataset
    out_dir: Path
    warnings: list[str]
    removed: int = 0


OUTPUT_MARKER = ".yolox-sdk-dataset"
ANNOTATION_SUFFIXES = frozenset({".json", ".xml", ".txt", ".csv", ".yaml", ".yml"})


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def check_output_folder(out_dir: Path, source: Path, force: bool = False) -> None:
    """Refuse to write where it could touch the source, or into a non-empty folder unless ``force``.

    Raises:
        DatasetError: ``out_dir`` is, holds, or lies inside the source; or it is a non-empty folder (or a
            file) and ``force`` is false.
    """
    out_resolved = out_dir.expanduser().resolve()
    source_root = source.resolve() if source.is_dir() else source.resolve().parent
    if _inside(out_resolved, source_root) or _inside(source_root, out_resolved):
        raise DatasetError(
            f"Output folder {out_dir} overlaps the source dataset {source_root}; the source is never written "
            "to. Choose an output folder outside it."
        )
    if out_resolved.exists() and not out_resolved.is_dir():
        raise DatasetError(f"Output path {out_dir} is a file. Choose a folder.")
    if out_resolved.is_dir() and any(out_resolved.iterdir()) and not force:
        raise DatasetError(
            f"Output folder {out_dir} is not empty. Choose an empty folder, or pass --force to write into it "
            "anyway (files with the same names are overwritten)."
        )


def _files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if not path.is_dir() or path.is_symlink())


def check_dataset_folder(out_dir: Path, source: Path, force: bool, registry: Registry | None = None) -> bool:
    """``check_output_folder`` for a command that writes a whole dataset; True when ``out_dir`` must be
    emptied first (see the module docstring).

    Raises:
        DatasetError: as ``check_output_folder``; or ``force`` is given for a non-empty folder that is not
            recognisably a dataset, so emptying it could delete something else.
    """
    check_output_folder(out_dir, source, force=True)  # overlap and file checks; emptiness is decided here
    folder = out_dir.expanduser().resolve()
    if not folder.is_dir() or not any(folder.iterdir()):
        return False
    if not force:
        raise DatasetError(
            f"Output folder {out_dir} is not empty. Choose an empty folder, or pass --force to replace the "
            "earlier dataset in it (its files are deleted first)."
        )
    if (folder / OUTPUT_MARKER).is_file():
        return True
    formats = detecting_formats(folder, registry or get_registry())
    others = [p for p in _files(folder) if p.suffix.lower() not in IMAGE_SUFFIXES | ANNOTATION_SUFFIXES]
    if formats and not others:
        return True
    reason = (
        f"it holds files that are not images or annotations ({', '.join(str(p) for p in others[:3])})"
        if formats
        else "no dataset format recognises it"
    )
    raise DatasetError(
        f"Output folder {out_dir} is not empty and does not look like a dataset written earlier: {reason}. "
        "--force empties the folder before writing so that old and new files never mix, and only does so for "
        "a folder holding an earlier dataset. Choose an empty folder, or empty this one yourself."
    )


def check_holds_no_source_image(out_dir: Path, dataset: DetectionDataset) -> None:
    """Refuse to empty ``out_dir`` when an image of the dataset just read lies in it.

    ``check_output_folder`` compares folders; a COCO file may take its images from a folder beside its own,
    so this second check, on the images actually read, makes sure emptying never deletes the source.
    """
    folder = out_dir.expanduser().resolve()
    for record in dataset.records:
        if _inside(record.image_path.resolve(), folder):
            raise DatasetError(
                f"Output folder {out_dir} holds {record.image_path}, an image of the dataset being read; "
                "--force would delete it. Choose an output folder outside the source dataset."
            )


def empty_folder(folder: Path) -> int:
    """Delete everything inside ``folder`` (never following symbolic links); return how many files went."""
    removed = len(_files(folder))
    for child in list(folder.iterdir()):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    return removed


def mark_dataset_folder(out_dir: Path, format: str, source: Path | None) -> None:
    """Leave the marker that lets a later ``--force`` recognise ``out_dir`` as a dataset yolox-sdk wrote."""
    payload = {"written_by": "yolox-sdk", "format": format, "source": str(source or "")}
    (out_dir / OUTPUT_MARKER).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


def save_dataset(
    dataset: DetectionDataset,
    format: str,
    out_dir: Path,
    registry: Registry | None = None,
    split: str | None = None,
) -> list[str]:
    """Write ``dataset`` in ``format`` into ``out_dir`` and return the writer's warnings.

    ``split`` (the subset ``dataset`` is) is passed to the format's ``save`` when it takes one.
    """
    registry = registry or get_registry()
    writer = registry.get(KIND, format).factory(None)
    out_dir.mkdir(parents=True, exist_ok=True)
    warnings = [str(warning) for warning in save_with_format(writer, dataset, out_dir, split)]
    mark_dataset_folder(out_dir, format, dataset.source)
    return warnings


def convert_dataset(
    source: str | Path,
    to: str,
    out_dir: str | Path,
    source_format: str = "auto",
    split: str | None = None,
    force: bool = False,
    registry: Registry | None = None,
    source_options: Mapping[str, Any] | None = None,
) -> ConversionResult:
    """Read ``source`` (any registered format) and write it as ``to`` into ``out_dir``.

    With ``force``, an earlier dataset in ``out_dir`` is deleted once the source has been read, just before
    writing (see the module docstring). ``source_options`` are the source format's options
    (``data.format_options``).

    Raises:
        DatasetError: the source cannot be read, or ``out_dir`` is not a safe place to write (see
            ``check_dataset_folder``).
        PluginError: ``to`` or ``source_format`` is not a registered format.
    """
    registry = registry or get_registry()
    registry.get(KIND, to)  # an unknown target fails before anything is read
    resolved, _ = resolve_dataset_path(source)
    out_dir = Path(out_dir)
    replace = check_dataset_folder(out_dir, resolved, force, registry)
    dataset = load_dataset(
        source, split=split, format=source_format, options=source_options, registry=registry
    )
    if replace:
        check_holds_no_source_image(out_dir, dataset)
    removed = empty_folder(out_dir) if replace else 0
    warnings = save_dataset(dataset, to, out_dir, registry, written_split_name(split))
    return ConversionResult(dataset, out_dir, warnings, removed)
