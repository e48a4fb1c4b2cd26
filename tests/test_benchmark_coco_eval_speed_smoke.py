"""benchmarks/coco_eval_speed.py still times both backends on real detections, and they still agree."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import ASSETS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from coco_eval_speed import main  # noqa: E402

from yolox_sdk.evaluation import coco_backend


@pytest.mark.slow  # about 20 s on 2 shared cores
def test_coco_eval_speed_times_both_backends(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
    chosen = coco_backend.faster_coco_eval_module
    argv = ["--max-images", "6", "--input-size", "160", "--repeats", "1", "--epoch-repeats", "1"]
    result = main(argv)  # it asserts the two backends' metrics equal before timing them
    assert result["images"] == 6 and result["detections"] > 0
    rows = result["rows"]
    assert set(rows) == {"COCOeval", "evaluate_detections", "evaluator on first read", "epoch evaluation"}
    for name, seconds in rows.items():
        assert seconds["faster-coco-eval"] > 0, name
        assert name == "evaluator on first read" or seconds["pycocotools"] > 0, name
    printed = capsys.readouterr().out
    assert "CPU:" in printed and "ratio" in printed and "epoch evaluation" in printed
    assert coco_backend.faster_coco_eval_module is chosen  # the pycocotools switch is undone
