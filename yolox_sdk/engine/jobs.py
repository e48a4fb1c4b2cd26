"""The jobs behind the commands: ``yolox-sdk run`` (train, evaluate the best checkpoint, export it),
``yolox-sdk eval`` and ``yolox-sdk export``.

``eval`` and ``export`` need nothing but a checkpoint (model spec, class names and the evaluation settings
it was trained with are inside). Evaluation itself is ``yolox_sdk.evaluation.runner.evaluate_model``, the
function training uses too, so ``eval_<split>.json`` and ``yolox-sdk eval`` measure what training did.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.checkpoints.format import Checkpoint, load_checkpoint, save_checkpoint
from yolox_sdk.config.loader import parse_override
from yolox_sdk.config.schema import Config
from yolox_sdk.engine import distributed, setup
from yolox_sdk.engine.devices import resolve_device
from yolox_sdk.engine.trainer import TrainResult, train
from yolox_sdk.errors import ConfigError
from yolox_sdk.evaluation.coco_eval import EvalResult
from yolox_sdk.evaluation.report import EvaluationReport, analyse_evaluation
from yolox_sdk.evaluation.runner import (
    checkpoint_evaluation_settings,
    dataset_for_checkpoint,
    evaluate_checkpoint_weights,
    evaluate_model,
    evaluation_settings,
)

log = logging.getLogger(__name__)

EXPORT_SAMPLE_IMAGES = 4


@attrs.frozen
class RunResult:
    """Training, evaluation and export results of ``run_pipeline``; ``report`` holds the evaluation's
    curves, confusion matrix, error analysis and recommended threshold."""

    train: TrainResult
    evaluation: Any
    exports: list[Any]
    report: EvaluationReport | None = None


def run_pipeline(config: Config, resume_dir: Path | None = None) -> RunResult:
    """Train as ``config`` says, evaluate the best checkpoint (on the test split if set, else val), export it.

    The evaluation writes ``eval_<split>.json`` and its analysis (curves, confusion matrix, error analysis,
    worst images) into ``eval_<split>/`` of the run directory, and stores the recommended confidence
    threshold in ``best.pt`` before exporting, so exports and ``predict --conf auto`` carry it.

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
    evaluation = evaluate_checkpoint_weights(
        checkpoint, dataset, evaluation_settings(config), resolve_device(config.device)
    )
    report = analyse_evaluation(
        evaluation, dataset.class_names, [record.image_path for record in dataset.records], errors=True
    )
    report.write(result.run_dir / f"eval_{which}", json_path=result.run_dir / f"eval_{which}.json")
    _record_recommended_conf(result.best_checkpoint, checkpoint, report.recommended_conf)
    log.info(
        "%s\nEvaluation analysis of the best checkpoint written to %s",
        report.summary(),
        result.run_dir / f"eval_{which}",
    )
    samples = [record.image_path for record in dataset.records[:EXPORT_SAMPLE_IMAGES]]
    out_dir = Path(config.export.output_dir) if config.export.output_dir else result.run_dir / "export"
    exports = _export(result.best_checkpoint, config.export.formats, config.export.options, out_dir, samples)
    _write_run_report(result.run_dir, exports)
    return RunResult(result, evaluation, exports, report)


def _write_run_report(run_dir: Path, exports: list[Any]) -> None:
    """Record the exports and write ``plots/`` and ``report.html``; a report that cannot be written is a
    warning, not a failed run (the weights, evaluation and exports are all there)."""
    from yolox_sdk.errors import YoloxSdkError
    from yolox_sdk.reporting.exports_record import write_exports_record
    from yolox_sdk.reporting.run_report import report as write_report

    write_exports_record(run_dir, exports)
    try:
        log.debug("Run report written to %s", write_report(run_dir).path)  # `run` prints "Report: ..."
    except (YoloxSdkError, OSError) as error:
        log.warning("The run report was not written (%s); `yolox-sdk report %s` rebuilds it.", error, run_dir)


def _record_recommended_conf(path: Path, checkpoint: Checkpoint, conf: float | None) -> None:
    """Store the measured threshold in the checkpoint file (rewritten atomically, all else kept)."""
    if conf is not None:
        save_checkpoint(path, attrs.evolve(checkpoint, recommended_conf=conf))


