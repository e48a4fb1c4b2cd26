"""The configuration schema: one frozen attrs class per section of the YAML file.

Key names follow the product plan's example YAML (``model.name``, ``data.train_path``,
``training.epochs``, ``evaluation.eval_interval``, ``device.type``, ``monitoring.tensorboard``); defaults
follow YOLOX's own training recipe (``yolox/exp/yolox_base.py``) unless a field says otherwise.
Plugin options (``training.optimizer_options``, ``export.options.onnx``, ...) stay mappings here and are
validated against the owning plugin's options class when the config is loaded. The ``augmentation``
section is the built-in augmentation plugins' own class (``AugmentationConfig``, defined with them in
``yolox_sdk.builtin.augmentations.recipe``): this module restates none of their options.
"""

from __future__ import annotations

from typing import Any

import attrs

from yolox_sdk.builtin.augmentations.recipe import AugmentationRecipe as AugmentationConfig
from yolox_sdk.config.recipes import RECIPES
from yolox_sdk.config.validators import (
    FieldError,
    boolean,
    duration,
    freeze_entries,
    image_size,
    index_list,
    metric_name,
    number,
    one_of,
    probability,
    switch_or_one_of,
    unfreeze_schedule,
)

MODEL_NAMES = ("yolox-nano", "yolox-tiny", "yolox-s", "yolox-m", "yolox-l", "yolox-x", "custom")
FREEZE_GROUPS = ("backbone", "neck", "head")  # CSPDarknet, the PAFPN layers around it, the detection head
CACHE_MODES = ("auto", "none", "ram", "disk")
DEVICE_TYPES = ("auto", "cpu", "cuda", "mps")
BEST_METRICS = ("mAP", "mAP50", "mAP75", "loss")
PRECISIONS = ("bf16", "fp16")  # training.amp's forced precisions (true: the one that helps on the device)
ASSIGNMENTS = (
    "auto",
    "batched",
    "yolox",
)  # SimOTA: by device, ours for the whole batch, or yolox's per image

# Upper bounds far beyond any real run; they turn a typo (an extra zero or three) into a config error
# instead of an allocation failure or a job that never ends.
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 4096
MAX_WORKERS = 256
MAX_CLASSES = 100_000
MAX_MULTIPLIER = 4.0  # depth/width multipliers; YOLOX-X uses 1.33 and 1.25
MAX_ITERATIONS = 1_000_000  # intervals counted in iterations or epochs
MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_GPU_INDEX = 1023


@attrs.frozen
class ModelConfig:
    """Which YOLOX network to build and what to initialise it from.

    ``pretrained: true`` loads the COCO weights of ``name``; a string is a weights path, URL or catalog
    name. ``checkpoint`` (one of our checkpoints or an official ``{"model": ...}`` file) wins over
    ``pretrained``. ``num_classes: null`` takes the class count from the training data.
    ``depth``/``width``/``input_size`` default to the variant's own values; set them for ``custom``.

    Freezing (see ``yolox_sdk.engine.freezing``): ``freeze`` lists groups (``backbone``, ``neck``,
    ``head``) or fnmatch patterns over parameter or module names frozen from the first epoch;
    ``unfreeze_schedule`` maps a 1-based epoch to the groups/patterns that train from that epoch on (and are
    frozen before it). ``freeze_backbone`` with ``freeze_until_epoch`` N (0 = never unfreeze) is the older
    shorthand for freezing the backbone during the first N epochs. Frozen BatchNorm layers always keep their
    running statistics; ``freeze_bn`` keeps those of every BatchNorm layer.
    """

    name: str = attrs.field(default="yolox-s", validator=one_of(MODEL_NAMES))
    depth: float | None = attrs.field(
        default=None, validator=number(0.0, MAX_MULTIPLIER, low_inclusive=False, optional=True)
    )
    width: float | None = attrs.field(
        default=None, validator=number(0.0, MAX_MULTIPLIER, low_inclusive=False, optional=True)
    )
    depthwise: bool | None = None
    input_size: tuple[int, int] | None = attrs.field(default=None, validator=image_size())
    pretrained: bool | str = True
    checkpoint: str | None = None
    num_classes: int | None = attrs.field(default=None, validator=number(1, MAX_CLASSES, optional=True))
    freeze_backbone: bool = False
    freeze_until_epoch: int = attrs.field(default=0, validator=number(0, MAX_EPOCHS))
    freeze: list[str] = attrs.field(factory=list, validator=freeze_entries(FREEZE_GROUPS))
    unfreeze_schedule: dict[int, list[str]] = attrs.field(
        factory=dict, validator=unfreeze_schedule(FREEZE_GROUPS)
    )
    freeze_bn: bool = False


