"""Conformance check for exporter plugins: a tiny random model through ``export``, the contract checked."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from yolox_sdk.plugins.interfaces import (
    METADATA_CLASS_NAMES,
    METADATA_FILE_STEM,
    METADATA_INPUT_SIZE,
    METADATA_MODEL_NAME,
    METADATA_SDK_VERSION,
    METADATA_TRAINED_WITH,
    ExportResult,
)

TINY_INPUT_SIZE = (64, 96)
TINY_CLASSES = ("cell", "nucleus")


def tiny_model_and_metadata(file_stem: str = "tiny") -> tuple[Any, dict[str, Any]]:
    """A randomly initialised YOLOX-Nano for two classes at 64x96, in eval mode on the CPU, and the
    ``metadata`` an exporter receives for it (the keys ``export.runner.export_metadata`` writes)."""
    import attrs
    import torch

    from yolox_sdk import __version__
    from yolox_sdk.models.factory import build_model
    from yolox_sdk.models.variants import make_spec

    torch.manual_seed(0)
    spec = make_spec("yolox-nano", num_classes=len(TINY_CLASSES), input_size=TINY_INPUT_SIZE)
    model = build_model(spec).eval()
    metadata = attrs.asdict(spec)
    metadata[METADATA_MODEL_NAME] = metadata.pop("name")
    metadata.update(
        {
            METADATA_CLASS_NAMES: list(TINY_CLASSES),
            METADATA_INPUT_SIZE: list(TINY_INPUT_SIZE),
            METADATA_SDK_VERSION: __version__,
            METADATA_TRAINED_WITH: __version__,
            METADATA_FILE_STEM: file_stem,
        }
    )
    return model, metadata


def _sample_images(folder: Path) -> list[Path]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index, (height, width) in enumerate(((50, 70), (120, 90))):
        path = folder / f"sample_{index}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def check_exporter(exporter: Any, out_dir: Path) -> ExportResult:
    """Run ``exporter.export`` on a tiny model with two sample images and check what it did.

    Checks: it returns an ``ExportResult`` whose ``path`` exists under ``out_dir`` and starts with
    ``metadata["file_stem"]``; ``max_abs_diff``, when given, is a finite number at least 0; the model it
    was handed is unchanged (weights and eval mode), since the same model goes to every exporter.

    Raises:
        AssertionError: naming the broken rule.
    """
    import torch

    out_dir = Path(out_dir)
    model, metadata = tiny_model_and_metadata()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    samples = _sample_images(out_dir / "_samples")
    result = exporter.export(model, dict(metadata), out_dir, samples)
    name = type(exporter).__name__
    assert isinstance(result, ExportResult), f"{name}.export returned {result!r}, not an ExportResult"
    path = Path(result.path)
    assert path.exists(), f"{name}: the result names {path}, which does not exist"
    assert path.resolve().is_relative_to(out_dir.resolve()), f"{name}: wrote {path} outside {out_dir}"
    assert path.name.startswith(metadata[METADATA_FILE_STEM]), f"{name}: {path.name} ignores file_stem"
    if result.max_abs_diff is not None:
        assert math.isfinite(result.max_abs_diff) and result.max_abs_diff >= 0, (
            f"{name}: max_abs_diff {result.max_abs_diff!r} is not a finite difference"
        )
    assert not model.training, f"{name} left the model in training mode"
    after = model.state_dict()
    changed = [key for key, value in before.items() if not torch.equal(value, after[key])]
    assert not changed, f"{name} changed the model it was given ({changed[:3]}); copy it first"
    return result
