"""What an epoch cost the machine: throughput, time waiting for data, memory and CPU/GPU use.

Logged with every epoch's row (``metrics.csv`` and every logger) under ``resources/``, so a user sees
whether training is data-bound (``resources/data_wait_fraction`` near 1: more workers, the image cache, or
lighter augmentation help; near 0: the model step is the limit) and how close it runs to the machine's
memory. Measured in the process that trains (the main process under torchrun):

- ``images_per_s``: training images of the epoch (all processes) per second of the epoch's wall time;
- ``data_wait_fraction``: the share of the epoch spent waiting for the next batch from the loader;
- ``rss_mb``: resident memory of the training process (DataLoader workers are separate processes and
  not included); ``cpu_percent``: its CPU time over wall time, as a share of all cores (100 = every core
  busy);
- on CUDA: ``cuda_allocated_mb`` / ``cuda_reserved_mb`` (peaks of the epoch, from torch's allocator) and
  ``gpu_util_percent`` from NVML when ``nvidia-ml-py`` is installed (``pip install nvidia-ml-py``); without
  it that one figure is left out and the run says so once.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import torch

log = logging.getLogger(__name__)

PREFIX = "resources/"
T = TypeVar("T")


def resident_memory_mb() -> float:
    """Resident memory of this process now (Linux ``/proc``), else its peak (``getrusage``)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _nvml_handle(device: torch.device) -> Any | None:
    """An NVML handle for ``device``, or ``None`` (not CUDA, no ``nvidia-ml-py``, no driver)."""
    if device.type != "cuda":
        return None
    try:
        import pynvml
    except ImportError:
        log.info("GPU utilisation is not logged: install nvidia-ml-py to get resources/gpu_util_percent.")
        return None
    try:
        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
    except Exception as error:  # noqa: BLE001 - NVML missing or refused: the other figures still count
        log.info("GPU utilisation is not logged: NVML is unavailable (%s).", error)
        return None


class ResourceMonitor:
    """Measures one epoch at a time: ``start_epoch``, iterate batches through ``timed``, ``end_epoch``."""

    def __init__(self, device: torch.device, cores: int | None = None) -> None:
        self.device = device
        self.cores = cores or os.cpu_count() or 1
        self._nvml = _nvml_handle(device)
        self._wall = self._cpu = self._waited = 0.0
        self._gpu_samples: list[float] = []

    def start_epoch(self) -> None:
        """Start the clocks (and the CUDA peak counters) of a new epoch."""
        self._wall, self._cpu, self._waited = time.perf_counter(), time.process_time(), 0.0
        self._gpu_samples = []
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def timed(self, batches: Iterable[T]) -> Iterator[T]:
        """``batches``, counting the time each ``next()`` waits as data wait (and sampling GPU use)."""
        iterator = iter(batches)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self._waited += time.perf_counter() - start
            self._sample_gpu()
            yield batch

    def _sample_gpu(self) -> None:
        if self._nvml is None:
            return
        try:
            import pynvml

            self._gpu_samples.append(float(pynvml.nvmlDeviceGetUtilizationRates(self._nvml).gpu))
        except Exception:  # noqa: BLE001 - a failed sample is skipped, the run goes on
            self._nvml = None

    def end_epoch(self, images: int) -> dict[str, float]:
        """The epoch's figures as ``resources/<name>`` metrics; ``images`` trained in all processes."""
        wall = max(time.perf_counter() - self._wall, 1e-9)
        figures = {
            "images_per_s": images / wall,
            "data_wait_fraction": min(1.0, self._waited / wall),
            "rss_mb": resident_memory_mb(),
            "cpu_percent": 100.0 * (time.process_time() - self._cpu) / wall / self.cores,
        }
        if self.device.type == "cuda":
            figures["cuda_allocated_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
            figures["cuda_reserved_mb"] = torch.cuda.max_memory_reserved(self.device) / 2**20
        if self._gpu_samples:
            figures["gpu_util_percent"] = sum(self._gpu_samples) / len(self._gpu_samples)
        return {f"{PREFIX}{name}": round(value, 4) for name, value in figures.items()}
