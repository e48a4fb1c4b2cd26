"""The sections of the run report, one function each, from a run's files to escaped HTML.

Each section says plainly when its input is missing (no evaluation, a model that predicts nothing, no
export) rather than leaving a gap. Values read from files are checked for type where they are shown:
a hand-edited JSON with a string where a number belongs shows ``n/a``, never a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yolox_sdk.reporting.html_page import ImageSource, Section, figure, figures, missing, number, table, text
from yolox_sdk.reporting.label_plots import LabelStatistics
from yolox_sdk.reporting.run_files import EvaluationFiles, RunFiles
from yolox_sdk.reporting.training_plots import best_epoch

CONFIG_SUMMARY_KEYS = (
    "model.name",
    "model.input_size",
    "model.pretrained",
    "model.checkpoint",
    "data.train_path",
    "data.train_split",
    "data.val_path",
    "data.val_split",
    "data.test_path",
    "data.format",
    "data.batch_size",
    "training.epochs",
    "training.optimizer",
    "training.lr",
    "training.momentum",
    "training.weight_decay",
    "training.scheduler",
    "training.warmup_epochs",
    "training.no_aug_epochs",
    "training.seed",
    "evaluation.eval_interval",
    "evaluation.save_best_metric",
    "device.type",
    "export.formats",
)
OVERALL_METRICS = ("mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large", "AR100")
CURVE_FIGURES = (
    ("pr_curve.png", "Precision-recall per class at IoU 0.5 and 0.5:0.95", True),
    ("f1_curve.png", "F1 against the confidence threshold", False),
    ("precision_curve.png", "Precision against the confidence threshold", False),
    ("recall_curve.png", "Recall against the confidence threshold", False),
)
TRAINING_FIGURES = (
    ("losses", "Loss components per epoch", True),
    ("learning_rate", "Learning rate per epoch", False),
    ("val_metrics", "Validation mAP, best epoch marked", False),
    ("resources", "Throughput, data wait, memory and utilisation per epoch", True),
)
LABEL_FIGURES = (
    ("class_histogram", "Boxes per class (training set)", False),
    ("box_sizes", "Box width against height in pixels (training set)", False),
    ("samples", "Sample training images with their boxes", True),
)
HASH_CHARS = 16


def config_section(run: RunFiles) -> Section:
    """Model, data, epochs and key hyperparameters, with the whole ``config.yaml`` folded below."""
    rows = [(key, _value(run.flat_config[key])) for key in CONFIG_SUMMARY_KEYS if key in run.flat_config]
    epochs = run.metrics.epochs
    rows.append(("epochs completed", str(max(epochs)) if epochs else "0"))
    body = table(["setting", "value"], rows)
    body += f"<details><summary>config.yaml</summary><pre>{text(run.config_text)}</pre></details>"
    return Section("config", "Configuration", body)


def training_section(run: RunFiles, plots: Mapping[str, Path], source: ImageSource) -> Section:
    """The training curves, the best epoch, and what is missing from ``metrics.csv``."""
    parts = []
    best = best_epoch(run.metrics, run.save_best_metric, run.lower_is_better)
    if best is not None:
        parts.append(f"<p>Best epoch {best.epoch}: {text(best.metric)} {number(best.value, 4)}.</p>")
    if "val_metrics" not in plots:
        parts.append(missing("No epoch was evaluated during training, so there are no validation curves."))
    items = [
        figure(source, plots[name], caption, wide)
        for name, caption, wide in TRAINING_FIGURES
        if name in plots
    ]
    parts.append(figures(items) if items else missing("metrics.csv holds no loss, learning rate or metric."))
    return Section("training", "Training curves", "".join(parts))


def labels_section(labels: LabelStatistics, source: ImageSource) -> Section:
    """The training set's label statistics, or why they could not be computed."""
    if labels.problem is not None:
        return Section("labels", "Training labels", missing(f"No label statistics: {labels.problem}."))
    stats = labels.statistics
    summary = (
        f"<p>{number(stats.get('images'))} images, {number(stats.get('boxes'))} boxes, "
        f"{number(stats.get('background_images'))} images without boxes.</p>"
    )
    rows = [
        (c.get("name"), number(c.get("boxes")), number(c.get("images"))) for c in stats.get("classes", [])
    ]
    body = summary + table(["class", "boxes", "images"], rows, numeric=(1, 2))
    body += figures(
        figure(source, labels.files[name], caption, photo=photo)
        for name, caption, photo in LABEL_FIGURES
        if name in labels.files
    )
    return Section("labels", "Training labels", body)


