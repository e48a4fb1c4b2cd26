"""Reading finished (or interrupted) run directories back: summaries, listings and comparisons.

Only the plain files a run leaves are read (``config.yaml``, ``metrics.csv``, ``lineage.json``), never its
checkpoints, so ``yolox-sdk runs compare`` is instant and works on runs whose plugins or SDK version are
not installed here: the config is compared as written, not re-validated.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import yaml

from yolox_sdk.config.loader import flatten_dict
from yolox_sdk.engine.lineage import read_lineage
from yolox_sdk.engine.run_dir import CONFIG_FILENAME, config_dict_hash
from yolox_sdk.errors import RunDirectoryError
from yolox_sdk.yaml_files import load_yaml_file

log = logging.getLogger(__name__)

METRICS_FILENAME = "metrics.csv"
STEP_KEY = "epoch"
MAP_METRIC = "val/mAP"
ABSENT = object()


@attrs.frozen
class RunSummary:
    """What a run directory says about its run.

    Attributes:
        path: the run directory.
        config: the resolved config with dotted keys (``training.lr``).
        metrics: each metric column of ``metrics.csv`` as its values in epoch order (blank cells skipped).
        epochs: epochs completed (the largest ``epoch`` in ``metrics.csv``; 0 before the first one ends).
        lineage: the run's ``lineage.json`` (empty for runs written before lineage existed).
        config_hash: the short config hash (the one in the default run name).
    """

    path: Path
    config: dict[str, Any]
    metrics: dict[str, list[float]]
    epochs: int
    lineage: dict[str, Any]
    config_hash: str

    @property
    def name(self) -> str:
        """The run directory's name."""
        return self.path.name

    def best(self, metric: str) -> float | None:
        """The best value of ``metric`` (lowest for losses, highest otherwise), ``None`` if never logged."""
        values = self.metrics.get(metric)
        if not values:
            return None
        return min(values) if _lower_is_better(metric) else max(values)

    def final(self, metric: str) -> float | None:
        """The last logged value of ``metric``, ``None`` if never logged."""
        values = self.metrics.get(metric)
        return values[-1] if values else None


def _lower_is_better(metric: str) -> bool:
    return "loss" in metric


def read_run(path: Path | str) -> RunSummary:
    """Read a run directory (one holding the ``config.yaml`` training wrote).

    Raises:
        RunDirectoryError: when ``path`` is not a directory or has no readable ``config.yaml``.
    """
    path = Path(path)
    raw_config = _read_run_config(path)
    metrics, epochs = _read_metrics(path / METRICS_FILENAME)
    lineage = read_lineage(path)
    return RunSummary(
        path=path,
        config=flatten_dict(raw_config),
        metrics=metrics,
        epochs=epochs,
        lineage=lineage,
        config_hash=lineage.get("config_hash") or config_dict_hash(raw_config),
    )


def _read_run_config(path: Path) -> dict[str, Any]:
    config_path = path / CONFIG_FILENAME
    if not path.is_dir() or not config_path.is_file():
        what = "does not exist" if not path.exists() else f"has no {CONFIG_FILENAME}"
        raise RunDirectoryError(
            f"{path} is not a run directory: it {what}. A run directory is the folder training creates under "
            f"monitoring.output_dir (e.g. runs/yolox-nano-1a2b3c4d) holding {CONFIG_FILENAME} and "
            f"{METRICS_FILENAME}; `yolox-sdk runs list OUTPUT_DIR` shows the runs there."
        )
    try:
        data = load_yaml_file(config_path)[0]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise RunDirectoryError(
            f"Cannot read {config_path} ({error}). It should be the YAML config training wrote; restore it "
            "from the run's checkpoint (its config is stored inside) or remove the run directory."
        ) from error
    if not isinstance(data, dict):
        raise RunDirectoryError(
            f"{config_path} does not hold a config mapping (found {type(data).__name__}). It should be the "
            "YAML config training wrote; restore it or remove the run directory."
        )
    return data


def _read_metrics(path: Path) -> tuple[dict[str, list[float]], int]:
    """Numeric columns of ``metrics.csv`` and the epochs completed; empty for a run without one yet."""
    if not path.is_file():
        return {}, 0
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rows.sort(key=lambda row: _number(row.get(STEP_KEY)) or 0.0)
    metrics: dict[str, list[float]] = {}
    for row in rows:
        for key, cell in row.items():
            value = _number(cell)
            if key is not None and value is not None:
                metrics.setdefault(key, []).append(value)
    epochs = int(max(metrics.get(STEP_KEY, [0.0])))
    return metrics, epochs


def _number(cell: str | None) -> float | None:
    """A metrics.csv cell as a finite float, ``None`` for a blank or non-numeric cell."""
    if not cell:
        return None
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# ----- comparison -----------------------------------------------------------------------------------------


