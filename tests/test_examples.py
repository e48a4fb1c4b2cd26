"""Every example config is valid, and the ones on shipped data point at readable datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from yolox_sdk.config.loader import load_config
from yolox_sdk.engine.setup import load_training_data

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_is_valid(path: Path) -> None:
    load_config(path)


@pytest.mark.parametrize("name", ["bccd_voc.yaml", "coco8_yolo.yaml"])
def test_example_data_is_readable(name: str) -> None:
    train, val = load_training_data(load_config(Path(__file__).resolve().parents[1] / "examples" / name))
    assert len(train) > 0 and val is not None and len(val) > 0
