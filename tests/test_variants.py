"""All six YOLOX variants and custom depth/width build through the ``yolox`` package with the official sizes."""

from __future__ import annotations

import pytest
import torch

from yolox_sdk.errors import ConfigError
from yolox_sdk.models import build_model, make_spec

# Parameter counts of the official 80-class models (YOLOX README: 0.91M, 5.06M, 9.0M, 25.3M, 54.2M, 99.1M).
OFFICIAL_PARAMS_M = {
    "yolox-nano": 0.91,
    "yolox-tiny": 5.06,
    "yolox-s": 9.0,
    "yolox-m": 25.3,
    "yolox-l": 54.2,
    "yolox-x": 99.1,
}


@pytest.mark.parametrize("name", list(OFFICIAL_PARAMS_M))
def test_variant_matches_official_size(name: str) -> None:
    model = build_model(make_spec(name, num_classes=80))
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert millions == pytest.approx(OFFICIAL_PARAMS_M[name], rel=0.01)


def test_variant_input_sizes() -> None:
    assert make_spec("yolox-nano").input_size == (416, 416)
    assert make_spec("yolox-tiny").input_size == (416, 416)
    assert make_spec("yolox-s").input_size == (640, 640)
    assert make_spec("nano").name == "yolox-nano"


def test_custom_depth_width_runs() -> None:
    spec = make_spec("custom", num_classes=2, depth=0.33, width=0.125, input_size=(128, 128))
    model = build_model(spec).eval()
    with torch.no_grad():
        output = model(torch.zeros(1, 3, 128, 128))
    assert output.shape == (1, (16 * 16 + 8 * 8 + 4 * 4), 5 + 2)


def test_custom_without_depth_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.depth and model.width must be set"):
        make_spec("custom", num_classes=2)


def test_unknown_variant_suggests() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'yolox-tiny'"):
        make_spec("yolox-tin")
