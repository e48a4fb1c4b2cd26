"""The training set's label statistics beside the training curves: the class histogram, the box sizes
and a grid of sample images (``data.statistics``' own figures) plus ``label_statistics.json``.

The training data is read again from where the run's ``config.yaml`` says it is; when it has moved or
cannot be read, the report says so instead of failing: the curves and the evaluation do not need it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.errors import YoloxSdkError

log = logging.getLogger(__name__)

STATISTICS_JSON = "label_statistics.json"


@attrs.frozen
class LabelStatistics:
    """What was written about the training labels, or why nothing was.

    Attributes:
        files: the figures and the JSON by name (``class_histogram``, ``box_sizes``, ``samples``,
            ``label_statistics``); empty when the data could not be read.
        statistics: ``data.statistics.dataset_statistics`` of the training set (empty when not read).
        problem: why the data could not be read, ``None`` when it was.
    """

    files: dict[str, Path]
    statistics: dict[str, Any]
    problem: str | None = None


def write_label_statistics(config: Mapping[str, Any], out_dir: Path) -> LabelStatistics:
    """Read the run's training data as ``config`` (its ``config.yaml``, as a nested mapping) names it and
    write its statistics figures and JSON into ``out_dir``."""
    from yolox_sdk.data.formats import load_dataset
    from yolox_sdk.data.statistics import dataset_statistics, write_plots

    data = config.get("data") if isinstance(config.get("data"), Mapping) else {}
    train_path = data.get("train_path")
    if not train_path:
        return LabelStatistics({}, {}, "the config names no training data (data.train_path)")
    split, options = data.get("train_split"), data.get("format_options")
    try:
        dataset = load_dataset(
            str(train_path),
            split=None if split is None else str(split),
            format=str(data.get("format") or "auto"),
            options=options if isinstance(options, Mapping) and options else None,
        )
    except (YoloxSdkError, OSError) as error:
        log.warning("Label statistics skipped: cannot read the training data %s (%s)", train_path, error)
        return LabelStatistics({}, {}, f"the training data {train_path} could not be read: {error}")
    statistics = dataset_statistics(dataset)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {path.stem: path for path in write_plots(dataset, statistics, out_dir)}
    files["label_statistics"] = out_dir / STATISTICS_JSON
    files["label_statistics"].write_text(json.dumps(statistics, indent=2) + "\n", encoding="utf-8")
    return LabelStatistics(files, statistics)
