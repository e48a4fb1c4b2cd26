"""yolox-sdk: finetune YOLOX detectors on your own data, evaluate and export them.

The Python API mirrors the CLI::

    from yolox_sdk import load_config, train, create_model, get_registry
    config = load_config("config.yaml", ["training.epochs=10"])
    result = train(config)

Names are imported lazily so that ``import yolox_sdk`` (and ``yolox-sdk --help``) does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_config": "yolox_sdk.config.loader",
    "Config": "yolox_sdk.config.schema",
    "create_model": "yolox_sdk.models.factory",
    "model_from_checkpoint": "yolox_sdk.models.factory",
    "load_checkpoint": "yolox_sdk.checkpoints.format",
    "train": "yolox_sdk.engine.trainer",
    "run_pipeline": "yolox_sdk.engine.jobs",
    "evaluate_checkpoint": "yolox_sdk.engine.jobs",
    "evaluate": "yolox_sdk.engine.jobs",
    "compare": "yolox_sdk.evaluation.compare",
    "report": "yolox_sdk.reporting.run_report",
    "load_dataset": "yolox_sdk.data.formats",
    "audit_labels": "yolox_sdk.data.audit",
    "Predictor": "yolox_sdk.evaluation.predict",
    "benchmark": "yolox_sdk.benchmarking",
    "prune": "yolox_sdk.optimization",
    "load_model": "yolox_sdk.runtimes",
    "get_registry": "yolox_sdk.plugins.manager",
    "hookimpl": "yolox_sdk.plugins.hookspecs",
    "YoloxSdkError": "yolox_sdk.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'yolox_sdk' has no attribute {name!r}")
