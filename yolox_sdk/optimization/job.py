"""``yolox-sdk prune``: prune a checkpoint, write an ordinary SDK checkpoint, measure before and after.

The steps, in the order that fails fastest (every refusal comes before anything is measured or written):

1. check the plan (ratio in (0, 1), method, scope, target), the output path (never the input; an existing
   file only with ``force``) and, for ``taylor``, that training data is known;
2. load the checkpoint (EMA weights: the evaluated ones) and refuse a ratio it is already pruned past;
3. measure it (parameters, MACs, CPU latency, val mAP), prune, write the pruned checkpoint atomically, read
   it back through the loading path every command uses and check it gives the pruned network's outputs;
4. measure the pruned file; with ``finetune_epochs``, run the SDK's own training from it (the normal
   ``train`` job with ``model.checkpoint`` = the pruned file, in its own run directory) and measure the
   recovered ``best.pt``. Recovery is part of the feature: right after pruning, mAP is usually near 0.

The pruned checkpoint carries the structure in its tensors' shapes (``models.structure``), a record of
the pruning in ``Checkpoint.pruning``, no EMA and no training state, and no recommended confidence (the
pruned model's scores differ; evaluate it again to get one).
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from yolox_sdk.checkpoints.format import Checkpoint, load_checkpoint, save_checkpoint
from yolox_sdk.errors import CheckpointError, ConfigError
from yolox_sdk.models.factory import build_model, model_from_checkpoint
from yolox_sdk.optimization.calibration import Batch, recalibrate_batchnorm, training_batches
from yolox_sdk.optimization.figures import ModelFigures, add_map, measure_network, time_in_alternation
from yolox_sdk.optimization.pruning import (
    DATA_SCOPES,
    PruningPlan,
    Sensitivity,
    check_plan,
    prunable_channels,
    prune_network,
    ratio_for_target,
    step_ratio,
)

log = logging.getLogger(__name__)

_ROUND_TRIP_TOLERANCE = 1e-4
_CALIBRATION_BATCH = 8
_SENSITIVITY_BATCHES = 2  # 16 images: each of ~600 loss measurements of a nano costs one pass over them
_RECALIBRATION_BATCHES = 25  # 200 images for the BatchNorm statistics (fewer when the data has fewer)
_MIN_RECALIBRATION_IMAGES = 64
_MIN_STEP = 0.01  # pruning less than 1 % of the remaining channels removes nothing in most layers


@attrs.define
class PruneResult:
    """What ``prune`` did and measured.

    Attributes:
        output: the pruned checkpoint.
        plan: the plan as given.
        ratio: share of the unpruned network's channels removed, now (over all pruning so far).
        before, after: the input checkpoint's and the pruned file's figures.
        recovered: the figures of the recovery run's ``best.pt`` (``None`` without ``finetune_epochs``).
        recovery_run: that run's directory.
    """

    output: Path
    plan: PruningPlan
    ratio: float
    before: ModelFigures
    after: ModelFigures
    recovered: ModelFigures | None = None
    recovery_run: Path | None = None

    def table(self) -> str:
        """The before/after table ``yolox-sdk prune`` prints."""
        from yolox_sdk.optimization.report import figures_table

        return figures_table(self)


def prune(
    checkpoint: Path | str,
    ratio: float | None = 0.3,
    *,
    method: str = "l2",
    scope: str = "sensitivity",
    target_params: int | None = None,
    target_macs: int | None = None,
    out: Path | str | None = None,
    force: bool = False,
    data: str | None = None,
    taylor_batches: int = 4,
    recalibrate: bool = True,
    val_data: str | None = None,
    val_split: str | None = None,
    val_format: str | None = None,
    evaluate: bool = True,
    latency_runs: int = 20,
    finetune_epochs: int = 0,
    finetune_overrides: Iterable[str] = (),
    distill: bool = True,
) -> PruneResult:
    """Prune ``checkpoint``'s channels and write the result as an ordinary SDK checkpoint.

    Args:
        ratio: share of the unpruned network's channels to remove, in (0, 1) (ignored with a target).
        method: ``l1``, ``l2`` (weight magnitude) or ``taylor`` (loss gradients on training images).
        scope: ``sensitivity`` (each layer's share from the loss measured on training batches when its
            channels go), ``global`` (channels ranked across layers) or ``uniform`` (the ratio in every layer).
        target_params, target_macs: prune until the model has at most this many parameters / MACs.
        out: the pruned file; default ``<stem>.pruned.pt`` next to ``checkpoint``.
        force: replace an existing ``out``.
        data: training data for ``taylor``, ``sensitivity`` and the recalibration (default: the
            checkpoint's config's ``data.train_path``).
        taylor_batches: training batches whose loss gradients Taylor importance sums.
        recalibrate: re-estimate the BatchNorm statistics of the pruned network on training images
            (skipped, with a note, when no training data is known and the plan needs none).
        val_data, val_split, val_format: where mAP is measured (default: the checkpoint's config's
            validation data); ``evaluate=False`` skips mAP.
        latency_runs: timed CPU forward passes per model (0 skips the timing).
        finetune_epochs: recovery training epochs from the pruned file (0: none).
        finetune_overrides: ``section.key=value`` overrides of the recovery run's config.
        distill: the recovery run learns from the unpruned ``checkpoint`` as its distillation teacher
            (``training.distillation``) as well as from the labels.

    Raises:
        ConfigError: a bad plan, output path or option, or a checkpoint already pruned past ``ratio``
            (all before any work).
        CheckpointError: an unreadable or damaged checkpoint.
    """
    plan = PruningPlan(ratio, method, scope, target_params, target_macs)
    check_plan(plan)
    source = Path(checkpoint)
    output = _output_path(source, out, force)
    _check_counts(taylor_batches, latency_runs, finetune_epochs)
    loaded = load_checkpoint(source)
    needs_data = method == "taylor" or scope in DATA_SCOPES
    data_config = _calibration_config(loaded, data, required=needs_data, wanted=recalibrate)
    batches = (
        training_batches(data_config, loaded.spec.input_size, _RECALIBRATION_BATCHES) if data_config else []
    )
    model = model_from_checkpoint(loaded)
    already = pruned_fraction(model, loaded)
    if plan.target is None:
        _check_not_past(source, plan.ratio or 0.0, already)
    val = _validation_data(loaded, val_data, val_split, val_format) if evaluate else None
    recovery = _recovery_config(
        loaded, output, finetune_epochs, [*(_teacher(source) if distill else ()), *finetune_overrides]
    )

    input_size = loaded.spec.input_size
    before = measure_network(model, input_size)
    unpruned = copy.deepcopy(model) if latency_runs else None  # timed beside the pruned one, below
    add_map(before, source, val)
    _prune_in_place(model, input_size, plan, (data_config, batches), taylor_batches, already)
    if recalibrate and batches:
        _recalibrate(model, batches)
    overall = pruned_fraction(model, loaded)
    after = measure_network(model, input_size)
    _save_pruned(output, model, loaded, plan, overall, before, after)
    add_map(after, output, val)
    result = PruneResult(output, plan, overall, before, after)
    timed = [(before, unpruned), (after, model)] if unpruned is not None else []
    if recovery is not None:
        timed += _recover(result, recovery, val)
    time_in_alternation(timed, latency_runs)
    return result


def _recalibrate(model: nn.Module, batches: list[Batch]) -> None:
    """Re-estimate the BatchNorm statistics, unless the training data is too small to estimate them (a
    handful of images describes the data worse than the statistics training left)."""
    images = sum(len(images) for images, _ in batches)
    if images < _MIN_RECALIBRATION_IMAGES:
        log.warning(
            "Only %d training images: too few to re-estimate the BatchNorm statistics after pruning (at least "
            "%d), so they are kept as they were.",
            images,
            _MIN_RECALIBRATION_IMAGES,
        )
        return
    recalibrate_batchnorm(model, batches)


def _prune_in_place(
    model: nn.Module,
    input_size: tuple[int, int],
    plan: PruningPlan,
    data: tuple[Any, list[Batch]],
    taylor_batches: int,
    already: float,
) -> None:
    """Prune ``model`` per ``plan`` (ratios count from the unpruned network, ``already`` of which is gone);
    ``data`` is the training config and its no-augmentation batches."""
    data_config, batches = data
    if plan.method == "taylor":
        from yolox_sdk.optimization.taylor import accumulate_loss_gradients

        accumulate_loss_gradients(model, data_config, input_size, taylor_batches)
    if plan.scope == "sensitivity":
        sensitivity = Sensitivity.measure(model, input_size, plan.method, batches[:_SENSITIVITY_BATCHES])
        unit = plan.target[0] if plan.target is not None else "channels"

        def prune(network: nn.Module, ratio: float) -> None:
            sensitivity.prune(network, ratio, unit)
    else:

        def prune(network: nn.Module, ratio: float) -> None:
            prune_network(network, input_size, ratio, plan.method, plan.scope)

    ratio = (
        ratio_for_target(model, input_size, plan, prune)
        if plan.target is not None
        else step_ratio(plan.ratio or 0.0, already)
    )
    prune(model, ratio)


def pruned_fraction(model: nn.Module, checkpoint: Checkpoint) -> float:
    """Share of the unpruned network's prunable channels that ``model`` no longer has."""
    with torch.device("meta"):
        unpruned = prunable_channels(build_model(checkpoint.spec))
    return 1 - prunable_channels(model) / unpruned


