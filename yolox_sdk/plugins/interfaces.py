"""The objects plugin factories return, as typing protocols and small base classes.

Plugins do not need to inherit from anything here (the protocols are structural), but ``Callback`` has
no-op methods so a callback only writes the events it cares about.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import numpy as np

if TYPE_CHECKING:
    import torch

    from yolox_sdk.data.records import DetectionDataset
    from yolox_sdk.engine.training_view import TrainingView


@runtime_checkable
class DatasetFormat(Protocol):
    """Reads (and optionally writes) one annotation format.

    The helpers a format needs (record types, ``RawImage`` + ``assemble_dataset``, box cleaning, the
    image-path rule, UTF-8 readers, the ``DETECT_*`` scores) are in ``yolox_sdk.data.formats``.

    Optional, found by name: ``check_labels(root, scratch) -> LabelCheck`` checks the label files of the
    dataset folder ``root`` line by line for ``data validate`` (every problem listed, one bad line not
    hiding the others) and, when the reader would stop at some of them, writes a copy of the dataset
    without them into the empty folder ``scratch`` (laid out like ``root``) and returns it as
    ``LabelCheck.cleaned``: validation then reads that copy, and ``--fix`` writes the cleaned dataset.
    """

    def detect(self, path: Path) -> float:
        """How surely ``path`` (file or folder) is this format: ``DETECT_NONE`` (0) when it is not, up to
        ``DETECT_DECLARED`` (1). Say how much was checked (``DETECT_LAYOUT``: folder names,
        ``DETECT_SCHEMA``: the keys and types of the first entries), so that ``format: auto`` picks the
        most specific of several formats that recognise a path; a tie at the top is an error naming
        them. ``True``/``False`` (detectors written before scores) count as ``DETECT_GENERIC``/none.
        Must be cheap: read the head of a file, not all of it; a crash counts as no match."""
        ...

    def load(self, path: Path, split: str | None = None) -> DetectionDataset:
        """Read the dataset at ``path``; ``split`` selects a subset where the format has splits."""
        ...

    def save(self, dataset: DetectionDataset, out_dir: Path, *, split: str | None = None) -> list[str]:
        """Write ``dataset`` under ``out_dir``; return warnings about what the format cannot hold.

        ``split`` names the subset ``dataset`` is (``data convert --split val``, ``data split --copy``),
        for formats that name their files after it; ``None`` for a whole dataset. It is passed only to a
        ``save`` that declares it, so formats written without it keep working.
        """
        ...


@attrs.define
class Sample:
    """One training sample flowing through the augmentation pipeline.

    ``image`` is HxWx3 uint8 BGR (OpenCV's order, what YOLOX weights were trained on), ``boxes`` absolute
    xyxy float32, ``labels`` int64 class indices. ``mosaic`` says whether the image is a mosaic canvas,
    which YOLOX's recipe uses to decide whether the random affine applies.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    mosaic: bool = False


@attrs.define
class AugmentationContext:
    """What an augmentation may use besides the sample itself.

    Attributes:
        input_size: target ``(height, width)`` of the network input.
        rng: the random generator of this sample; use it (not ``np.random``) so runs are reproducible.
        load_sample: ``load_sample(index)`` returns the un-augmented sample at ``index``.
        dataset_size: number of samples, for drawing random partners.
    """

    input_size: tuple[int, int]
    rng: np.random.Generator
    load_sample: Callable[[int], Sample]
    dataset_size: int


class Augmentation(Protocol):
    """A training augmentation step."""

    def __call__(self, sample: Sample, context: AugmentationContext) -> Sample: ...


class Logger(Protocol):
    """Receives hyperparameters once and metrics as training goes; must never raise for a transient failure
    (warn and keep training: ``yolox_sdk.testing.check_logger`` checks it).

    **What** ``step`` **means** depends on the metric names, which come in two families:

    * per-iteration metrics, named ``iter/<name>`` (``iter/total_loss``, ``iter/lr``), every
      ``monitoring.log_interval`` batches: ``step`` is the global iteration, batches trained since the
      run began (resumed runs continue the count);
    * per-epoch metrics (``train/...`` losses, ``val/mAP`` and the other evaluation metrics, ``lr``):
      ``step`` is the number of epochs completed (1 after the first epoch), the ``epoch`` column of
      ``metrics.csv``.

    Plot the two families on separate axes. The same epoch row can arrive twice with the same ``step``
    (a callback adding metrics to it, or a resumed run re-sending the row a kill cut off): the later call
    holds the complete row and supersedes the earlier one.
    """

    def log_hyperparameters(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


@attrs.frozen
class ScheduleSettings:
    """What a learning-rate schedule needs to know about the run.

    ``base_lr`` is already scaled to the batch size (``training.lr * batch_size / 64``); iteration counts
    are global (epoch * iters_per_epoch + step).
    """

    base_lr: float
    iters_per_epoch: int
    epochs: int
    warmup_epochs: float
    warmup_lr: float
    min_lr_ratio: float
    no_aug_epochs: int

    @property
    def total_iters(self) -> int:
        """Iterations in the whole run."""
        return self.iters_per_epoch * self.epochs


class LrSchedule(Protocol):
    """A learning rate as a pure function of the global iteration."""

    def lr_at(self, iteration: int) -> float: ...


class Callback:
    """Base class for trainer callbacks: override the events you need (the others do nothing).

    **What a callback receives.** Every event gets ``view``, a ``yolox_sdk.engine.training_view.TrainingView``:
    a read-only window on the run, read live. Progress: ``epoch`` (epochs completed), ``epochs``,
    ``iteration`` (batches so far), ``step`` (optimizer steps, the schedule's unit), ``steps_per_epoch``,
    ``metrics`` (the last epoch's metrics.csv row), ``best_value``/``best_epoch``. The run: ``config``,
    ``run_dir``, ``is_main``, ``rank``, ``world_size``, ``device``, ``class_names``, ``spec``, ``lineage``.
    The models: ``model`` (raw weights), ``ema_model`` (``None`` without EMA), ``eval_model``,
    ``optimizer``, ``lr_schedule``, and the helpers ``evaluate(model)`` (COCO metrics as the trainer
    computes them), ``autocast()``, ``training_batches(limit)`` (images without mosaic) and
    ``save_model_checkpoint(model, filename, extra)``. Assigning an attribute of the view is an error.

    **What a callback may ask for** (instead of changing the trainer): ``view.request_stop(reason)`` ends
    training after the current epoch; ``view.request_checkpoint()`` saves ``last.pt`` at the next
    optimizer-step boundary; ``view.set_lr_schedule(schedule)`` replaces the learning-rate schedule
    (``lr_at(step)``, a pure function of the step); ``view.add_metrics(metrics)`` adds to the last
    epoch's row; ``view.notify_checkpoint(path, kind)`` tells the other callbacks about a file it wrote.

    **Processes.** Under torchrun every process runs every callback, with the same metrics (evaluation
    runs in the main process and its results are shared). Anything that changes training (a schedule, a
    stop) must therefore be decided the same way everywhere; files and log lines come from the main
    process only: check ``view.is_main`` before writing.

    **State.** ``state_dict()`` returns what the callback must carry across ``--resume`` and
    ``training.auto_resume``; it is saved in every checkpoint (``training_state["callbacks"][name]``) and
    handed back to ``load_state_dict()`` before ``on_train_start`` when a run resumes. A state holds only
    tensors and plain data (dicts, lists, tuples, numbers, strings, ``None``): checkpoints are read with
    ``torch.load(weights_only=True)``. A stop requested with ``request_stop`` is saved with the run too, so
    a resumed run that had stopped stops again (unless the callback that asked is no longer configured).

    **Order of events in an epoch.** ``on_epoch_start``; ``on_iteration_end`` after each trained batch;
    ``on_eval_end`` when it evaluated; ``on_epoch_end`` (callback states are then saved with the epoch's
    checkpoints, so what it records there survives a kill); ``on_checkpoint`` for each file written.
    Callbacks written for ``trainer: Any`` keep working for these events; the old
    ``trainer.should_stop = True`` still stops, with a ``DeprecationWarning``.
    """

    def on_train_start(self, view: TrainingView) -> None:
        """Called once per process start (again on resume, after ``load_state_dict``), after the model,
        data and optimizer are built and before the first epoch."""

    def on_epoch_start(self, view: TrainingView, epoch: int) -> None:
        """Called before the first iteration of ``epoch`` (0-based)."""

    def on_iteration_end(self, view: TrainingView, iteration: int, losses: Mapping[str, float]) -> None:
        """Called after each trained batch with its detached loss components and ``lr``."""

    def on_epoch_end(self, view: TrainingView, epoch: int, metrics: Mapping[str, float]) -> None:
        """Called after each epoch with its metrics.csv row (mean losses, evaluation metrics if it
        evaluated), before the epoch's checkpoints are written."""

    def on_eval_end(self, view: TrainingView, epoch: int, metrics: Mapping[str, float]) -> None:
        """Called after each evaluation with the COCO metrics (on every process)."""

    def on_checkpoint(self, view: TrainingView, path: Path, kind: str) -> None:
        """Called in the main process after a checkpoint was written atomically; ``kind`` is ``"last"``,
        ``"best"``, ``"epoch"`` (``monitoring.save_interval``) or ``"swa"`` (the ``swa`` callback's)."""

    def on_train_end(self, view: TrainingView) -> None:
        """Called once when training ends, normally or by a stop request; the loggers are still open, so
        final metrics can go through ``view.add_metrics``."""

    def state_dict(self) -> dict[str, Any]:
        """What ``--resume`` must restore (tensors and plain data only); ``{}`` for a stateless callback."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (called before ``on_train_start`` on resume)."""


@attrs.frozen
class ExportResult:
    """What an exporter produced and how closely it matches PyTorch."""

    path: Path
    format: str
    max_abs_diff: float | None = None
    notes: tuple[str, ...] = ()


@attrs.frozen
class LossContext:
    """What a loss term's factory is given (``register_loss_terms``).

    Attributes:
        class_names: the training data's classes, index = class id (a teacher must have the same).
        input_size: the student's ``model.input_size`` as ``(height, width)``.
        device: where the student trains (a ``torch.device``).
        config: the run's resolved ``Config`` (read it to refuse settings the term cannot support).
        where: the YAML path of the term's options, for error messages (``training.distillation``).
    """

    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    device: Any
    config: Any
    where: str


@attrs.frozen
class HeadLevel:
    """The raw outputs of YOLOX's head at one feature level, before any sigmoid or decoding.

    Attributes:
        regression: ``(N, 4, H, W)``: x and y offsets in cells, log width and log height in strides.
        objectness: ``(N, 1, H, W)`` logits.
        classes: ``(N, classes, H, W)`` logits.
        stride: input pixels per cell at this level (8, 16, 32).
    """

    regression: torch.Tensor
    objectness: torch.Tensor
    classes: torch.Tensor
    stride: int


@attrs.frozen
class LossInputs:
    """What a loss term gets in each training step.

    Attributes:
        images: the augmented (and multi-scale resized) batch the student saw, ``(N, 3, H, W)``, on the
            training device; a teacher must run on this very tensor.
        targets: YOLOX's labels ``(N, max_boxes, 5)``: class, cx, cy, w, h in input pixels.
        student: the student head's raw outputs, one ``HeadLevel`` per stride (part of the autograd graph).
        outputs: YOLOX's own loss terms of this step (``total_loss``, ``iou_loss``, ...); read only.
    """

    images: torch.Tensor
    targets: torch.Tensor
    student: tuple[HeadLevel, ...]
    outputs: Mapping[str, Any]


class LossTerm(Protocol):
    """A loss added to YOLOX's own in every training step.

    ``names`` are the keys ``__call__`` returns (logged as ``iter/<name>`` and ``train/<name>``; they must
    not be YOLOX's own ``total_loss``, ``iou_loss``, ``conf_loss``, ``cls_loss``, ``l1_loss``). ``__call__``
    runs inside the student's autocast and returns scalar tensors, already weighted, whose gradient
    reaches the student through ``inputs.student``. A term holds no state across steps (a resumed run
    rebuilds it from the config), or it is not resumable.
    """

    names: tuple[str, ...]

    def __call__(self, inputs: LossInputs) -> Mapping[str, torch.Tensor]: ...


class Metric(Protocol):
    """An evaluation metric beyond COCO's AP, computed from the evaluation's matched boxes.

    ``names`` are the keys ``compute`` returns (``F1``: training logs ``val/F1``); ``best.pt`` keeps the
    highest value of a name ``evaluation.save_best_metric`` picks, the lowest for names listed in
    ``lower_is_better``. ``compute`` receives a ``yolox_sdk.evaluation.matches.MatchedBoxes`` and returns
    finite floats (``NaN`` where undefined, e.g. no ground truth).
    """

    names: tuple[str, ...]

    def compute(self, matches: Any) -> Mapping[str, float]: ...


# The keys of the ``metadata`` mapping every exporter receives (built by ``export.runner.export_metadata``
# from the checkpoint), enough to use the exported file without the checkpoint.
METADATA_CLASS_NAMES = "class_names"
"""``list[str]``: class names in label-index order (output column ``5 + i`` is class ``i``)."""
METADATA_INPUT_SIZE = "input_size"
"""``[height, width]``: the network input, which sample images are letterboxed to."""
METADATA_MODEL_NAME = "model_name"
"""``str``: the variant (``yolox-nano``); ``depth``, ``width``, ``depthwise``, ``num_classes`` and ``act``
(the rest of the model spec) are keys of their own."""
METADATA_SDK_VERSION = "sdk_version"
"""``str``: the yolox-sdk version exporting."""
METADATA_TRAINED_WITH = "trained_with_sdk_version"
"""``str``: the yolox-sdk version that trained the checkpoint."""
METADATA_FILE_STEM = "file_stem"
"""``str``: the name to give the exported file(s), without suffix (the checkpoint's: ``best``)."""
METADATA_RECOMMENDED_CONF = "recommended_conf"
"""``float``, present only when the checkpoint has one: the confidence threshold with the highest F1 on
the validation data (``yolox-sdk eval``/``run``), what ``predict --conf auto`` uses; optional, so it is not
in ``METADATA_KEYS``."""
METADATA_EVALUATION = "evaluation"
"""``{"conf_threshold": float, "nms_threshold": float, "class_agnostic_nms": bool}``, present only when the
checkpoint's config has an ``evaluation`` section: the thresholds ``eval`` of the checkpoint uses, so that
``eval`` of the exported file measures it alike (a runtime exposes it as ``LoadedModel.evaluation``)."""
METADATA_EVALUATION_KEYS = ("conf_threshold", "nms_threshold", "class_agnostic_nms")
METADATA_KEYS = (
    METADATA_CLASS_NAMES,
    METADATA_INPUT_SIZE,
    METADATA_MODEL_NAME,
    METADATA_SDK_VERSION,
    METADATA_TRAINED_WITH,
    METADATA_FILE_STEM,
)


class Exporter(Protocol):
    """Writes a model to a deployment format and verifies it.

    ``export(model, metadata, out_dir, sample_images)`` is called with:

    * ``model``: the checkpoint's network (EMA weights when it has them) in eval mode, float32, on the
      CPU. Copy it before changing it (fusing, casting, moving): the same object goes to every exporter
      of the run.
    * ``metadata``: the ``METADATA_*`` keys above plus the model spec's fields; a copy per exporter.
    * ``out_dir``: the folder for the file(s), created by the exporter if missing; name them
      ``metadata["file_stem"]`` plus the format's suffix.
    * ``sample_images``: real images to compare the export with PyTorch on: the ``--sample`` images given,
      else the first four images of the checkpoint's validation data (its training data when it has
      none); possibly empty when called from the API. Preprocess them with
      ``yolox_sdk.data.preprocess.letterbox`` (what the model was trained on), and fall back on a
      synthetic image, saying so in ``ExportResult.notes``, when there are none.

    An exporter that needs data beyond a few samples (INT8 calibration, an accuracy budget: ``onnx-int8``)
    sets the class attribute ``uses_training_config = True``; ``export_checkpoint`` then also passes
    ``training_config=``, the checkpoint's saved config as a plain mapping (its ``data`` section names the
    training and validation data, ``evaluation`` the thresholds). It may lack both (an API-made
    checkpoint): say in the error which option supplies the data instead.

    ``yolox_sdk.testing.check_exporter`` runs an exporter on a tiny model and checks this contract.
    """

    def export(
        self,
        model: torch.nn.Module,
        metadata: Mapping[str, Any],
        out_dir: Path,
        sample_images: Sequence[Path],
    ) -> ExportResult: ...


class LoadedModel(Protocol):
    """A model file loaded by a ``Runtime``, ready to run on letterboxed batches.

    Attributes:
        class_names: in label-index order (output column ``5 + i`` is class ``i``).
        input_size: the network input ``(height, width)`` images are letterboxed to.
        recommended_conf: the file's recommended confidence threshold (``predict --conf auto``), or ``None``.
        runtime: the runtime's registered name, for messages and the benchmark table.

    Optionally, ``evaluation``: the file's ``METADATA_EVALUATION`` entry as a mapping (``None`` or absent
    when it has none); ``eval`` starts from those thresholds (``yolox_sdk.runtimes.evaluation_metadata``
    reads and checks the entry).
    """

    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    recommended_conf: float | None
    runtime: str

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Decoded rows ``(N, anchors, 5 + classes)`` of ``[cx, cy, w, h, objectness, class
        probabilities...]`` in input pixels (YOLOX's decoded output) for a float32 ``(N, 3, H, W)`` batch
        made by ``yolox_sdk.data.preprocess`` (BGR, 0..255). Any ``N`` must work: a runtime whose file has
        a fixed batch runs it in pieces."""
        ...


class Runtime(Protocol):
    """Runs one kind of model file (a checkpoint, ONNX, OpenVINO IR, ...) for predict, eval and benchmark.

    ``accepts(path)`` must be cheap (the suffix, or a file's first bytes): every runtime is asked in turn
    and exactly one must say yes. ``load`` raises ``WeightsError`` (``CheckpointError`` for a corrupt or
    truncated file) naming the file when it cannot give a ``LoadedModel``, for example when the file
    lacks the ``METADATA_*`` keys an exporter writes.
    """

    suffixes: tuple[str, ...]

    def accepts(self, path: Path) -> bool: ...

    def load(self, path: Path, device: str) -> LoadedModel: ...
