"""``yolox-sdk run|train|eval|predict|export``: the commands that train and use models."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from yolox_sdk.cli.common import FiniteFloatRange, format_option_flag, handle_errors, parse_format_options
from yolox_sdk.cli.output import (
    command_output,
    errors_table,
    headline,
    metrics_table,
    output_options,
    per_class_table,
    recommended_line,
)

if TYPE_CHECKING:
    from yolox_sdk.evaluation.predict import Predictor

_config_argument = click.argument(
    "config_path", metavar="CONFIG", type=click.Path(dir_okay=False, path_type=Path)
)
_overrides_argument = click.argument("overrides", nargs=-1)
_time_budget_option = click.option(
    "--time-budget",
    metavar="DURATION",
    default=None,
    help="Train for this long (90s, 20m, 1h30m) instead of training.epochs: training.time_budget=DURATION.",
)


def _with_time_budget(overrides: tuple[str, ...], time_budget: str | None) -> tuple[str, ...]:
    """``--time-budget`` as the override it stands for (after the others: the option wins)."""
    return overrides if time_budget is None else (*overrides, f"training.time_budget={time_budget}")


@click.command()
@_config_argument
@_overrides_argument
@click.option(
    "--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path), help="Continue this run."
)
@_time_budget_option
@output_options
@handle_errors
def run(
    config_path: Path,
    overrides: tuple[str, ...],
    resume_dir: Path | None,
    time_budget: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Train, evaluate the best checkpoint and export it, as CONFIG says.

    OVERRIDES are section.key=value pairs, e.g. training.epochs=10 data.batch_size=8. Ends with the
    evaluation table and a summary: best epoch, every file written, what to run next (--json: the same as
    one JSON document; --quiet: the mAP, the best checkpoint and the run directory only).
    """
    from yolox_sdk.cli.run_summary import quiet_lines, run_summary, summary_panel
    from yolox_sdk.config.loader import load_config
    from yolox_sdk.engine.jobs import run_pipeline
    from yolox_sdk.errors import TrainingInterrupted

    with command_output(as_json, quiet) as out:
        config = load_config(config_path, _with_time_budget(overrides, time_budget))
        try:
            result = run_pipeline(config, resume_dir=resume_dir)
        except TrainingInterrupted as error:
            error.command = "run"  # the resume command it prints: `yolox-sdk run ... --resume RUN_DIR`
            raise
        if result.evaluation is None:  # a torchrun process other than rank 0: rank 0 reports
            return
        summary = run_summary(config, result.train, result)
        out.print(per_class_table(result.evaluation))
        out.line()
        out.print(metrics_table(result.evaluation))
        out.print(summary_panel(summary, "Run finished"))
        for line in quiet_lines(summary) if quiet else ():
            out.result(line)
        out.json(summary)


