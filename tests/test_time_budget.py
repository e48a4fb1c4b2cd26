"""``training.time_budget``: durations, the epochs a measured speed allows, and a real budgeted run."""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from yolox_sdk.config.durations import format_duration, parse_duration
from yolox_sdk.config.loader import load_config
from yolox_sdk.engine.time_budget import MeasuredSpeed, budget_config, epochs_within
from yolox_sdk.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("20m", 1200), ("1h30m", 5400), ("1.5h", 5400), ("1h 5m 10s", 3910), (" 2M ", 120)],
)
def test_durations_with_units_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["20", "", "5x", "m", "30m1h", "1m1m", "0s", "-5m", "9999h", "1h30"])
def test_durations_without_units_or_out_of_order_are_refused(text: str) -> None:
    assert parse_duration(text) is None


def test_durations_print_for_people() -> None:
    assert [format_duration(s) for s in (38, 281, 3900)] == ["38s", "4m 41s", "1h 05m"]


def test_a_budget_without_epochs_caps_them_at_50_and_gets_the_finetune_recipe() -> None:
    config = load_config(None, ["training.time_budget=20m"])
    assert (config.training.epochs, config.training.warmup_epochs, config.training.no_aug_epochs) == (
        50,
        1,
        10,
    )
    capped = load_config(None, ["training.time_budget=20m", "training.epochs=30"])
    assert capped.training.epochs == 30 and capped.training.no_aug_epochs == 6


@pytest.mark.parametrize("value", ["20", "twenty minutes", "0m"])
def test_a_budget_without_a_unit_is_a_config_error_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"training\.time_budget"):
        load_config(None, [f"training.time_budget='{value}'"])


def test_the_phases_scale_with_the_epochs_the_budget_allows() -> None:
    finetune = budget_config(load_config(None, ["training.time_budget=20m"]), 10).training
    assert (finetune.epochs, finetune.warmup_epochs, finetune.no_aug_epochs) == (10, 1, 2)
    yolox = budget_config(load_config(None, ["training.recipe=yolox"]), 20).training  # 5 and 15 of 300
    assert (yolox.warmup_epochs, yolox.no_aug_epochs) == (1, 1)
    asked = load_config(
        None, ["training.epochs=40", "training.warmup_epochs=0.5", "training.no_aug_epochs=0"]
    )
    small = budget_config(asked, 4).training
    assert (small.warmup_epochs, small.no_aug_epochs) == (0.5, 0)


def test_the_most_epochs_whose_training_and_evaluations_fit() -> None:
    # 10 s an epoch, 3 s an evaluation; 50 epochs at most, the last 20 % (2 of 9, 2 of 10) evaluated, and
    # the last epoch always: 9 epochs = 90 + 3 x 3 = 99 s fit in 100 s, 10 epochs = 100 + 9 do not.
    config = load_config(None, ["training.time_budget=20m"])
    speed = MeasuredSpeed(seconds_per_batch=1.0, batches_per_epoch=10, seconds_per_evaluation=3.0)
    assert epochs_within(config, speed, 100.0, has_val_data=True) == 9
    assert epochs_within(config, speed, 100.0, has_val_data=False) == 10
    assert epochs_within(config, speed, 12.9, has_val_data=True) == 0
    assert epochs_within(config, speed, 1e9, has_val_data=True) == 50  # never beyond training.epochs


def _coco8_overrides(tmp_path: Path, budget: str) -> list[str]:
    return [
        "data.train_path=coco8",
        "data.val_path=coco8",
        "data.format=yolo",
        "data.batch_size=4",
        "model.name=yolox-nano",
        "model.input_size=[160,160]",
        "training.multiscale_range=0",
        f"training.time_budget={budget}",
        f"monitoring.output_dir={tmp_path / 'runs'}",
        "monitoring.run_name=budget",
        "export.formats=[]",
    ]


@pytest.mark.slow
def test_a_budgeted_run_trains_the_epochs_it_chose_and_saves_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from yolox_sdk.engine.trainer import train

    with caplog.at_level(logging.INFO, logger="yolox_sdk"):
        # A cap no budget of seconds can reach (a warm process on a fast CPU fits 50 coco8 epochs in 25 s)
        result = train(load_config(None, [*_coco8_overrides(tmp_path, "25s"), "training.epochs=100000"]))
    chose = [
        r.getMessage() for r in caplog.records if "training.time_budget 25s (25s): measured" in r.getMessage()
    ]
    assert len(chose) == 1, [r.getMessage() for r in caplog.records]
    epochs = int(chose[0].split("; training ")[1].split(" epochs")[0])
    assert 1 <= epochs < 100000
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())["training"]
    assert saved["epochs"] == epochs and saved["time_budget"] == "25s"
    with (result.run_dir / "metrics.csv").open() as rows:
        assert len(list(csv.DictReader(rows))) == epochs
    assert any("of the budget" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_a_budget_too_short_for_one_epoch_says_the_minimum_through_the_cli_option(tmp_path: Path) -> None:
    example = Path(__file__).parents[1] / "examples" / "coco8_yolo.yaml"
    overrides = [item for item in _coco8_overrides(tmp_path, "0.1s") if "time_budget" not in item]
    command = [sys.executable, "-m", "yolox_sdk", "train", str(example), *overrides, "--time-budget", "0.1s"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "training.time_budget 0.1s is too short for one epoch" in done.stderr  # set-up alone takes longer
    assert "needs a budget of at least" in done.stderr and "Traceback" not in done.stderr
    assert not list((tmp_path / "runs").glob("budget*/last.pt"))
