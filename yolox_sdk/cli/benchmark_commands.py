"""``yolox-sdk benchmark``: export a checkpoint to several formats and compare size, mAP and speed."""

from __future__ import annotations

from pathlib import Path

import click

from yolox_sdk.cli.common import handle_errors


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", "data_path", required=True, help="Dataset path or catalog name to measure mAP on.")
@click.option("--split", default="val", show_default=True, help="Split of the dataset.")
@click.option("--format", "format_name", default="auto", show_default=True, help="Dataset format.")
@click.option(
    "--formats",
    default="pytorch,onnx,onnx-fp16,onnx-slim",
    show_default=True,
    help="Comma-separated: pytorch, onnx, onnx-fp16, onnx-slim, or an exporter plugin's name.",
)
@click.option("--batch", type=click.IntRange(1, 256), default=8, show_default=True, help="Throughput batch.")
@click.option("--runs", type=click.IntRange(1, 100000), default=50, show_default=True, help="Timed runs.")
@click.option("--warmup", type=click.IntRange(0, 10000), default=5, show_default=True, help="Untimed runs.")
@click.option("--threads", type=click.IntRange(1, 1024), help="CPU threads [default: PyTorch's count].")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Exported files, benchmark.json and benchmark.md [default: <checkpoint stem>_benchmark/].",
)
@handle_errors
def benchmark(
    checkpoint: Path,
    data_path: str,
    split: str,
    format_name: str,
    formats: str,
    batch: int,
    runs: int,
    warmup: int,
    threads: int | None,
    out_dir: Path | None,
) -> None:
    """Export CHECKPOINT to each format, then measure each file's size, mAP on the split, batch-1 latency
    (median, p90), throughput at --batch and speed relative to PyTorch eager.

    A format that cannot be exported or run here is a row saying why.
    """
    from yolox_sdk.benchmarking import benchmark as run_benchmark

    result = run_benchmark(
        checkpoint,
        data_path,
        split=split,
        formats=formats.split(","),
        batch=batch,
        runs=runs,
        warmup=warmup,
        threads=threads,
        out_dir=out_dir,
        format_name=format_name,
    )
    load = result.machine.get("load_average_1_5_15")
    load_text = ", ".join(f"{value:.2f}" for value in load) if load else "n/a"
    click.echo(
        f"CPU: {result.machine['model']}, {result.settings['threads']} thread(s), load average {load_text}"
    )
    click.echo(result.table())
    out = Path(result.settings["out_dir"])
    click.echo(f"Written {out / 'benchmark.json'} and {out / 'benchmark.md'}")
