"""Knowledge distillation for YOLOX: a teacher checkpoint's outputs as extra targets for the student.

What the terms are, and why this form:

- **Soft targets** on objectness and classes. YOLOX scores with independent sigmoids, not a softmax, so
  each logit is a Bernoulli and the divergence is the binary KL ``KL(sigmoid(t/T) || sigmoid(s/T))``,
  computed as ``BCE(s/T, p) - BCE(t/T, p)`` (stable with logits; exactly 0 with a zero gradient when the
  student equals the teacher) and scaled by ``T**2`` (Hinton et al.) so its gradient keeps its size as
  the temperature rises. The class term of an anchor is weighted by the teacher's objectness: background
  anchors carry no class information in YOLOX (it trains classes on foreground anchors only).
- **Boxes** where the teacher is confident (objectness x best class probability >= ``box_threshold``):
  a Huber distance between the raw box regressions (cell offsets, log sizes: the space of YOLOX's own L1
  term), weighted by the teacher's score. Smooth at zero, so a student equal to its teacher gets no push.

Both are normalised by the teacher's foreground mass (the sum of its objectness), as YOLOX normalises by
its foreground count, so the terms sit on the scale of YOLOX's own. The anchors of student and teacher
must be the same cells: same input tensor, same strides, hence the same classes and input size, checked
before training starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from yolox_sdk.checkpoints.format import load_checkpoint
from yolox_sdk.config.schema import DistillationConfig
from yolox_sdk.engine.loss_terms import HeadCapture
from yolox_sdk.errors import CheckpointError, ConfigError, TrainingError
from yolox_sdk.models.factory import model_from_checkpoint
from yolox_sdk.plugins.interfaces import HeadLevel, LossContext, LossInputs

NAMES = ("distill_obj_loss", "distill_cls_loss", "distill_box_loss")


def load_teacher(settings: DistillationConfig, context: LossContext) -> nn.Module:
    """The teacher network of ``settings.teacher``: eval mode, no gradients, on the training device.

    Raises:
        ConfigError: naming ``<where>.teacher`` and the file, when the file is missing, not a (whole)
            yolox-sdk checkpoint, or trained on other classes or at another input size.
    """
    key = f"{context.where}.teacher"
    path = Path(settings.teacher)
    if not path.is_file():
        raise ConfigError(
            f"Invalid config: {key}: the teacher checkpoint {path} does not exist. Set it to a yolox-sdk "
            "checkpoint trained on the same classes at the same input size (a run's best.pt)."
        )
    try:
        checkpoint = load_checkpoint(path)
        teacher = model_from_checkpoint(checkpoint)
    except CheckpointError as error:
        raise ConfigError(f"Invalid config: {key}: the teacher cannot be used: {error}") from None
    _check_same_task(key, path, tuple(checkpoint.class_names), tuple(checkpoint.spec.input_size), context)
    teacher.eval().requires_grad_(False)
    return teacher.to(context.device)


def _check_same_task(
    key: str, path: Path, names: tuple[str, ...], size: tuple[int, ...], context: LossContext
) -> None:
    if names != tuple(context.class_names):
        raise ConfigError(
            f"Invalid config: {key}: the teacher {path} was trained on the classes {list(names)}, this run "
            f"trains on {list(context.class_names)}. Distillation matches outputs class by class: train the "
            "teacher on the same classes, in the same order."
        )
    if tuple(size) != tuple(context.input_size):
        raise ConfigError(
            f"Invalid config: {key}: the teacher {path} was trained at input size {list(size)}, this run "
            f"at model.input_size {list(context.input_size)}. Student and teacher must predict on the same "
            "anchor grid: set model.input_size to the teacher's, or train the teacher at this size."
        )


def binary_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Element-wise ``KL(sigmoid(t/T) || sigmoid(s/T)) * T**2``, in float32."""
    student = student_logits.float() / temperature
    teacher = teacher_logits.float() / temperature
    target = torch.sigmoid(teacher)
    cross = F.binary_cross_entropy_with_logits(student, target, reduction="none")
    entropy = F.binary_cross_entropy_with_logits(teacher, target, reduction="none")
    return (cross - entropy) * temperature**2


def distillation_terms(
    student: tuple[HeadLevel, ...], teacher: tuple[HeadLevel, ...], settings: DistillationConfig
) -> dict[str, torch.Tensor]:
    """The three weighted terms (``NAMES``) for head outputs on the same anchor grid.

    Raises:
        TrainingError: the two heads' levels differ in stride or size (cannot happen for checked inputs).
    """
    obj = cls = box = mass = confident = torch.zeros((), device=student[0].objectness.device)
    for mine, theirs in zip(student, teacher, strict=True):
        if mine.stride != theirs.stride or mine.classes.shape != theirs.classes.shape:
            raise TrainingError(
                f"Distillation: the student's head level (stride {mine.stride}, {tuple(mine.classes.shape)}) "
                f"and the teacher's (stride {theirs.stride}, {tuple(theirs.classes.shape)}) differ."
            )
        objectness = torch.sigmoid(theirs.objectness.float())  # (N, 1, H, W)
        obj = obj + binary_kl(mine.objectness, theirs.objectness, settings.temperature).sum()
        per_anchor = binary_kl(mine.classes, theirs.classes, settings.temperature).sum(1, keepdim=True)
        cls = cls + (objectness * per_anchor).sum()
        mass = mass + objectness.sum()
        score = objectness * torch.sigmoid(theirs.classes.float()).amax(1, keepdim=True)
        weight = score * (score >= settings.box_threshold)
        distance = F.smooth_l1_loss(mine.regression.float(), theirs.regression.float(), reduction="none")
        box = box + (weight * distance.sum(1, keepdim=True)).sum()
        confident = confident + weight.sum()
    mass, confident = mass.clamp(min=1.0), confident.clamp(min=1.0)
    return {
        "distill_obj_loss": settings.weight * obj / mass,
        "distill_cls_loss": settings.weight * cls / mass,
        "distill_box_loss": settings.box_weight * box / confident,
    }


class DistillationLoss:
    """The ``distillation`` loss term: runs the teacher on the student's batch and compares the heads."""

    names = NAMES

    def __init__(self, teacher: nn.Module, settings: DistillationConfig) -> None:
        self.teacher = teacher
        self.settings = settings
        self.capture = HeadCapture(teacher)

    @classmethod
    def from_config(cls, settings: DistillationConfig, context: LossContext) -> DistillationLoss:
        """Load and check the teacher of ``settings`` for the run ``context`` describes."""
        return cls(load_teacher(settings, context), settings)

    def teacher_outputs(self, images: torch.Tensor) -> tuple[HeadLevel, ...]:
        """The teacher's raw head outputs on ``images``, in eval mode and without gradients (inside the
        caller's autocast, so in the student's precision)."""
        self.teacher.eval()
        with torch.no_grad(), self.capture.recording():
            self.teacher(images)
        return self.capture.levels()

    def __call__(self, inputs: LossInputs) -> dict[str, Any]:
        return distillation_terms(inputs.student, self.teacher_outputs(inputs.images), self.settings)
