"""Small things a new user reads: counts with the right noun, one lr column in metrics.csv."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from yolox_sdk.engine.progress import counted, epoch_metrics


def test_counts_take_the_noun_in_the_right_number() -> None:
    assert counted(1, "class", "classes") == "1 class"
    assert counted(3, "class", "classes") == "3 classes"
    assert counted(0, "class", "classes") == "0 classes"


def test_the_epoch_row_has_lr_once() -> None:
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    optimizer.param_groups[0]["lr"] = 0.002
    row = epoch_metrics(
        0, {"total_loss": 3.0, "lr": 0.001}, SimpleNamespace(optimizer=optimizer, model=model)
    )
    assert row["lr"] == 0.002 and row["train/total_loss"] == 3.0
    assert "train/lr" not in row and row["epoch"] == 1 and row["trainable_params"] == 6
