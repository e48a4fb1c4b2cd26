"""benchmarks/step_profile.py still runs the product's training step with its timers: every phase measured,
the shares of the step adding up to all of it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import ASSETS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from step_profile import PHASES, main  # noqa: E402

from yolox_sdk.engine import training_step


@pytest.mark.slow
def test_step_profile_times_every_phase_of_real_steps(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
    read_back = training_step.read_back
    results = main(["--input-size", "160", "--batch-sizes", "2", "--steps", "2", "--warmup", "1"])
    assert [result["batch_size"] for result in results] == [2]
    result = results[0]
    assert set(result["phases_ms"]) == set(PHASES)
    assert sum(result["shares"].values()) == pytest.approx(1.0)
    for name in ("data wait", "forward", "loss", "SimOTA", "backward", "optimizer", "EMA"):
        assert result["phases_ms"][name] > 0, name
    assert result["plain_ms"] > 0 and result["images_per_second"] > 0
    printed = capsys.readouterr().out
    assert "CPU:" in printed and "SimOTA" in printed and "batch 2:" in printed
    assert training_step.read_back is read_back  # the profiler's timer is gone with it
