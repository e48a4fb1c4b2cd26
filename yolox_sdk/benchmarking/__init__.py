"""Benchmarking a checkpoint's deployment formats: size, mAP and speed of each (``yolox-sdk benchmark``)."""

from __future__ import annotations

from yolox_sdk.benchmarking.runner import BenchmarkResult, FormatResult, benchmark

__all__ = ["BenchmarkResult", "FormatResult", "benchmark"]
