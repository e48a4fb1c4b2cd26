"""``yolox-sdk benchmark``: every format of a checkpoint exported, evaluated and timed in one run.

Each format goes through the paths users take: ``export_checkpoint`` writes the file, a runtime plugin
loads it (``runtimes.load_model``) and the SDK's one evaluator measures its mAP on the split. A format
that cannot be exported or run here becomes a row saying why, never a crash of the whole benchmark.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from yolox_sdk.benchmarking.formats import DEFAULT_FORMATS, PYTORCH, BenchmarkFormat, benchmark_format
from yolox_sdk.benchmarking.measure import (
    cpu_description,
    forward_seconds,
    library_versions,
    median,
    percentile,
)
from yolox_sdk.errors import ConfigError, YoloxSdkError

log = logging.getLogger(__name__)

OK = "ok"


@attrs.define
class FormatResult:
    """One row: what was measured for a format, or why it could not be (``status`` is not ``ok``).

    Latencies are milliseconds of one forward pass at batch 1 (median and 90th percentile over
    ``runs``); ``throughput`` is images per second at the benchmark's batch size; ``speedup`` is the
    PyTorch row's median latency divided by this one's.
    """

    format: str
    status: str = OK
    reason: str | None = None
    path: str | None = None
    size_mb: float | None = None
    runtime: str | None = None
    mAP: float | None = None
    mAP50: float | None = None
    latency_ms_median: float | None = None
    latency_ms_p90: float | None = None
    throughput: float | None = None
    speedup: float | None = None
    export_seconds: float | None = None
    max_abs_diff: float | None = None


@attrs.define
class BenchmarkResult:
    """All rows and how they were measured (machine, versions, settings)."""

    rows: list[FormatResult]
    settings: dict[str, Any]
    machine: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "machine": self.machine,
            "rows": [attrs.asdict(row) for row in self.rows],
        }

    def table(self) -> str:
        """The rows as aligned plain text."""
        return _render(self.rows, plain=True)

    def markdown(self) -> str:
        """The rows as a Markdown table, with the machine and settings above it."""
        machine = self.machine
        load = machine.get("load_average_1_5_15")
        lines = [
            f"# Benchmark of {Path(self.settings['checkpoint']).name}",
            "",
            f"CPU: {machine.get('model')} ({machine.get('cores')} cores), {self.settings['threads']} thread(s), "
            f"load average {', '.join(f'{value:.2f}' for value in load) if load else 'n/a'}; "
            f"data: {self.settings['data']} ({self.settings['split']}, {self.settings['num_images']} images); "
            f"latency: batch 1, median and p90 of {self.settings['runs']} runs after {self.settings['warmup']} "
            f"warm-up; throughput at batch {self.settings['batch']}.",
            "",
            _render(self.rows, plain=False),
            "",
        ]
        return "\n".join(lines)

    def write(self, out_dir: Path | str) -> dict[str, Path]:
        """Write ``benchmark.json`` and ``benchmark.md`` into ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path, markdown_path = out_dir / "benchmark.json", out_dir / "benchmark.md"
        json_path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        markdown_path.write_text(self.markdown(), encoding="utf-8")
        return {"json": json_path, "markdown": markdown_path}


COLUMNS = (
    ("format", "format"),
    ("status", "status"),
    ("size MB", "size_mb"),
    ("mAP50:95", "mAP"),
    ("mAP50", "mAP50"),
    ("ms (median)", "latency_ms_median"),
    ("ms (p90)", "latency_ms_p90"),
    ("img/s", "throughput"),
    ("vs pytorch", "speedup"),
)


def _cell(row: FormatResult, field: str) -> str:
    value = getattr(row, field)
    if value is None:
        return "-"
    if field == "speedup":
        return f"{value:.2f}x"
    if field in ("mAP", "mAP50"):
        return f"{value:.4f}"
    if isinstance(value, float):
        return f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    return str(value)


