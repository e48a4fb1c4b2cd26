"""The evaluation's figures as PNG files, drawn with matplotlib's Agg canvas (no display needed).

Figures are built on ``matplotlib.figure.Figure`` directly rather than through ``pyplot``, so nothing
global (the backend, the current figure) changes in the caller's process. Each function takes the
numbers it plots, writes one file and returns its path; when there is nothing to plot (a model that
predicts nothing) the figure still renders, saying so.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from yolox_sdk.evaluation.confusion import ConfusionMatrix
from yolox_sdk.evaluation.curves import ConfidenceCurves, PrecisionRecallCurves, RecommendedThreshold
from yolox_sdk.evaluation.error_analysis import ERROR_TYPES, ErrorAnalysis

# Above this many classes the per-class lines are drawn thin and unlabelled: a legend of 80 names hides
# the curves it names.
MAX_LABELLED_CLASSES = 12
# Above this many classes the confusion matrix cells carry no numbers.
MAX_ANNOTATED_CELLS = 30
NO_PREDICTIONS = "no predictions"


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)
    return path


def _say_empty(axes, text: str = NO_PREDICTIONS) -> None:
    axes.text(
        0.5,
        0.5,
        text,
        ha="center",
        va="center",
        fontsize=14,
        color="0.3",
        transform=axes.transAxes,
        bbox={"facecolor": "white", "edgecolor": "0.6", "alpha": 0.9},
    )


def _class_lines(axes, x: np.ndarray, rows: np.ndarray, names: tuple[str, ...], suffixes: list[str]) -> None:
    labelled = len(names) <= MAX_LABELLED_CLASSES
    for row, name, suffix in zip(rows, names, suffixes, strict=True):
        if np.isnan(row).all():
            continue
        if labelled:
            axes.plot(x, row, linewidth=1, label=f"{name}{suffix}")
        else:
            axes.plot(x, row, linewidth=0.5, color="0.7")


def _ap_suffix(value: float) -> str:
    return "" if math.isnan(value) else f" {value:.3f}"


def plot_precision_recall(curves: PrecisionRecallCurves, path: Path, has_predictions: bool) -> Path:
    """``pr_curve.png``: per-class and all-class curves at IoU 0.5 and averaged over 0.5:0.95."""
    figure = Figure(figsize=(12, 5.5))
    panels = (
        ("IoU 0.5", curves.iou50, curves.all_iou50),
        ("IoU 0.5:0.95", curves.iou50_95, curves.all_iou50_95),
    )
    for index, (title, rows, overall) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, 2, index)
        suffixes = [_ap_suffix(float(np.mean(row))) for row in rows]
        _class_lines(axes, curves.recall, rows, curves.class_names, suffixes)
        if not np.isnan(overall).all():
            axes.plot(
                curves.recall,
                overall,
                linewidth=3,
                color="C0" if len(rows) > MAX_LABELLED_CLASSES else "black",
                label=f"all classes{_ap_suffix(float(np.mean(overall)))}",
            )
        if not has_predictions:
            _say_empty(axes)
        axes.set(
            xlim=(0, 1),
            ylim=(0, 1.02),
            xlabel="recall",
            ylabel="precision",
            title=f"Precision-recall, {title} (AP in legend)",
        )
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    return _save(figure, path)


def plot_against_confidence(
    curves: ConfidenceCurves,
    metric: str,
    path: Path,
    recommended: RecommendedThreshold | None,
    has_predictions: bool,
) -> Path:
    """``f1_curve.png`` / ``precision_curve.png`` / ``recall_curve.png``: the metric at IoU 0.5 against the
    confidence threshold, per class and for all classes, with the recommended threshold marked."""
    figure = Figure(figsize=(7, 5.5))
    axes = figure.add_subplot(1, 1, 1)
    rows = getattr(curves, metric)
    _class_lines(axes, curves.thresholds, rows, curves.class_names, [""] * len(rows))
    overall = curves.all(metric)
    if not np.isnan(overall).all():
        axes.plot(curves.thresholds, overall, linewidth=3, color="black", label="all classes")
    if recommended is not None:
        value = getattr(recommended, metric)
        axes.axvline(
            recommended.conf,
            color="red",
            linestyle="--",
            linewidth=1,
            label=f"recommended conf {recommended.conf:.3f} ({metric} {value:.3f})",
        )
    if not has_predictions:
        _say_empty(axes)
    axes.set(
        xlim=(0, 1),
        ylim=(0, 1.02),
        xlabel="confidence threshold",
        ylabel=metric,
        title=f"{metric.capitalize()} against confidence (IoU 0.5)",
    )
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    return _save(figure, path)


def plot_confusion_matrix(matrix: ConfusionMatrix, path: Path, normalized: bool) -> Path:
    """``confusion_matrix.png`` (counts) or ``confusion_matrix_normalized.png`` (rows sum to 1)."""
    values = matrix.normalized if normalized else matrix.counts.astype(np.float64)
    size = len(matrix.labels)
    side = min(4 + 0.45 * size, 24)
    figure = Figure(figsize=(side + 1.5, side))
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalized else max(1.0, values.max()))
    figure.colorbar(
        image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the row" if normalized else "boxes"
    )
    ticks = np.arange(size)
    font = 9 if size <= MAX_ANNOTATED_CELLS else 5
    axes.set_xticks(ticks, matrix.labels, rotation=90, fontsize=font)
    axes.set_yticks(ticks, matrix.labels, fontsize=font)
    axes.set(xlabel="predicted", ylabel="true")
    kind = "row-normalised" if normalized else "counts"
    axes.set_title(f"Confusion matrix ({kind}), conf >= {matrix.conf:.3f}, IoU {matrix.iou:g}")
    if size <= MAX_ANNOTATED_CELLS:
        threshold = values.max() / 2 if values.max() > 0 else 1
        for row in range(size):
            for column in range(size):
                text = f"{values[row, column]:.2f}" if normalized else str(int(values[row, column]))
                color = "white" if values[row, column] > threshold else "black"
                axes.text(column, row, text, ha="center", va="center", fontsize=font - 1, color=color)
    if matrix.num_predictions == 0:
        _say_empty(axes)
    figure.tight_layout()
    return _save(figure, path)


def plot_errors(errors: ErrorAnalysis, path: Path, has_predictions: bool) -> Path:
    """``errors.png``: how many errors of each TIDE type, and the AP50 fixing each type would gain."""
    counts = errors.counts()
    figure = Figure(figsize=(12, 4.5))
    count_axes = figure.add_subplot(1, 2, 1)
    positions = np.arange(len(ERROR_TYPES))
    colors = [f"C{index}" for index in range(len(ERROR_TYPES))]
    count_axes.bar(positions, [counts[kind] for kind in ERROR_TYPES], color=colors)
    count_axes.set_xticks(positions, ERROR_TYPES, rotation=20)
    count_axes.set(ylabel="boxes", title="Errors by type (foreground IoU 0.5, background IoU 0.1)")
    gain_axes = figure.add_subplot(1, 2, 2)
    gains = [0.0 if math.isnan(errors.gain[kind]) else errors.gain[kind] for kind in ERROR_TYPES]
    gain_axes.bar(positions, gains, color=colors)
    gain_axes.set_xticks(positions, ERROR_TYPES, rotation=20)
    gain_axes.set(
        ylabel="AP50 gained", title=f"AP50 gained by fixing each type alone (AP50 {errors.ap50:.3f})"
    )
    for axes in (count_axes, gain_axes):
        axes.grid(alpha=0.3, axis="y")
        if not has_predictions:
            _say_empty(axes)
    figure.tight_layout()
    return _save(figure, path)
