"""A run's ``metrics.csv`` as epoch-aligned columns, the numbers the training plots are drawn from.

Unlike ``engine.runs`` (which keeps only the values of each metric), every column here has one entry
per epoch, ``NaN`` where the epoch logged nothing (validation runs every ``evaluation.eval_interval``
epochs, so most ``val/*`` cells are blank), so a value can be plotted at its own epoch. A resumed run
re-logs the epochs it repeats; the csv logger replaces those rows, and should a file still hold an
epoch twice, the row written last wins.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import attrs

from yolox_sdk.errors import RunDirectoryError

METRICS_FILENAME = "metrics.csv"
EPOCH_COLUMN = "epoch"


@attrs.frozen
class MetricsTable:
    """``metrics.csv`` by column.

    Attributes:
        path: the file read.
        epochs: the epochs, ascending, each once.
        columns: per metric, one float per epoch of ``epochs`` (``NaN`` for a blank or non-numeric cell).
    """

    path: Path
    epochs: tuple[int, ...]
    columns: dict[str, tuple[float, ...]]

    def names(self, prefix: str = "", suffix: str = "") -> list[str]:
        """The metric names starting with ``prefix`` and ending with ``suffix``, in file order."""
        return [name for name in self.columns if name.startswith(prefix) and name.endswith(suffix)]

    def logged(self, name: str) -> bool:
        """Whether ``name`` has at least one finite value."""
        return any(math.isfinite(value) for value in self.columns.get(name, ()))


def read_metrics_table(run_dir: Path) -> MetricsTable:
    """Read ``<run_dir>/metrics.csv``.

    Raises:
        RunDirectoryError: the file is missing or unreadable, has no ``epoch`` column, or an ``epoch`` cell
            is not a whole number.
    """
    path = Path(run_dir) / METRICS_FILENAME
    if not path.is_file():
        raise RunDirectoryError(
            f"{run_dir} has no {METRICS_FILENAME}: the run logged no epoch yet, or it is not a run directory. "
            "Training writes metrics.csv at the end of every epoch; let the run finish its first epoch "
            "(or resume it with `yolox-sdk run CONFIG --resume RUN_DIR`) and build the report again."
        )
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise RunDirectoryError(
            f"Cannot read {path} ({error}). It should be the CSV the csv logger wrote; restore it or "
            "remove it and resume the run."
        ) from error
    if EPOCH_COLUMN not in header:
        raise RunDirectoryError(
            f"{path} has no '{EPOCH_COLUMN}' column (columns: {', '.join(header) or 'none'}). It should be "
            "the metrics.csv training wrote, whose first column is the epoch."
        )
    by_epoch = {_epoch(row, path, line): row for line, row in enumerate(rows, start=2)}
    epochs = tuple(sorted(by_epoch))
    names = [name for name in header if name != EPOCH_COLUMN]
    columns = {name: tuple(_number(by_epoch[epoch].get(name)) for epoch in epochs) for name in names}
    return MetricsTable(path=path, epochs=epochs, columns=columns)


def _epoch(row: dict[str, str | None], path: Path, line: int) -> int:
    cell = (row.get(EPOCH_COLUMN) or "").strip()
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value) or value < 0:
        raise RunDirectoryError(
            f"{path}, line {line}: epoch {cell!r} is not a whole number. Every row of metrics.csv starts "
            "with the epoch it describes; fix or delete that row."
        )
    return int(value)


def _number(cell: str | None) -> float:
    try:
        return float(cell) if cell else math.nan
    except ValueError:
        return math.nan