def _render(rows: list[FormatResult], plain: bool) -> str:
    headers = [header for header, _ in COLUMNS]
    cells = [[_cell(row, field) for _, field in COLUMNS] for row in rows]
    reasons = [f"{row.format}: {row.reason}" for row in rows if row.reason]
    if plain:
        widths = [
            max(len(header), *(len(line[index]) for line in cells)) for index, header in enumerate(headers)
        ]
        lines = ["  ".join(text.ljust(width) for text, width in zip(headers, widths, strict=True))]
        lines += [
            "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)) for line in cells
        ]
        return "\n".join(lines + reasons)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(line) + " |" for line in cells]
    return "\n".join(lines + ([""] + [f"- {reason}" for reason in reasons] if reasons else []))


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def benchmark(
    checkpoint: Path | str,
    data: str,
    split: str | None = "val",
    formats: Sequence[str] = DEFAULT_FORMATS,
    batch: int = 8,
    runs: int = 50,
    warmup: int = 5,
    threads: int | None = None,
    out_dir: Path | str | None = None,
    format_name: str = "auto",
) -> BenchmarkResult:
    """Export ``checkpoint`` to each of ``formats``, evaluate and time each file; write the report.

    Args:
        checkpoint: one of our ``.pt`` checkpoints.
        data: dataset path or catalog name; ``split`` of it is evaluated (and its first images time
            the models and check the exports).
        formats: ``pytorch``, ``onnx``, ``onnx-fp16``, ``onnx-slim`` or an exporter plugin's name.
        batch: batch size of the throughput measurement.
        runs: timed forward passes at batch 1 (throughput uses a fifth of them, at least 3).
        warmup: untimed passes before timing.
        threads: CPU threads for PyTorch and ONNX Runtime alike; PyTorch's current count by default.
        out_dir: exported files, ``benchmark.json`` and ``benchmark.md``; ``<checkpoint stem>_benchmark``
            beside the checkpoint by default.
        format_name: the dataset format (``auto`` detects it).

    Raises:
        ConfigError: bad arguments (no formats, a format named twice).
        CheckpointError, DatasetError: the checkpoint or the data cannot be read (nothing to compare).
    """
    import torch

    from yolox_sdk.checkpoints.format import load_checkpoint
    from yolox_sdk.data.formats import load_dataset
    from yolox_sdk.evaluation.runner import checkpoint_evaluation_settings, dataset_for_checkpoint

    names = [name.strip() for name in formats if name.strip()]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"--formats must name each format once, got {', '.join(formats) or 'nothing'}.")
    checkpoint = Path(checkpoint)
    stored = load_checkpoint(checkpoint)
    dataset = dataset_for_checkpoint(
        load_dataset(data, split=split, format=format_name), tuple(stored.class_names), checkpoint
    )
    settings_eval = checkpoint_evaluation_settings(stored)
    out_dir = Path(out_dir) if out_dir else checkpoint.with_name(f"{checkpoint.stem}_benchmark")
    threads = threads or torch.get_num_threads()
    context = _Context(checkpoint, dataset, settings_eval, out_dir, batch, runs, warmup, threads)
    with _torch_threads(threads):
        rows = [_measure_format(benchmark_format(name), context) for name in names]
    _add_speedups(rows)
    settings = {
        "checkpoint": str(checkpoint),
        "out_dir": str(out_dir),
        "data": str(data),
        "split": split,
        "num_images": len(dataset.records),
        "input_size": list(stored.spec.input_size),
        "model": stored.spec.name,
        "batch": batch,
        "runs": runs,
        "warmup": warmup,
        "threads": threads,
        "evaluation": attrs.asdict(settings_eval),
        "timed": "forward pass only (preprocessing and NMS are the same for every format)",
    }
    result = BenchmarkResult(rows, settings, {**cpu_description(), "versions": library_versions()})
    result.write(out_dir)
    return result


@attrs.frozen
class _Context:
    checkpoint: Path
    dataset: Any
    evaluation: Any
    out_dir: Path
    batch: int
    runs: int
    warmup: int
    threads: int


def _measure_format(chosen: BenchmarkFormat, context: _Context) -> FormatResult:
    row = FormatResult(chosen.name)
    try:
        path = _model_file(chosen, context, row)
        loaded = _load(path, context, row)
    except Exception as error:  # noqa: BLE001 - a third-party exporter or runtime may raise anything
        log.warning("benchmark: %s cannot run here: %s", chosen.name, error)
        row.status, row.reason = "not run", _reason(error)
        return row
    row.path, row.runtime = str(path), loaded.runtime
    row.size_mb = round(_size_bytes(path) / 2**20, 3)
    try:
        _evaluate(loaded, context, row)
        _time(loaded, context, row)
    except Exception as error:  # noqa: BLE001 - a runtime failing mid-run is a row too, not a crash
        log.warning("benchmark: %s failed while running: %s", chosen.name, error)
        row.status, row.reason = "failed", _reason(error)
    return row


