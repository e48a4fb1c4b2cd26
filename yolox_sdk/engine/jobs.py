"""The end-to-end job behind ``yolox-sdk run``: train, evaluate the best checkpoint, export it.

Also the checkpoint-only entry points behind ``yolox-sdk eval`` and ``yolox-sdk export``: everything they
need (model spec, class names) comes from the checkpoint itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.checkpoints.format import load_checkpoint
from yolox_sdk.config.loader import parse_override
from yolox_sdk.config.schema import Config
from yolox_sdk.engine import distributed, setup
from yolox_sdk.engine.devices import resolve_device
from yolox_sdk.engine.trainer import TrainResult, train
from yolox_sdk.errors import ConfigError
from yolox_sdk.models.factory import model_from_checkpoint

log = logging.getLogger(__name__)

EXPORT_SAMPLE_IMAGES = 4


@attrs.frozen
class RunResult:
    """Training, evaluation and export results of ``run_pipeline``."""

    train: TrainResult
    evaluation: Any
    exports: list[Any]


def run_pipeline(config: Config, resume_dir: Path | None = None) -> RunResult:
    """Train as ``config`` says, evaluate the best checkpoint (on the test split if set, else val), export it.

    Under torchrun every process trains; only rank 0 evaluates and exports (the others return with
    ``evaluation`` None and no exports), so the files are written once.
    """
    result = train(config, resume_dir=resume_dir)
    if not distributed.context_from_environment().is_main:
        return RunResult(result, None, [])
    which = "test" if config.data.test_path else "val"
    if getattr(config.data, f"{which}_path") is None:
        raise ConfigError(
            "Invalid config: data.val_path is not set, so the trained model cannot be evaluated."
        )
    checkpoint = load_checkpoint(result.best_checkpoint)
    dataset = setup.align_classes(setup.load_split(config, which), checkpoint.class_names)
    evaluation = _evaluate(
        checkpoint,
        dataset,
        config.evaluation.batch_size or config.data.batch_size,
        config.evaluation.conf_threshold,
        config.evaluation.nms_threshold,
        str(resolve_device(config.device)),
    )
    evaluation.to_json(result.run_dir / f"eval_{which}.json")
    samples = [record.image_path for record in dataset.records[:EXPORT_SAMPLE_IMAGES]]
    out_dir = Path(config.export.output_dir) if config.export.output_dir else result.run_dir / "export"
    exports = _export(result.best_checkpoint, config.export.formats, config.export.options, out_dir, samples)
    return RunResult(result, evaluation, exports)


def _evaluate(checkpoint: Any, dataset: Any, batch_size: int, conf: float, nms: float, device: str) -> Any:
    from yolox_sdk.evaluation.coco_eval import evaluate

    model = model_from_checkpoint(checkpoint).to(device)
    return evaluate(
        model,
        dataset,
        checkpoint.spec.input_size,
        batch_size=batch_size,
        conf_threshold=conf,
        nms_threshold=nms,
        device=device,
    )


def _export(
    checkpoint: Path, formats: list[str], options: dict[str, dict], out_dir: Path, samples: list[Path]
) -> list[Any]:
    if not formats:
        return []
    from yolox_sdk.export.runner import export_checkpoint

    return export_checkpoint(checkpoint, formats, options, out_dir, samples)


def evaluate_checkpoint(
    checkpoint_path: Path,
    data: str,
    split: str | None,
    format_name: str,
    batch_size: int,
    conf: float,
    nms: float,
    device: str,
) -> Any:
    """Evaluate a checkpoint on a dataset (``yolox-sdk eval``)."""
    from yolox_sdk.data.formats import load_dataset

    checkpoint = load_checkpoint(checkpoint_path)
    dataset = setup.align_classes(load_dataset(data, split=split, format=format_name), checkpoint.class_names)
    return _evaluate(checkpoint, dataset, batch_size, conf, nms, str(resolve_device(device)))


def export_from_cli(
    checkpoint_path: Path,
    formats: list[str],
    out_dir: Path | None,
    option_texts: list[str],
    samples: list[Path],
) -> list[Any]:
    """Export a checkpoint (``yolox-sdk export``); options are ``NAME.KEY=VALUE`` strings."""
    options: dict[str, dict[str, Any]] = {}
    for text in option_texts:
        try:
            keys, value = parse_override(text)
        except ConfigError as error:
            raise ConfigError(str(error).replace("Bad override", "Bad --option", 1)) from None
        if len(keys) != 2:
            raise ConfigError(
                f"Bad --option '{text}': expected EXPORTER.KEY=VALUE, e.g. onnx.dynamic_batch=true."
            )
        options.setdefault(keys[0], {})[keys[1]] = value
    if not samples:
        samples = _sample_images_from_checkpoint(checkpoint_path)
    out_dir = out_dir or checkpoint_path.parent / "export"
    return _export(checkpoint_path, formats, options, out_dir, samples)


def _sample_images_from_checkpoint(checkpoint_path: Path) -> list[Path]:
    """Validation images named by the checkpoint's own config, to verify an export on real data."""
    from yolox_sdk.data.formats import load_dataset

    data = load_checkpoint(checkpoint_path).config.get("data", {})
    for which in ("val", "train"):
        if data.get(f"{which}_path"):
            try:
                dataset = load_dataset(
                    data[f"{which}_path"], split=data.get(f"{which}_split"), format=data.get("format", "auto")
                )
            except Exception as error:  # noqa: BLE001 - fall through to the clear error below
                log.debug("Cannot read %s data for export samples: %s", which, error)
                continue
            return [record.image_path for record in dataset.records[:EXPORT_SAMPLE_IMAGES]]
    raise ConfigError(
        "No images to verify the export on: the checkpoint's config names no readable dataset. Pass --sample IMAGE."
    )
