"""Memory and speed switches: gradient checkpointing, the torch.compile fallback, the CPU precision rule, and the
loss scale after non-finite losses (on real BCCD batches and the COCO-pretrained yolox-nano)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch
from test_training import bccd_overrides

from yolox_sdk.checkpoints.format import load_checkpoint
from yolox_sdk.config.loader import load_config
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.data.loader import collate_train_batch
from yolox_sdk.data.train_dataset import TrainDataset
from yolox_sdk.engine import memory, precision
from yolox_sdk.engine.memory import CheckpointedStage, compile_for_training, enable_gradient_checkpointing
from yolox_sdk.engine.precision import Precision, choose_cpu_precision
from yolox_sdk.engine.trainer import Trainer
from yolox_sdk.errors import ConfigError, TrainingError
from yolox_sdk.models import create_model
from yolox_sdk.plugins import build_plugin_manager, hookimpl
from yolox_sdk.plugins.interfaces import Callback

SIZE = 160


@pytest.fixture(scope="module")
def bccd_batch(bccd_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Four real BCCD val images, letterboxed to 160 px without augmentation, with YOLOX targets."""
    dataset = load_dataset(bccd_dir, split="val", format="voc")
    train_dataset = TrainDataset(dataset, (SIZE, SIZE), [], seed=0)
    images, targets = collate_train_batch([train_dataset[i] for i in range(4)])
    return images.float(), targets  # uint8 from the loader; the trainer makes it float on the device


@pytest.fixture()
def nano() -> torch.nn.Module:
    model, _, _ = create_model("yolox-nano", num_classes=3, pretrained=True, input_size=(SIZE, SIZE))
    return model.train()


