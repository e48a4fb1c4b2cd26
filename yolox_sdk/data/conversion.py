"""Converting a dataset between formats: read with any registered format, write with another's ``save``.

Everything goes through ``DetectionDataset``, so any reader pairs with any writer, third-party ones
included. What the target cannot hold (category ids, class order, ...) is not guessed away: the target's
``save`` returns warnings, which are handed back to the caller to show.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from yolox_sdk.data.formats import KIND, load_dataset, resolve_dataset_path
from yolox_sdk.data.records import DetectionDataset
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
    """

    dataset: DetectionDataset
    out_dir: Path
    warnings: list[str]


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


def save_dataset(
    dataset: DetectionDataset, format: str, out_dir: Path, registry: Registry | None = None
) -> list[str]:
    """Write ``dataset`` in ``format`` into ``out_dir`` and return the writer's warnings."""
    registry = registry or get_registry()
    writer = registry.get(KIND, format).factory(None)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [str(warning) for warning in writer.save(dataset, out_dir) or []]


def convert_dataset(
    source: str | Path,
    to: str,
    out_dir: str | Path,
    source_format: str = "auto",
    split: str | None = None,
    force: bool = False,
    registry: Registry | None = None,
) -> ConversionResult:
    """Read ``source`` (any registered format) and write it as ``to`` into ``out_dir``.

    Raises:
        DatasetError: the source cannot be read, or ``out_dir`` is not a safe place to write (see
            ``check_output_folder``).
        PluginError: ``to`` or ``source_format`` is not a registered format.
    """
    registry = registry or get_registry()
    registry.get(KIND, to)  # an unknown target fails before anything is read
    resolved, _ = resolve_dataset_path(source)
    out_dir = Path(out_dir)
    check_output_folder(out_dir, resolved, force)
    dataset = load_dataset(source, split=split, format=source_format, registry=registry)
    warnings = save_dataset(dataset, to, out_dir, registry)
    return ConversionResult(dataset, out_dir, warnings)
