"""``yolox-sdk benchmark``: export a checkpoint to several formats and compare size, mAP and speed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from yolox_sdk.cli.common import handle_errors
from yolox_sdk.cli.output import command_output, output_options, table


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
@output_options
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
    as_json: bool,
    quiet: bool,
) -> None:
    """Export CHECKPOINT to each format, then measure each file's size, mAP on the split, batch-1 latency
    (median, p90), throughput at --batch and speed relative to PyTorch eager.

    A format that cannot be exported or run here is a row saying why. --json prints benchmark.json's
    content (settings, machine, rows) with the files written; --quiet prints the table only.
    """
    from yolox_sdk.benchmarking import benchmark as run_benchmark

    with command_output(as_json, quiet) as out:
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
        out.line(
            f"CPU: {result.machine['model']}, {result.settings['threads']} thread(s), load average {load_text}"
        )
        out.result(_table(result.rows))
        for row in result.rows:
            if row.reason:
                out.line(f"{row.format}: {row.reason}")
        out_folder = Path(result.settings["out_dir"])
        files = {"json": out_folder / "benchmark.json", "markdown": out_folder / "benchmark.md"}
        out.line(f"Written {files['json']} and {files['markdown']}")
        out.json({**result.to_dict(), "files": {name: str(path) for name, path in files.items()}})


def _table(rows: list[Any]) -> Any:
    """The benchmark's rows in the table every command prints (the columns of benchmark.md)."""
    from yolox_sdk.benchmarking.runner import COLUMNS
    from yolox_sdk.benchmarking.runner import _cell as cell  # benchmark.md's formatting of a cell

    headers = [header for header, _ in COLUMNS]
    cells = [[cell(row, field) for _, field in COLUMNS] for row in rows]
    return table(headers, cells, numeric=range(2, len(headers)))