@click.command()
@_config_argument
@_overrides_argument
@click.option(
    "--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path), help="Continue this run."
)
@click.option(
    "--from-best",
    "best_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Roll this run back to its best checkpoint and continue training from there.",
)
@_time_budget_option
@output_options
@handle_errors
def train(
    config_path: Path,
    overrides: tuple[str, ...],
    resume_dir: Path | None,
    best_dir: Path | None,
    time_budget: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Train a model as CONFIG says (OVERRIDES: section.key=value).

    Ends with a summary: best epoch, the checkpoints and other files, what to run next (--json: the same
    as one JSON document; --quiet: the best checkpoint and the run directory only).
    """
    from yolox_sdk.cli.run_summary import quiet_lines, run_summary, summary_panel
    from yolox_sdk.config.loader import load_config
    from yolox_sdk.engine import distributed
    from yolox_sdk.engine.trainer import train as train_model

    if resume_dir and best_dir:
        raise click.UsageError("Use either --resume or --from-best, not both.")
    with command_output(as_json, quiet) as out:
        config = load_config(config_path, _with_time_budget(overrides, time_budget))
        result = train_model(config, resume_dir=resume_dir or best_dir, from_best=best_dir is not None)
        if not distributed.context_from_environment().is_main:  # under torchrun, rank 0 reports
            return
        summary = run_summary(config, result)
        out.print(summary_panel(summary, "Training finished"))
        for line in quiet_lines(summary) if quiet else ():
            out.result(line)
        out.json(summary)


@click.command("eval")
@click.argument("checkpoint", metavar="MODEL", type=click.Path(exists=True, path_type=Path))
@click.option("--data", "data_path", required=True, help="Dataset path or catalog name.")
@click.option("--split", default=None, help="Split to evaluate (e.g. val).")
@click.option("--format", "format_name", default="auto", show_default=True)
@format_option_flag
@click.option(
    "--batch-size",
    type=click.IntRange(1, 4096),
    help="Images per batch [default: the checkpoint's evaluation.batch_size, else 8].",
)
@click.option(
    "--conf",
    type=FiniteFloatRange(0, 1),
    help="Score threshold [default: the checkpoint's evaluation.conf_threshold, else 0.01].",
)
@click.option(
    "--nms",
    type=FiniteFloatRange(0, 1),
    help="NMS IoU threshold [default: the checkpoint's evaluation.nms_threshold, else 0.65].",
)
@click.option(
    "--class-agnostic-nms/--per-class-nms",
    "class_agnostic_nms",
    default=None,
    help="Suppress overlapping boxes across classes, or per class only "
    "[default: the checkpoint's evaluation.class_agnostic_nms, else per class].",
)
@click.option("--device", default="auto", show_default=True)
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path),
    help="Folder for eval.json and the figures [default: <checkpoint stem>_eval/ beside CHECKPOINT]; a path "
    "ending in .json is the metrics file instead, with the figures beside it.",
)
@click.option(
    "--errors",
    is_flag=True,
    help="Also classify every error TIDE-style (classification, localisation, both, duplicate, background, "
    "missed) with the AP50 fixing each would gain, and draw the worst images.",
)
@click.option(
    "--deploy-conf",
    type=FiniteFloatRange(0, 1),
    help="Confidence of the confusion matrix and worst images [default: the recommended threshold].",
)
@click.option(
    "--gallery-size",
    type=click.IntRange(0, 1000),
    default=16,
    show_default=True,
    help="How many worst images --errors draws.",
)
@output_options
@handle_errors
def evaluate(
    checkpoint: Path,
    data_path: str,
    split: str | None,
    format_name: str,
    format_options: tuple[str, ...],
    batch_size: int | None,
    conf: float | None,
    nms: float | None,
    class_agnostic_nms: bool | None,
    device: str,
    out_path: Path | None,
    errors: bool,
    deploy_conf: float | None,
    gallery_size: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Evaluate MODEL (a .pt checkpoint, or a file it was exported to: .onnx, ...) on a dataset with
    pycocotools; print the per-class table and the recommended confidence threshold; write
    precision-recall, F1 and confusion-matrix figures with their numbers.

    Thresholds and NMS default to the evaluation settings CHECKPOINT was trained with, so the numbers are
    those its training measured; the options override them one by one. --json prints eval.json's content
    (metrics, per-class AP, settings, recommended threshold, files); --quiet prints the mAP line only.
    """
    from yolox_sdk.engine.jobs import evaluate as evaluate_with_analysis
    from yolox_sdk.evaluation.report import FALLBACK_CONF

    with command_output(as_json, quiet) as out:
        report = evaluate_with_analysis(
            checkpoint,
            data_path,
            split,
            format_name,
            batch_size,
            conf,
            nms,
            device,
            class_agnostic_nms,
            format_options=parse_format_options(format_options),
            errors=errors,
            deploy_conf=deploy_conf,
        )
        out.print(per_class_table(report.result))
        out.line()
        out.print(metrics_table(report.result))
        out_path = out_path or checkpoint.with_name(f"{checkpoint.stem}_eval")
        if out_path.suffix.lower() == ".json":
            files = report.write(out_path.parent, json_path=out_path, gallery_size=gallery_size)
        else:
            files = report.write(out_path, gallery_size=gallery_size)
        if report.errors is not None:
            out.print(errors_table(report.errors))
        out.line(recommended_line(report, FALLBACK_CONF))
        out.line(f"Metrics written to {files['eval']}")
        out.line(f"Figures and their numbers (JSON) written to {files['pr_curve'].parent}")
        if "worst_images" in files:
            out.line(f"Worst images written to {files['worst_images']}")
        if quiet:
            out.result(f"{headline(report.result.metrics)} ({files['eval']})")
        out.json(report.to_dict())


class _ConfidenceOrAuto(FiniteFloatRange):
    """A confidence in [0, 1], or ``auto``: the recommended threshold saved in the checkpoint."""

    name = "float|auto"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> object:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        return super().convert(value, param, ctx)


@click.command()
@click.argument("checkpoint", metavar="MODEL", type=click.Path(exists=True, path_type=Path))
@click.argument("source", metavar="SOURCE")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="predictions",
    show_default=True,
)
@click.option(
    "--conf",
    default=0.3,
    show_default=True,
    type=_ConfidenceOrAuto(0, 1),
    help="Minimum score kept, or 'auto': the threshold with the best F1 measured by `yolox-sdk run` and "
    "saved in CHECKPOINT (0.3 when it has none).",
)
@click.option("--nms", default=0.45, show_default=True, type=FiniteFloatRange(0, 1))
@click.option("--device", default="auto", show_default=True)
@click.option(
    "--strict", is_flag=True, help="Exit with status 1 when any image or video frame could not be read."
)
@click.option(
    "--max-frames",
    type=click.IntRange(1),
    help="Videos and cameras: stop after predicting this many frames [default: the whole video; cameras "
    "run until Ctrl-C or SIGTERM].",
)
@click.option(
    "--stride",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Videos and cameras: predict every K-th frame only (the output video runs at fps/K).",
)
@handle_errors
def predict(
    checkpoint: Path,
    source: str,
    out_dir: Path,
    conf: float | str,
    nms: float,
    device: str,
    strict: bool,
    max_frames: int | None,
    stride: int,
) -> None:
    """Detect objects in SOURCE: an image, a folder of images, a video file (.mp4, .avi, .mov, .mkv,
    .webm, .m4v), a camera (0, /dev/video0) or a stream URL (rtsp://, http://).

    Images: annotated copies and detections.json; images that cannot be decoded are skipped with a warning
    each and listed in detections.json. Videos and cameras: an annotated video, detections.jsonl (one line
    per frame) and summary.json; damaged frames are skipped and counted; Ctrl-C or SIGTERM stops after the
    current frames with every file complete.
    """
    from yolox_sdk.engine.devices import resolve_device
    from yolox_sdk.evaluation.predict import Predictor, predict_to_folder, read_skipped
    from yolox_sdk.evaluation.video import is_video_source

    video = is_video_source(source)
    if not video and (max_frames is not None or stride != 1):
        raise click.UsageError(f"--max-frames and --stride apply to videos and cameras; {source} is neither.")
    predictor = Predictor.from_file(checkpoint, device=str(resolve_device(device)))
    threshold, note = predictor.resolve_conf(conf)
    if note:
        click.secho(note, fg="yellow", err=True)
    elif conf == "auto":
        click.echo(f"Confidence threshold {threshold:.3f} (recommended, from {checkpoint.name})")
    if video:
        _predict_video_source(predictor, source, out_dir, threshold, nms, max_frames, stride, strict)
        return
    json_path = predict_to_folder(predictor, Path(source), out_dir, conf=threshold, nms=nms)
    click.echo(f"Annotated images and {json_path} written to {out_dir}")
    skipped = read_skipped(json_path)
    if skipped:
        click.secho(
            f"Skipped {len(skipped)} image(s) that could not be read; see 'skipped' in {json_path}.",
            fg="yellow",
            err=True,
        )
        if strict:
            sys.exit(1)


