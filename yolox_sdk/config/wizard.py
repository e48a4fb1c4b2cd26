"""The config wizard's knowledge: what a dataset holds, what to train on it, and the commented YAML file.

``yolox-sdk config wizard`` (``yolox_sdk.cli.wizard_commands``) asks the questions; this module answers
everything else, in three parts:

* Facts, read once: ``inspect_dataset`` (format detection, classes, counts, splits, box sizes, what the
  reader drops: the same readers and statistics as ``yolox-sdk data info`` / ``data stats``),
  ``available_devices`` and ``measure_training_speed`` (a few real training steps of the proposed model
  on the device, built as training builds them and timed by the time-budget probe, images/s).
* The proposal: pure functions of those facts (``propose``, ``propose_model``, ``propose_input_size``,
  ``propose_batch_size``, ``propose_epochs``, ``epochs_in_budget``, ``fitting_setting``), each returning
  its value with the reason written beside it in the YAML file. The rules are in their docstrings.
* ``render_config``: the YAML text, one comment per value saying why it was chosen.

The probe is the only slow part (seconds): ``PROBE_SIZE_ENV`` makes it run at a smaller input size, its
speed scaled by the pixel count to the proposed size, for tests and very slow machines.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import yaml

from yolox_sdk.errors import DatasetError

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")
VARIANTS = ("yolox-nano", "yolox-tiny", "yolox-s", "yolox-m", "yolox-l", "yolox-x")  # smallest first
NATIVE_SIZE = {"yolox-nano": 416, "yolox-tiny": 416}  # the others: 640 (models.variants)
# Forward GFLOPs of the official experiment files at their native size (nano/tiny 416, others 640): the
# relative cost of a variant, used only to guess which smaller setting fits a budget before re-measuring.
GFLOPS = {
    "yolox-nano": 1.08,
    "yolox-tiny": 6.45,
    "yolox-s": 26.8,
    "yolox-m": 73.8,
    "yolox-l": 155.6,
    "yolox-x": 281.9,
}
# Training memory per image at 640 px in fp32 (GiB), rounded up from YOLOX's own reports and ours; with
# mixed precision about 60 % of it. Only the GPU batch size uses it, and the probe corrects it on OOM.
TRAIN_GIB_PER_IMAGE_640 = {
    "yolox-nano": 0.3,
    "yolox-tiny": 0.45,
    "yolox-s": 0.7,
    "yolox-m": 1.3,
    "yolox-l": 2.2,
    "yolox-x": 3.6,
}
AMP_MEMORY_SHARE = 0.6
GPU_MEMORY_SHARE = 0.6  # of the GPU's memory the batch may plan for: room for activations' peaks, cuDNN
MIN_INPUT_SIZE = 320  # multi-scale training (+-5 x 32 px) needs room below the size
MAX_INPUT_SIZE = 1024
SMALL_BOX_PIXELS = 16.0  # a median box side below two strides of 8 px at the input size: objects too small
REFERENCE_BATCH = 64  # YOLOX's lr is defined per 64 images; more per step buys nothing on one GPU
CPU_BATCH = 8
TARGET_IMAGES_SEEN = 10_000  # images trained on, over all epochs, by the proposed epoch count
MIN_EPOCHS, MAX_EPOCHS = 10, 100
MIN_BUDGET_EPOCHS = 5  # a budget below this many epochs of the proposed model steps down a size
EVALUATIONS_PER_RUN = 10
EVAL_SPEEDUP = 3.0  # evaluation (forward only, no augmentation) against a training step, per image
PROBE_STEPS = 2  # timed training steps, after the time-budget probe's own warm-up ones
CPU_PROBE_BATCH = 4  # on a CPU the per-image cost hardly depends on the batch (8.9 img/s at 8, 6.7 at 64)
PROBE_SIZE_ENV = "YOLOX_SDK_WIZARD_PROBE_SIZE"
COMMENT_COLUMN = 36  # comments line up here; a longer line (a long path) takes its comment two spaces on


# --------------------------------------------------------------------------------------------- facts


@attrs.frozen
class DatasetFacts:
    """What ``inspect_dataset`` found; everything the proposal needs to know about the data.

    Attributes:
        path: the dataset as the config names it (an absolute folder or file, or a catalog name).
        format: the format plugin that reads it.
        formats: every format that recognised the path, best first (more than one: a mixed folder).
        class_names: ordered class names.
        images, boxes: counts over the whole dataset.
        labelled_images: images with at least one box.
        splits: images per named split found (``train``, ``val``, ``test``); empty when there are none.
        median_long_side: median of each image's longer side, in pixels.
        median_box_side: median square root of the box areas, in pixels of the original image.
        notes: what the reader dropped or fixed (``2 x zero-area box dropped``), one line each.
        ambiguous: the two best of ``formats`` matched equally well (``data.format`` must be given).
    """

    path: str
    format: str
    formats: tuple[str, ...]
    class_names: tuple[str, ...]
    images: int
    boxes: int
    labelled_images: int
    splits: dict[str, int]
    median_long_side: int
    median_box_side: float
    notes: tuple[str, ...] = ()
    ambiguous: bool = False  # the best two formats of ``formats`` scored the same: no format is the match
    format_given: bool = False  # ``format`` was asked for (a flag or an answer), not detected

    @property
    def train_split(self) -> str | None:
        return "train" if "train" in self.splits else None

    @property
    def val_split(self) -> str | None:
        return "val" if "val" in self.splits and self.train_split else None

    @property
    def test_split(self) -> str | None:
        return "test" if "test" in self.splits and self.train_split else None

    @property
    def train_images(self) -> int:
        return self.splits["train"] if self.train_split else self.images

    @property
    def val_images(self) -> int:
        return self.splits["val"] if self.val_split else 0

    @property
    def num_classes_text(self) -> str:
        return f"{len(self.class_names)} class{'' if len(self.class_names) == 1 else 'es'}"


def summary_line(facts: DatasetFacts) -> str:
    """``VOC, 3 classes, 364 images (train 205, val 87, test 72), 4,886 boxes; 2 x zero-area box dropped``."""
    splits = ", ".join(f"{name} {count:,}" for name, count in facts.splits.items())
    line = (
        f"{facts.format.upper()}, {facts.num_classes_text}, {facts.images:,} images"
        f"{f' ({splits})' if splits else ''}, {facts.boxes:,} boxes"
    )
    if facts.labelled_images < facts.images:
        line += f", {facts.images - facts.labelled_images:,} images without boxes"
    if facts.notes:
        line += "; " + "; ".join(facts.notes)
    return line


@contextlib.contextmanager
def quiet_logs(level: int = logging.ERROR) -> Iterator[None]:
    """The SDK's own log lines held back below ``level`` (readers repeat what the summary says)."""
    logger = logging.getLogger("yolox_sdk")
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _reader_notes(report: Any) -> tuple[str, ...]:
    """``2 x zero-area box dropped``: each problem a reader counted, without its example place."""
    return tuple(f"{count:,} x {problem}" for problem, count in sorted(report.counts.items()))