@attrs.frozen
class DataConfig:
    """Where the data is and how it is loaded.

    A path may be a file, a folder, or a dataset name known to the asset catalog (``bccd``). ``*_split``
    selects a split where the format has them (VOC ``ImageSets/Main/<split>.txt``, YOLO ``data.yaml``
    keys, a subfolder). ``format: auto`` detects the format and refuses to guess between two.
    ``repeat_factor_threshold`` turns on class balancing by repeat-factor sampling (LVIS): images of
    classes present in fewer than that fraction of the training images are repeated within each epoch
    (see ``yolox_sdk.data.balancing``); ``null`` samples every image once per epoch. ``cache_mode``
    keeps decoded images (resized to the input) in ``ram`` or on ``disk``, or decodes them on every
    access (``none``); ``auto`` (default) takes ``ram`` when they fit in a quarter of the memory
    available and ``none`` otherwise (``yolox_sdk.data.image_cache.resolve_cache_mode``).
    """

    train_path: str | None = None
    train_split: str | None = None
    val_path: str | None = None
    val_split: str | None = None
    test_path: str | None = None
    test_split: str | None = None
    format: str = "auto"
    format_options: dict[str, Any] = attrs.field(factory=dict)
    batch_size: int = attrs.field(default=16, validator=number(1, MAX_BATCH_SIZE))
    num_workers: int = attrs.field(default=0, validator=number(0, MAX_WORKERS))
    cache_mode: str = attrs.field(default="auto", validator=one_of(CACHE_MODES))
    repeat_factor_threshold: float | None = attrs.field(
        default=None, validator=number(0.0, 1.0, low_inclusive=False, optional=True)
    )


@attrs.frozen
class DistillationConfig:
    """Knowledge distillation from a teacher checkpoint (the built-in ``distillation`` loss term).

    The teacher (a larger YOLOX trained on the same classes at the same input size) runs in eval mode
    without gradients on each augmented batch; the student's objectness and class logits follow the
    teacher's soft targets, and its boxes follow the teacher's where the teacher is confident, on top of
    YOLOX's own loss. See ``yolox_sdk.optimization.distillation``.

    Attributes:
        teacher: path of a yolox-sdk checkpoint (``best.pt`` of an earlier run) with the same class names,
            in the same order, and the same ``model.input_size`` as this run.
        weight: weight of the soft-target term (objectness and classes) added to YOLOX's loss.
        temperature: softening of both sides' logits before the sigmoid; 1 keeps them as they are, higher
            values give more weight to the teacher's low scores. The term is scaled by temperature squared
            so its gradient keeps its size.
        box_weight: weight of the box term (the student's box regression towards the teacher's).
        box_threshold: teacher score (objectness x best class probability) from which an anchor's box is
            distilled; anchors below it get no box term.
    """

    teacher: str
    weight: float = attrs.field(default=1.0, validator=number(0.0, 100.0))
    temperature: float = attrs.field(default=1.0, validator=number(0.0, 100.0, low_inclusive=False))
    box_weight: float = attrs.field(default=1.0, validator=number(0.0, 100.0))
    box_threshold: float = attrs.field(default=0.5, validator=number(0.0, 1.0))


