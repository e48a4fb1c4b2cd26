"""``metrics.csv``: one row per epoch with every logged metric, readable without any tool.

The file is rewritten atomically at each epoch end with the union of all columns seen so far, so a
metric that appears later (evaluation metrics every ``eval_interval`` epochs) still gets its column.
``hparams.csv`` beside it holds every hyperparameter as a ``key,value`` row (dotted keys, values as JSON
except plain strings), one file a spreadsheet, ``grep`` or ``diff`` reads like the metrics.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.plugins.hookspecs import Register, hookimpl


@attrs.frozen
class CsvOptions:
    """Options of the ``csv`` logger."""

    filename: str = "metrics.csv"
    step_key: str = "epoch"
    hparams_filename: str = "hparams.csv"


class CsvLogger:
    """Collects epoch-level metrics (those logged with an ``epoch`` key) into one CSV file."""

    def __init__(self, options: CsvOptions, run_dir: Path) -> None:
        self.path = Path(run_dir) / options.filename
        self.hparams_path = Path(run_dir) / options.hparams_filename
        self.step_key = options.step_key
        self.rows: list[dict[str, Any]] = _read_rows(self.path)

    def log_hyperparameters(self, params: Mapping[str, Any]) -> None:
        """Write ``hparams.csv``: one ``key,value`` row per (dotted) hyperparameter, keys sorted."""
        rows = [{"key": key, "value": _cell(value)} for key, value in sorted(params.items())]
        _write_atomically(self.hparams_path, ["key", "value"], rows)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Record an epoch row (metrics without ``epoch`` are per-iteration and ignored)."""
        if self.step_key not in metrics:
            return
        self.rows = [row for row in self.rows if str(row.get(self.step_key)) != str(metrics[self.step_key])]
        self.rows.append(dict(metrics))
        self._write()

    def close(self) -> None:
        """Nothing buffered: each epoch is written when logged."""

    def _write(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns.extend(key for key in row if key not in columns)
        _write_atomically(self.path, columns, self.rows)


def _cell(value: Any) -> str:
    """A hyperparameter as text: strings as they are, anything else as JSON (``null``, ``[320, 320]``)."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _write_atomically(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Existing rows (a resumed run appends to its own metrics.csv)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@hookimpl
def register_loggers(register: Register) -> None:
    """Register the ``csv`` logger, on in every run."""
    register(
        "csv",
        CsvLogger,
        options=CsvOptions,
        description="metrics.csv in the run directory (always on)",
        always_on=True,
    )
