"""Knowledge distillation (the ``distillation`` loss term) on real checkpoints: the COCO yolox-nano as
teacher, real coco8 images. The soft-target and box terms vanish with their gradient for a student equal
to its teacher and rise when they differ; the teacher stays frozen; bad teachers stop a run before any
work; a loss term registered in code is used like the built-in one."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import torch

from yolox_sdk.checkpoints.format import Checkpoint, load_checkpoint, save_checkpoint
from yolox_sdk.config.loader import load_config
from yolox_sdk.config.plugin_options import resolve_options
from yolox_sdk.config.schema import DistillationConfig
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.data.preprocess import images_to_batch, read_image
from yolox_sdk.engine.loss_terms import HeadCapture, configured_losses
from yolox_sdk.engine.trainer import train
from yolox_sdk.errors import ConfigError
from yolox_sdk.models import create_model
from yolox_sdk.models.factory import model_from_checkpoint
from yolox_sdk.optimization.distillation import NAMES, DistillationLoss, binary_kl
from yolox_sdk.plugins import build_plugin_manager, hookimpl
from yolox_sdk.plugins.interfaces import LossContext, LossInputs
from yolox_sdk.plugins.manager import get_registry

SIZE = (160, 160)


@pytest.fixture(scope="module")
def coco8_names(assets_dir: Path) -> tuple[str, ...]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLOX_SDK_ASSETS", str(assets_dir))
        return tuple(load_dataset("coco8", split="val", format="yolo").class_names)


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory: pytest.TempPathFactory, assets_dir: Path, coco8_names) -> Path:
    """The COCO-pretrained yolox-nano as a checkpoint of coco8's classes at 160 px."""
    folder = tmp_path_factory.mktemp("teacher")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLOX_SDK_ASSETS", str(assets_dir))
        patch.setenv("YOLOX_SDK_HOME", str(folder / "home"))
        model, spec, _ = create_model("yolox-nano", 80, pretrained=True, input_size=SIZE)
    return save_checkpoint(folder / "teacher.pt", Checkpoint(model.state_dict(), spec, coco8_names))


@pytest.fixture(scope="module")
def images(assets_dir: Path) -> torch.Tensor:
    paths = sorted((assets_dir / "datasets" / "coco8" / "images" / "val").glob("*.jpg"))[:2]
    return images_to_batch([read_image(p) for p in paths], SIZE)[0]


def context(names: tuple[str, ...], size: tuple[int, int] = SIZE) -> LossContext:
    return LossContext(names, size, torch.device("cpu"), None, "training.distillation")


def student_loss(term: DistillationLoss, student: torch.nn.Module, images: torch.Tensor) -> dict:
    """The term's values for ``student`` (in its current mode) on ``images``."""
    capture = HeadCapture(student)
    with capture.recording():
        student(images)
    return term(LossInputs(images, torch.zeros(len(images), 1, 5), capture.levels(), {}))


def gradients(student: torch.nn.Module, values: dict) -> list[torch.Tensor]:
    sum(values.values()).backward()
    return [p.grad for p in student.parameters() if p.grad is not None]


def test_binary_kl_is_zero_only_where_student_and_teacher_agree() -> None:
    teacher = torch.tensor([-3.0, 0.0, 2.0])
    assert torch.equal(binary_kl(teacher.clone(), teacher, 1.0), torch.zeros(3))
    moved = binary_kl(teacher + torch.tensor([0.5, -0.5, 0.0]), teacher, 1.0)
    assert moved[0] > 0 and moved[1] > 0 and moved[2] == 0
    # Independently: KL of Bernoullis p = sigmoid(t), q = sigmoid(s), written out.
    p, q = torch.sigmoid(torch.tensor(0.0)), torch.sigmoid(torch.tensor(-0.5))
    expected = p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))
    assert moved[1] == pytest.approx(float(expected), rel=1e-5)