@attrs.frozen
class TrainingConfig:
    """Optimisation recipe.

    ``lr`` is the learning rate for a batch of 64 images and is scaled linearly by the actual batch
    size, as YOLOX does (``basic_lr_per_img = 0.01 / 64``); with ``accumulate`` > 1 gradients of that many
    batches are summed before each optimizer step, and the effective batch (batch_size x accumulate) sets
    the learning rate. ``nominal_batch_size`` (instead of ``accumulate``) asks for an effective batch: the
    trainer accumulates ``round(nominal_batch_size / batch_size)`` batches and scales ``weight_decay`` by
    effective / nominal batch, so the decay per image stays the same when the batch cannot reach the
    nominal one exactly. ``data.batch_size`` is the global batch of all processes in multi-process
    (``torchrun``) training; ``sync_bn`` then synchronises BatchNorm statistics across CUDA processes.
    The last ``no_aug_epochs`` epochs train without
    mosaic/mixup and with the L1 loss on; ``multiscale_range`` picks a random input size within
    +-range*32 pixels every ``multiscale_interval`` iterations (0 disables it).
    ``amp`` turns on mixed precision where it helps (bf16 on CPUs only where it is faster than fp32; see
    ``yolox_sdk.engine.precision``); ``bf16`` or ``fp16`` asks for that precision (where the device cannot
    run it, training warns and stays in fp32); ``max_non_finite_steps`` non-finite losses in a row stop the run (each
    skips its step and lowers the fp16 loss scale). ``gradient_checkpointing`` recomputes the backbone's
    activations in the backward to save memory; ``compile`` runs the training forward through
    ``torch.compile`` (slow to compile, off by default; see ``yolox_sdk.engine.memory``).
    ``recipe`` fills the keys a config leaves unset: ``finetune`` (picked by ``auto`` for at most 50
    epochs) a short-budget schedule, ``yolox`` YOLOX's own defaults (see ``yolox_sdk.config.recipes``).
    ``time_budget`` (``20m``, ``1h30m``) trains for that long instead of a fixed count: the trainer times
    the first iterations and one evaluation, then sets ``epochs`` (at most the one written; 50 when none
    is) and scales ``warmup_epochs`` and ``no_aug_epochs`` with it (``yolox_sdk.engine.time_budget``).
    ``auto_resume`` continues, when no ``--resume`` is given, the most recent run in
    ``monitoring.output_dir`` of the same config (see ``yolox_sdk.engine.resume``).
    ``losses`` adds loss-term plugins to YOLOX's loss (``register_loss_terms``); ``distillation`` switches on
    the built-in one, knowledge distillation from a teacher checkpoint (``DistillationConfig``).
    ``assignment`` chooses the SimOTA label assignment of the loss: ``batched`` assigns every image of a
    batch at once (``yolox_sdk.models.assignment``, three host synchronisations per batch instead of
    several per image), ``yolox`` runs the ``yolox`` package's image-by-image code; both give the same
    targets and loss, and checkpoints of either load into the other. ``auto`` (default) picks ``batched`` on
    CUDA, where per-image synchronisations stall the GPU, and ``yolox`` elsewhere: on the 2-core CPU the
    batched one was as fast at batch 8 but 8x slower at batch 64 (padded tensors; ``benchmarks/README.md``).
    """

    epochs: int = attrs.field(default=300, validator=number(1, MAX_EPOCHS))
    time_budget: str | None = attrs.field(default=None, validator=duration())
    optimizer: str = "sgd"
    optimizer_options: dict[str, Any] = attrs.field(factory=dict)
    lr: float = attrs.field(default=0.01, validator=number(0.0, 10.0, low_inclusive=False))
    momentum: float = attrs.field(default=0.9, validator=number(0.0, 1.0, high_inclusive=False))
    weight_decay: float = attrs.field(default=5e-4, validator=number(0.0, 1.0))
    scheduler: str = "yolox_cosine"
    scheduler_options: dict[str, Any] = attrs.field(factory=dict)
    warmup_epochs: float = attrs.field(default=5.0, validator=number(0.0, MAX_EPOCHS))
    warmup_lr: float = attrs.field(default=0.0, validator=number(0.0, 10.0))
    min_lr_ratio: float = attrs.field(default=0.05, validator=number(0.0, 1.0))
    no_aug_epochs: int = attrs.field(default=15, validator=number(0, MAX_EPOCHS))
    multiscale_range: int = attrs.field(default=5, validator=number(0, 32))
    multiscale_interval: int = attrs.field(default=10, validator=number(1, MAX_ITERATIONS))
    accumulate: int = attrs.field(default=1, validator=number(1, MAX_BATCH_SIZE))
    nominal_batch_size: int | None = attrs.field(
        default=None, validator=number(1, MAX_BATCH_SIZE * 16, optional=True)
    )
    gradient_clip: float | None = attrs.field(
        default=None, validator=number(0.0, low_inclusive=False, optional=True)
    )
    ema: bool = True
    ema_decay: float = attrs.field(
        default=0.9998, validator=number(0.0, 1.0, low_inclusive=False, high_inclusive=False)
    )
    amp: bool | str = attrs.field(default=False, validator=switch_or_one_of(PRECISIONS))
    max_non_finite_steps: int = attrs.field(default=10, validator=number(1, MAX_ITERATIONS))
    channels_last: bool = True
    gradient_checkpointing: bool = False
    compile: bool = False
    recipe: str = attrs.field(default="auto", validator=one_of(RECIPES))
    seed: int = attrs.field(default=0, validator=number(0, MAX_SEED))
    deterministic: bool = False
    sync_bn: bool = False
    auto_resume: bool = attrs.field(default=False, validator=boolean())
    callbacks: list[Any] = attrs.field(factory=list)
    losses: list[Any] = attrs.field(factory=list)
    distillation: DistillationConfig | None = None
    assignment: str = attrs.field(default="auto", validator=one_of(ASSIGNMENTS))


@attrs.frozen
class EvaluationConfig:
    """Validation during training and ``yolox-sdk eval``.

    Thresholds default to YOLOX's evaluation values (confidence 0.01, NMS IoU 0.65); ``save_best_metric``
    chooses what makes a checkpoint ``best``: one of ``BEST_METRICS`` or a name a metric plugin listed in
    ``metrics`` computes (checked with the plugins, ``plugin_options.validate_plugin_options``). An
    evaluation always runs after the last epoch.
    """

    conf_threshold: float = attrs.field(default=0.01, validator=probability())
    nms_threshold: float = attrs.field(default=0.65, validator=probability())
    save_best_metric: str = attrs.field(default="mAP", validator=metric_name())
    eval_interval: int = attrs.field(default=10, validator=number(1, MAX_EPOCHS))
    batch_size: int | None = attrs.field(default=None, validator=number(1, MAX_BATCH_SIZE, optional=True))
    class_agnostic_nms: bool = False
    metrics: list[str] = attrs.field(factory=list)
    metric_options: dict[str, dict[str, Any]] = attrs.field(factory=dict)


