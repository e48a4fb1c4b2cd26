"""The one way a model is evaluated: training's val metrics, ``yolox-sdk run``'s ``eval_<split>.json`` and
``yolox-sdk eval`` all call ``evaluate_model`` with an ``EvaluationConfig``.

Why one function: the numbers a run reports after training must be the numbers that chose its best
checkpoint. When each caller spelled out the thresholds itself, the run and eval paths dropped
``evaluation.class_agnostic_nms`` and measured something else than training had. Here the whole
evaluation section travels as one value; callers only choose where it comes from:

- a run's config (``evaluation_settings``: training and ``yolox-sdk run``);
- a checkpoint's saved config, with command-line flags overriding single fields
  (``checkpoint_evaluation_settings``: ``yolox-sdk eval``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs
import torch

from yolox_sdk.checkpoints.format import Checkpoint
from yolox_sdk.config.schema import BEST_METRICS, Config, EvaluationConfig
from yolox_sdk.config.structure import structure_options
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.data.training_data import align_classes
from yolox_sdk.errors import ConfigError, DatasetError, did_you_mean
from yolox_sdk.evaluation.coco_eval import EvalResult, evaluate
from yolox_sdk.evaluation.matches import MatchedBoxes, matched_boxes
from yolox_sdk.models.factory import model_from_checkpoint
from yolox_sdk.plugins.building import build_plugin
from yolox_sdk.plugins.manager import get_registry
from yolox_sdk.plugins.registry import Registry

log = logging.getLogger(__name__)

# Images per batch when neither ``evaluation.batch_size`` nor a data batch size says otherwise.
DEFAULT_BATCH_SIZE = 8


def evaluation_settings(config: Config) -> EvaluationConfig:
    """``config.evaluation`` with its batch size resolved (``null`` means ``data.batch_size``)."""
    return attrs.evolve(config.evaluation, batch_size=config.evaluation.batch_size or config.data.batch_size)


def checkpoint_evaluation_settings(checkpoint: Checkpoint, **overrides: Any) -> EvaluationConfig:
    """The evaluation settings the checkpoint was trained with, with ``overrides`` (fields of
    ``EvaluationConfig`` whose value is not ``None``: the command-line flags) taking precedence.

    Keys the current schema does not know (an older or newer SDK wrote the file) are ignored; a saved
    section that does not validate is replaced by the defaults with a warning, since the file's weights
    are still good. ``batch_size`` left unset is ``DEFAULT_BATCH_SIZE``, not the training batch, which may
    not fit the machine evaluating.
    """
    known = attrs.fields_dict(EvaluationConfig)
    chosen = {key: value for key, value in overrides.items() if value is not None}
    if set(chosen) - set(known):
        raise TypeError(f"Not evaluation settings: {', '.join(sorted(set(chosen) - set(known)))}")
    saved = checkpoint.config.get("evaluation")
    if not isinstance(saved, Mapping):
        saved = {}
    saved = {key: value for key, value in saved.items() if key in known and key not in chosen}
    try:
        settings = structure_options(EvaluationConfig, saved, "evaluation", "the checkpoint's config")
    except ConfigError as error:
        log.warning("%s; evaluating with the default evaluation settings instead.", error)
        settings = EvaluationConfig()
    settings = attrs.evolve(settings, **chosen)
    return settings if settings.batch_size else attrs.evolve(settings, batch_size=DEFAULT_BATCH_SIZE)


def evaluate_model(
    model: torch.nn.Module,
    dataset: DetectionDataset,
    input_size: tuple[int, int],
    settings: EvaluationConfig,
    device: torch.device | str,
    registry: Registry | None = None,
) -> EvalResult:
    """COCO metrics of ``model`` on ``dataset`` at ``input_size`` (height, width), as ``settings`` say:
    confidence and NMS thresholds, class-agnostic or per-class NMS, batch size.

    The metric plugins of ``settings.metrics`` (looked up in ``registry``, default the installed plugins:
    a trainer given its own registry passes it) add their values to ``metrics`` (``F1``...). The model is
    moved to ``device`` and left in the train/eval state it came in.
    """
    result = evaluate(
        model,
        dataset,
        input_size,
        batch_size=settings.batch_size or DEFAULT_BATCH_SIZE,
        conf_threshold=settings.conf_threshold,
        nms_threshold=settings.nms_threshold,
        class_agnostic=settings.class_agnostic_nms,
        device=str(device),
    )
    if settings.metrics and result.evaluator is not None:
        matches = matched_boxes(result.evaluator, tuple(dataset.class_names), result.category_ids)
        result.metrics.update(plugin_metrics(settings, matches, registry))
    return result


def build_metrics(settings: EvaluationConfig, registry: Registry | None = None) -> list[Any]:
    """The metric plugins ``settings.metrics`` names, built with ``evaluation.metric_options.<name>``."""
    registry = registry or get_registry()
    return [
        build_plugin(
            registry,
            "metric",
            name,
            settings.metric_options.get(name, {}),
            f"evaluation.metric_options.{name}",
        )
        for name in settings.metrics
    ]


def best_metric_lower_is_better(settings: EvaluationConfig, registry: Registry | None = None) -> bool:
    """Whether ``best.pt`` keeps the lowest value of ``settings.save_best_metric`` (a metric plugin's
    ``lower_is_better`` name such as ``count_mae``; ``loss`` is handled by the checkpoint policy).

    Raises:
        ConfigError: the name is neither built in (``BEST_METRICS``) nor computed by a metric in
            ``settings.metrics``.
    """
    wanted = settings.save_best_metric
    if wanted in BEST_METRICS:
        return False
    metrics = build_metrics(settings, registry)
    names = [str(name) for metric in metrics for name in getattr(metric, "names", ())]
    if wanted not in names:
        computed = f"; the metrics in evaluation.metrics compute {', '.join(names)}" if names else ""
        raise ConfigError(
            f"Invalid config: evaluation.save_best_metric: '{wanted}' is not a metric this run computes: use one "
            f"of {', '.join(BEST_METRICS)}{computed}, or add the metric plugin that computes it to "
            f"evaluation.metrics ('yolox-sdk plugins' lists them).{did_you_mean(wanted, [*BEST_METRICS, *names])}"
        )
    return any(wanted in getattr(metric, "lower_is_better", ()) for metric in metrics)


def plugin_metrics(
    settings: EvaluationConfig, matches: MatchedBoxes, registry: Registry | None = None
) -> dict[str, float]:
    """Every configured metric plugin's values on ``matches``; a name two plugins compute is an error."""
    values: dict[str, float] = {}
    for name, metric in zip(settings.metrics, build_metrics(settings, registry), strict=True):
        computed = {str(key): float(value) for key, value in metric.compute(matches).items()}
        clash = sorted(set(computed) & set(values))
        if clash:
            raise ConfigError(
                f"Invalid config: evaluation.metrics: '{name}' computes {', '.join(clash)}, which another metric "
                "in the list computes too; keep one of them."
            )
        values.update(computed)
    return values


