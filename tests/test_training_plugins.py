"""Optimizer, schedule and callback plugins beyond YOLOX's defaults (values checked against closed forms)."""

from __future__ import annotations

import math

import pytest
import torch

from yolox_sdk.builtin.callbacks.early_stopping import EarlyStopping, EarlyStoppingOptions
from yolox_sdk.config.loader import load_config
from yolox_sdk.errors import ConfigError
from yolox_sdk.models import create_model
from yolox_sdk.plugins import get_registry
from yolox_sdk.plugins.building import build_plugin
from yolox_sdk.plugins.interfaces import ScheduleSettings

SETTINGS = ScheduleSettings(
    base_lr=0.01,
    iters_per_epoch=10,
    epochs=10,
    warmup_epochs=1,
    warmup_lr=0.0,
    min_lr_ratio=0.05,
    no_aug_epochs=2,
)


def schedule(name: str, **options):
    return build_plugin(get_registry(), "scheduler", name, options, "training.scheduler_options", SETTINGS)


def test_cosine_warms_up_then_decays_to_the_floor() -> None:
    cosine = schedule("cosine")
    assert cosine.lr_at(0) == pytest.approx(0.001)
    assert cosine.lr_at(9) == pytest.approx(0.01)
    assert cosine.lr_at(10) == pytest.approx(0.01)
    midpoint = 10 + 45
    assert cosine.lr_at(midpoint) == pytest.approx(0.0005 + 0.5 * 0.0095 * (1 + math.cos(math.pi * 0.5)))
    assert cosine.lr_at(99) == pytest.approx(0.0005, rel=0.01)


def test_multistep_exponential_and_warmup_iters() -> None:
    steps = schedule("multistep", milestones=[5, 8], gamma=0.1)
    assert steps.lr_at(49) == pytest.approx(0.01) and steps.lr_at(50) == pytest.approx(0.001)
    assert steps.lr_at(80) == pytest.approx(0.0001)
    exponential = schedule("exponential", gamma=0.5, warmup_iters=0)
    assert exponential.lr_at(20) == pytest.approx(0.0025)
    assert schedule("cosine", warmup_iters=4).lr_at(1) == pytest.approx(0.005)


def test_onecycle_peaks_at_pct_start() -> None:
    cycle = schedule("onecycle", pct_start=0.3)
    assert cycle.lr_at(0) == pytest.approx(0.01 / 25)
    assert cycle.lr_at(30) == pytest.approx(0.01)
    assert cycle.lr_at(99) < 1e-5


def test_schedule_option_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="training.scheduler_options.milestones"):
        load_config(None, ["training.scheduler=multistep", "training.scheduler_options={milestones: [8, 5]}"])


@pytest.mark.parametrize("name", ["adam", "adamw", "lookahead"])
def test_optimizers_train_a_real_model(name: str) -> None:
    model, _, _ = create_model("yolox-nano", num_classes=2, input_size=(128, 128))
    config = load_config(None, [f"training.optimizer={name}", "training.weight_decay=0.01"])
    optimizer = build_plugin(get_registry(), "optimizer", name, {}, "x", model, config.training)
    decayed = [group for group in optimizer.param_groups if group["weight_decay"] > 0]
    assert len(decayed) == 1 and len(optimizer.param_groups) == 3
    targets = torch.zeros(2, 5, 5)
    targets[:, 0] = torch.tensor([1.0, 64, 64, 40, 40])
    images = torch.rand(2, 3, 128, 128) * 255
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(6):
        for group in optimizer.param_groups:
            group["lr"] = 1e-3
        optimizer.zero_grad()
        model(images, targets)["total_loss"].backward()
        optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    restored = build_plugin(get_registry(), "optimizer", name, {}, "x", model, config.training)
    restored.load_state_dict(optimizer.state_dict())


class _View:
    """The one request early stopping makes of its training view."""

    def __init__(self) -> None:
        self.stop_reasons: list[str] = []

    def request_stop(self, reason: str = "") -> None:
        self.stop_reasons.append(reason)


def test_early_stopping_patience_and_min_delta() -> None:
    stopper = EarlyStopping(EarlyStoppingOptions(metric="val/mAP", patience=2, min_delta=0.01))
    view = _View()
    for epoch, value in enumerate([0.30, 0.35, 0.355, 0.358]):
        stopper.on_epoch_end(view, epoch, {"val/mAP": value})
    assert view.stop_reasons == ["val/mAP has not improved on 0.3500 for 2 observations"]
    loss_watch = EarlyStopping(EarlyStoppingOptions(metric="train/total_loss", mode="min", patience=1))
    view = _View()
    loss_watch.on_epoch_end(view, 0, {"train/total_loss": 5.0})
    loss_watch.on_epoch_end(view, 1, {"epoch": 2})
    loss_watch.on_epoch_end(view, 2, {"train/total_loss": 4.0})
    assert not view.stop_reasons


def test_early_stopping_state_round_trips() -> None:
    stopper = EarlyStopping(EarlyStoppingOptions(metric="val/mAP", patience=3))
    for epoch, value in enumerate([0.4, 0.3, 0.2]):
        stopper.on_epoch_end(_View(), epoch, {"val/mAP": value})
    resumed = EarlyStopping(EarlyStoppingOptions(metric="val/mAP", patience=3))
    resumed.load_state_dict(stopper.state_dict())
    assert (resumed.best, resumed.stale) == (0.4, 2)
    view = _View()
    resumed.on_epoch_end(view, 3, {"val/mAP": 0.1})
    assert len(view.stop_reasons) == 1


def test_nominal_batch_size_sets_accumulation_and_scales_weight_decay() -> None:
    from yolox_sdk.engine.setup import accumulation_steps, base_learning_rate, build_optimizer

    config = load_config(
        None, ["data.batch_size=12", "training.nominal_batch_size=64", "training.weight_decay=0.0005"]
    )
    assert accumulation_steps(config) == 5  # round(64 / 12)
    assert base_learning_rate(config) == pytest.approx(0.01 * 60 / 64)
    model, _, _ = create_model("yolox-nano", num_classes=2, input_size=(128, 128))
    optimizer = build_optimizer(config, model, get_registry())
    decays = sorted(group["weight_decay"] for group in optimizer.param_groups)
    assert decays == [0.0, 0.0, pytest.approx(0.0005 * 60 / 64)]  # decay per image as at batch 64
    plain = load_config(None, ["data.batch_size=12", "training.accumulate=3"])
    assert accumulation_steps(plain) == 3
    assert (
        max(g["weight_decay"] for g in build_optimizer(plain, model, get_registry()).param_groups) == 0.0005
    )


def test_nesterov_sgd_without_momentum_is_a_config_error() -> None:
    """``training.momentum: 0`` is in range, but torch's Nesterov SGD refuses it with a bare ValueError."""
    model, _, _ = create_model("yolox-nano", num_classes=2, input_size=(128, 128))
    config = load_config(None, ["training.momentum=0"])
    with pytest.raises(ConfigError, match="training.momentum is 0 but training.optimizer_options.nesterov"):
        build_plugin(get_registry(), "optimizer", "sgd", {}, "x", model, config.training)
    plain = load_config(None, ["training.momentum=0", "training.optimizer_options={nesterov: false}"])
    build_plugin(get_registry(), "optimizer", "sgd", {"nesterov": False}, "x", model, plain.training)
