"""The figures ``prune`` reports for a model: parameters, MACs, CPU latency at batch 1 and val mAP.

Latency is the median of ``runs`` timed forward passes of one image at the model's input size on the CPU,
after warm-up, with the torch thread count recorded. The models compared are timed in alternation, one
pass each per round (``time_in_alternation``), so a load change on a shared machine hits all of them alike:
the before/after *ratio* is what carries over, not the milliseconds. mAP is ``yolox-sdk eval`` of the checkpoint file itself, so the
figure is what a user of the file gets, through the same loading path.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from yolox_sdk.optimization.pruning import count_macs_and_params


@attrs.define
class ModelFigures:
    """One model's figures; ``None`` where not measured.

    Attributes:
        params: parameter count.
        macs: multiply-accumulates of one image at ``input_size`` (torch-pruning's counter).
        latency_ms: median CPU forward time at batch 1, milliseconds.
        threads: torch CPU threads during the timing.
        map: val mAP50:95; ``map50``: mAP at IoU 0.5.
    """

    params: int
    macs: int
    input_size: tuple[int, int]
    latency_ms: float | None = None
    threads: int | None = None
    map: float | None = None
    map50: float | None = None


def measure_network(model: nn.Module, input_size: tuple[int, int]) -> ModelFigures:
    """Parameters and MACs of ``model`` (left on the CPU, in eval mode); latency comes later."""
    model = model.cpu().eval()
    macs, params = count_macs_and_params(model, input_size)
    return ModelFigures(params, macs, input_size)


def time_in_alternation(
    measured: Sequence[tuple[ModelFigures, nn.Module]], runs: int, warmup: int = 3
) -> None:
    """Set each ``latency_ms`` to the median of ``runs`` batch-1 CPU forward passes, timed round-robin."""
    if runs <= 0:
        return
    seconds: list[list[float]] = [[] for _ in measured]
    with torch.inference_mode():
        for round_index in range(warmup + runs):
            for index, (figures, model) in enumerate(measured):
                batch = torch.zeros(1, 3, *figures.input_size)
                started = time.perf_counter()
                model.cpu().eval()(batch)
                if round_index >= warmup:
                    seconds[index].append(time.perf_counter() - started)
    for (figures, _), timings in zip(measured, seconds, strict=True):
        figures.latency_ms = 1000 * statistics.median(timings)
        figures.threads = torch.get_num_threads()


def add_map(figures: ModelFigures, checkpoint: Path, val: Mapping[str, Any] | None) -> None:
    """Set ``figures.map``/``map50`` from ``yolox-sdk eval`` of ``checkpoint`` on ``val`` (``data``,
    ``split``, ``format``, ``format_options``); nothing when ``val`` is ``None``."""
    if val is None:
        return
    from yolox_sdk.engine.jobs import evaluate_checkpoint

    result = evaluate_checkpoint(
        checkpoint,
        val["data"],
        split=val.get("split"),
        format_name=val.get("format", "auto"),
        device="cpu",
        format_options=val.get("format_options") or None,
    )
    figures.map, figures.map50 = result.metrics["mAP"], result.metrics["mAP50"]