def test_student_equal_to_its_teacher_gets_zero_loss_and_zero_gradient(
    teacher_file, coco8_names, images
) -> None:
    term = DistillationLoss.from_config(
        DistillationConfig(str(teacher_file), temperature=1.0), context(coco8_names)
    )
    student = model_from_checkpoint(term_checkpoint(teacher_file))  # the same weights, eval mode
    values = student_loss(term, student, images)
    assert set(values) == set(NAMES)
    assert all(float(value.detach()) == pytest.approx(0.0, abs=1e-7) for value in values.values())
    grads = gradients(student, values)
    assert grads and all(float(g.abs().max()) == 0.0 for g in grads)


def term_checkpoint(path: Path) -> Checkpoint:
    from yolox_sdk.checkpoints.format import load_checkpoint

    return load_checkpoint(path)


def test_a_different_student_gets_a_loss_and_gradient_and_the_teacher_none(
    teacher_file, coco8_names, images
) -> None:
    settings = DistillationConfig(str(teacher_file), temperature=2.0, box_threshold=0.3)
    term = DistillationLoss.from_config(settings, context(coco8_names))
    student = model_from_checkpoint(term_checkpoint(teacher_file))
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in student.head.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    values = student_loss(term, student, images)
    assert all(float(values[name].detach()) > 1e-4 for name in NAMES), (
        values
    )  # the box term too: confident anchors
    assert max(float(g.abs().max()) for g in gradients(student, values)) > 1e-4
    assert not term.teacher.training
    assert all(not p.requires_grad and p.grad is None for p in term.teacher.parameters())


def test_the_teacher_runs_in_the_students_autocast(teacher_file, coco8_names, images) -> None:
    term = DistillationLoss.from_config(DistillationConfig(str(teacher_file)), context(coco8_names))
    student = copy.deepcopy(term.teacher).requires_grad_(True)
    capture = HeadCapture(student)
    with torch.autocast("cpu", dtype=torch.bfloat16), capture.recording():
        student(images)
        theirs = term.teacher_outputs(images)
    mine = capture.levels()
    assert mine[0].classes.dtype == theirs[0].classes.dtype == torch.bfloat16


