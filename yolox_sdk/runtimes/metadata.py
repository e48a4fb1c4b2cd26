"""Reading the optional metadata entries of an exported file, which comes from outside and is checked.

Runtimes read the required entries (class names, input size) themselves and refuse a file without them;
the optional ones here are dropped, with a warning, when they do not hold what an exporter writes, because
the file's weights are still good.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yolox_sdk.errors import WeightsError
from yolox_sdk.plugins.interfaces import METADATA_CLASS_NAMES, METADATA_EVALUATION, METADATA_INPUT_SIZE

log = logging.getLogger(__name__)

_PROBABILITIES = ("conf_threshold", "nms_threshold")


def evaluation_metadata(value: Any, source: str) -> dict[str, Any] | None:
    """The thresholds of a file's ``evaluation`` entry (a mapping, or its JSON text), or ``None``.

    Args:
        value: the entry as the file stores it; ``None`` when the file has none.
        source: the file, for the warning when the entry is malformed.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    checked = _checked(value) if isinstance(value, Mapping) else None
    if checked is None:
        log.warning(
            "%s: its '%s' metadata is not {conf_threshold, nms_threshold, class_agnostic_nms}; evaluating "
            "with the default thresholds (pass --conf/--nms to choose).",
            source,
            METADATA_EVALUATION,
        )
    return checked


def _checked(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    checked: dict[str, Any] = {}
    for key in _PROBABILITIES:
        number = entry.get(key)
        if number is not None:
            if isinstance(number, bool) or not isinstance(number, int | float) or not 0 <= number <= 1:
                return None
            checked[key] = float(number)
    agnostic = entry.get("class_agnostic_nms")
    if agnostic is not None:
        if not isinstance(agnostic, bool):
            return None
        checked["class_agnostic_nms"] = agnostic
    return checked or None


def required_metadata(
    path: Path, metadata: Mapping[str, Any], what: str, where: str, not_ours: str
) -> tuple[tuple[str, ...], tuple[int, int]]:
    """The class names and input size every exported file must carry, already decoded from JSON.

    Args:
        what: the file kind for the message (``a TFLite model``).
        where: where the metadata lives in such a file (``under rt_info/yolox_sdk``).
        not_ours: the runtime's closing advice for files not exported by yolox-sdk.

    Raises:
        WeightsError: either is missing or malformed; the message names the file and the keys.
    """
    names, size = metadata.get(METADATA_CLASS_NAMES), metadata.get(METADATA_INPUT_SIZE)
    names_ok = isinstance(names, list) and bool(names) and all(isinstance(name, str) for name in names)
    size_ok = (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in size)
    )
    if not (names_ok and size_ok):
        missing = [
            key for key, ok in ((METADATA_CLASS_NAMES, names_ok), (METADATA_INPUT_SIZE, size_ok)) if not ok
        ]
        raise WeightsError(
            f"{path} is {what} without yolox-sdk's metadata ({', '.join(missing)} missing or malformed "
            f"{where}), so its classes and input size are unknown. {not_ours}"
        )
    return tuple(names), (size[0], size[1])  # type: ignore[index]
