"""The plugin API of yolox-sdk: every hook a plugin may implement.

A plugin is a module (or object) registered under the entry-point group ``yolox_sdk`` that implements
some of the functions below, decorated with ``yolox_sdk.hookimpl``. Built-in features use exactly these
hooks through the project's own entry points, so anything a built-in does a third party can do too.

Each ``register_<kind>`` hook receives a ``register`` function::

    register(name, factory, options=OptionsClass, description="one line shown by `yolox-sdk plugins`")

``name`` is what users write in their YAML. ``options`` is an optional attrs class holding the plugin's own
settings; the SDK structures the user's YAML mapping into it and reports errors with the YAML path, so a
plugin never parses raw dicts. ``factory`` is called with the structured options (and, for some kinds, more
arguments, listed per hook) and returns the object the kind describes in ``yolox_sdk.plugins.interfaces``.

Which kind each ``register_<kind>s`` hook fills, what its factories return and where the config names
its plugins is the table in ``yolox_sdk.plugins.kinds``; a new kind is a row there plus its spec here.
A function decorated with ``hookimpl`` whose name is not a hook below (a typo) never runs; the plugin is
then listed as broken by ``yolox-sdk plugins``, with the closest hook name.

Hooks must only call ``register``: no heavy imports, no I/O, no global state. They run whenever the
registry is built, including for ``yolox-sdk --help``; import heavy dependencies inside the factory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "yolox_sdk"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[..., None]


@hookspec
def register_dataset_formats(register: Register) -> None:
    """Register dataset formats (readers and writers of annotation files).

    ``factory(options)`` returns a ``DatasetFormat``: ``detect(path)`` scores how surely a path is this
    format (``DETECT_NONE`` .. ``DETECT_DECLARED``; ``format: auto`` takes the single highest),
    ``load(path, split)`` returns a ``DetectionDataset`` and ``save(dataset, out_dir, split=...)`` writes
    one; an optional ``check_labels(root, scratch)`` gives ``data validate`` and ``--fix`` the format's
    line-by-line label checks. Readers count problems they fix (clipped boxes, dropped zero-area boxes) in
    the dataset's report and raise ``DatasetError`` naming the file and line for problems they cannot fix.
    The helpers and types a format uses are in ``yolox_sdk.data.formats``; ``yolox_sdk.testing`` checks
    a format's round trip and detection.
    """


@hookspec
def register_augmentations(register: Register) -> None:
    """Register training augmentations.

    ``factory(options)`` returns an ``Augmentation``: a callable ``(sample, context) -> sample`` working on
    a ``Sample`` (BGR uint8 image, absolute xyxy boxes, labels). ``context`` gives the target input size,
    a seeded random generator and access to other dataset samples (for mosaic and mixup).
    Augmentations must not modify the sample they receive in place. An augmentation object with the
    attribute ``disabled_in_no_aug = True`` is skipped during the last ``training.no_aug_epochs`` epochs
    (YOLOX switches mosaic, affine and mixup off there; HSV and flip stay on).
    """


@hookspec
def register_loggers(register: Register) -> None:
    """Register experiment loggers (TensorBoard, CSV, W&B, ...).

    ``factory(options, run_dir)`` returns a ``Logger`` with ``log_hyperparameters(params)``,
    ``log_metrics(metrics, step)`` and ``close()``. A logger must never raise out of ``log_*`` for a
    transient failure (network down): warn and keep training. ``step`` is the global iteration for
    ``iter/...`` metrics and the number of epochs completed for epoch rows (see ``interfaces.Logger``).

    A run opens the loggers listed in ``monitoring.loggers`` (options under
    ``monitoring.logger_options.<name>``) and those that say when they are on when registering:
    ``register(..., always_on=True)`` (``csv``) or ``register(..., enabled_by="monitoring.tensorboard")``,
    a config key that is a boolean, or a mapping whose ``enabled`` switches the logger on and whose other
    keys are its options (``monitoring.wandb``).
    """


@hookspec
def register_optimizers(register: Register) -> None:
    """Register optimizers.

    ``factory(options, model, training)`` returns a ``torch.optim.Optimizer`` over ``model``'s trainable
    parameters. ``training`` is the resolved ``TrainingConfig`` (base lr, momentum, weight decay); the
    trainer sets each parameter group's ``lr`` every iteration from the scheduler.
    """


@hookspec
def register_schedulers(register: Register) -> None:
    """Register learning-rate schedules.

    ``factory(options, settings)`` returns a ``LrSchedule``: ``lr_at(iteration)`` gives the learning
    rate for a global iteration (0-based); ``settings`` is a ``ScheduleSettings`` (batch-scaled base lr,
    iterations per epoch, epochs, warm-up and no-augmentation epochs). Schedules are pure functions of the
    iteration, which is what makes resumed runs continue exactly.
    """


@hookspec
def register_callbacks(register: Register) -> None:
    """Register trainer callbacks (early stopping, checkpointing policies, notifications, ...).

    ``factory(options)`` returns a ``Callback`` whose ``on_*`` methods the trainer calls at fixed events
    (train start/end, epoch start/end, iteration end, evaluation end, checkpoint written) with a read-only
    ``TrainingView`` of the run, in every process. A callback changes the run only through the view's
    requests (``request_stop``, ``request_checkpoint``, ``set_lr_schedule``, ``add_metrics``), and carries
    state across ``--resume`` with ``state_dict``/``load_state_dict`` (saved in every checkpoint). The
    ``Callback`` docstring in ``yolox_sdk.plugins.interfaces`` is the full contract.
    """


@hookspec
def register_loss_terms(register: Register) -> None:
    """Register loss terms added to YOLOX's own loss in every training step (knowledge distillation,
    auxiliary objectives).

    ``factory(options, context)`` returns a ``LossTerm`` (see ``interfaces.LossTerm``); ``context`` is a
    ``LossContext`` (the run's class names, input size, device and config, and the YAML path of the
    term's options). Build and check everything the term needs in the factory (a teacher checkpoint):
    it runs before the run directory exists, so a ``ConfigError`` raised there stops the run before any
    work. The trainer calls the term after the student's forward, inside the same autocast, with a
    ``LossInputs`` (the augmented batch and the student head's raw outputs); the term returns
    ``{name: scalar tensor}``, already weighted, for every name in its ``names``. The trainer adds them to
    the total loss and logs them like YOLOX's terms (``iter/<name>``, ``train/<name>``). A term must not
    step, modify the student's weights or keep tensors of one step into the next.

    A run uses the terms listed in ``training.losses`` (``name`` or ``{name: x, option: value}``) and those
    registered with ``enabled_by="training.<key>"`` whose key is set: the built-in ``distillation`` term
    is switched on, with its options, by ``training.distillation``.
    """


@hookspec
def register_exporters(register: Register) -> None:
    """Register model exporters (ONNX, TFLite, CoreML, TensorRT, ...).

    ``factory(options)`` returns an ``Exporter``: ``export(model, metadata, out_dir, sample_images)``
    writes the file(s), checks the exported model against PyTorch on the sample images, and returns an
    ``ExportResult``. An exporter whose output disagrees with PyTorch must raise ``ExportError``. The
    model's mode and device, the ``metadata`` keys (``interfaces.METADATA_*``) and how sample images are
    chosen are documented on ``interfaces.Exporter``; preprocess with ``yolox_sdk.data.preprocess.letterbox``.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add sub-commands to the ``yolox-sdk`` click group ``cli``."""


@hookspec
def register_metrics(register: Register) -> None:
    """Register evaluation metrics computed from an evaluation's matched boxes.

    ``factory(options)`` returns a ``Metric``: ``names`` (the keys ``compute`` returns), optional
    ``lower_is_better`` (those of ``names`` where less is better) and ``compute(matches)``, which gets a
    ``yolox_sdk.evaluation.matches.MatchedBoxes`` (every ground-truth box and detection of the evaluation,
    with pycocotools' own IoU-0.5 matching) and returns ``{name: value}``. The metrics listed in
    ``evaluation.metrics`` (options under ``evaluation.metric_options.<name>``) are computed at every
    evaluation: training's ``val/<name>`` columns (``metrics.csv``, every logger), ``yolox-sdk eval``'s
    output and JSON, and the run report; ``evaluation.save_best_metric`` may name one. ``compute`` must
    not modify ``matches`` and should take well under a second (it runs at every evaluation).
    """


@hookspec
def register_runtimes(register: Register) -> None:
    """Register runtimes: what runs an exported (or trained) model file for ``predict``, ``eval`` and
    ``benchmark`` (PyTorch checkpoints, ONNX Runtime, OpenVINO, TFLite, TensorRT, ...).

    ``factory(options)`` returns a ``Runtime``: ``suffixes`` (``(".onnx",)``), ``accepts(path)`` (cheap;
    exactly one installed runtime may accept a file) and ``load(path, device)``, which returns a
    ``LoadedModel`` giving ``class_names``, ``input_size``, ``recommended_conf`` and
    ``forward(batch) -> decoded rows`` (see ``interfaces.LoadedModel``), so the SDK's own NMS and
    evaluator run on every format unchanged. Read class names and input size from the file's metadata
    (what the exporter wrote, ``interfaces.METADATA_*``); ``load`` raises ``WeightsError`` naming the file
    when they are missing. Options (threads, ...) are the plugin's options class.
    """
