"""Dataset formats: loading a dataset in whatever format a plugin reads, and the kit for writing one.

``load_dataset`` is the one entry point the trainer, the evaluator and the CLI use: it turns a dataset
name (``bccd``) into a folder through the asset catalog, picks the format (the catalog's, the one asked
for, or auto-detection: the single highest ``detect`` score) and structures the format's options from the
config before reading.

This module is also the public, stable API for dataset format plugins (``__all__``, documented in
CONTRIBUTING.md, "Writing a dataset format"): the record types a reader returns, ``RawImage`` +
``assemble_dataset`` (the common rules every format applies: missing and corrupt images, sizes from the
file header, box clipping via ``clean_boxes``), the image-path rule ``image_in_folder``, UTF-8 readers that
raise ``DatasetError`` naming the file, the ``DETECT_*`` scores ``detect`` returns and the ``LabelCheck``
types of the optional ``check_labels``. Built-in formats use the same functions from
``yolox_sdk.data.format_support``, where they are defined; import them from here.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.assets.datasets import known_dataset_names, locate_dataset
from yolox_sdk.config.plugin_options import resolve_options
from yolox_sdk.data.format_support import (
    BOX_CLIPPED,
    BOX_NOT_FINITE,
    BOX_OUTSIDE,
    BOX_ZERO_AREA,
    DETECT_DECLARED,
    DETECT_GENERIC,
    DETECT_LAYOUT,
    DETECT_NONE,
    DETECT_SCHEMA,
    IMAGE_CORRUPT,
    LABEL_CLASS_OUT_OF_RANGE,
    LABEL_FILE_ORPHAN,
    LABEL_FILE_UNREADABLE,
    LABEL_MALFORMED,
    SIZE_MISMATCH,
    LabelCheck,
    LabelProblem,
    RawImage,
    assemble_dataset,
    choose_class_names,
    clean_boxes,
    export_image,
    find_split_file,
    format_coordinate,
    image_ids,
    image_in_folder,
    json_list_head,
    missing_images_error,
    names_only_warnings,
    no_images_error,
    read_json,
    read_text,
    read_xml,
    read_yaml,
)
from yolox_sdk.data.records import DetectionDataset, ImageRecord, LoadReport
from yolox_sdk.data.split_lists import find_split_list, is_split_list, select_listed
from yolox_sdk.errors import DatasetError
from yolox_sdk.plugins.interfaces import DatasetFormat
from yolox_sdk.plugins.manager import get_registry
from yolox_sdk.plugins.registry import PluginEntry, Registry

__all__ = [
    # records
    "DetectionDataset",
    "ImageRecord",
    "LoadReport",
    "DatasetError",
    "DatasetFormat",
    # reading: the common rules
    "RawImage",
    "assemble_dataset",
    "clean_boxes",
    "image_in_folder",
    "image_ids",
    "choose_class_names",
    "find_split_file",
    "missing_images_error",
    "no_images_error",
    "read_json",
    "read_text",
    "read_xml",
    "read_yaml",
    "json_list_head",
    "BOX_CLIPPED",
    "BOX_NOT_FINITE",
    "BOX_OUTSIDE",
    "BOX_ZERO_AREA",
    "IMAGE_CORRUPT",
    "SIZE_MISMATCH",
    # writing
    "export_image",
    "format_coordinate",
    "names_only_warnings",
    "save_with_format",
    # detection
    "DETECT_NONE",
    "DETECT_GENERIC",
    "DETECT_LAYOUT",
    "DETECT_SCHEMA",
    "DETECT_DECLARED",
    "detect_format",
    "detection_score",
    "detection_scores",
    # label checks for data validate
    "LabelCheck",
    "LabelProblem",
    "LABEL_MALFORMED",
    "LABEL_CLASS_OUT_OF_RANGE",
    "LABEL_FILE_ORPHAN",
    "LABEL_FILE_UNREADABLE",
    # using formats
    "create_format",
    "load_dataset",
    "resolve_dataset_path",
]

KIND = "dataset_format"
OPTIONS_PATH = "data.format_options"

log = logging.getLogger(__name__)


def _default_instance(entry: PluginEntry) -> DatasetFormat | None:
    try:
        return entry.factory(entry.options() if entry.options is not None else None)
    except Exception as error:  # noqa: BLE001 - one plugin that cannot detect must not stop the others
        log.warning("Dataset format '%s' (%s) cannot be built to detect: %s", entry.name, entry.origin, error)
        return None


def detection_score(value: Any) -> float:
    """A ``detect`` result as a score in ``[0, 1]`` (see ``DETECT_*``).

    ``True`` (what detectors written before scores existed return) counts as ``DETECT_GENERIC``: a format
    that checked its schema wins over it, and two such formats on one path still clash. A number outside
    ``[0, 1]`` is clipped; NaN counts as no match.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return DETECT_GENERIC if value else DETECT_NONE
    score = float(value)
    return min(max(score, DETECT_NONE), DETECT_DECLARED) if math.isfinite(score) else DETECT_NONE