def _output_path(source: Path, out: Path | str | None, force: bool) -> Path:
    output = Path(out) if out is not None else source.with_name(f"{source.stem}.pruned.pt")
    if output.resolve() == source.resolve():
        raise ConfigError(
            f"The pruned checkpoint would replace its input {source}. Give another --out; the input is never "
            "overwritten."
        )
    if output.exists() and not force:
        raise ConfigError(
            f"{output} already exists. Give another --out, or --force to replace it (it is written only once "
            "the pruned model is complete)."
        )
    if output.is_dir():
        raise ConfigError(f"{output} is a folder; --out should name the checkpoint file to write.")
    return output


def _check_counts(taylor_batches: int, latency_runs: int, finetune_epochs: int) -> None:
    for name, value, low in (
        ("taylor_batches", taylor_batches, 1),
        ("latency_runs", latency_runs, 0),
        ("finetune_epochs", finetune_epochs, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} should be a whole number >= {low}, got {value!r}.")


def _check_not_past(source: Path, ratio: float, already: float) -> None:
    """Refuse a ratio the checkpoint is already pruned past (ratios count from the unpruned network)."""
    if step_ratio(ratio, already) < _MIN_STEP:
        raise ConfigError(
            f"{source} is already pruned: {already:.1%} of its channels are gone, so a ratio of {ratio:g} (the "
            f"share of the unpruned network's channels to remove) leaves nothing to prune. Ask for a ratio above "
            f"{already + _MIN_STEP * (1 - already):.2f}, or prune the unpruned checkpoint."
        )


def _validation_data(
    checkpoint: Checkpoint, data: str | None, split: str | None, format_name: str | None
) -> dict[str, Any] | None:
    """Where mAP is measured: the given data, else the checkpoint's own validation data (or none)."""
    config_data = checkpoint.config.get("data") if isinstance(checkpoint.config, Mapping) else None
    config_data = config_data if isinstance(config_data, Mapping) else {}
    if data is None:
        data = config_data.get("val_path")
        split = split if split is not None else config_data.get("val_split")
        options = config_data.get("format_options")
    else:
        options = None
    if not data:
        log.warning(
            "The checkpoint's config names no validation data, so mAP is not measured; give --val-data."
        )
        return None
    return {
        "data": str(data),
        "split": split,
        "format": format_name or config_data.get("format") or "auto",
        "format_options": options if isinstance(options, Mapping) else None,
    }


def _calibration_config(checkpoint: Checkpoint, data: str | None, *, required: bool, wanted: bool) -> Any:
    """The training config whose images pruning measures the loss on and recalibrates with (batches of
    ``_CALIBRATION_BATCH`` images); ``None`` when nothing needs it, or when only the recalibration would and
    no training data is known (then it is skipped, with a note)."""
    if not (required or wanted):
        return None
    saved = checkpoint.config.get("data") if isinstance(checkpoint.config, Mapping) else None
    if data is None and not (isinstance(saved, Mapping) and saved.get("train_path")):
        if required:
            raise ConfigError(
                f"{checkpoint.path} names no training data, and the pruning asked for measures the loss on "
                "training images (--scope sensitivity, the default, and --method taylor). Give --data (a "
                "dataset path or catalog name), or --scope global/uniform with --method l1/l2, which need none."
            )
        log.warning(
            "%s names no training data, so the BatchNorm statistics are not re-estimated after pruning; give "
            "--data to have them.",
            checkpoint.path,
        )
        return None
    return _training_config(checkpoint, data, [f"data.batch_size={_CALIBRATION_BATCH}"])


def _training_config(checkpoint: Checkpoint, data: str | None, overrides: Iterable[str]) -> Any:
    """The checkpoint's own run config (with ``data`` as the training data when given), validated."""
    from yolox_sdk.config.loader import load_config
    from yolox_sdk.yaml_files import dump_yaml

    saved = dict(checkpoint.config) if isinstance(checkpoint.config, Mapping) else {}
    if not saved and data is None:
        raise ConfigError(
            f"{checkpoint.path} carries no training config, so there is no training data to use. Give --data "
            "(a dataset path or catalog name)."
        )
    extra = [f"data.train_path={data}"] if data is not None else []
    with tempfile.TemporaryDirectory(prefix="yolox-sdk-prune-") as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(dump_yaml(saved), encoding="utf-8")
        return load_config(path, [*extra, *overrides])


def _teacher(source: Path) -> list[str]:
    """Recovery learns from the unpruned network too: its outputs on each training batch are soft targets
    that say far more than the labels alone. On BCCD (nano, 30 % uniform, 8 recovery epochs) mAP50:95
    reached 0.352 with the unpruned checkpoint as teacher and 0.281 without."""
    return [f"training.distillation.teacher={source.resolve()}"]


def _recovery_config(checkpoint: Checkpoint, output: Path, epochs: int, overrides: Iterable[str]) -> Any:
    """The config of the recovery run: the checkpoint's own, starting from the pruned file, in a run
    directory next to it; ``None`` without recovery epochs. Built before any work so a bad override fails
    first."""
    if epochs == 0:
        return None
    recovery = [
        f"model.checkpoint={output.resolve()}",
        f"training.epochs={epochs}",
        "training.auto_resume=false",
        f"monitoring.output_dir={output.resolve().parent}",
        f"monitoring.run_name={output.stem}-recovery",
    ]
    return _training_config(checkpoint, None, [*recovery, *overrides])


def _save_pruned(
    output: Path,
    model: nn.Module,
    source: Checkpoint,
    plan: PruningPlan,
    overall: float,
    before: ModelFigures,
    after: ModelFigures,
) -> None:
    """Write the pruned checkpoint atomically and prove it loads back as the same network."""
    record = {
        "method": plan.method,
        "scope": plan.scope,
        "ratio": round(overall, 4),
        "requested": attrs.asdict(plan),
        "source": str(source.path),
        "params_before": before.params,
        "params_after": after.params,
        "macs_before": before.macs,
        "macs_after": after.macs,
        "input_size": list(after.input_size),
        **({"previous": source.pruning} if source.pruning else {}),
    }
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    pruned = Checkpoint(
        state, source.spec, source.class_names, config=source.config, lineage=source.lineage, pruning=record
    )
    save_checkpoint(output, pruned)
    try:
        _check_round_trip(output, model, source.spec.input_size)
    except BaseException:
        output.unlink(missing_ok=True)
        raise


def _check_round_trip(output: Path, model: nn.Module, input_size: tuple[int, int]) -> None:
    reloaded = model_from_checkpoint(load_checkpoint(output))
    batch = torch.rand(1, 3, *input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (reloaded(batch) - model.eval()(batch)).abs().max().item()
    if difference > _ROUND_TRIP_TOLERANCE:
        raise CheckpointError(
            f"The pruned checkpoint {output} does not reload as the pruned network (outputs differ by "
            f"{difference:.2e}); it was removed. Please report this with the input checkpoint."
        )


def _recover(
    result: PruneResult, config: Any, val: Mapping[str, Any] | None
) -> list[tuple[ModelFigures, nn.Module]]:
    """Recovery finetuning with the SDK's own ``train`` job, then the figures of its ``best.pt``; returns
    the recovered model with its figures, for the timing."""
    from yolox_sdk.engine.trainer import train

    trained = train(config)
    best = trained.best_checkpoint
    recovered_model = model_from_checkpoint(load_checkpoint(best))
    result.recovered = measure_network(recovered_model, result.after.input_size)
    add_map(result.recovered, best, val)
    result.recovery_run = trained.run_dir
    return [(result.recovered, recovered_model)]
