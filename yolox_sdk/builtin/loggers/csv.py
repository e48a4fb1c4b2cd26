"""``metrics.csv``: one row per epoch with every logged metric, readable without any tool.

The file is rewritten atomically at each epoch end with the union of all columns seen so far, so a
metric that appears later (evaluation metrics every ``eval_interval`` epochs) still gets its column.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.plugins.hookspecs import hookimpl


@attrs.frozen
class CsvOptions:
    """Options of the ``csv`` logger."""

    filename: str = "metrics.csv"
    step_key: str = "epoch"


class CsvLogger:
    """Collects epoch-level metrics (those logged with an ``epoch`` key) into one CSV file."""

    def __init__(self, options: CsvOptions, run_dir: Path) -> None:
        self.path = Path(run_dir) / options.filename
        self.step_key = options.step_key
        self.rows: list[dict[str, Any]] = _read_rows(self.path)

    def log_hyperparameters(self, params: Mapping[str, Any]) -> None:
        """Hyperparameters live in the run's config.yaml; nothing to do here."""

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
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(temporary, self.path)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Existing rows (a resumed run appends to its own metrics.csv)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@hookimpl
def register_loggers(register) -> None:
    register("csv", CsvLogger, options=CsvOptions, description="metrics.csv in the run directory (always on)")
