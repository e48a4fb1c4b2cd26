"""Training curves of a run as PNG files plus the numbers behind them as JSON, in ``<run>/plots/``.

Drawn from ``metrics.csv`` (``metrics_table``) with matplotlib's Agg canvas on ``Figure`` objects, as the
evaluation's figures are, so nothing global changes in the caller's process::

    losses.png          each train/*_loss component per epoch, one panel each
    learning_rate.png   lr (at the epoch's end), and train/lr (the epoch's mean) in runs written before it was dropped
    val_metrics.png     val/mAP and val/mAP50 at the evaluated epochs, the best epoch marked
    resources.png       images/s, data-wait fraction, memory (MB) and utilisation (%), when logged
    training_curves.json   epochs, every column (null where blank), the best epoch, the files

Each value is drawn at its own epoch and only where it was logged, so a run evaluated every N epochs
shows its N-spaced val points joined, and a one-epoch run shows single markers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from yolox_sdk.reporting.metrics_table import MetricsTable

CURVES_JSON = "training_curves.json"
LOSS_PREFIX, LOSS_SUFFIX = "train/", "_loss"
LEARNING_RATE_COLUMNS = ("lr", "train/lr")
VAL_COLUMNS = ("val/mAP", "val/mAP50")
RESOURCE_PREFIX = "resources/"
# How resource columns share panels: (title, y label, which columns).
RESOURCE_PANELS = (
    ("Throughput", "images / s", lambda name: name.endswith("images_per_s")),
    ("Time waiting for data", "fraction of the epoch", lambda name: name.endswith("data_wait_fraction")),
    ("Memory", "MB", lambda name: name.endswith("_mb")),
    ("Utilisation", "%", lambda name: name.endswith("_percent")),
)
PANEL_COLUMNS = 3
PANEL_INCHES = (4.6, 3.2)


@attrs.frozen
class BestEpoch:
    """The epoch ``best.pt`` was saved at, as the run's ``evaluation.save_best_metric`` decides it."""

    metric: str
    epoch: int
    value: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"metric": self.metric, "epoch": self.epoch, "value": self.value}


def best_epoch(
    table: MetricsTable, save_best_metric: str = "mAP", lower_is_better: bool = False
) -> BestEpoch | None:
    """The first epoch with the highest ``val/<metric>`` (the lowest for a metric plugin's lower-is-better
    name, and the lowest ``train/total_loss`` for ``loss``), as the checkpoint policy keeps it (a later
    tie does not replace ``best.pt``); ``None`` if never logged."""
    name = "train/total_loss" if save_best_metric == "loss" else f"val/{save_best_metric}"
    values = np.array(table.columns.get(name, ()), dtype=np.float64)
    if not np.isfinite(values).any():
        return None
    scores = -values if save_best_metric == "loss" or lower_is_better else values
    index = int(np.nanargmax(np.where(np.isfinite(scores), scores, -np.inf)))
    return BestEpoch(metric=name, epoch=table.epochs[index], value=float(values[index]))


