"""Per-epoch resource figures (``engine/resources.py``), checked against clocks and psutil."""

from __future__ import annotations

import os
import time

import psutil
import pytest
import torch

from yolox_sdk.engine.resources import ResourceMonitor, resident_memory_mb


def slow_batches(count: int, wait_s: float):
    for index in range(count):
        time.sleep(wait_s)  # the loader making a batch: waiting, not computing
        yield index


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_data_wait_is_the_time_spent_in_next_and_throughput_counts_images() -> None:
    monitor = ResourceMonitor(torch.device("cpu"))
    start = time.perf_counter()
    monitor.start_epoch()
    seen = [batch for batch in monitor.timed(slow_batches(6, 0.05)) if busy(0.05) is None]
    figures = monitor.end_epoch(images=48)
    wall = time.perf_counter() - start

    assert seen == list(range(6))
    assert figures["resources/data_wait_fraction"] == pytest.approx(0.5, abs=0.15)
    assert figures["resources/images_per_s"] == pytest.approx(48 / wall, rel=0.15)
    assert "resources/cuda_allocated_mb" not in figures and "resources/gpu_util_percent" not in figures


def test_cpu_share_is_the_process_cpu_time_over_wall_time_and_cores() -> None:
    process = psutil.Process(os.getpid())
    monitor = ResourceMonitor(torch.device("cpu"), cores=2)
    before, start = sum(process.cpu_times()[:2]), time.perf_counter()
    monitor.start_epoch()
    busy(0.3)
    figures = monitor.end_epoch(images=1)
    expected = 100.0 * (sum(process.cpu_times()[:2]) - before) / (time.perf_counter() - start) / 2
    assert expected > 5  # the loop did run on a core for a while, even on a loaded machine
    assert figures["resources/cpu_percent"] == pytest.approx(expected, abs=5.0)
    assert figures["resources/data_wait_fraction"] == 0.0


def test_resident_memory_matches_psutil() -> None:
    block = bytearray(64 * 2**20)  # touch 64 MiB so the figure moves
    block[::4096] = b"x" * len(block[::4096])
    assert resident_memory_mb() == pytest.approx(
        psutil.Process(os.getpid()).memory_info().rss / 2**20, rel=0.05
    )
    del block
