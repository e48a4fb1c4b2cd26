"""What ``yolox-sdk run`` and ``yolox-sdk train`` end with: the best epoch and its metrics, where every file
of the run is, and the commands to run next with the run's own paths.

``run_summary`` gathers it as JSON-ready data (the ``--json`` document); ``summary_panel`` draws it as the
final panel and ``quiet_lines`` as the few lines of ``--quiet``. Only files that exist are named.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolox_sdk.cli.output import cell_text, headline, panel
from yolox_sdk.config.schema import Config
from yolox_sdk.engine.progress import counted, duration

if TYPE_CHECKING:
    from rich.panel import Panel

# The best epoch's metrics the panel shows (all of them are in the JSON), with a metric plugin's own.
PANEL_METRICS = ("val/mAP", "val/mAP50", "val/mAP75")
COCO_AREA_METRICS = ("_small", "_medium", "_large")


def run_summary(config: Config, train: Any, run: Any = None) -> dict[str, Any]:
    """The summary of a finished run as data.

    Args:
        config: the config the command trained with.
        train: the ``TrainResult``.
        run: the ``RunResult`` of ``yolox-sdk run`` (evaluation, report, exports), ``None`` for ``train``.
    """
    run_dir = Path(train.run_dir)
    which = "test" if config.data.test_path else "val"
    evaluation = _evaluation(run, run_dir, which) if run is not None else None
    exports = [
        {"format": str(e.format), "path": str(e.path), "max_abs_diff": getattr(e, "max_abs_diff", None)}
        for e in (run.exports if run is not None else [])
    ]
    files = _files(run_dir, train, evaluation, exports)
    summary = {
        "run_dir": str(run_dir),
        "epochs": train.epochs_completed,
        "wall_seconds": round(float(train.wall_seconds), 1),
        "train_images_per_second": round(float(train.train_images_per_second), 2),
        "best_epoch": _best_epoch(config, run_dir),
        "best_checkpoint": str(train.best_checkpoint),
        "last_checkpoint": str(train.last_checkpoint),
        "evaluation": evaluation,
        "exports": exports,
        "files": files,
    }
    summary["next"] = next_commands(config, summary, which, run)
    return summary


def _best_epoch(config: Config, run_dir: Path) -> dict[str, Any] | None:
    """The epoch ``best.pt`` holds and its row of ``metrics.csv`` (validation metrics, training loss)."""
    from yolox_sdk.config.schema import BEST_METRICS
    from yolox_sdk.errors import YoloxSdkError
    from yolox_sdk.reporting.metrics_table import read_metrics_table
    from yolox_sdk.reporting.training_plots import best_epoch

    try:
        table = read_metrics_table(run_dir)
    except YoloxSdkError:  # no csv logger, or a damaged file: the panel says less, the run is fine
        return None
    metric, lower = config.evaluation.save_best_metric, False
    if metric not in BEST_METRICS:
        from yolox_sdk.evaluation.runner import best_metric_lower_is_better

        try:
            lower = best_metric_lower_is_better(config.evaluation)
        except YoloxSdkError:
            lower = False
    best = best_epoch(table, metric, lower)
    if best is None:
        return None
    index = table.epochs.index(best.epoch)
    metrics = {
        name: values[index]
        for name, values in table.columns.items()
        if (name.startswith("val/") or name == "train/total_loss") and math.isfinite(values[index])
    }
    return {"epoch": best.epoch, "metric": best.metric, "value": best.value, "metrics": metrics}


def _evaluation(run: Any, run_dir: Path, which: str) -> dict[str, Any] | None:
    if run.evaluation is None:
        return None
    report = run.report
    return {
        "split": which,
        "metrics": dict(run.evaluation.metrics),
        "recommended_conf": None if report is None else report.recommended_conf,
        "json": str(run_dir / f"eval_{which}.json"),
        "folder": str(run_dir / f"eval_{which}"),
        "image_folder": str(Path(report.image_paths[0]).parent) if report and report.image_paths else None,
    }


def _files(
    run_dir: Path, train: Any, evaluation: dict[str, Any] | None, exports: list[dict[str, Any]]
) -> dict[str, str]:
    """The run's files by name, those that exist."""
    candidates = {
        "run_dir": run_dir,
        "best_checkpoint": Path(train.best_checkpoint),
        "last_checkpoint": Path(train.last_checkpoint),
        "metrics": run_dir / "metrics.csv",
        "config": run_dir / "config.yaml",
        "evaluation": Path(evaluation["json"]) if evaluation else None,
        "evaluation_figures": Path(evaluation["folder"]) if evaluation else None,
        "report": run_dir / "report.html",
        "plots": run_dir / "plots",
    }
    files = {name: str(path) for name, path in candidates.items() if path is not None and path.exists()}
    for export in exports:
        if Path(export["path"]).exists():
            files[f"export_{export['format']}"] = export["path"]
    return files