def write_training_plots(
    table: MetricsTable, out_dir: Path, save_best_metric: str = "mAP", lower_is_better: bool = False
) -> dict[str, Path]:
    """Write the figures of the module docstring that have data, and ``training_curves.json``.

    Returns the files written by name (``losses``, ``learning_rate``, ``val_metrics``, ``resources``,
    ``training_curves``); a figure without any logged value is not written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    best = best_epoch(table, save_best_metric, lower_is_better)
    figures = {
        "losses": _losses_figure(table),
        "learning_rate": _learning_rate_figure(table),
        "val_metrics": _val_figure(table, best),
        "resources": _resources_figure(table),
    }
    files = {name: _save(figure, out_dir / f"{name}.png") for name, figure in figures.items() if figure}
    files["training_curves"] = out_dir / CURVES_JSON
    content = curves_to_dict(table, best)
    content["files"] = {name: path.name for name, path in files.items()}
    files["training_curves"].write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return files


def curves_to_dict(table: MetricsTable, best: BestEpoch | None) -> dict[str, Any]:
    """The numbers of the figures: epochs, each column with ``null`` for blank cells, the best epoch."""
    return {
        "source": table.path.name,
        "epochs": list(table.epochs),
        "metrics": {
            name: [value if math.isfinite(value) else None for value in values]
            for name, values in table.columns.items()
        },
        "best": None if best is None else best.to_dict(),
    }


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)
    return path


def _panels(count: int, title: str) -> tuple[Figure, list[Any]]:
    rows = math.ceil(count / PANEL_COLUMNS)
    columns = math.ceil(count / rows)  # rows as even as they can be: 4 panels are 2 x 2, not 3 + 1
    figure = Figure(figsize=(PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows + 0.4))
    figure.suptitle(title)
    return figure, [figure.add_subplot(rows, columns, index + 1) for index in range(count)]


def _draw(axes: Any, table: MetricsTable, name: str, label: str | None = None) -> None:
    """``name`` at the epochs it was logged, points joined."""
    values = np.array(table.columns[name], dtype=np.float64)
    logged = np.isfinite(values)
    epochs = np.array(table.epochs)[logged]
    axes.plot(
        epochs, values[logged], marker="o", markersize=4 if len(epochs) < 60 else 0, label=label or name
    )


def _finish(axes: Any, ylabel: str, legend: bool = False) -> None:
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.xaxis.get_major_locator().set_params(integer=True)
    if legend:
        axes.legend(loc="best", fontsize=8)


def _losses_figure(table: MetricsTable) -> Figure | None:
    names = [name for name in table.names(LOSS_PREFIX, LOSS_SUFFIX) if table.logged(name)]
    if not names:
        return None
    figure, panels = _panels(len(names), "Training losses per epoch (mean over the epoch's batches)")
    for axes, name in zip(panels, names, strict=True):
        _draw(axes, table, name)
        axes.set_title(name, fontsize=10)
        _finish(axes, "loss")
    figure.tight_layout()
    return figure


def _learning_rate_figure(table: MetricsTable) -> Figure | None:
    names = [name for name in LEARNING_RATE_COLUMNS if table.logged(name)]
    if not names:
        return None
    figure = Figure(figsize=(7, 4))
    axes = figure.add_subplot(1, 1, 1)
    labels = {"lr": "lr at the epoch's end", "train/lr": "train/lr (mean over the epoch)"}
    for name in names:
        _draw(axes, table, name, labels[name])
    axes.set_title("Learning rate")
    _finish(axes, "learning rate", legend=True)
    figure.tight_layout()
    return figure


def _val_figure(table: MetricsTable, best: BestEpoch | None) -> Figure | None:
    names = [name for name in VAL_COLUMNS if table.logged(name)]
    if not names:
        return None
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot(1, 1, 1)
    for name in names:
        _draw(axes, table, name)
    if best is not None:
        axes.axvline(
            best.epoch,
            color="red",
            linestyle="--",
            linewidth=1,
            label=f"best epoch {best.epoch} ({best.metric} {best.value:.4f})",
        )
    axes.set_title("Validation mAP at the evaluated epochs")
    axes.set_ylim(bottom=0)
    _finish(axes, "mAP", legend=True)
    figure.tight_layout()
    return figure


def _resources_figure(table: MetricsTable) -> Figure | None:
    names = [name for name in table.names(RESOURCE_PREFIX) if table.logged(name)]
    groups = [(title, ylabel, [n for n in names if matches(n)]) for title, ylabel, matches in RESOURCE_PANELS]
    grouped = {name for _, _, members in groups for name in members}
    groups += [(name.removeprefix(RESOURCE_PREFIX), "", [name]) for name in names if name not in grouped]
    groups = [group for group in groups if group[2]]
    if not groups:
        return None
    figure, panels = _panels(len(groups), "Resources per epoch")
    for axes, (title, ylabel, members) in zip(panels, groups, strict=True):
        for name in members:
            _draw(axes, table, name, name.removeprefix(RESOURCE_PREFIX))
        axes.set_title(title, fontsize=10)
        _finish(axes, ylabel, legend=len(members) > 1)
    figure.tight_layout()
    return figure
