"""The ``jsonl`` logger: appends each row a run logs to ``<run dir>/metrics.jsonl``.

One line per call keeps the file readable by ``jq``, pandas (``read_json(lines=True)``) or a tail -f while
the run goes. JSON has no NaN or infinity, so a non-finite value (a loss that blew up) is written as
``null``. A logger must never stop training: a write that fails warns once and the run goes on.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yolox_sdk_jsonl import JsonlOptions

LOGGER = logging.getLogger(__name__)


class JsonlLogger:
    """Writes ``{"hyperparameters": {...}}`` once, then ``{"step": N, metric: value, ...}`` per row."""

    def __init__(self, options: JsonlOptions, run_dir: Path) -> None:
        self.path = run_dir / options.filename
        self.iterations = options.iterations
        self._failed = False

    def log_hyperparameters(self, params: Mapping[str, Any]) -> None:
        """The run's config, flattened to dotted keys (``training.lr``), as the first line."""
        self._append({"hyperparameters": {key: _plain(value) for key, value in params.items()}})

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """One row; per-iteration rows (every key ``iter/...``) only with ``iterations: true``."""
        per_iteration = bool(metrics) and all(key.startswith("iter/") for key in metrics)
        if per_iteration and not self.iterations:
            return
        self._append({"step": int(step), **{key: _number(value) for key, value in metrics.items()}})

    def close(self) -> None:
        """Nothing is buffered: each row is on disk when ``log_metrics`` returns."""

    def _append(self, record: Mapping[str, Any]) -> None:
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, allow_nan=False) + "\n")
        except OSError as error:
            if not self._failed:
                LOGGER.warning(
                    "jsonl logger: cannot write %s (%s); training goes on without it.", self.path, error
                )
            self._failed = True


def _number(value: Any) -> float | None:
    """A metric as a JSON number: NumPy and torch scalars become floats, NaN and infinity ``null``."""
    number = float(value)
    return number if math.isfinite(number) else None


def _plain(value: Any) -> Any:
    """A hyperparameter as JSON can hold it: numbers, strings, booleans, None, lists and mappings."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