@pytest.mark.parametrize(
    "problem, expected",
    [
        ("missing", "does not exist"),
        ("truncated", "truncated"),
        ("foreign", "not a yolox-sdk checkpoint"),
        ("classes", "trained on the classes"),
        ("size", "input size [160, 160]"),
    ],
)
def test_a_bad_teacher_stops_the_run_before_any_work(
    problem: str, expected: str, teacher_file: Path, nano_weights: Path, tmp_path: Path
) -> None:
    teacher = {
        "missing": tmp_path / "nowhere.pt",
        "truncated": tmp_path / "truncated.pt",
        "foreign": nano_weights,
        "classes": tmp_path / "classes.pt",
        "size": teacher_file,
    }[problem]
    if problem == "truncated":
        data = teacher_file.read_bytes()
        teacher.write_bytes(data[: len(data) // 2])
    if problem == "classes":
        checkpoint = term_checkpoint(teacher_file)
        names = ("cat", *checkpoint.class_names[1:])
        save_checkpoint(teacher, Checkpoint(checkpoint.model, checkpoint.spec, names))
    size = "[192,192]" if problem == "size" else "[160,160]"
    config = load_config(
        None,
        [*coco8_overrides(tmp_path), f"model.input_size={size}", f"training.distillation.teacher={teacher}"],
    )
    with pytest.raises(ConfigError) as raised:
        train(config)
    message = str(raised.value)
    assert "training.distillation.teacher" in message and str(teacher) in message and expected in message
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def coco8_overrides(tmp_path: Path) -> list[str]:
    """The cheapest real run: yolox-nano on coco8 (4 train, 4 val images), 1 epoch at 160 px."""
    return [
        "model.name=yolox-nano",
        "model.input_size=[160,160]",
        "data.train_path=coco8",
        "data.train_split=train",
        "data.val_path=coco8",
        "data.val_split=val",
        "data.format=yolo",
        "data.batch_size=2",
        "training.epochs=1",
        "training.no_aug_epochs=0",
        "training.warmup_epochs=0",
        "training.multiscale_range=0",
        "monitoring.progress_bar=false",
        "monitoring.log_interval=1",
        f"monitoring.output_dir={tmp_path / 'runs'}",
        "device.type=cpu",
    ]


def test_distillation_is_switched_on_by_its_section_or_by_name(tmp_path: Path) -> None:
    registry = get_registry()
    by_section = load_config(None, ["training.distillation.teacher=t.pt"])
    by_name = load_config(None, ["training.losses=[{name: distillation, teacher: t.pt}]"])
    resolved = [
        resolve_options(registry, "loss_term", name, raw, where)
        for config in (by_section, by_name)
        for name, raw, where in configured_losses(config, registry)
    ]
    assert resolved == [DistillationConfig("t.pt"), DistillationConfig("t.pt")]
    assert configured_losses(load_config(None, []), registry) == []
    both = load_config(
        None, ["training.distillation.teacher=t.pt", "training.losses=[{name: distillation, teacher: t.pt}]"]
    )
    with pytest.raises(ConfigError, match="switched on twice"):
        configured_losses(both, registry)
    with pytest.raises(ConfigError, match="training.distillation.teacher: this key is required"):
        load_config(None, ["training.distillation={weight: 2.0}"])
    with pytest.raises(ConfigError, match="training.losses\\[0\\].*temprature"):
        load_config(None, ["training.losses=[{name: distillation, teacher: t.pt, temprature: 2}]"])


def test_compile_with_distillation_is_refused_before_the_run(teacher_file: Path, tmp_path: Path) -> None:
    config = load_config(
        None,
        [
            *coco8_overrides(tmp_path),
            "training.compile=true",
            f"training.distillation.teacher={teacher_file}",
        ],
    )
    with pytest.raises(ConfigError, match="training.compile cannot be combined"):
        train(config)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


class _CountingLoss:
    """A third party's loss term, registered in code: a small penalty on the objectness logits."""

    names = ("obj_logit_penalty",)
    calls = 0

    def __call__(self, inputs: LossInputs) -> dict:
        _CountingLoss.calls += 1
        return {
            "obj_logit_penalty": 1e-4
            * sum(level.objectness.float().pow(2).mean() for level in inputs.student)
        }


class _LossPlugin:
    @hookimpl
    def register_loss_terms(self, register) -> None:
        register("obj_penalty", lambda options, context: _CountingLoss(), description="test")


@pytest.mark.slow
def test_a_run_with_a_teacher_logs_the_terms_and_resumes(teacher_file: Path, tmp_path: Path) -> None:
    _, registry = build_plugin_manager(extra_plugins=[("obj_penalty", _LossPlugin())])
    overrides = [
        *coco8_overrides(tmp_path),
        "training.multiscale_range=1",  # 128-192 px, a new size every step: the teacher sees each one
        "training.multiscale_interval=1",
        f"training.distillation={{teacher: {teacher_file}, temperature: 2.0}}",
        "training.losses=[obj_penalty]",
    ]
    stopped = train(load_config(None, [*overrides, "training.epochs=1"], registry), registry=registry)
    header = (stopped.run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in (*NAMES, "obj_logit_penalty"):
        assert f"train/{name}" in header
    assert _CountingLoss.calls == 2  # 4 images, batches of 2
    assert stopped.metrics["train/distill_obj_loss"] > 0
    teacher = json.loads((stopped.run_dir / "lineage.json").read_text())["teacher"]
    assert teacher["sha256"] == hashlib.sha256(teacher_file.read_bytes()).hexdigest()
    assert load_checkpoint(stopped.run_dir / "last.pt").lineage["teacher"] == teacher
    # Resume the finished 1-epoch run for a second epoch: the teacher comes back from the saved config.
    saved = (stopped.run_dir / "config.yaml").read_text()
    assert str(teacher_file) in saved
    (stopped.run_dir / "config.yaml").write_text(saved.replace("epochs: 1\n", "epochs: 2\n", 1))
    resumed = train(
        load_config(stopped.run_dir / "config.yaml", registry=registry),
        resume_dir=stopped.run_dir,
        registry=registry,
    )
    assert resumed.epochs_completed == 2 and resumed.metrics["train/distill_cls_loss"] > 0