@attrs.frozen
class MetricComparison:
    """One metric of two runs: final and best values, and B - A."""

    name: str
    a_final: float | None
    b_final: float | None
    a_best: float | None
    b_best: float | None

    @property
    def final_delta(self) -> float | None:
        """``b_final - a_final`` when both runs logged the metric."""
        return _delta(self.a_final, self.b_final)

    @property
    def best_delta(self) -> float | None:
        """``b_best - a_best`` when both runs logged the metric."""
        return _delta(self.a_best, self.b_best)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "a_final": self.a_final,
            "b_final": self.b_final,
            "final_delta": self.final_delta,
            "a_best": self.a_best,
            "b_best": self.b_best,
            "best_delta": self.best_delta,
        }


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


@attrs.frozen
class LineageComparison:
    """One lineage fact of two runs (``None`` where a run does not record it)."""

    name: str
    a: Any
    b: Any

    @property
    def same(self) -> bool | None:
        """Whether both runs share it; ``None`` when either run lacks a lineage record."""
        return None if self.a is ABSENT or self.b is ABSENT else self.a == self.b


@attrs.frozen
class RunComparison:
    """How run B differs from run A."""

    a: RunSummary
    b: RunSummary
    config_diff: list[tuple[str, Any, Any]]
    metrics: list[MetricComparison]
    lineage: list[LineageComparison]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``; a config key one run lacks is left out of that run's side."""
        return {
            "a": _run_header(self.a),
            "b": _run_header(self.b),
            "config_diff": [_diff_entry(key, a, b) for key, a, b in self.config_diff],
            "metrics": {m.name: m.to_dict() for m in self.metrics},
            "epochs": {"a": self.a.epochs, "b": self.b.epochs, "delta": self.b.epochs - self.a.epochs},
            "lineage": {
                item.name: {"a": _json_value(item.a), "b": _json_value(item.b), "same": item.same}
                for item in self.lineage
            },
        }


def _run_header(run: RunSummary) -> dict[str, Any]:
    return {"path": str(run.path), "epochs": run.epochs, "config_hash": run.config_hash}


def _diff_entry(key: str, a: Any, b: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"key": key}
    if a is not ABSENT:
        entry["a"] = a
    if b is not ABSENT:
        entry["b"] = b
    return entry


def _json_value(value: Any) -> Any:
    return None if value is ABSENT else value


def compared_metrics(a: RunSummary, b: RunSummary) -> list[str]:
    """The metrics worth comparing: every ``val/*`` metric and the training loss, in a stable order."""
    names = set(a.metrics) | set(b.metrics)
    val = sorted(name for name in names if name.startswith("val/"))
    if MAP_METRIC in val:
        val.remove(MAP_METRIC)
        val.insert(0, MAP_METRIC)
    return val + [name for name in ("train/total_loss",) if name in names]


def diff_configs(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, A value, B value)`` for every key whose values differ (``ABSENT`` where missing)."""
    keys = sorted(set(a) | set(b))
    return [
        (key, a.get(key, ABSENT), b.get(key, ABSENT))
        for key in keys
        if a.get(key, ABSENT) != b.get(key, ABSENT)
    ]


LINEAGE_FACTS: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
    ("dataset fingerprint", lambda lineage: (lineage.get("dataset") or {}).get("sha256")),
    ("parent weights sha256", lambda lineage: (lineage.get("parent") or {}).get("sha256")),
    ("git commit", lambda lineage: (lineage.get("git") or {}).get("commit")),
    ("sdk version", lambda lineage: (lineage.get("versions") or {}).get("sdk")),
)


def _lineage_fact(lineage: dict[str, Any], extract: Callable[[dict[str, Any]], Any]) -> Any:
    return extract(lineage) if lineage else ABSENT


def compare_runs(a: RunSummary, b: RunSummary) -> RunComparison:
    """Config differences, metric deltas (B - A) and shared lineage of two runs."""
    metrics = [
        MetricComparison(name, a.final(name), b.final(name), a.best(name), b.best(name))
        for name in compared_metrics(a, b)
    ]
    lineage = [
        LineageComparison(name, _lineage_fact(a.lineage, extract), _lineage_fact(b.lineage, extract))
        for name, extract in LINEAGE_FACTS
    ]
    return RunComparison(a, b, diff_configs(a.config, b.config), metrics, lineage)


def list_runs(output_dir: Path | str) -> list[RunSummary]:
    """Every run directory directly under ``output_dir``, by name; an unreadable one is skipped with a
    warning so one damaged run does not hide the others.

    Raises:
        RunDirectoryError: when ``output_dir`` is not a directory.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise RunDirectoryError(
            f"{output_dir} is not a directory. Give the folder runs are written to (monitoring.output_dir, "
            "'runs' by default)."
        )
    runs = []
    for child in sorted(output_dir.iterdir()):
        if child.is_dir() and (child / CONFIG_FILENAME).is_file():
            try:
                runs.append(read_run(child))
            except RunDirectoryError as error:
                log.warning("Skipping %s: %s", child, error)
    return runs
