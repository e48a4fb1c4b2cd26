"""Timing a loaded model's forward pass and describing the machine it ran on.

Only the forward pass (``LoadedModel.forward``) is timed: preprocessing and NMS are the SDK's own and the
same for every format, so they would only blur the comparison. The input is real letterboxed images.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np


def forward_seconds(loaded: Any, batch: np.ndarray, runs: int, warmup: int) -> list[float]:
    """Wall-clock seconds of ``runs`` calls of ``loaded.forward(batch)`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        loaded.forward(batch)
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        loaded.forward(batch)
        seconds.append(time.perf_counter() - started)
    return seconds


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (linear interpolation, numpy's default)."""
    return float(np.quantile(np.asarray(values), fraction))


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """The CPU's model name, flags and core count (from ``/proc/cpuinfo`` on Linux), and the load average
    when measured: on a shared machine the ratios, not the milliseconds, are what carries over."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in (platform.processor(), platform.machine()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = value.split()
    except OSError:
        pass
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {"model": model, "cores": os.cpu_count(), "flags": flags, "load_average_1_5_15": load}


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries the formats run on, as the modules report them (``2.14.1+cu130``: the
    build matters for speed); ``None`` when not installed."""
    import importlib

    from yolox_sdk import __version__

    versions: dict[str, str | None] = {"yolox-sdk": __version__}
    for name in ("torch", "onnxruntime", "onnx", "onnxslim", "openvino", "nncf", "ai_edge_litert", "coremltools"):
        try:
            versions[name] = str(importlib.import_module(name).__version__)
        except (ImportError, AttributeError):
            versions[name] = None
    return versions
