"""yolox-sdk: finetune YOLOX detectors on your own data, evaluate and export them.

The Python API mirrors the CLI::

    from yolox_sdk import load_config, create_model, get_registry
    config = load_config("config.yaml", ["training.epochs=10"])
"""

from __future__ import annotations

__version__ = "0.1.0"

from yolox_sdk.config.loader import load_config  # noqa: E402
from yolox_sdk.errors import YoloxSdkError  # noqa: E402
from yolox_sdk.models import create_model  # noqa: E402
from yolox_sdk.plugins import get_registry, hookimpl  # noqa: E402

__all__ = ["YoloxSdkError", "__version__", "create_model", "get_registry", "hookimpl", "load_config"]