def metrics_section(evaluation: EvaluationFiles | None) -> Section:
    """Overall metrics and per-class AP/AP50 of the best checkpoint's evaluation."""
    if evaluation is None:
        return Section("metrics", "Final metrics", missing(_NO_EVALUATION))
    content = evaluation.content
    metrics = _mapping(content.get("metrics"))
    settings = _mapping(content.get("settings"))
    parts = [
        f"<p>Best checkpoint evaluated on the {text(evaluation.split)} split: "
        f"{number(settings.get('num_images'))} images, {number(settings.get('num_gt_boxes'))} objects, "
        f"{number(settings.get('num_detections'))} detections at conf &ge; "
        f"{number(settings.get('conf_threshold'))}.</p>"
    ]
    if _predicts_nothing(evaluation):
        parts.append(missing(f"The model predicts nothing on the {evaluation.split} split: every AP is 0."))
    parts.append(table(OVERALL_METRICS, [[number(metrics.get(name)) for name in OVERALL_METRICS]], range(7)))
    per_class = [row for row in _list(content.get("per_class")) if isinstance(row, Mapping)]
    rows = [
        (r.get("class_name"), number(r.get("AP")), number(r.get("AP50")), number(r.get("num_gt")))
        for r in per_class
    ]
    parts.append("<h3>Per class</h3>" + table(["class", "AP", "AP50", "objects"], rows, numeric=(1, 2, 3)))
    return Section("metrics", "Final metrics", "".join(parts))


def curves_section(evaluation: EvaluationFiles | None, source: ImageSource) -> Section:
    """PR and confidence curves, with the recommended threshold."""
    if evaluation is None:
        return Section("curves", "Precision-recall and confidence curves", missing(_NO_EVALUATION))
    recommended = _mapping(evaluation.content.get("recommended"))
    if recommended:
        intro = (
            f"<p>Recommended confidence threshold {number(recommended.get('conf'))} (max F1 "
            f"{number(recommended.get('f1'))}: precision {number(recommended.get('precision'))}, recall "
            f"{number(recommended.get('recall'))}, IoU 0.5).</p>"
        )
    else:
        intro = missing("No recommended threshold: the model predicts nothing.")
    items = [
        figure(source, path, caption, wide)
        for name, caption, wide in CURVE_FIGURES
        if (path := evaluation.figure(name)) is not None
    ]
    body = intro + (figures(items) if items else missing(f"No curve figures in {evaluation.folder.name}/."))
    return Section("curves", "Precision-recall and confidence curves", body)


def confusion_section(evaluation: EvaluationFiles | None, source: ImageSource) -> Section:
    """The confusion matrices (counts and row-normalised) at the deployment confidence."""
    if evaluation is None:
        return Section("confusion", "Confusion matrix", missing(_NO_EVALUATION))
    names = (("confusion_matrix.png", "counts"), ("confusion_matrix_normalized.png", "row-normalised"))
    items = [
        figure(source, p, caption) for name, caption in names if (p := evaluation.figure(name)) is not None
    ]
    body = figures(items) if items else missing(f"No confusion matrix in {evaluation.folder.name}/.")
    return Section("confusion", "Confusion matrix", body)


def errors_section(evaluation: EvaluationFiles | None, source: ImageSource) -> Section:
    """TIDE-style error counts and AP50 gains, overall and per class, with their figure."""
    title = "Error analysis"
    if evaluation is None:
        return Section("errors", title, missing(_NO_EVALUATION))
    if evaluation.errors is None:
        return Section("errors", title, missing("The error analysis was not run for this evaluation."))
    overall = _mapping(evaluation.errors.get("all"))
    counts, gains = _mapping(overall.get("counts")), _mapping(overall.get("ap50_gain"))
    rows = [(kind, number(counts.get(kind)), number(gains.get(kind))) for kind in counts]
    parts = [
        f"<p>AP50 {number(overall.get('AP50'))}, {number(overall.get('true_positives'))} true positives.</p>",
        table(["error type", "count", "AP50 gain if fixed"], rows, numeric=(1, 2)),
    ]
    per_class = _mapping(evaluation.errors.get("per_class"))
    if per_class and counts:
        kinds = list(counts)
        class_rows = [
            (name, *(number(_mapping(_mapping(entry).get("counts")).get(kind)) for kind in kinds))
            for name, entry in per_class.items()
        ]
        parts.append(
            "<h3>Errors per class</h3>" + table(["class", *kinds], class_rows, range(1, len(kinds) + 1))
        )
    plot = evaluation.figure("errors.png")
    if plot is not None:
        parts.append(
            figures([figure(source, plot, "Errors by type and the AP50 each would gain", wide=True)])
        )
    return Section("errors", title, "".join(parts))


