"""yolox-sdk plugin: the LabelMe JSON annotation format as a dataset format named ``labelme``.

This module is what the ``yolox_sdk`` entry point names, so it is imported every time yolox-sdk builds its
registry (even for ``yolox-sdk --help``). It therefore only declares the options class and the hook; the
reader and writer live in ``yolox_sdk_labelme.labelme`` and are imported when the format is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from yolox_sdk.config.validators import FieldError
from yolox_sdk.plugins import hookimpl
from yolox_sdk.plugins.hookspecs import Register

if TYPE_CHECKING:
    from yolox_sdk_labelme.labelme import LabelmeFormat

__version__ = "0.1.0"


def _check_class_names(instance: Any, attribute: attrs.Attribute, value: list[str] | None) -> None:
    if value is None:
        return
    if not value or any(not name.strip() for name in value) or len(set(value)) != len(value):
        raise FieldError(attribute.name, "a non-empty list of distinct, non-blank class names", value)


@attrs.frozen
class LabelmeOptions:
    """Options of the ``labelme`` format (``data.format_options`` in the YAML).

    Attributes:
        class_names: the classes, in label-index order. Shapes with other labels are skipped (and counted).
            When omitted, every label found in the files is used, sorted alphabetically.
        image_root: folder that ``imagePath`` is relative to; by default the folder of each JSON file,
            which is what LabelMe itself writes. Images must lie inside it (by default inside the dataset
            folder given): an ``imagePath`` leading elsewhere is refused.
    """

    class_names: list[str] | None = attrs.field(default=None, validator=_check_class_names)
    image_root: str | None = None


def create_labelme_format(options: LabelmeOptions | None) -> LabelmeFormat:
    """Factory of the ``labelme`` dataset format (called by yolox-sdk with the structured options)."""
    from yolox_sdk_labelme.labelme import LabelmeFormat

    return LabelmeFormat(options or LabelmeOptions())


@hookimpl
def register_dataset_formats(register: Register) -> None:
    """Register the ``labelme`` dataset format."""
    register(
        "labelme",
        create_labelme_format,
        options=LabelmeOptions,
        description="LabelMe JSON files (rectangles; polygons become their bounding box)",
    )
