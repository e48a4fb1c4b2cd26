"""yolox-sdk plugin: Weights & Biases experiment logging as a logger named ``wandb``.

Imported whenever yolox-sdk builds its registry, so it declares only the options class and the hook;
``wandb`` itself (slow to import) is imported by the factory, when a run actually logs to W&B.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from yolox_sdk.config.validators import one_of
from yolox_sdk.plugins import hookimpl
from yolox_sdk.plugins.hookspecs import Register

if TYPE_CHECKING:
    from yolox_sdk_wandb.logger import WandbLogger

__version__ = "0.1.0"

WANDB_MODES = ("online", "offline", "disabled")


def _check_mode(instance: object, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None:
        one_of(WANDB_MODES)(instance, attribute, value)


@attrs.frozen
class WandbOptions:
    """Options of the ``wandb`` logger.

    They are written either in ``monitoring.wandb`` next to ``enabled: true`` (the product plan's
    section, which switches the logger on) or, with ``monitoring.loggers: [wandb]``, under
    ``monitoring.logger_options.wandb``. This class is the one that checks them in both places.

    Attributes:
        project: the W&B project the run is logged to.
        name: the run's display name; W&B picks one when omitted.
        entity: the W&B user or team; your default entity when omitted.
        mode: ``online``, ``offline`` (sync later with ``wandb sync``) or ``disabled``; when omitted W&B
            decides (``WANDB_MODE``, or online when logged in).
        tags: tags attached to the run.
    """

    project: str = "yolox-sdk"
    name: str | None = None
    entity: str | None = None
    mode: str | None = attrs.field(default=None, validator=_check_mode)
    tags: list[str] = attrs.field(factory=list)


def create_wandb_logger(options: WandbOptions | None, run_dir: Path) -> WandbLogger:
    """Factory of the ``wandb`` logger: starts a W&B run whose local files go under ``run_dir``."""
    from yolox_sdk_wandb.logger import start_wandb_logger

    return start_wandb_logger(options or WandbOptions(), Path(run_dir))


@hookimpl
def register_loggers(register: Register) -> None:
    """Register the ``wandb`` logger, switched on by ``monitoring.wandb.enabled``."""
    register(
        "wandb",
        create_wandb_logger,
        options=WandbOptions,
        description="Weights & Biases: hyperparameters and metrics of each run",
        enabled_by="monitoring.wandb",
    )
