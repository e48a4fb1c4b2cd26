"""Everything the run report reads from a run directory, read once and tolerant of what is missing.

Only ``config.yaml`` and ``metrics.csv`` are required (they make a folder a run directory with at least
one epoch); the evaluation (``eval_<split>.json`` and ``eval_<split>/``), the exports and the lineage
are optional, and every file's content is untrusted: values are checked for type where they are used.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.engine.run_dir import CONFIG_FILENAME
from yolox_sdk.engine.runs import read_run
from yolox_sdk.errors import YoloxSdkError
from yolox_sdk.reporting.exports_record import read_exports
from yolox_sdk.reporting.metrics_table import MetricsTable, read_metrics_table
from yolox_sdk.yaml_files import load_yaml_file

log = logging.getLogger(__name__)

# The split run_pipeline evaluates: test when the config has one, else val.
EVALUATION_SPLITS = ("test", "val")
GALLERY_FOLDER = "worst_images"


@attrs.frozen
class EvaluationFiles:
    """One evaluation of the best checkpoint: ``eval_<split>.json`` and its figures folder.

    Attributes:
        split: ``val`` or ``test`` (or whatever ``eval_<split>.json`` names).
        json_path: the metrics file.
        content: its content (a mapping; keys checked where read).
        folder: ``eval_<split>/`` (may not exist).
        errors: ``errors.json`` of the folder when present (the per-class error analysis).
    """

    split: str
    json_path: Path
    content: dict[str, Any]
    folder: Path
    errors: dict[str, Any] | None

    def figure(self, name: str) -> Path | None:
        """``<folder>/<name>`` when that file exists."""
        path = self.folder / name
        return path if path.is_file() else None

    def gallery(self) -> list[Path]:
        """The worst-image files, worst first (their names start with the rank)."""
        folder = self.folder / GALLERY_FOLDER
        return sorted(folder.glob("*.png")) if folder.is_dir() else []


@attrs.frozen
class RunFiles:
    """A run directory's files, as the report uses them.

    Attributes:
        path: the run directory.
        config: ``config.yaml`` as nested data; ``config_text`` its text.
        flat_config: the same with dotted keys (``training.lr``).
        metrics: ``metrics.csv`` by column.
        lineage: ``lineage.json`` (empty when absent).
        evaluation: the best checkpoint's evaluation, ``None`` when none was run.
        exports: the exports (``exports_record.read_exports``), empty when none.
        save_best_metric: ``evaluation.save_best_metric``, what ``best.pt`` was chosen by.
        lower_is_better: whether that is a metric plugin's lower-is-better name (``count_mae``).
    """

    path: Path
    config: dict[str, Any]
    config_text: str
    flat_config: dict[str, Any]
    metrics: MetricsTable
    lineage: dict[str, Any]
    evaluation: EvaluationFiles | None
    exports: list[dict[str, Any]]
    save_best_metric: str = "mAP"
    lower_is_better: bool = False


def read_run_files(run_dir: Path | str) -> RunFiles:
    """Read what the report shows from ``run_dir``.

    Raises:
        RunDirectoryError: ``run_dir`` is not a run directory (no ``config.yaml``) or has no readable
            ``metrics.csv``.
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILENAME).is_file():
        read_run(run_dir)  # raises the "not a run directory" error, which says what one is
    metrics = read_metrics_table(run_dir)  # before read_run, whose reader does not expect a damaged file
    summary = read_run(run_dir)
    config_path = run_dir / CONFIG_FILENAME
    save_best = str(summary.config.get("evaluation.save_best_metric") or "mAP")
    return RunFiles(
        path=run_dir,
        config=load_yaml_file(config_path)[0],
        config_text=config_path.read_text(encoding="utf-8"),
        flat_config=summary.config,
        metrics=metrics,
        lineage=summary.lineage,
        evaluation=find_evaluation(run_dir),
        exports=read_exports(run_dir),
        save_best_metric=save_best,
        lower_is_better=_lower_is_better(config_path, save_best),
    )


def _lower_is_better(config_path: Path, save_best_metric: str) -> bool:
    """Whether ``best.pt`` kept the lowest value: asked of the run's metric plugins, as training did.
    A config this installation cannot load (a plugin missing) counts as higher-is-better, with a warning."""
    from yolox_sdk.config.loader import load_config
    from yolox_sdk.config.schema import BEST_METRICS
    from yolox_sdk.evaluation.runner import best_metric_lower_is_better

    if save_best_metric in BEST_METRICS:
        return False
    try:
        return best_metric_lower_is_better(load_config(config_path).evaluation)
    except YoloxSdkError as error:
        log.warning("Taking the highest %s as the best epoch: %s", save_best_metric, error)
        return False


def find_evaluation(run_dir: Path) -> EvaluationFiles | None:
    """The evaluation ``run`` wrote: ``eval_test.json``, else ``eval_val.json``, else any other
    ``eval_<split>.json``; ``None`` when there is none (or it is unreadable, which is logged)."""
    candidates = [run_dir / f"eval_{split}.json" for split in EVALUATION_SPLITS]
    candidates += sorted(path for path in run_dir.glob("eval_*.json") if path not in candidates)
    for path in candidates:
        if not path.is_file():
            continue
        content = _read_json(path)
        if isinstance(content, dict):
            folder = path.with_suffix("")
            errors = _read_json(folder / "errors.json") if (folder / "errors.json").is_file() else None
            split = path.stem.removeprefix("eval_")
            return EvaluationFiles(split, path, content, folder, errors if isinstance(errors, dict) else None)
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        log.warning("Ignoring unreadable %s (%s).", path, error)
        return None