def _train_step(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    outputs = model(images, targets)
    outputs["total_loss"].backward()
    return {key: float(outputs[key].detach()) for key in ("total_loss", "iou_loss", "conf_loss", "cls_loss")}


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_checkpointed_backbone_matches_the_plain_one(bccd_batch, nano) -> None:
    images, targets = bccd_batch
    checkpointed = copy.deepcopy(nano)
    assert enable_gradient_checkpointing(checkpointed) == ["dark2", "dark3", "dark4", "dark5"]
    darknet = checkpointed.backbone.backbone
    assert all(isinstance(getattr(darknet, name), CheckpointedStage) for name in memory.BACKBONE_STAGES)
    # Same names, so checkpoints and exports of either model are interchangeable.
    assert list(checkpointed.state_dict()) == list(nano.state_dict())
    plain_calls, checkpointed_calls = (
        _count_calls(nano.backbone.backbone.dark3[0]),
        _count_calls(darknet.dark3[0]),
    )

    plain_losses = _train_step(nano, images, targets)
    checkpointed_losses = _train_step(checkpointed, images, targets)

    # The stage really was recomputed in the backward.
    assert plain_calls[0] == 1 and checkpointed_calls[0] == 2
    assert checkpointed_losses == pytest.approx(plain_losses, abs=1e-5)
    for (name, plain), (_, other) in zip(
        nano.named_parameters(), checkpointed.named_parameters(), strict=True
    ):
        assert plain.grad is not None, name
        assert torch.allclose(plain.grad, other.grad, atol=1e-5, rtol=0), name
    # BatchNorm statistics are updated once per step, not again by the recomputation.
    for (name, plain), (_, other) in zip(
        nano.state_dict().items(), checkpointed.state_dict().items(), strict=True
    ):
        assert torch.allclose(plain.float(), other.float(), atol=1e-5, rtol=0), name

    # Evaluation runs the plain forward: same detections, no recomputation machinery.
    nano.eval(), checkpointed.eval()
    with torch.no_grad():
        assert torch.allclose(nano(images), checkpointed(images), atol=1e-5, rtol=0)
    assert checkpointed_calls[0] == 3
    fresh, _, _ = create_model("yolox-nano", num_classes=3, pretrained=False, input_size=(SIZE, SIZE))
    fresh.load_state_dict(checkpointed.state_dict(), strict=True)


def test_gradient_checkpointing_refuses_a_model_without_cspdarknet() -> None:
    with pytest.raises(ConfigError, match="training.gradient_checkpointing"):
        enable_gradient_checkpointing(torch.nn.Linear(2, 2))


def test_compile_disabled_is_the_model_itself() -> None:
    model = torch.nn.Linear(2, 2)
    assert compile_for_training(model, False, torch.device("cpu")) is model


def test_compile_failing_at_wrap_time_falls_back_to_eager(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unavailable(*args, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", unavailable)
    with caplog.at_level(logging.WARNING, logger="yolox_sdk.engine.memory"):
        forward = compile_for_training(model := torch.nn.Linear(2, 2), True, torch.device("cpu"))
    assert forward is model
    assert "Dynamo is not supported" in caplog.text and "eager" in caplog.text.lower()


def test_compile_failing_at_first_call_falls_back_to_eager_once(
    bccd_batch, nano, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    images, targets = bccd_batch
    compiled_calls = []

    def broken_compiler(model, **kwargs):
        def compiled(*args, **kw):
            compiled_calls.append(1)
            raise RuntimeError("InductorError: CppCompileError: C++ compile error")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compiler)
    forward = compile_for_training(nano, True, torch.device("cpu"))
    with caplog.at_level(logging.WARNING, logger="yolox_sdk.engine.memory"):
        first = forward(images, targets)["total_loss"]
        second = forward(images, targets)["total_loss"]
    assert len(compiled_calls) == 1  # never tried again after the failure
    assert caplog.text.count("torch.compile failed") == 1 and "CppCompileError" in caplog.text
    assert torch.isfinite(first) and torch.allclose(first, second)


def test_cpu_precision_rule() -> None:
    probed = []

    def probe(seconds: dict):
        def timed(dtype):
            probed.append(dtype)
            return seconds[dtype]

        return timed

    no_bf16 = choose_cpu_precision({"avx2": True, "avx512_bf16": False}, probe({}))
    assert no_bf16.dtype is None and "no native bf16" in no_bf16.reason and probed == []

    faster = choose_cpu_precision({"amx_bf16": True}, probe({None: 1.0, torch.bfloat16: 0.5}))
    assert faster.dtype is torch.bfloat16 and "amx_bf16" in faster.reason
    assert probed == [None, torch.bfloat16]

    slower = choose_cpu_precision({"avx512_bf16": True}, probe({None: 1.0, torch.bfloat16: 1.4}))
    assert slower.dtype is None and "not faster" in slower.reason
    # A tie is not worth bf16's precision loss: it must be at least 10 % faster.
    tie = choose_cpu_precision({"bf16": True}, probe({None: 1.0, torch.bfloat16: 0.95}))
    assert tie.dtype is None


def test_amp_on_this_cpu_follows_the_rule_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    assert precision.time_conv_step(None, repeats=1) > 0
    choice = precision.cpu_precision_choice()
    assert precision.cpu_precision_choice() is choice  # decided once per process
    if not precision.native_bf16_instructions(torch.cpu.get_capabilities()):
        assert choice.dtype is None
    with caplog.at_level(logging.INFO, logger="yolox_sdk.engine.precision"):
        chosen = Precision(torch.device("cpu"), amp=True)
    assert chosen.dtype == choice.dtype and chosen.scaler is None
    assert choice.reason in caplog.text
    assert Precision(torch.device("cpu"), amp=False).dtype is None


def test_the_model_step_probe_decides_and_leaves_the_model_untouched(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = create_model("yolox-nano", num_classes=3, pretrained=True, input_size=(160, 160))[0]
    before = {key: value.clone() for key, value in model.state_dict().items()}
    assert precision.time_model_step(model, None, repeats=1) > 0
    assert precision.time_model_step(model, torch.bfloat16, repeats=1) > 0
    for key, value in model.state_dict().items():  # weights and BatchNorm statistics: a copy trained
        assert torch.equal(value, before[key]), key
    assert all(parameter.grad is None for parameter in model.parameters())
    # bf16 slower for this model (as yolox-nano on the 2-core AVX512-BF16 Xeon): fp32, and the log says why.
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True})
    monkeypatch.setattr(precision, "time_model_step", lambda _model, dtype: 1.16 if dtype else 1.0)
    with caplog.at_level(logging.INFO, logger="yolox_sdk.engine.precision"):
        chosen = Precision(torch.device("cpu"), amp=True, model=model)
    assert chosen.dtype is None
    assert "bf16 is not faster on this CPU: this model's training step took 1160.0 ms in bf16" in caplog.text
    monkeypatch.setattr(precision, "time_model_step", lambda _model, dtype: 0.5 if dtype else 1.0)
    assert Precision(torch.device("cpu"), amp=True, model=model).dtype is torch.bfloat16


def test_forced_precisions_run_or_fall_back_to_fp32_with_a_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu = torch.device("cpu")
    with caplog.at_level(logging.INFO, logger="yolox_sdk.engine.precision"):
        bf16 = Precision(cpu, amp="bf16")
    assert bf16.dtype is torch.bfloat16 and bf16.scaler is None  # asked for, so used (even where emulated)
    with bf16.autocast():
        assert torch.nn.Linear(4, 4)(torch.rand(2, 4)).dtype is torch.bfloat16
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="yolox_sdk.engine.precision"):
        fp16 = Precision(cpu, amp="fp16")
    assert fp16.dtype is None and fp16.scaler is None
    assert "training.amp: fp16 needs a CUDA GPU; training in fp32 on cpu" in caplog.text
    # bf16 autocast failing on the device (a missing kernel): fp32, with the error and the setting named.
    real_autocast = torch.autocast

    def broken(device_type: str, dtype: torch.dtype | None = None, **kwargs: object) -> object:
        if dtype is torch.bfloat16:
            raise RuntimeError("no bf16 kernel for this op\nmore detail")
        return real_autocast(device_type, dtype=dtype, **kwargs)

    monkeypatch.setattr(torch, "autocast", broken)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="yolox_sdk.engine.precision"):
        fallen = Precision(cpu, amp="bf16")
    assert fallen.dtype is None
    assert "training.amp: bf16 autocast does not work on cpu (RuntimeError: no bf16 kernel for this op)" in (
        caplog.text
    )
    assert "more detail" not in caplog.text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bf61", "Did you mean 'bf16'"),
        ("fp32", "true, false or one of bf16, fp16"),
        ("1", "expected true, false or a string, got int 1"),
    ],
)
def test_unknown_amp_settings_are_refused_with_the_choices(value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(None, [f"training.amp={value}"])
    assert "training.amp" in str(raised.value) and expected in str(raised.value)


def test_non_finite_loss_lowers_a_real_grad_scaler_scale() -> None:
    scaled = Precision(torch.device("cpu"), amp=False)
    assert scaled.lower_loss_scale() is None  # fp32: nothing to lower
    scaled.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    # Before the scaler's first use (a non-finite loss at the very first iteration) ...
    assert scaled.lower_loss_scale() == 512.0
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scaled.backward((2 * weight).sum())
    assert torch.equal(weight.grad, torch.full((3,), 2.0 * 512))
    scaled.step(optimizer, torch.nn.Linear(1, 1), None)
    assert torch.allclose(weight.detach(), torch.full((3,), 1 - 0.1 * 2.0))  # unscaled step
    optimizer.zero_grad()
    # ... and after it: the scaler keeps the lowered scale for the next steps.
    assert scaled.lower_loss_scale() == 256.0
    scaled.backward((2 * weight).sum())
    assert torch.equal(weight.grad, torch.full((3,), 2.0 * 256))


class _NanAfterFirstEpoch(Callback):
    """From epoch 2 on, every loss is NaN; a CPU grad scaler is in use from the start."""

    trainer: Trainer | None = None

    def on_train_start(self, view) -> None:
        trainer = type(self).trainer = view._trainer  # reaches past the callback contract, as a test may
        trainer.parts.precision.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)

    def on_epoch_end(self, view, epoch, metrics) -> None:
        trainer = view._trainer
        forward = trainer.train_module

        def nan_loss(images, targets):
            outputs = forward(images, targets)
            return {**outputs, "total_loss": outputs["total_loss"] * float("nan")}

        trainer.train_module = nan_loss


