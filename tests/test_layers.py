"""Layers point one way: what reads or writes checkpoints, evaluates or exports never imports the trainer.

Each check runs in a fresh interpreter, since this test session has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _engine_modules_after_importing(module: str) -> list[str]:
    code = (
        f"import json, sys, {module}; "
        "print(json.dumps(sorted(name for name in sys.modules if name.startswith('yolox_sdk.engine'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "module",
    [
        "yolox_sdk.checkpoints",
        "yolox_sdk.models",
        "yolox_sdk.evaluation",
        "yolox_sdk.evaluation.runner",
        "yolox_sdk.export",
        "yolox_sdk.export.runner",
    ],
)
def test_models_evaluation_and_export_do_not_import_the_engine(module: str) -> None:
    assert _engine_modules_after_importing(module) == []


def test_every_name_of_the_public_api_resolves() -> None:
    """The lazy table in ``yolox_sdk/__init__.py`` names modules by path: a moved module must not break it."""
    import yolox_sdk

    missing = [name for name in yolox_sdk.__all__ if getattr(yolox_sdk, name, None) is None]
    assert missing == []