def inspect_dataset(path: str, format: str | None = None) -> DatasetFacts:
    """Read the dataset at ``path`` (a folder, a file or a catalog name) and return its facts.

    The format is ``format`` when given, else the best of the formats that recognise the path (all of them
    are returned, so the caller can ask about a mixed folder). Splits are the ones of ``SPLIT_NAMES`` that
    the format reads (VOC ``ImageSets/Main``, YOLO ``data.yaml`` keys, ...), dropped when the train split
    holds every image of another one (a format that ignores split names).

    Raises:
        DatasetError: the path does not exist, is empty, holds no dataset any format reads, or has no
            labelled image; one paragraph saying what was found and what to do.
    """
    from yolox_sdk.data.formats import detection_scores, load_dataset, resolve_dataset_path
    from yolox_sdk.plugins.manager import get_registry

    text = str(path).strip()
    if not text:
        raise DatasetError("No dataset path given. Type the folder (or annotation file) of your dataset.")
    registry = get_registry()
    with quiet_logs():
        resolved, catalog_format = resolve_dataset_path(text)
    if resolved.is_dir() and not any(resolved.iterdir()):
        raise DatasetError(
            f"{resolved} is an empty folder: there is no dataset in it. Give the folder that holds your "
            "images and labels."
        )
    scores = detection_scores(resolved, registry)
    formats = tuple(scores)
    ambiguous = len(scores) > 1 and len(set(list(scores.values())[:2])) == 1
    if catalog_format and catalog_format not in formats:
        formats = (catalog_format, *formats)
    given = format is not None
    if format is None:
        if not formats:
            names = ", ".join(registry.names("dataset_format"))
            raise DatasetError(
                f"{resolved} does not look like a dataset in any installed format ({names}): no annotation "
                "files in a layout they read were found. Point at the folder holding the annotations "
                "(VOC Annotations/, YOLO data.yaml or labels/, a COCO .json), or run "
                f"`yolox-sdk data info {resolved} --format NAME` to see what a format expects."
            )
        format = formats[0]
    with quiet_logs():
        dataset = load_dataset(resolved, format=format)
        splits = _split_sizes(resolved, format, dataset, load_dataset)
    labelled = sum(1 for record in dataset.records if len(record.boxes))
    if not dataset.records or not labelled:
        raise DatasetError(
            f"{resolved} ({format}) has {len(dataset.records)} image(s) but no labelled image: there is "
            "nothing to learn from. Label the images first, or point at the folder whose annotations hold "
            "the boxes."
        )
    boxes = np.concatenate([record.boxes for record in dataset.records])
    sides = np.sqrt(np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0))
    long_sides = [max(record.width, record.height) for record in dataset.records]
    return DatasetFacts(
        path=text if catalog_format else str(resolved.resolve()),
        format=format,
        formats=formats or (format,),
        class_names=tuple(dataset.class_names),
        images=len(dataset),
        boxes=dataset.num_boxes(),
        labelled_images=labelled,
        splits=splits,
        median_long_side=int(statistics.median(long_sides)),
        median_box_side=float(np.median(sides)) if len(sides) else 0.0,
        notes=_reader_notes(dataset.report),
        ambiguous=ambiguous and format == formats[0],
        format_given=given,
    )


