"""The official-trainer side of benchmarks/ still runs: a few iterations of ``yolox.core.Trainer`` on CPU."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from official_yolox import BCCD_CLASSES, train_official  # noqa: E402


@pytest.mark.slow
def test_official_trainer_runs_on_cpu_under_the_shim(
    bccd_dir: Path, nano_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The official CocoEvaluator prefers a C++ COCOeval that is JIT-compiled on first use (about 35 s here);
    # without it the evaluator falls back to pycocotools' COCOeval, which gives the same numbers.
    import yolox.layers

    monkeypatch.delattr(yolox.layers, "CocoEvalOpt", raising=False)
    set_device, tensor_cuda = torch.cuda.set_device, torch.Tensor.cuda

    result = train_official(
        bccd_dir,
        nano_weights,
        epochs=1,
        batch_size=4,
        input_size=160,
        num_workers=0,
        device="cpu",
        out_dir=tmp_path,
        seed=0,
        warmup_epochs=1,
        no_aug_epochs=0,
        max_images=8,
    )

    assert result["iterations"] == 2 and result["train_images"] == 8
    assert result["train_images_per_second"] > 0 and result["eval_seconds"] > 0
    assert len(result["evaluations"]) == 1
    assert 0.0 <= result["mAP"] <= 1.0 and not math.isnan(result["mAP50"])
    state = torch.load(result["checkpoint"], map_location="cpu", weights_only=True)["model"]
    assert state["head.cls_preds.0.weight"].shape[0] == len(BCCD_CLASSES)
    # The CPU shim is undone once training returns.
    assert torch.cuda.set_device is set_device and torch.Tensor.cuda is tensor_cuda


def test_the_model_only_ceiling_is_measured_and_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    import compare_official

    monkeypatch.setattr(compare_official, "CEILING_STEPS", 2)
    monkeypatch.setattr(compare_official, "CEILING_WARMUP", 1)
    args = compare_official.make_parser().parse_args(["--input-size", "160", "--batch-size", "2"])
    ceiling = compare_official.measure_ceiling(args, "cpu")
    assert ceiling["train_images_per_second"] > 0
    ours = {"wall_seconds": 1.0, "train_images_per_second": ceiling["train_images_per_second"] / 2}
    table = compare_official.format_training_table(
        {"ours": {**ours, "mAP": 0.5, "mAP50": 0.8}, "ceiling": ceiling}
    )
    assert "(50% of the ceiling)" in table and "model-only" in table