def next_commands(config: Config, summary: dict[str, Any], which: str, run: Any) -> list[str]:
    """``eval``, ``export`` (or ``benchmark`` once exported), ``predict`` and, after ``train``, ``report``,
    each with the run's checkpoint and data."""
    best = shlex.quote(summary["best_checkpoint"])
    data = getattr(config.data, f"{which}_path") or config.data.val_path
    data_options = ""
    if data is not None:
        data_options = f" --data {shlex.quote(str(data))}"
        split = getattr(config.data, f"{which}_split")
        if split:
            data_options += f" --split {shlex.quote(split)}"
        if config.data.format != "auto":
            data_options += f" --format {shlex.quote(config.data.format)}"
        for key, value in config.data.format_options.items():
            text = value if isinstance(value, str) else json.dumps(value)
            data_options += f" --format-option {shlex.quote(f'{key}={text}')}"
    commands = [f"yolox-sdk eval {best}{data_options or ' --data DATA'}"]
    if summary["exports"]:
        if data is not None:
            commands.append(f"yolox-sdk benchmark {best}{data_options}")
    else:
        commands.append(f"yolox-sdk export {best} --format onnx")
    evaluation = summary["evaluation"] or {}
    source = shlex.quote(evaluation["image_folder"]) if evaluation.get("image_folder") else "IMAGES"
    conf = " --conf auto" if evaluation.get("recommended_conf") is not None else ""
    commands.append(f"yolox-sdk predict {best} {source}{conf}")
    if run is None:
        commands.append(f"yolox-sdk report {shlex.quote(summary['run_dir'])}")
    return commands


def summary_panel(summary: dict[str, Any], title: str) -> Panel:
    """The final panel: best epoch, evaluation, files, next commands."""
    epochs = counted(summary["epochs"], "epoch", "epochs")
    header = (
        f"{title}: {epochs} in {duration(summary['wall_seconds'])} "
        f"({summary['train_images_per_second']:.1f} train images/s)"
    )
    return panel(
        header,
        [
            ("Best epoch", [_best_line(summary)]),
            ("Evaluation of the best checkpoint", _evaluation_lines(summary)),
            ("Files", _file_lines(summary)),
            ("Next", summary["next"]),
        ],
    )


def _best_line(summary: dict[str, Any]) -> str:
    best = summary["best_epoch"]
    if best is None:
        return "No validation metric was measured (no validation data): best.pt is the last epoch."
    metrics = best["metrics"]
    shown = [name for name in PANEL_METRICS if name in metrics]
    shown += [
        name
        for name in metrics
        if name.startswith("val/")
        and name not in shown
        and not name.startswith(("val/mAP", "val/AR"))  # COCO's other numbers: in the JSON and metrics.csv
    ]
    values = [f"{name} {cell_text(metrics[name])}" for name in shown]
    if "train/total_loss" in metrics:
        values.append(f"train loss {metrics['train/total_loss']:.3f}")
    return f"Epoch {best['epoch']} of {summary['epochs']} (best by {best['metric']}): {', '.join(values)}"


def _evaluation_lines(summary: dict[str, Any]) -> list[str]:
    evaluation = summary["evaluation"]
    if evaluation is None:
        return []
    lines = [f"On {evaluation['split']}: {headline(evaluation['metrics'])}"]
    if evaluation["recommended_conf"] is not None:
        lines.append(
            f"Recommended confidence threshold: {evaluation['recommended_conf']:.3f}, stored in best.pt and "
            "its exports (predict --conf auto)"
        )
    return lines


def _file_lines(summary: dict[str, Any]) -> list[str]:
    files = summary["files"]
    labels = (
        ("run_dir", "Run directory"),
        ("best_checkpoint", "Best checkpoint"),
        ("last_checkpoint", "Last checkpoint"),
        ("metrics", "Metrics"),
        ("evaluation", "Evaluation"),
        ("report", "Report"),
    )
    notes = {"evaluation": ("evaluation_figures", "figures in"), "report": ("plots", "plots in")}
    lines = []
    for name, label in labels:
        if name in files:
            note_file, note = notes.get(name, ("", ""))
            extra = f" ({note} {files[note_file]})" if note_file in files else ""
            lines.append(f"{label}: {files[name]}{extra}")
    for export in summary["exports"]:
        if f"export_{export['format']}" in files:
            diff = export["max_abs_diff"]
            note = f" (max abs diff vs PyTorch {diff:.2e})" if diff is not None else ""
            lines.append(f"Exported {export['format']}: {export['path']}{note}")
    return lines


def quiet_lines(summary: dict[str, Any]) -> list[str]:
    """``--quiet``: the evaluation's headline (``run``), the best checkpoint and the run directory."""
    lines = []
    if summary["evaluation"] is not None:
        lines.append(f"{summary['evaluation']['split']}: {headline(summary['evaluation']['metrics'])}")
    lines.append(f"Best checkpoint: {summary['best_checkpoint']}")
    lines.append(f"Run directory: {summary['run_dir']}")
    return lines
