"""benchmarks/training_speed.py still runs: two variants, two tiny steps each, rows and ratios in its JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from training_speed import main  # noqa: E402


@pytest.mark.slow
def test_training_speed_benchmark_runs_on_cpu(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "speed.json"
    status = main(
        [
            "--device", "cpu",
            "--models", "yolox-nano",
            "--input-size", "160",
            "--batch-size", "2",
            "--steps", "2",
            "--warmup", "1",
            "--variants", "fp32", "checkpointing",
            "--in-process",
            "--json", str(out),
        ]
    )  # fmt: skip

    assert status == 0
    report = json.loads(out.read_text())
    rows = {row["variant"]: row for row in report["results"]}
    assert list(rows) == ["fp32", "checkpointing"]
    assert rows["fp32"]["speed_ratio"] == 1.0
    for row in rows.values():
        assert row["images_per_second"] > 0 and row["median_step_seconds"] > 0
        assert row["final_loss"] > 0 and row["notes"].startswith("COCO weights")
    assert rows["checkpointing"]["speed_ratio"] == pytest.approx(
        rows["checkpointing"]["images_per_second"] / rows["fp32"]["images_per_second"]
    )
    assert (
        "fp32" in report["environment"]["sdk_amp_true_runs"]
        or "bf16" in report["environment"]["sdk_amp_true_runs"]
    )
    table = capsys.readouterr().out
    assert "checkpointing" in table and "x fp32" in table