@attrs.frozen
class DeviceConfig:
    """Where to run. ``auto`` picks CUDA when available, else CPU; ``fallback`` allows CPU (with a
    warning) when the requested accelerator fails to initialise."""

    type: str = attrs.field(default="auto", validator=one_of(DEVICE_TYPES))
    gpu_ids: list[int] | None = attrs.field(default=None, validator=index_list(MAX_GPU_INDEX))
    fallback: bool = True


# ``monitoring.wandb`` as the product plan writes it. The keys besides ``enabled`` are options of the W&B
# logger plugin (its ``WandbOptions`` checks them); they are spelled out here with W&B's defaults only so
# that a saved config and its hyperparameters read as they always did.
WANDB_SHORTHAND: dict[str, Any] = {"enabled": False, "project": "yolox-sdk", "name": None}
WANDB_INSTALL = (
    "the W&B logger plugin is not installed; install it with `pip install ./plugins/yolox-sdk-wandb` "
    "(or `pip install yolox-sdk-wandb`)"
)


def _switch_section(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """A mapping whose ``enabled`` is ``true`` or ``false``; the plugin it switches on checks the rest."""
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise FieldError(attribute.name, "a mapping of options", value)
    if not isinstance(value.get("enabled"), bool):
        raise FieldError(f"{attribute.name}.enabled", "true or false", value.get("enabled"))


def _over_shorthand(value: Any) -> Any:
    """The user's ``monitoring.wandb`` keys over ``WANDB_SHORTHAND``'s (a partial section keeps the rest)."""
    return {**WANDB_SHORTHAND, **value} if isinstance(value, dict) else value


@attrs.frozen
class MonitoringConfig:
    """Run directory, logging and checkpoint cadence.

    Runs go to ``<output_dir>/<run_name>``; an existing directory is never overwritten (a numeric suffix is
    added). ``loggers`` adds logger plugins by name, with their options under ``logger_options.<name>``.
    ``tensorboard`` and ``wandb`` switch on the loggers that declare them as their switch
    (``enabled_by``): ``wandb.enabled`` turns on the W&B plugin's logger and ``wandb``'s other keys are
    that plugin's options (``project``, ``name``, also ``entity``, ``mode``, ``tags``), checked by it.
    ``save_interval`` keeps ``epoch_<N>.pt`` every N epochs (0: never); ``save_every_minutes`` also
    refreshes ``last.pt`` within an epoch that lasts longer (``null``: at epoch ends only), so a crash in a
    long epoch loses minutes of work and ``--resume`` continues at the next batch.
    """

    output_dir: str = "runs"
    run_name: str | None = None
    tensorboard: bool = True
    wandb: dict[str, Any] = attrs.field(
        factory=lambda: dict(WANDB_SHORTHAND),
        converter=_over_shorthand,
        validator=_switch_section,
        metadata={"plugin_switch": WANDB_INSTALL},
    )
    loggers: list[str] = attrs.field(factory=list)
    logger_options: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    save_interval: int = attrs.field(default=10, validator=number(0, MAX_EPOCHS))
    save_every_minutes: float | None = attrs.field(
        default=10.0, validator=number(0.0, low_inclusive=False, optional=True)
    )
    log_interval: int = attrs.field(default=50, validator=number(1, MAX_ITERATIONS))
    progress_bar: bool = True


@attrs.frozen
class ExportConfig:
    """What ``yolox-sdk run`` exports after training; options per exporter under ``options.<name>``."""

    formats: list[str] = attrs.field(factory=lambda: ["onnx"])
    options: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    output_dir: str | None = None


@attrs.frozen
class Config:
    """The whole configuration of a run."""

    model: ModelConfig = attrs.field(factory=ModelConfig)
    data: DataConfig = attrs.field(factory=DataConfig)
    augmentation: AugmentationConfig = attrs.field(factory=AugmentationConfig)
    training: TrainingConfig = attrs.field(factory=TrainingConfig)
    evaluation: EvaluationConfig = attrs.field(factory=EvaluationConfig)
    device: DeviceConfig = attrs.field(factory=DeviceConfig)
    monitoring: MonitoringConfig = attrs.field(factory=MonitoringConfig)
    export: ExportConfig = attrs.field(factory=ExportConfig)
