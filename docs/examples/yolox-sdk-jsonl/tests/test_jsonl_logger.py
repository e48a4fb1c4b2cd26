"""Tests of the ``jsonl`` logger with yolox-sdk's plugin kit: no pip install, no training run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yolox_sdk_jsonl

from yolox_sdk.errors import ConfigError
from yolox_sdk.plugins.building import build_plugin
from yolox_sdk.testing import check_logger, plugin_registry


def test_registers_as_a_logger() -> None:
    registry = plugin_registry(yolox_sdk_jsonl, installed=False)  # this plugin alone
    entry = registry.get("logger", "jsonl")
    assert entry.options is yolox_sdk_jsonl.JsonlOptions


def test_survives_what_a_run_sends(tmp_path: Path) -> None:
    check_logger(yolox_sdk_jsonl.create_jsonl_logger(None, tmp_path))  # NaN, repeats, empty rows...
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "hyperparameters" in lines[0]
    assert all("step" in line for line in lines[1:])


def test_writes_epoch_rows_and_skips_iterations_by_default(tmp_path: Path) -> None:
    logger = yolox_sdk_jsonl.create_jsonl_logger(None, tmp_path)
    logger.log_metrics({"iter/total_loss": 3.2}, step=10)
    logger.log_metrics({"epoch": 1, "train/total_loss": float("nan"), "val/mAP": 0.25}, step=1)
    logger.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "epoch": 1.0, "train/total_loss": None, "val/mAP": 0.25}]


def test_options_come_from_the_config_and_are_checked(tmp_path: Path) -> None:
    registry = plugin_registry(yolox_sdk_jsonl, installed=False)
    path = "monitoring.logger_options.jsonl"
    logger = build_plugin(registry, "logger", "jsonl", {"iterations": True}, path, tmp_path)
    assert logger.iterations
    with pytest.raises(ConfigError, match="filename"):
        build_plugin(registry, "logger", "jsonl", {"filename": "../outside.jsonl"}, path, tmp_path)