def _score(entry: PluginEntry, path: Path) -> float:
    instance = _default_instance(entry)
    if instance is None:
        return DETECT_NONE
    try:
        return detection_score(instance.detect(path))
    except Exception as error:  # noqa: BLE001 - detection is a guess; a crash counts as "no"
        log.warning("Dataset format '%s' (%s) failed to detect %s: %s", entry.name, entry.origin, path, error)
        return DETECT_NONE


def detection_scores(path: Path, registry: Registry) -> dict[str, float]:
    """Every registered dataset format that recognises ``path``, with its score, highest first."""
    scores = {entry.name: _score(entry, Path(path)) for entry in registry.entries(KIND)}
    matches = {name: score for name, score in scores.items() if score > DETECT_NONE}
    return dict(sorted(matches.items(), key=lambda item: (-item[1], item[0])))


def detecting_formats(path: Path, registry: Registry) -> list[str]:
    """The names of every registered dataset format whose ``detect`` recognises ``path``, best first."""
    return list(detection_scores(path, registry))


def detect_format(path: Path, registry: Registry) -> str:
    """The name of the registered dataset format that recognises ``path`` most specifically.

    Each format's ``detect`` scores how much of its format it checked (``DETECT_*``); the single highest
    score wins, so a format that checked a JSON file's schema beats one that saw a JSON list.

    Raises:
        DatasetError: no format recognises ``path``, or several share the highest score.
    """
    scores = detection_scores(path, registry)
    if not scores:
        expected = "\n".join(f"  - {entry.name}: {entry.description}" for entry in registry.entries(KIND))
        raise DatasetError(
            f"{path} does not look like any dataset format. The installed formats expect:\n{expected}\n"
            "Fix the layout, or set data.format to the format it is in to get a precise error."
        )
    best = max(scores.values())
    winners = [name for name, score in scores.items() if score == best]
    if len(winners) > 1:
        raise DatasetError(
            f"{path} looks like more than one dataset format: {', '.join(sorted(winners))}. Set data.format "
            "to the one to use."
        )
    others = [f"{name} ({score:g})" for name, score in scores.items() if score < best]
    if others:
        log.debug("%s: picked %s (%g) over %s", path, winners[0], best, ", ".join(others))
    return winners[0]


def resolve_dataset_path(path: str | Path) -> tuple[Path, str | None]:
    """Turn ``path`` into an existing file or folder, plus the format a catalog declares for it.

    An existing file or folder is used as is; anything else is taken as a dataset name (``bccd``) and
    resolved through the offline mirrors, the cache, or a download.
    """
    candidate = Path(path).expanduser()
    if candidate.exists():
        return candidate, None
    name = str(path)
    if "/" in name or "\\" in name or name.startswith("."):
        known = ", ".join(known_dataset_names())
        raise DatasetError(
            f"Dataset path {candidate} does not exist. Check the path, or give a dataset name ({known})."
        )
    resolved = locate_dataset(name)
    return resolved.path, resolved.format


