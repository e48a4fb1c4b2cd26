"""``yolox-sdk report RUN_DIR``: rebuild a run's training plots and its HTML report from its files."""

from __future__ import annotations

from pathlib import Path

import click

from yolox_sdk.cli.common import handle_errors


@click.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file to write [default: RUN_DIR/report.html].",
)
@click.option(
    "--link-images",
    is_flag=True,
    help="Link the figures by paths relative to the page instead of embedding them (a smaller page that "
    "needs the run directory beside it).",
)
@handle_errors
def report(run_dir: Path, out_path: Path | None, link_images: bool) -> None:
    """Write RUN_DIR/plots/ (training curves, label statistics, their numbers as JSON) and the run report:
    config, curves, final metrics, confusion matrix, PR curves, errors, worst images, exports, lineage."""
    from yolox_sdk.reporting.run_report import report as build_report

    written = build_report(run_dir, out=out_path, embed_images=not link_images)
    click.echo(f"Training plots: {run_dir / 'plots'}")
    if written.label_problem:
        click.echo(f"No label statistics: {written.label_problem}.")
    click.echo(f"Report: {written.path}")
