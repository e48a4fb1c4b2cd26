"""yolox-sdk plugin: the ``jsonl`` logger, every metric row of a run as one line of JSON.

The ``yolox_sdk`` entry point names this module, so it is imported whenever yolox-sdk builds its registry,
``yolox-sdk --help`` included: it holds only the options class and the hook. The logger itself is in
``yolox_sdk_jsonl.logger`` and imported when a run opens it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from yolox_sdk import hookimpl
from yolox_sdk.config.validators import FieldError

if TYPE_CHECKING:
    from yolox_sdk_jsonl.logger import JsonlLogger


def _plain_file_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value or Path(value).name != value or value in (".", ".."):
        raise FieldError(attribute.name, "a file name without folders, e.g. metrics.jsonl", value)


@attrs.frozen
class JsonlOptions:
    """Options of the ``jsonl`` logger (``monitoring.logger_options.jsonl`` in the YAML).

    Attributes:
        filename: the file written in the run directory; a name, not a path.
        iterations: also write the per-iteration rows (``iter/...`` metrics every
            ``monitoring.log_interval`` batches), not only one row per epoch.
    """

    filename: str = attrs.field(default="metrics.jsonl", validator=_plain_file_name)
    iterations: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))


def create_jsonl_logger(options: JsonlOptions | None, run_dir: Path) -> JsonlLogger:
    """Factory of the ``jsonl`` logger: yolox-sdk calls it with the structured options and the run folder."""
    from yolox_sdk_jsonl.logger import JsonlLogger

    return JsonlLogger(options or JsonlOptions(), Path(run_dir))


@hookimpl
def register_loggers(register: Any) -> None:
    """Register the ``jsonl`` logger; a run uses it when ``monitoring.loggers`` lists it."""
    register(
        "jsonl",
        create_jsonl_logger,
        options=JsonlOptions,
        description="metrics.jsonl in the run directory: one JSON object per metric row",
    )