def _options(registry: Registry, name: str, options: Any) -> Any:
    entry = registry.get(KIND, name)
    if entry.options is not None and isinstance(options, entry.options):
        return options
    if options is not None and not isinstance(options, Mapping):
        raise DatasetError(
            f"Options for dataset format '{name}' must be a mapping or a {entry.options!r}, got {options!r}."
        )
    return resolve_options(registry, KIND, name, dict(options or {}), OPTIONS_PATH)


def create_format(name: str, registry: Registry | None = None, options: Any | None = None) -> DatasetFormat:
    """The ``DatasetFormat`` registered as ``name``, built with ``options`` (a mapping or an instance of its
    options class; its defaults when ``None``).

    Raises:
        PluginError: no format is registered as ``name``.
        ConfigError: ``options`` do not fit the format's options class.
    """
    registry = registry or get_registry()
    return registry.get(KIND, name).factory(_options(registry, name, options))


def save_with_format(
    writer: DatasetFormat, dataset: DetectionDataset, out_dir: Path, split: str | None = None
) -> list[str]:
    """``writer.save(dataset, out_dir, split=split)``, leaving ``split`` out for a format whose ``save``
    does not take it (formats written before the split was passed keep working).

    ``split`` names the subset ``dataset`` is (``"val"``), for formats that write one file or folder per
    split; ``None`` when it is the whole dataset or unknown.
    """
    if split is not None and _takes_split(writer.save):
        return list(writer.save(dataset, out_dir, split=split) or [])
    return list(writer.save(dataset, out_dir) or [])


def _takes_split(save: Any) -> bool:
    try:
        parameters = inspect.signature(save).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "split" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def load_dataset(
    path: str | Path,
    split: str | None = None,
    format: str = "auto",
    options: Mapping[str, Any] | Any | None = None,
    registry: Registry | None = None,
) -> DetectionDataset:
    """Read a dataset given by path or name.

    Args:
        path: a file or folder, or a dataset name known to the asset catalog (``bccd``).
        split: the subset to read: a split name of the format (VOC list, YOLO yaml key, COCO file), or
            a split list file of image paths (ends in ``.txt`` or holds a ``/``; what ``data split``
            writes), read for every format by ``split_lists`` from the whole dataset.
        format: a registered format name, or ``"auto"``: the catalog's format for a named dataset,
            otherwise the one format whose ``detect`` recognises the path.
        options: the format's options as a mapping (``data.format_options``) or an options instance.
        registry: the plugin registry; the process-wide one by default.

    Raises:
        DatasetError: the path cannot be resolved, the format cannot be told, or the files are invalid.
        ConfigError: ``options`` do not fit the format's options class.
    """
    registry = registry or get_registry()
    resolved, catalog_format = resolve_dataset_path(path)
    name = format
    if name == "auto":
        name = catalog_format if catalog_format in registry.names(KIND) else detect_format(resolved, registry)
    reader = create_format(name, registry, options)
    if is_split_list(split):
        root = resolved if resolved.is_dir() else resolved.parent
        list_file = find_split_list(str(split), root)
        dataset = select_listed(_with_origin(reader.load(resolved, None), resolved, name), list_file, root)
    else:
        dataset = _with_origin(reader.load(resolved, split), resolved, name)
    for line in dataset.report.lines():
        log.warning("%s: %s", resolved, line)
    return dataset


def _with_origin(dataset: DetectionDataset, path: Path, name: str) -> DetectionDataset:
    if dataset.source is not None and dataset.format:
        return dataset
    return attrs.evolve(dataset, source=dataset.source or path, format=dataset.format or name)
