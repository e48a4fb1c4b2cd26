"""``yolox-sdk report RUN_DIR``: the training plots in ``<run>/plots/`` and ``<run>/report.html``.

Both are rebuilt from the run directory's files alone (``config.yaml``, ``metrics.csv``, the evaluation
``run`` wrote, ``exports.json``, ``lineage.json``), so a report can be made again at any time, on any
machine that has the run directory, and gives the same content apart from its generation time.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import attrs

from yolox_sdk.files import write_text_atomically
from yolox_sdk.reporting import sections
from yolox_sdk.reporting.html_page import ImageSource, page
from yolox_sdk.reporting.label_plots import write_label_statistics
from yolox_sdk.reporting.run_files import RunFiles, read_run_files
from yolox_sdk.reporting.training_plots import write_training_plots

PLOTS_FOLDER = "plots"
REPORT_FILENAME = "report.html"


@attrs.frozen
class RunReport:
    """What ``report`` wrote.

    Attributes:
        path: the HTML page.
        plots: the training and label figures and their JSON, by name.
        label_problem: why the training labels could not be read (no label statistics), ``None`` if read.
    """

    path: Path
    plots: dict[str, Path]
    label_problem: str | None = None


def report(run_dir: Path | str, out: Path | str | None = None, embed_images: bool = True) -> RunReport:
    """Write the training plots into ``<run_dir>/plots/`` and the HTML report.

    Args:
        run_dir: a run directory with at least one epoch in ``metrics.csv``.
        out: the HTML file; ``<run_dir>/report.html`` by default.
        embed_images: put every image in the page as a data URI (one file to send), or link the files
            relative to the page (a small page that needs the run directory beside it).

    Raises:
        RunDirectoryError: ``run_dir`` is not a run directory or has no readable ``metrics.csv``.
    """
    run = read_run_files(run_dir)
    plots_dir = run.path / PLOTS_FOLDER
    plots = write_training_plots(run.metrics, plots_dir, run.save_best_metric, run.lower_is_better)
    labels = write_label_statistics(run.config, plots_dir)
    out_path = Path(out) if out is not None else run.path / REPORT_FILENAME
    out_path.parent.mkdir(parents=True, exist_ok=True)
    source = ImageSource(out_path.parent, embed=embed_images)
    page_sections = [
        sections.config_section(run),
        sections.training_section(run, plots, source),
        sections.labels_section(labels, source),
        sections.metrics_section(run.evaluation),
        sections.curves_section(run.evaluation, source),
        sections.confusion_section(run.evaluation, source),
        sections.errors_section(run.evaluation, source),
        sections.gallery_section(run.evaluation, source),
        sections.exports_section(run.exports),
        sections.lineage_section(run.lineage),
    ]
    write_text_atomically(out_path, page(f"Run report: {run.path.name}", _subtitle(run), page_sections))
    return RunReport(out_path, {**plots, **labels.files}, labels.problem)


def _subtitle(run: RunFiles) -> str:
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    model = run.flat_config.get("model.name", "unknown model")
    return f"{model}, {len(run.metrics.epochs)} epochs logged; {run.path}; generated {generated}"