def _export(
    checkpoint: Path, formats: list[str], options: dict[str, dict], out_dir: Path, samples: list[Path]
) -> list[Any]:
    if not formats:
        return []
    from yolox_sdk.export.runner import export_checkpoint

    return export_checkpoint(checkpoint, formats, options, out_dir, samples)


def evaluate_checkpoint(
    checkpoint_path: Path | str,
    data: str,
    split: str | None = None,
    format_name: str = "auto",
    batch_size: int | None = None,
    conf: float | None = None,
    nms: float | None = None,
    device: str = "auto",
    class_agnostic_nms: bool | None = None,
    format_options: Mapping[str, Any] | None = None,
) -> EvalResult:
    """Evaluate a checkpoint on a dataset (``yolox-sdk eval``) with the evaluation settings it was trained
    with; ``batch_size``, ``conf``, ``nms`` and ``class_agnostic_nms`` override them when not ``None``.
    ``format_options`` are the dataset format's (``data.format_options``)."""
    return _evaluate_on_data(
        checkpoint_path,
        data,
        split,
        format_name,
        batch_size,
        conf,
        nms,
        device,
        class_agnostic_nms,
        format_options,
    )[0]


def evaluate(
    checkpoint_path: Path | str,
    data: str,
    split: str | None = None,
    format_name: str = "auto",
    batch_size: int | None = None,
    conf: float | None = None,
    nms: float | None = None,
    device: str = "auto",
    class_agnostic_nms: bool | None = None,
    format_options: Mapping[str, Any] | None = None,
    errors: bool = False,
    deploy_conf: float | None = None,
) -> EvaluationReport:
    """``evaluate_checkpoint`` plus what the numbers mean: precision-recall and F1 curves, the recommended
    confidence threshold, the confusion matrix at ``deploy_conf`` (default: the recommended threshold)
    and, with ``errors``, the TIDE-style error analysis. ``report.write(folder)`` writes the figures.
    """
    result, dataset = _evaluate_on_data(
        checkpoint_path,
        data,
        split,
        format_name,
        batch_size,
        conf,
        nms,
        device,
        class_agnostic_nms,
        format_options,
    )
    image_paths = [record.image_path for record in dataset.records]
    return analyse_evaluation(
        result, dataset.class_names, image_paths, deploy_conf=deploy_conf, errors=errors
    )


def _evaluate_on_data(
    checkpoint_path: Path | str,
    data: str,
    split: str | None,
    format_name: str,
    batch_size: int | None,
    conf: float | None,
    nms: float | None,
    device: str,
    class_agnostic_nms: bool | None,
    format_options: Mapping[str, Any] | None,
) -> tuple[EvalResult, Any]:
    from yolox_sdk.data.formats import load_dataset
    from yolox_sdk.runtimes import as_torch_module, load_model

    resolved = resolve_device(device)
    loaded = load_model(checkpoint_path, str(resolved))
    settings = _model_evaluation_settings(
        loaded,
        batch_size=batch_size,
        conf_threshold=conf,
        nms_threshold=nms,
        class_agnostic_nms=class_agnostic_nms,
    )
    dataset = load_dataset(data, split=split, format=format_name, options=format_options)
    dataset = dataset_for_checkpoint(dataset, loaded.class_names, checkpoint_path)
    model = as_torch_module(loaded)
    return evaluate_model(model, dataset, loaded.input_size, settings, resolved), dataset


def _model_evaluation_settings(loaded: Any, **overrides: Any) -> Any:
    """A checkpoint's saved evaluation settings; for an exported file the thresholds its exporter copied
    from the checkpoint (``LoadedModel.evaluation``), else the defaults, YOLOX's, so that the checkpoint
    and its export are measured alike unless flags differ."""
    checkpoint = getattr(loaded, "checkpoint", None)
    if checkpoint is not None:
        return checkpoint_evaluation_settings(checkpoint, **overrides)
    saved = getattr(loaded, "evaluation", None)
    config = {"evaluation": dict(saved)} if isinstance(saved, Mapping) else {}
    return checkpoint_evaluation_settings(_ConfigOnly(config=config), **overrides)


@attrs.frozen
class _ConfigOnly:
    """What ``checkpoint_evaluation_settings`` reads of a checkpoint: its saved config."""

    config: dict[str, Any]


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
