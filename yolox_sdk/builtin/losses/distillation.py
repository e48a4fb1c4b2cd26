"""The built-in ``distillation`` loss term: knowledge distillation from a teacher checkpoint.

Switched on by ``training.distillation`` (or named in ``training.losses`` with the same options); the
maths and the teacher checks are in ``yolox_sdk.optimization.distillation``. Registered through the
project's own entry point, with the public ``register_loss_terms`` hook only.
"""

from __future__ import annotations

from typing import Any

from yolox_sdk.config.schema import DistillationConfig
from yolox_sdk.plugins.hookspecs import hookimpl


def build_distillation(options: DistillationConfig, context: Any) -> Any:
    """Load and check the teacher (torch is imported here, not when the registry is built)."""
    from yolox_sdk.optimization.distillation import DistillationLoss

    return DistillationLoss.from_config(options, context)


@hookimpl
def register_loss_terms(register: Any) -> None:
    register(
        "distillation",
        build_distillation,
        options=DistillationConfig,
        description="knowledge distillation: soft objectness/class targets and confident boxes of a teacher",
        enabled_by="training.distillation",
    )
