"""Conformance check for logger plugins: whatever a run sends, ``log_*`` and ``close`` never raise."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def check_logger(logger: Any) -> None:
    """Send ``logger`` what a run can send, in the order a run sends it, then close it.

    That is: hyperparameters as dotted keys with ``None``, lists, empty mappings; per-iteration metrics (``iter/...``,
    step = global iteration) with NumPy scalars; epoch rows (step = epochs completed) holding NaN and
    infinity, the same row again (a resumed run re-sends it), and an empty mapping. A logger that raises
    on any of these would stop training (see ``Logger``).

    Raises:
        AssertionError: naming the call that raised and the error.
    """
    hyperparameters = {  # the config flattened to dotted keys, as the trainer sends it
        "model.name": "yolox-nano",
        "model.pretrained": None,
        "training.epochs": 2,
        "training.lr": 0.01,
        "training.nesterov": True,
        "training.multiscale_sizes": [320, 416],
        "training.optimizer_options": {},
        "data.train_path": str(Path("datasets") / "bccd"),
        "seed": 0,
    }
    epoch_row = {
        "epoch": 1,
        "train/total_loss": math.nan,
        "val/mAP": math.inf,
        "lr": 0.01,
        "trainable_params": 7,
    }
    calls = [
        ("log_hyperparameters", (hyperparameters,)),
        ("log_metrics", ({"iter/total_loss": np.float32(3.5), "iter/lr": 0.001}, 0)),
        ("log_metrics", ({"iter/total_loss": 2.0, "iter/lr": np.float64(0.002)}, 10)),
        ("log_metrics", (epoch_row, 1)),
        ("log_metrics", ({**epoch_row, "swa/mAP": 0.5}, 1)),
        ("log_metrics", ({}, 2)),
        ("close", ()),
    ]
    for method, arguments in calls:
        try:
            getattr(logger, method)(*arguments)
        except Exception as error:  # noqa: BLE001 - the point is to report any of them
            raise AssertionError(
                f"{type(logger).__name__}.{method}{arguments!r} raised {type(error).__name__}: {error}. A logger "
                "must never raise out of log_*: warn and keep training."
            ) from error