def _split_sizes(resolved: Path, format: str, whole: Any, load: Any) -> dict[str, int]:
    sizes: dict[str, int] = {}
    images: dict[str, set[str]] = {}
    for name in SPLIT_NAMES:
        try:
            split = load(resolved, split=name, format=format)
        except Exception:  # noqa: BLE001 - a split the format cannot read is a split the dataset lacks
            continue
        if split.records:
            sizes[name] = len(split)
            images[name] = {str(record.image_path) for record in split.records}
    if "train" in images and (
        len(images["train"]) == len(whole)
        and any(images[name] <= images["train"] for name in images if name != "train")
    ):
        return {}  # the "train" split is the whole dataset and holds the others: the format ignores names
    return sizes


@attrs.frozen
class DeviceChoice:
    """A device the machine has: ``cpu``, ``cuda:N`` or ``mps``, with what the proposal needs of it."""

    name: str
    description: str
    memory_gib: float | None = None  # GPU memory; None on the CPU and MPS (shared with the system)
    cpu_count: int = 1

    @property
    def kind(self) -> str:
        return self.name.partition(":")[0]

    @property
    def index(self) -> int:
        return int(self.name.partition(":")[2] or 0)


def available_devices() -> list[DeviceChoice]:
    """The devices this machine can train on, fastest first: each CUDA GPU, MPS, then the CPU."""
    import torch

    cpus = os.cpu_count() or 1
    found = []
    try:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken driver: no GPU to offer
        count = 0
    for index in range(count):
        properties = torch.cuda.get_device_properties(index)
        memory = properties.total_memory / 2**30
        found.append(
            DeviceChoice(f"cuda:{index}", f"cuda:{index} ({properties.name}, {memory:.0f} GiB)", memory, cpus)
        )
    if torch.backends.mps.is_available():
        found.append(DeviceChoice("mps", "mps (Apple GPU)", None, cpus))
    found.append(DeviceChoice("cpu", f"cpu ({cpus} core{'s' if cpus != 1 else ''})", None, cpus))
    return found


# ------------------------------------------------------------------------------------------ proposal


@attrs.frozen
class Choice:
    """One proposed value and why (the YAML comment beside it)."""

    value: Any
    reason: str


@attrs.frozen
class Proposal:
    """The settings the wizard writes, each with its reason."""

    model: Choice
    input_size: Choice
    batch_size: Choice
    epochs: Choice
    num_workers: Choice
    amp: Choice
    eval_interval: Choice


def native_size(model: str) -> int:
    """The variant's own input size (``models.variants``): 416 for nano and tiny, else 640."""
    return NATIVE_SIZE.get(model, 640)


def propose_model(facts: DatasetFacts, device: DeviceChoice) -> Choice:
    """The variant: the smallest on a CPU, larger ones on GPUs as the data grows.

    On a CPU every step is paid in seconds: yolox-nano (1.1 GFLOPs) is the only variant that finetunes
    in minutes (yolox-s is 25x the compute). Apple's MPS gets yolox-tiny. On CUDA the training set decides,
    because a bigger network overfits a small set before it beats a smaller one: yolox-s under 1,000
    training images, yolox-m under 10,000, yolox-l from there (yolox-x costs 1.8x yolox-l for +1.4 COCO
    mAP). A GPU with under 8 GiB gets one size smaller.
    """
    if device.kind == "cpu":
        return Choice("yolox-nano", "the smallest variant: on a CPU larger ones train 6-25x slower")
    if device.kind == "mps":
        return Choice("yolox-tiny", "small enough to train at interactive speed on Apple's GPU")
    images = facts.train_images
    if images < 1_000:
        name, why = (
            "yolox-s",
            f"{images:,} training images (< 1,000): larger variants overfit before they pay off",
        )
    elif images < 10_000:
        name, why = "yolox-m", f"{images:,} training images (1,000-10,000)"
    else:
        name, why = "yolox-l", f"{images:,} training images (>= 10,000)"
    if device.memory_gib is not None and device.memory_gib < 8:
        name = VARIANTS[VARIANTS.index(name) - 1]
        why += f"; one size down for a {device.memory_gib:.0f} GiB GPU"
    return Choice(name, why)