class _NanPlugin:
    @hookimpl
    def register_callbacks(self, register) -> None:
        register("nan_after_first_epoch", lambda options: _NanAfterFirstEpoch())


@pytest.mark.slow
def test_training_with_checkpointing_stops_after_k_non_finite_losses_keeping_last_good(
    tmp_path: Path,
) -> None:
    _, registry = build_plugin_manager(extra_plugins=[("nan", _NanPlugin())])
    overrides = bccd_overrides(
        tmp_path,
        "model.input_size=[160,160]",
        "data.train_split=val",
        "data.val_path=null",
        "training.epochs=3",
        "training.no_aug_epochs=0",
        "training.multiscale_range=0",
        "training.gradient_checkpointing=true",
        "training.max_non_finite_steps=2",
        "training.callbacks=[nan_after_first_epoch]",
        "monitoring.tensorboard=false",
    )
    config = load_config(None, overrides, registry)

    with pytest.raises(TrainingError) as raised:
        Trainer(config, registry).fit()

    trainer = _NanAfterFirstEpoch.trainer
    last = trainer.run_dir / "last.pt"
    message = str(raised.value)
    assert "2 iterations in a row" in message and "training.max_non_finite_steps" in message
    assert str(last) in message and "(epoch 1)" in message
    assert trainer.state.epoch == 1 and trainer.parts.precision.scaler.get_scale() == 256.0  # 1024 / 2 / 2
    checkpoint = load_checkpoint(last)
    assert checkpoint.training_state["state"]["epoch"] == 1
    assert all(torch.isfinite(tensor.float()).all() for tensor in checkpoint.model.values())
    # Checkpointing left the saved names alone: the checkpoint loads into a plain model.
    plain, _, _ = create_model("yolox-nano", num_classes=3, pretrained=False, input_size=(SIZE, SIZE))
    plain.load_state_dict(checkpoint.model, strict=True)
    assert isinstance(trainer.parts.model.backbone.backbone.dark4, CheckpointedStage)