def dataset_for_checkpoint(
    dataset: DetectionDataset, class_names: tuple[str, ...], checkpoint_path: Any = "the checkpoint"
) -> DetectionDataset:
    """``dataset`` with its labels re-indexed to the checkpoint's ``class_names``, or a clear error.

    Classes are matched by name: the same names in another order are mapped (and the mapping logged);
    a dataset with no images, or whose boxes use a class the model does not know, cannot be evaluated.

    Raises:
        DatasetError: naming the dataset, the checkpoint and both class lists.
    """
    source = dataset.source if dataset.source is not None else "the dataset"
    if not dataset.records:
        raise DatasetError(f"{source} holds no images to evaluate on. Check the path and --split.")
    if tuple(dataset.class_names) == tuple(class_names):
        return dataset
    used = {dataset.class_names[int(label)] for record in dataset.records for label in record.labels}
    unknown = sorted(used - set(class_names))
    if unknown:
        raise DatasetError(
            f"{source} has boxes of classes the model in {checkpoint_path} was not trained on: "
            f"{', '.join(unknown)}. The dataset's classes are [{', '.join(dataset.class_names)}]; the model's are "
            f"[{', '.join(class_names)}]. Evaluate on data labelled with the model's classes (names must match)."
        )
    mapping = ", ".join(
        f"{name} -> {class_names.index(name)}" for name in dataset.class_names if name in class_names
    )
    log.info("%s lists its classes in another order than the model; mapped by name: %s", source, mapping)
    return align_classes(dataset, class_names)


def evaluate_checkpoint_weights(
    checkpoint: Checkpoint,
    dataset: DetectionDataset,
    settings: EvaluationConfig,
    device: torch.device | str,
) -> EvalResult:
    """``evaluate_model`` on the checkpoint's network (EMA weights, the evaluated ones) at its input size."""
    model = model_from_checkpoint(checkpoint).to(str(device))
    return evaluate_model(model, dataset, checkpoint.spec.input_size, settings, device)