def _multiple_of_32(value: float) -> int:
    return int(math.ceil(value / 32) * 32)


def propose_input_size(facts: DatasetFacts, model: str) -> Choice:
    """The square input size: the variant's own, fitted to the images and their objects.

    Images smaller than the variant's size are not upscaled beyond their own longer side (rounded up to
    a multiple of 32, at least 320 so multi-scale training keeps room below it). When the median box,
    scaled to that size, is under ``SMALL_BOX_PIXELS`` (two strides of YOLOX's finest 8 px grid), the size
    grows towards the images' own resolution, at most 640 for nano/tiny and 1024 for the others: small
    objects need pixels more than a small model needs speed.
    """
    base = native_size(model)
    own = max(MIN_INPUT_SIZE, _multiple_of_32(facts.median_long_side))
    size, why = base, f"{model}'s own size"
    if own < base:
        size, why = (
            own,
            f"the images' median longer side is {facts.median_long_side} px: no upscaling beyond it",
        )
    scaled_box = facts.median_box_side * size / max(facts.median_long_side, 1)
    if size == base:
        why += f" (the median box is {scaled_box:.0f} px at it)"
    if scaled_box < SMALL_BOX_PIXELS and own > size:
        ceiling = 640 if model in NATIVE_SIZE else MAX_INPUT_SIZE
        wanted = _multiple_of_32(size * SMALL_BOX_PIXELS / max(scaled_box, 1e-6))
        size = min(wanted, own, ceiling)
        why = (
            f"small objects: the median box would be {scaled_box:.0f} px at {base} px, under "
            f"{SMALL_BOX_PIXELS:.0f} px (two strides of the finest grid)"
        )
    return Choice(size, why)


def _power_of_two_at_most(value: float) -> int:
    return 2 ** int(math.floor(math.log2(max(value, 1))))


def propose_batch_size(facts: DatasetFacts, device: DeviceChoice, model: str, size: int) -> Choice:
    """Images per step: 8 on a CPU, what the GPU's memory holds (up to 64) on a GPU, never more than half
    the training set.

    CPU: the per-image cost hardly depends on the batch (yolox-nano 8.9 img/s at 8, 6.7 at 64 on the
    2-core machine, ``benchmarks/README.md``), so a small batch gives more updates per epoch. GPU: the
    largest power of two whose training memory (``TRAIN_GIB_PER_IMAGE_640`` scaled by pixels, 60 % of it
    with mixed precision) fits in ``GPU_MEMORY_SHARE`` of the GPU, at most YOLOX's reference batch of 64
    (its learning rate is defined per 64 images). Half the training set at most, so an epoch has two steps.
    """
    if device.kind == "cuda" and device.memory_gib:
        per_image = TRAIN_GIB_PER_IMAGE_640.get(model, 1.0) * (size / 640) ** 2 * AMP_MEMORY_SHARE
        batch = min(REFERENCE_BATCH, _power_of_two_at_most(device.memory_gib * GPU_MEMORY_SHARE / per_image))
        why = (
            f"fits in {device.memory_gib:.0f} GiB with mixed precision (about {per_image:.2f} GiB per image)"
        )
        if batch == REFERENCE_BATCH:
            why = "YOLOX's reference batch (its learning rate is per 64 images); the GPU has room for it"
    elif device.kind == "mps":
        batch, why = 16, "a middle batch: MPS shares the system's memory"
    else:
        batch, why = (
            CPU_BATCH,
            "on a CPU the cost per image hardly depends on the batch; 8 updates more often",
        )
    half = max(1, _power_of_two_at_most(facts.train_images / 2))
    if batch > half:
        batch, why = (
            half,
            f"at most half of the {facts.train_images:,} training images, so an epoch has 2 steps",
        )
    return Choice(batch, why)


def _nice_epochs(value: float) -> int:
    return int(round(value / 5) * 5) if value > 20 else int(round(value))


