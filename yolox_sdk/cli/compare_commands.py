"""``yolox-sdk compare``: A/B comparison of two checkpoints on the same images, with bootstrap intervals."""

from __future__ import annotations

from pathlib import Path

import click

from yolox_sdk.cli.common import handle_errors

_checkpoint = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("compare")
@click.argument("checkpoint_a", metavar="CKPT_A", type=_checkpoint)
@click.argument("checkpoint_b", metavar="CKPT_B", type=_checkpoint)
@click.option("--data", "data_path", required=True, help="Dataset path or catalog name.")
@click.option("--split", default="val", show_default=True, help="Split to compare on.")
@click.option("--format", "format_name", default="auto", show_default=True)
@click.option(
    "--resamples",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Bootstrap resamples of the images.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap draws.")
@click.option("--device", default="auto", show_default=True, help="Where both models run and are timed.")
@click.option(
    "--latency-runs",
    type=click.IntRange(1, 100_000),
    default=50,
    show_default=True,
    help="Timed batch-1 runs per model (the median is reported).",
)
@click.option(
    "--latency-warmup",
    type=click.IntRange(0, 10_000),
    default=5,
    show_default=True,
    help="Untimed runs per model before timing.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="compare",
    show_default=True,
    help="Folder for compare.json.",
)
@handle_errors
def compare(
    checkpoint_a: Path,
    checkpoint_b: Path,
    data_path: str,
    split: str,
    format_name: str,
    resamples: int,
    seed: int,
    device: str,
    latency_runs: int,
    latency_warmup: int,
    out_dir: Path,
) -> None:
    """Is CKPT_B better than CKPT_A? Both measured on the same images, with bootstrap intervals.

    Prints AP50:95 and AP50 per class and overall, B - A with a 95 % paired-bootstrap interval over images,
    a verdict, and each model's latency on this device; writes the same to compare.json in --out.

    Each checkpoint is evaluated with the evaluation settings it was trained with, as `yolox-sdk eval` does.
    """
    from yolox_sdk.evaluation.compare import compare as compare_checkpoints

    result = compare_checkpoints(
        checkpoint_a,
        checkpoint_b,
        data_path,
        split,
        format_name,
        resamples,
        seed,
        device,
        latency_runs,
        latency_warmup,
    )
    click.echo(result.table())
    path = result.to_json(out_dir / "compare.json")
    click.echo(f"Comparison written to {path}")