def _predict_video_source(
    predictor: Predictor,
    source: str,
    out_dir: Path,
    conf: float,
    nms: float,
    max_frames: int | None,
    stride: int,
    strict: bool,
) -> None:
    """``predict`` on a video, camera or stream: report what was written; a signal that stopped it exits
    130/143 like every interrupted command, after the files were completed."""
    import signal

    from yolox_sdk.evaluation.video import predict_video

    result = predict_video(
        predictor, source, out_dir, conf=conf, nms=nms, max_frames=max_frames, stride=stride
    )
    for line in result.report_lines():
        click.echo(line)
    if result.skipped_frames:
        click.secho(
            f"Skipped {result.skipped_frames} frame(s) that could not be decoded; see {result.summary_path}.",
            fg="yellow",
            err=True,
        )
    if result.stopped_by is not None:
        click.secho(
            f"Stopped by {result.stopped_by} after {result.frames_predicted} frame(s); the video and "
            f"{result.detections_path.name} are complete up to there.",
            fg="yellow",
            err=True,
        )
        sys.exit(128 + signal.Signals[result.stopped_by])
    if strict and result.skipped_frames:
        sys.exit(1)


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "formats",
    multiple=True,
    default=("onnx",),
    show_default=True,
    help="Exporter plugin (repeatable).",
)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option(
    "--option",
    "options",
    multiple=True,
    help="Exporter option as NAME.KEY=VALUE, e.g. onnx.dynamic_batch=true.",
)
@click.option(
    "--sample",
    "samples",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Images to verify the export on.",
)
@handle_errors
def export(
    checkpoint: Path,
    formats: tuple[str, ...],
    out_dir: Path | None,
    options: tuple[str, ...],
    samples: tuple[Path, ...],
) -> None:
    """Export CHECKPOINT (ONNX by default) and verify the exported model against PyTorch on real images."""
    from yolox_sdk.engine.jobs import export_from_cli

    for result in export_from_cli(checkpoint, list(formats), out_dir, list(options), list(samples)):
        click.echo(
            f"Exported {result.format}: {result.path} (max abs diff vs PyTorch {result.max_abs_diff:.2e})"
        )


COMMANDS = [run, train, evaluate, predict, export]
