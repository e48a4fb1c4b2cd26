"""Loading a dataset from a path or a name, in whatever format a plugin reads.

``load_dataset`` is the one entry point the trainer, the evaluator and the CLI use: it turns a dataset
name (``bccd``) into a folder through the asset catalog, picks the format (the catalog's, the one asked
for, or auto-detection) and structures the format's options from the config before reading.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.assets.datasets import known_dataset_names, locate_dataset
from yolox_sdk.config.plugin_options import resolve_options
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.errors import DatasetError
from yolox_sdk.plugins.interfaces import DatasetFormat
from yolox_sdk.plugins.manager import get_registry
from yolox_sdk.plugins.registry import PluginEntry, Registry

KIND = "dataset_format"
OPTIONS_PATH = "data.format_options"

log = logging.getLogger(__name__)


def _default_instance(entry: PluginEntry) -> DatasetFormat | None:
    try:
        return entry.factory(entry.options() if entry.options is not None else None)
    except Exception as error:  # noqa: BLE001 - one plugin that cannot detect must not stop the others
        log.warning("Dataset format '%s' (%s) cannot be built to detect: %s", entry.name, entry.origin, error)
        return None


def _detects(entry: PluginEntry, path: Path) -> bool:
    instance = _default_instance(entry)
    if instance is None:
        return False
    try:
        return bool(instance.detect(path))
    except Exception as error:  # noqa: BLE001 - detection is a guess; a crash counts as "no"
        log.warning("Dataset format '%s' (%s) failed to detect %s: %s", entry.name, entry.origin, path, error)
        return False


def detecting_formats(path: Path, registry: Registry) -> list[str]:
    """The names of every registered dataset format whose ``detect`` recognises ``path``."""
    return [entry.name for entry in registry.entries(KIND) if _detects(entry, Path(path))]


def detect_format(path: Path, registry: Registry) -> str:
    """The name of the one registered dataset format that recognises ``path``.

    Raises:
        DatasetError: no format, or more than one, recognises ``path``.
    """
    entries = registry.entries(KIND)
    matches = detecting_formats(path, registry)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        expected = "\n".join(f"  - {entry.name}: {entry.description}" for entry in entries)
        raise DatasetError(
            f"{path} does not look like any dataset format. The installed formats expect:\n{expected}\n"
            "Fix the layout, or set data.format to the format it is in to get a precise error."
        )
    raise DatasetError(
        f"{path} looks like more than one dataset format: {', '.join(matches)}. Set data.format to the one "
        "to use."
    )


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
        split: the subset to read, where the format has splits (VOC list, YOLO yaml key, COCO file).
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
    reader = registry.get(KIND, name).factory(_options(registry, name, options))
    dataset = reader.load(resolved, split)
    dataset = _with_origin(dataset, resolved, name)
    for line in dataset.report.lines():
        log.warning("%s: %s", resolved, line)
    return dataset


def _with_origin(dataset: DetectionDataset, path: Path, name: str) -> DetectionDataset:
    if dataset.source is not None and dataset.format:
        return dataset
    return attrs.evolve(dataset, source=dataset.source or path, format=dataset.format or name)