def gallery_section(evaluation: EvaluationFiles | None, source: ImageSource) -> Section:
    """The images the model gets most wrong, worst first."""
    title = "Worst images"
    if evaluation is None:
        return Section("gallery", title, missing(_NO_EVALUATION))
    images = evaluation.gallery()
    if not images:
        return Section("gallery", title, missing("No worst-image gallery was written for this evaluation."))
    conf = number(evaluation.content.get("deploy_conf"))
    intro = f"<p>Boxes at conf &ge; {conf}, coloured by outcome; worst image first.</p>"
    gallery = figures((figure(source, p, p.name, photo=True) for p in images), thumbnails=True)
    return Section("gallery", title, intro + gallery)


def exports_section(exports: list[dict[str, Any]]) -> Section:
    """Each exported file: format, path, size and its largest difference from PyTorch."""
    if not exports:
        return Section("exports", "Exports", missing("Nothing was exported (export.formats was empty)."))
    rows = [
        (
            entry["format"],
            entry["path"],
            _size(entry.get("bytes")),
            "not measured" if entry.get("max_abs_diff") is None else f"{entry['max_abs_diff']:.2e}",
            "; ".join(entry.get("notes", [])),
        )
        for entry in exports
    ]
    body = table(["format", "file", "size", "max abs diff vs PyTorch", "notes"], rows, numeric=(2, 3))
    return Section("exports", "Exports", body)


def lineage_section(lineage: Mapping[str, Any]) -> Section:
    """Where the weights and data came from, briefly (``lineage.json``)."""
    if not lineage:
        return Section("lineage", "Lineage", missing("This run has no lineage.json."))
    versions = _mapping(lineage.get("versions"))
    git = _mapping(lineage.get("git"))
    rows = [
        ("started", lineage.get("started_at", "")),
        ("host", lineage.get("hostname", "")),
        ("config hash", lineage.get("config_hash", "")),
        ("versions", ", ".join(f"{key} {value}" for key, value in versions.items())),
        ("initial weights", _file(lineage.get("parent")) or "none (trained from scratch)"),
        ("resumed from", _file(lineage.get("resumed_from")) or "not resumed"),
        (
            "git",
            f"{git.get('commit', '')}{' (dirty)' if git.get('dirty') else ''}"
            if git
            else "not in a repository",
        ),
    ]
    dataset = _mapping(lineage.get("dataset"))
    for split in ("train", "val", "test"):
        entry = _mapping(dataset.get(split))
        if entry:
            rows.append(
                (
                    f"{split} labels",
                    f"sha256 {str(entry.get('sha256', ''))[:HASH_CHARS]}, {number(entry.get('images'))} images, "
                    f"{number(entry.get('boxes'))} boxes, {entry.get('source', '')}",
                )
            )
    return Section("lineage", "Lineage", table(["what", "record"], rows))


_NO_EVALUATION = (
    "No evaluation was run: the run directory has no eval_<split>.json (yolox-sdk train does not evaluate "
    "the best checkpoint; yolox-sdk run does)."
)


def _predicts_nothing(evaluation: EvaluationFiles) -> bool:
    detections = _mapping(evaluation.content.get("settings")).get("num_detections")
    if isinstance(detections, int) and not isinstance(detections, bool):
        return detections == 0
    return evaluation.content.get("recommended") is None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _value(value: Any) -> str:
    return "null" if value is None else str(value)


def _file(record: Any) -> str:
    record = _mapping(record)
    if not record:
        return ""
    return f"{record.get('path', '')} (sha256 {str(record.get('sha256', ''))[:HASH_CHARS]})"


def _size(size: Any) -> str:
    if not isinstance(size, int) or isinstance(size, bool):
        return "n/a"
    return f"{size / 1e6:.2f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"