def propose_epochs(facts: DatasetFacts) -> Choice:
    """About ``TARGET_IMAGES_SEEN`` images trained on in all, between 10 and 100 epochs.

    Finetuning from COCO weights needs a number of updates more than a number of passes: a small set is
    passed over more often (BCCD's 205 training images: 50 epochs; 4 images: 100), a large one at least
    10 times (the finetune recipe's warm-up and no-augmentation epochs need room).
    """
    from yolox_sdk.config.recipes import FINETUNE_MAX_EPOCHS

    images = facts.train_images
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, _nice_epochs(TARGET_IMAGES_SEEN / max(images, 1))))
    why = (
        f"{epochs} x {images:,} training images = {epochs * images:,} images seen (aim: about "
        f"{TARGET_IMAGES_SEEN:,}, within {MIN_EPOCHS}-{MAX_EPOCHS} epochs)"
    )
    if epochs <= FINETUNE_MAX_EPOCHS:
        why += "; training.recipe picks its finetune schedule"
    return Choice(epochs, why)


def propose_num_workers(device: DeviceChoice) -> Choice:
    """Loader processes: none on a machine of 2 cores or fewer (the training step needs them, and 0 was
    fastest there), else half the cores, at most 8."""
    if device.cpu_count <= 2:
        cores = f"{device.cpu_count} CPU core{plural(device.cpu_count)}"
        return Choice(0, f"{cores}: loading in the training process is fastest")
    workers = min(8, device.cpu_count // 2)
    return Choice(workers, f"half of the {device.cpu_count} CPU cores decode and augment images")


def propose_amp(device: DeviceChoice) -> Choice:
    """Mixed precision on GPUs (bf16/fp16 run faster there), fp32 on a CPU: yolox-nano's step was 1.16x
    slower in bf16 on the 2-core machine (``engine.precision``)."""
    if device.kind == "cpu":
        return Choice(False, "fp32: bf16 made yolox-nano's step 1.16x slower on the CPU measured")
    return Choice(True, "mixed precision: faster and smaller on GPUs")


def propose_eval_interval(epochs: int) -> Choice:
    """About ``EVALUATIONS_PER_RUN`` validations per run (one always follows the last epoch)."""
    interval = max(1, round(epochs / EVALUATIONS_PER_RUN))
    count = min(EVALUATIONS_PER_RUN, epochs)
    return Choice(interval, f"about {count} validation{plural(count)} over {epochs} epoch{plural(epochs)}")


def plural(count: int) -> str:
    """``s`` unless ``count`` is one."""
    return "" if count == 1 else "s"


def propose(
    facts: DatasetFacts, device: DeviceChoice, model: str | None = None, size: int | None = None
) -> Proposal:
    """The whole proposal for ``facts`` on ``device``; ``model`` / ``size`` fix those two (a user's answer,
    or a step down for a budget) and the rest follows from them."""
    model_choice = Choice(model, "chosen") if model else propose_model(facts, device)
    size_choice = Choice(size, "chosen") if size else propose_input_size(facts, model_choice.value)
    epochs = propose_epochs(facts)
    return Proposal(
        model=model_choice,
        input_size=size_choice,
        batch_size=propose_batch_size(facts, device, model_choice.value, size_choice.value),
        epochs=epochs,
        num_workers=propose_num_workers(device),
        amp=propose_amp(device),
        eval_interval=propose_eval_interval(epochs.value),
    )


def estimate_seconds(facts: DatasetFacts, images_per_second: float, epochs: int, eval_interval: int) -> float:
    """Wall time of ``epochs`` epochs at ``images_per_second`` training speed, with the validations (every
    ``eval_interval`` epochs and after the last, each image ``EVAL_SPEEDUP`` times faster than training)."""
    train = epochs * facts.train_images / images_per_second
    evaluations = epochs // eval_interval + (1 if epochs % eval_interval else 0)
    return train + evaluations * facts.val_images / (EVAL_SPEEDUP * images_per_second)


def epochs_in_budget(
    facts: DatasetFacts, images_per_second: float, budget_seconds: float, eval_interval: int
) -> int:
    """Whole epochs that fit in ``budget_seconds`` at the measured speed (``estimate_seconds`` inverted)."""
    per_epoch = facts.train_images / images_per_second + facts.val_images / (
        EVAL_SPEEDUP * images_per_second * eval_interval
    )
    epochs = int(budget_seconds / per_epoch) + 1
    allowed = budget_seconds * (1 + 1e-9)  # a budget computed from an estimate holds that estimate's epochs
    while epochs > 0 and estimate_seconds(facts, images_per_second, epochs, eval_interval) > allowed:
        epochs -= 1
    return epochs


def relative_cost(model: str, size: int) -> float:
    """Compute per image of ``model`` at ``size`` px against yolox-nano at 416: GFLOPs scaled by pixels."""
    return GFLOPS[model] * (size / native_size(model)) ** 2 / GFLOPS["yolox-nano"]


def smaller_setting(model: str, size: int) -> tuple[str, int] | None:
    """The next cheaper setting to try when a budget is too short: one variant down at its own size (or
    the current size if smaller), then, for yolox-nano, the input size down to 320; ``None`` past that."""
    index = VARIANTS.index(model) if model in VARIANTS else 0
    if index > 0:
        smaller = VARIANTS[index - 1]
        return smaller, min(size, native_size(smaller))
    if size > MIN_INPUT_SIZE:
        return model, MIN_INPUT_SIZE
    return None


def fitting_setting(
    facts: DatasetFacts,
    model: str,
    size: int,
    images_per_second: float,
    budget_seconds: float,
    eval_interval: int,
) -> tuple[str, int] | None:
    """The first of the cheaper settings (``smaller_setting`` after ``model`` at ``size``, measured at
    ``images_per_second``) predicted to train ``MIN_BUDGET_EPOCHS`` epochs within the budget, or the
    cheapest when none is; ``None`` when ``model`` at ``size`` already fits or nothing is cheaper.

    The speed of an unmeasured setting is guessed from compute (``relative_cost``); the caller measures the
    setting before trusting it.
    """
    if epochs_in_budget(facts, images_per_second, budget_seconds, eval_interval) >= MIN_BUDGET_EPOCHS:
        return None
    setting, candidate = None, smaller_setting(model, size)
    while candidate is not None:
        setting = candidate
        guess = images_per_second * relative_cost(model, size) / relative_cost(*candidate)
        if epochs_in_budget(facts, guess, budget_seconds, eval_interval) >= MIN_BUDGET_EPOCHS:
            break
        candidate = smaller_setting(*candidate)
    return setting


def budget_text(seconds: float) -> str:
    """A time budget as ``training.time_budget`` writes it: ``90s``, ``20m``, ``1h30m``."""
    whole = max(1, int(round(seconds)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts)


def default_budget(seconds: float) -> str:
    """A round budget of at least ``seconds``: whole minutes under 10 minutes, 5 minutes under an hour,
    15 minutes under 4 hours, whole hours beyond."""
    for limit, step in ((600, 60), (3600, 300), (4 * 3600, 900)):
        if seconds <= limit:
            return budget_text(max(step, math.ceil(seconds / step) * step))
    return budget_text(math.ceil(seconds / 3600) * 3600)


# --------------------------------------------------------------------------------------------- probe


@attrs.frozen
class SpeedMeasurement:
    """What ``measure_training_speed`` timed."""

    images_per_second: float
    model: str
    input_size: int
    batch_size: int  # the batch the proposal uses (on a CUDA OOM, the one that fitted)
    probe_batch: int
    probe_size: int
    steps: int
    seconds: float  # the probe's own wall time, set-up included
    includes_warmup: bool = False  # an epoch shorter than the warm-up: its first, slower steps are timed

    def describe(self) -> str:
        """``2.1 images/s (2 training steps of 4 images)``."""
        scaled = f", at {self.probe_size} px scaled by pixels" if self.probe_size != self.input_size else ""
        warm = ", warm-up included: slower than training will be" if self.includes_warmup else ""
        return (
            f"{self.images_per_second:.1f} images/s ({self.steps} training step{plural(self.steps)} of "
            f"{self.probe_batch} images{scaled}{warm})"
        )


def probe_size_override() -> int | None:
    """``$YOLOX_SDK_WIZARD_PROBE_SIZE`` as a multiple of 32, or ``None`` when unset or not a number."""
    text = os.environ.get(PROBE_SIZE_ENV, "").strip()
    if not text.isdigit() or int(text) < 32:
        return None
    return int(text) // 32 * 32


def probe_overrides(
    facts: DatasetFacts, device: DeviceChoice, model: str, size: int, batch: int, amp: bool
) -> list[str]:
    """Config overrides of the probe's run: the wizard's settings on the training split, no validation
    data, random initial weights (their speed is the same, and nothing is downloaded)."""
    overrides = [
        f"model.name={model}",
        f"model.input_size=[{size},{size}]",
        "model.pretrained=false",
        f"data.train_path={yaml_scalar(facts.path)}",
        f"data.train_split={facts.train_split or 'null'}",
        f"data.format={facts.format}",
        f"data.batch_size={batch}",
        "data.num_workers=0",
        "data.val_path=null",
        f"device.type={device.kind}",
        f"training.amp={'true' if amp else 'false'}",
        "monitoring.progress_bar=false",
    ]
    if device.kind == "cuda":
        overrides.append(f"device.gpu_ids=[{device.index}]")
    return overrides


def measure_training_speed(
    facts: DatasetFacts,
    device: DeviceChoice,
    model: str,
    size: int,
    batch: int,
    amp: bool,
    steps: int = PROBE_STEPS,
) -> SpeedMeasurement:
    """Images/s of real training steps of ``model`` at ``size`` px on ``device``, on the dataset's images.

    The run is built as ``yolox-sdk train`` builds it (``engine.setup.build_training_parts``: data,
    augmentation, loader, model, precision, optimizer, EMA) and timed by the trainer's own time-budget
    probe (``engine.time_budget.measure_speed``: its warm-up batches, then ``steps`` timed ones, on copies),
    so the estimate is what ``training.time_budget`` will measure. On a CPU the probe's batch is at most
    ``CPU_PROBE_BATCH`` (the per-image cost hardly depends on it there); on CUDA it is the proposed batch,
    halved on out-of-memory until it fits (the returned ``batch_size`` is the one that did).
    ``$YOLOX_SDK_WIZARD_PROBE_SIZE`` runs it at that size instead, the speed scaled by the pixel count.
    """
    import torch

    probe_size = probe_size_override() or size
    probe_batch = min(batch, CPU_PROBE_BATCH) if device.kind == "cpu" else batch
    started = time.perf_counter()
    while True:
        try:
            seconds_per_batch, timed, warm = _seconds_per_batch(
                facts, device, model, probe_size, probe_batch, amp, steps
            )
            break
        except torch.cuda.OutOfMemoryError:
            if probe_batch == 1:
                raise
        gc.collect()  # outside the except block: its traceback no longer holds the failed run's tensors
        torch.cuda.empty_cache()
        probe_batch //= 2
        batch = probe_batch
    speed = probe_batch / seconds_per_batch * (probe_size / size) ** 2
    return SpeedMeasurement(
        speed, model, size, batch, probe_batch, probe_size, timed, time.perf_counter() - started, warm
    )


def _seconds_per_batch(
    facts: DatasetFacts, device: DeviceChoice, model: str, size: int, batch: int, amp: bool, steps: int
) -> tuple[float, int, bool]:
    """``measure_speed`` on a run of the wizard's settings whose epoch is cut to the batches to time:
    seconds per batch, batches timed, and whether warm-up batches were among them (a short epoch)."""
    from yolox_sdk.config.loader import load_config
    from yolox_sdk.engine import time_budget
    from yolox_sdk.engine.distributed import DistributedContext
    from yolox_sdk.engine.setup import build_training_parts, stop_loader_workers
    from yolox_sdk.plugins.manager import get_registry

    registry = get_registry()
    with tempfile.TemporaryDirectory(prefix="yolox-sdk-wizard-") as folder, quiet_logs():
        overrides = probe_overrides(facts, device, model, size, batch, amp)
        config = load_config(None, [*overrides, f"monitoring.output_dir={folder}"])
        parts = build_training_parts(config, registry, DistributedContext())
        warm = time_budget.WARM_BATCHES
        timed = min(steps, time_budget.TIMED_BATCHES, max(1, parts.batches_per_epoch - warm))
        cut = attrs.evolve(parts, batches_per_epoch=min(parts.batches_per_epoch, warm + timed))
        try:
            speed = time_budget.measure_speed(cut, registry, None)  # no validation data: no evaluation
        finally:
            stop_loader_workers(parts.loader)
    if parts.batches_per_epoch <= warm:  # measure_speed then times the warm-up batches: all there are
        return speed.seconds_per_batch, parts.batches_per_epoch, True
    return speed.seconds_per_batch, timed, False


# ---------------------------------------------------------------------------------------------- YAML


def yaml_scalar(value: Any) -> str:
    """``value`` as one line of YAML that reads back as ``value`` (plain where that is safe, else quoted)."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_scalar(item) for item in value) + "]"
    text = str(value)
    plain = yaml.safe_dump(text, default_flow_style=True, width=10**6).strip()
    plain = plain.removesuffix("...").strip()
    if "\n" not in plain and yaml.safe_load(plain) == text:
        return plain
    return json.dumps(text)


def comment_text(text: str, limit: int = 200) -> str:
    """``text`` safe inside a ``#`` comment: one line, control characters replaced, at most ``limit``."""
    clean = "".join(character if character.isprintable() else " " for character in str(text))
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


@attrs.frozen
class Budget:
    """How long the run trains: an epoch count, or a time budget (``20m``) with its epoch estimate."""

    epochs: int | None = None
    time_budget: str | None = None
    reason: str = ""
    expected_epochs: int | None = None  # with a time budget: the epochs it should hold at the measured speed
    too_short: bool = False  # the time budget holds under one epoch at the measured speed


def render_config(
    facts: DatasetFacts,
    device: DeviceChoice,
    proposal: Proposal,
    budget: Budget,
    speed: SpeedMeasurement | None,
    estimate: str,
    out_path: Path,
    run_name: str,
) -> str:
    """The commented YAML config: every value the wizard chose, each with its reason."""
    rows: list[tuple[int, str, str]] = []  # (indent, "key: value" or "section:", comment)

    def section(name: str) -> None:
        rows.append((0, f"{name}:", ""))

    def key(name: str, value: Any, why: str = "") -> None:
        rows.append((2, f"{name}: {yaml_scalar(value)}", why))

    classes = ", ".join(facts.class_names[:20]) + (", ..." if len(facts.class_names) > 20 else "")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        f"Written by `yolox-sdk config wizard` on {when}.",
        f"Dataset: {facts.path}",
        f"  {summary_line(facts)}",
        f"  classes: {classes}",
        f"Device: {device.description}",
        "Training speed: "
        + (f"{speed.describe()}, measured on this machine" if speed else "not measured (--probe-steps 0)"),
        f"Estimated time: {estimate}",
        f"Run it: yolox-sdk run {out_path}",
        "Every other key has its default: `yolox-sdk config show` this file to see them all.",
    ]
    section("model")
    key("name", proposal.model.value, proposal.model.reason)
    key("pretrained", True, "COCO weights; the head is re-initialised for the dataset's classes")
    key("input_size", [proposal.input_size.value] * 2, proposal.input_size.reason)
    section("data")
    split_counts = facts.splits
    key("train_path", facts.path)
    if facts.train_split:
        key("train_split", facts.train_split, f"{split_counts['train']:,} images")
    else:
        rows[-1] = (*rows[-1][:2], "no train/val splits found: every image trains")
    if facts.val_split:
        key("val_path", facts.path)
        key("val_split", facts.val_split, f"{split_counts['val']:,} images, evaluated during training")
    else:
        key("val_path", None, f"no validation split: make one with `yolox-sdk data split {facts.path}`")
    if facts.test_split:
        key("test_path", facts.path)
        key("test_split", facts.test_split, f"{split_counts['test']:,} images, for `yolox-sdk eval`")
    others = [name for name in facts.formats if name != facts.format]
    why_format = "chosen" if facts.format_given else "detected"
    why_format += f" (the folder also looks like {', '.join(others)})" if others else ""
    key("format", facts.format, why_format)
    key("batch_size", proposal.batch_size.value, proposal.batch_size.reason)
    key("num_workers", proposal.num_workers.value, proposal.num_workers.reason)
    section("training")
    if budget.time_budget is not None:
        key("time_budget", budget.time_budget, budget.reason)
    else:
        key("epochs", budget.epochs, budget.reason)
    key("amp", proposal.amp.value, proposal.amp.reason)
    section("evaluation")
    key("eval_interval", proposal.eval_interval.value, proposal.eval_interval.reason)
    section("device")
    key("type", device.kind, device.description)
    if device.kind == "cuda" and device.index:
        key("gpu_ids", [device.index])
    section("monitoring")
    key("run_name", run_name)
    lengths = [indent + len(text) for indent, text, _ in rows if indent + len(text) <= COMMENT_COLUMN - 2]
    width = max(lengths, default=0) + 2
    lines = [f"# {comment_text(line, 400)}" for line in header]
    for indent, text, why in rows:
        if indent == 0 and lines and lines[-1] != "":
            lines.append("")
        body = " " * indent + text
        lines.append(f"{body:<{width - 2}}  # {comment_text(why)}" if why else body)
    return "\n".join(lines) + "\n"


def run_name_for(facts: DatasetFacts, model: str) -> str:
    """``bccd-yolox-nano``: the dataset folder's (or catalog) name and the variant, in safe characters."""
    stem = Path(facts.path).name or "dataset"
    if stem.lower() in {"data", "dataset", "images"} and Path(facts.path).parent.name:
        stem = Path(facts.path).parent.name
    safe = "".join(
        character if character.isalnum() or character in "-_" else "-" for character in stem.lower()
    )
    return f"{safe.strip('-') or 'dataset'}-{model}"


def format_seconds(seconds: float) -> str:
    """``about 12 min``, ``about 2.5 h``, ``about 40 s``: an estimate, never more precise than it is."""
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"
