"""``yolox-sdk run|train|eval|predict|export``: the commands that train and use models."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from yolox_sdk.cli.common import FiniteFloatRange, handle_errors

_config_argument = click.argument(
    "config_path", metavar="CONFIG", type=click.Path(dir_okay=False, path_type=Path)
)
_overrides_argument = click.argument("overrides", nargs=-1)


@click.command()
@_config_argument
@_overrides_argument
@click.option(
    "--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path), help="Continue this run."
)
@handle_errors
def run(config_path: Path, overrides: tuple[str, ...], resume_dir: Path | None) -> None:
    """Train, evaluate the best checkpoint and export it, as CONFIG says.

    OVERRIDES are section.key=value pairs, e.g. training.epochs=10 data.batch_size=8.
    """
    from yolox_sdk.config.loader import load_config
    from yolox_sdk.engine.jobs import run_pipeline
    from yolox_sdk.errors import TrainingInterrupted

    try:
        result = run_pipeline(load_config(config_path, overrides), resume_dir=resume_dir)
    except TrainingInterrupted as error:
        error.command = "run"  # the resume command it prints: `yolox-sdk run ... --resume RUN_DIR`
        raise
    if result.evaluation is None:  # a torchrun process other than rank 0: rank 0 reports
        return
    click.echo(result.evaluation.table())
    for export in result.exports:
        click.echo(
            f"Exported {export.format}: {export.path} (max abs diff vs PyTorch {export.max_abs_diff:.2e})"
        )
    click.echo(f"Run directory: {result.train.run_dir}")


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
@handle_errors
def train(
    config_path: Path, overrides: tuple[str, ...], resume_dir: Path | None, best_dir: Path | None
) -> None:
    """Train a model as CONFIG says (OVERRIDES: section.key=value)."""
    from yolox_sdk.config.loader import load_config
    from yolox_sdk.engine import distributed
    from yolox_sdk.engine.trainer import train as train_model

    if resume_dir and best_dir:
        raise click.UsageError("Use either --resume or --from-best, not both.")
    config = load_config(config_path, overrides)
    result = train_model(config, resume_dir=resume_dir or best_dir, from_best=best_dir is not None)
    if distributed.context_from_environment().is_main:  # under torchrun, rank 0 reports
        click.echo(f"Best checkpoint: {result.best_checkpoint}\nRun directory: {result.run_dir}")


@click.command("eval")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", "data_path", required=True, help="Dataset path or catalog name.")
@click.option("--split", default=None, help="Split to evaluate (e.g. val).")
@click.option("--format", "format_name", default="auto", show_default=True)
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
    "--out", "out_json", type=click.Path(dir_okay=False, path_type=Path), help="Write metrics JSON here."
)
@handle_errors
def evaluate(
    checkpoint: Path,
    data_path: str,
    split: str | None,
    format_name: str,
    batch_size: int | None,
    conf: float | None,
    nms: float | None,
    class_agnostic_nms: bool | None,
    device: str,
    out_json: Path | None,
) -> None:
    """Evaluate CHECKPOINT on a dataset with pycocotools and print the per-class table.

    Thresholds and NMS default to the evaluation settings CHECKPOINT was trained with, so the numbers are
    those its training measured; the options override them one by one.
    """
    from yolox_sdk.engine.jobs import evaluate_checkpoint

    result = evaluate_checkpoint(
        checkpoint, data_path, split, format_name, batch_size, conf, nms, device, class_agnostic_nms
    )
    click.echo(result.table())
    out_json = out_json or checkpoint.with_name(f"{checkpoint.stem}_eval.json")
    result.to_json(out_json)
    click.echo(f"Metrics written to {out_json}")


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="predictions",
    show_default=True,
)
@click.option("--conf", default=0.3, show_default=True, type=FiniteFloatRange(0, 1))
@click.option("--nms", default=0.45, show_default=True, type=FiniteFloatRange(0, 1))
@click.option("--device", default="auto", show_default=True)
@click.option("--strict", is_flag=True, help="Exit with status 1 when any image could not be read.")
@handle_errors
def predict(
    checkpoint: Path, source: Path, out_dir: Path, conf: float, nms: float, device: str, strict: bool
) -> None:
    """Detect objects in SOURCE (an image or a folder); write annotated images and detections.json.

    Images that cannot be decoded are skipped with a warning each and listed in detections.json.
    """
    from yolox_sdk.engine.devices import resolve_device
    from yolox_sdk.evaluation.predict import Predictor, predict_to_folder, read_skipped

    predictor = Predictor.from_checkpoint(checkpoint, device=str(resolve_device(device)))
    json_path = predict_to_folder(predictor, source, out_dir, conf=conf, nms=nms)
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
