"""``exports.json``: what ``yolox-sdk run`` exported, kept in the run directory for its report.

An exporter's ``ExportResult`` (file, format, the largest difference from PyTorch on the sample images)
lives only in memory; ``run`` writes it here so ``yolox-sdk report`` can show it later. For a run without
the record (older runs, a separate ``yolox-sdk export``), the files in ``<run>/export/`` are listed with
their sizes and no measured difference.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yolox_sdk.files import write_text_atomically

log = logging.getLogger(__name__)

EXPORTS_FILENAME = "exports.json"
EXPORT_FOLDER = "export"


def write_exports_record(run_dir: Path, exports: Sequence[Any]) -> Path:
    """Write ``<run_dir>/exports.json`` from ``ExportResult``-like objects (``path``, ``format``,
    ``max_abs_diff``, ``notes``); returns its path."""
    entries = [
        {
            "format": str(export.format),
            "path": str(export.path),
            "bytes": _size(Path(export.path)),
            "max_abs_diff": _finite_or_none(getattr(export, "max_abs_diff", None)),
            "notes": [str(note) for note in getattr(export, "notes", ())],
        }
        for export in exports
    ]
    path = Path(run_dir) / EXPORTS_FILENAME
    write_text_atomically(path, json.dumps({"exports": entries}, indent=2) + "\n")
    return path


def read_exports(run_dir: Path) -> list[dict[str, Any]]:
    """The run's exports: ``exports.json`` when present and readable, else the files of ``export/``
    (``max_abs_diff`` ``None``); an empty list when there are neither."""
    path = Path(run_dir) / EXPORTS_FILENAME
    if path.is_file():
        try:
            entries = json.loads(path.read_text(encoding="utf-8")).get("exports")
        except (OSError, ValueError, AttributeError) as error:
            log.warning("Ignoring unreadable %s (%s); listing %s/ instead.", path, error, EXPORT_FOLDER)
        else:
            if isinstance(entries, list):
                return [_entry(entry) for entry in entries if isinstance(entry, dict)]
    folder = Path(run_dir) / EXPORT_FOLDER
    files = sorted(file for file in folder.iterdir() if file.is_file()) if folder.is_dir() else []
    return [
        {
            "format": file.suffix.lstrip(".") or "?",
            "path": str(file),
            "bytes": _size(file),
            "max_abs_diff": None,
        }
        for file in files
    ]


def _entry(raw: dict[str, Any]) -> dict[str, Any]:
    """An entry with the keys the report reads, whatever the file held."""
    path = Path(str(raw.get("path", "")))
    size, notes = raw.get("bytes"), raw.get("notes")
    return {
        "format": str(raw.get("format", "?")),
        "path": str(path),
        "bytes": size if isinstance(size, int) else _size(path),
        "max_abs_diff": _finite_or_none(raw.get("max_abs_diff")),
        "notes": [str(note) for note in notes] if isinstance(notes, list) else [],
    }


def _size(path: Path) -> int | None:
    """The file's size, or the total of a folder's files (some formats write a folder)."""
    try:
        if path.is_dir():
            return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
        return path.stat().st_size
    except OSError:
        return None


def _finite_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
