"""Exporting a checkpoint to every requested format through the exporter plugins.

The checkpoint carries the model spec and class names, so nothing else is needed; each format's options
are structured into the plugin's own options class and errors name ``export.options.<format>``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from yolox_sdk.checkpoints.format import load_checkpoint
from yolox_sdk.errors import ConfigError
from yolox_sdk.evaluation.predict import list_images
from yolox_sdk.models import model_from_checkpoint
from yolox_sdk.plugins.building import build_plugin
from yolox_sdk.plugins.interfaces import (
    METADATA_CLASS_NAMES,
    METADATA_EVALUATION,
    METADATA_EVALUATION_KEYS,
    METADATA_FILE_STEM,
    METADATA_INPUT_SIZE,
    METADATA_MODEL_NAME,
    METADATA_RECOMMENDED_CONF,
    METADATA_SDK_VERSION,
    METADATA_TRAINED_WITH,
    ExportResult,
)
from yolox_sdk.plugins.registry import Registry

if TYPE_CHECKING:
    from yolox_sdk.checkpoints.format import Checkpoint

log = logging.getLogger(__name__)


def export_metadata(checkpoint: Checkpoint, file_stem: str = "model") -> dict[str, Any]:
    """What exporters receive as ``metadata``: enough to use the exported file without the checkpoint.

    Keys: ``class_names``, ``input_size`` ``[height, width]``, the spec's fields (``name`` as
    ``model_name``), ``sdk_version`` (of the SDK exporting) and ``file_stem`` (the exported files' name);
    ``recommended_conf`` too when the checkpoint has one, so a deployed model knows its threshold.
    """
    from yolox_sdk import __version__

    spec = attrs.asdict(checkpoint.spec)
    spec[METADATA_MODEL_NAME] = spec.pop("name")
    metadata = {
        **spec,
        METADATA_CLASS_NAMES: list(checkpoint.class_names),
        METADATA_INPUT_SIZE: list(checkpoint.spec.input_size),
        METADATA_SDK_VERSION: __version__,
        METADATA_TRAINED_WITH: checkpoint.sdk_version,
        METADATA_FILE_STEM: file_stem,
    }
    recommended = getattr(checkpoint, "recommended_conf", None)  # duck-typed callers may lack it
    if recommended is not None:
        metadata[METADATA_RECOMMENDED_CONF] = recommended
    evaluation = _evaluation_thresholds(checkpoint)
    if evaluation:
        metadata[METADATA_EVALUATION] = evaluation
    return metadata


def _evaluation_thresholds(checkpoint: Checkpoint) -> dict[str, Any]:
    """The thresholds ``eval`` of the checkpoint uses, when its config has an evaluation section; they go
    into exported files so that ``eval`` of an export measures it as the checkpoint is measured."""
    config = getattr(checkpoint, "config", None)
    if not isinstance(config, Mapping) or not isinstance(config.get("evaluation"), Mapping):
        return {}
    from yolox_sdk.evaluation.runner import checkpoint_evaluation_settings

    settings = checkpoint_evaluation_settings(checkpoint)
    return {key: getattr(settings, key) for key in METADATA_EVALUATION_KEYS}


def _sample_paths(sample_images: Sequence[Path | str] | Path | str) -> list[Path]:
    if isinstance(sample_images, str | Path):
        return list_images(sample_images)
    return [Path(path) for path in sample_images]


def export_checkpoint(
    checkpoint_path: Path | str,
    formats: Sequence[str],
    options: Mapping[str, Mapping[str, Any]] | None,
    out_dir: Path | str,
    sample_images: Sequence[Path | str] | Path | str,
    registry: Registry | None = None,
) -> list[ExportResult]:
    """Export the (EMA) model of a checkpoint to each format in ``formats``.

    Args:
        checkpoint_path: one of our checkpoints.
        formats: exporter plugin names (``onnx``, ...), in order.
        options: per format, its raw option mapping (``export.options`` of the config).
        out_dir: where files go; each is named after the checkpoint (``best.onnx``).
        sample_images: images (or a folder of them) the exporters check their output on.
        registry: the plugin registry; the process-wide one by default.

    Raises:
        ConfigError: for options given for a format not requested, or invalid options.
        PluginError: for an unknown format.
        ExportError: when an exporter fails or its output disagrees with PyTorch.
    """
    options = dict(options or {})
    unused = sorted(set(options) - set(formats))
    if unused:
        raise ConfigError(
            f"Invalid config: export.options.{unused[0]}: options for '{unused[0]}', which is not in "
            f"export.formats ({', '.join(formats) or 'empty'})."
        )
    if registry is None:
        from yolox_sdk.plugins import get_registry

        registry = get_registry()
    exporters = [
        (name, build_plugin(registry, "exporter", name, options.get(name, {}), f"export.options.{name}"))
        for name in formats
    ]
    checkpoint = load_checkpoint(checkpoint_path)
    model = model_from_checkpoint(checkpoint)
    metadata = export_metadata(checkpoint, file_stem=Path(checkpoint_path).stem)
    samples = _sample_paths(sample_images)
    return [
        _run_exporter(exporter, model, metadata, Path(out_dir), samples, checkpoint)
        for _, exporter in exporters
    ]


def _run_exporter(
    exporter: Any,
    model: Any,
    metadata: dict[str, Any],
    out_dir: Path,
    samples: list[Path],
    checkpoint: Checkpoint,
) -> ExportResult:
    """Call ``exporter.export``; exporters that set ``uses_training_config`` (they need data, e.g. INT8
    calibration) also get the checkpoint's saved config as ``training_config``."""
    if getattr(exporter, "uses_training_config", False):
        return exporter.export(
            model, dict(metadata), out_dir, samples, training_config=dict(checkpoint.config)
        )
    return exporter.export(model, dict(metadata), out_dir, samples)
