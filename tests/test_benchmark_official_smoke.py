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