def _reason(error: Exception) -> str:
    """The error as one line for the table: our errors as written, others with their type."""
    text = str(error).strip() or type(error).__name__
    return text if isinstance(error, YoloxSdkError) else f"{type(error).__name__}: {text}"


def _model_file(chosen: BenchmarkFormat, context: _Context, row: FormatResult) -> Path:
    if chosen.exporter is None:
        return context.checkpoint
    from yolox_sdk.export.runner import export_checkpoint

    samples = [record.image_path for record in context.dataset.records[:4]]
    started = time.perf_counter()
    exported = export_checkpoint(
        context.checkpoint,
        [chosen.exporter],
        {chosen.exporter: dict(chosen.options)},
        context.out_dir / chosen.name,
        samples,
    )[0]
    row.export_seconds = round(time.perf_counter() - started, 2)
    row.max_abs_diff = exported.max_abs_diff
    return Path(exported.path)


def _load(path: Path, context: _Context, row: FormatResult) -> Any:
    from yolox_sdk.runtimes import load_model

    try:
        return load_model(path, "cpu", options=_thread_options(context.threads))
    except ConfigError as error:
        raise ConfigError(f"exported to {path}, but {error}") from error


def _thread_options(threads: int) -> dict[str, dict[str, int]]:
    """``threads`` for every installed runtime whose options have that field (onnxruntime, OpenVINO,
    TFLite, ...), so each format is timed with the thread count PyTorch gets."""
    import attrs

    from yolox_sdk.plugins import get_registry

    registry = get_registry()
    options: dict[str, dict[str, int]] = {}
    for name in registry.names("runtime"):
        fields = registry.get("runtime", name).options
        if fields is not None and "threads" in attrs.fields_dict(fields):
            options[name] = {"threads": threads}
    return options


def _size_bytes(path: Path) -> int:
    """What shipping the model takes: a folder's files (CoreML packages), a file plus its same-stem
    weights file (OpenVINO's ``.xml`` and ``.bin``), or the file."""
    if path.is_dir():
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
    weights = path.with_suffix(".bin")
    extra = weights.stat().st_size if path.suffix == ".xml" and weights.is_file() else 0
    return path.stat().st_size + extra


def _evaluate(loaded: Any, context: _Context, row: FormatResult) -> None:
    from yolox_sdk.evaluation.runner import evaluate_model
    from yolox_sdk.runtimes import as_torch_module

    result = evaluate_model(
        as_torch_module(loaded), context.dataset, loaded.input_size, context.evaluation, "cpu"
    )
    row.mAP, row.mAP50 = _finite(result.metrics["mAP"]), _finite(result.metrics["mAP50"])


def _finite(value: float) -> float | None:
    return None if value != value else round(float(value), 6)


def _time(loaded: Any, context: _Context, row: FormatResult) -> None:
    from yolox_sdk.data.preprocess import images_to_batch, read_image

    records = context.dataset.records
    images = [read_image(records[index % len(records)].image_path) for index in range(context.batch)]
    batch, _ = images_to_batch(images, loaded.input_size)
    batch = np.ascontiguousarray(batch.numpy())
    single = forward_seconds(loaded, batch[:1], context.runs, context.warmup)
    row.latency_ms_median = round(median(single) * 1000, 3)
    row.latency_ms_p90 = round(percentile(single, 0.9) * 1000, 3)
    batched = forward_seconds(loaded, batch, max(3, context.runs // 5), min(context.warmup, 2))
    row.throughput = round(context.batch / median(batched), 2)


def _add_speedups(rows: list[FormatResult]) -> None:
    reference = next((row for row in rows if row.format == PYTORCH and row.latency_ms_median), None)
    if reference is None:
        return
    for row in rows:
        if row.latency_ms_median:
            row.speedup = round(reference.latency_ms_median / row.latency_ms_median, 3)  # type: ignore[operator]
