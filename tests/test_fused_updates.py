"""The fused updates give the per-tensor results: the weight average against the ``yolox`` package's
``ModelEMA``, the fused optimizers against torch's per-tensor ones."""

from __future__ import annotations

import pytest
import torch
from yolox.utils.ema import ModelEMA

from yolox_sdk.builtin.optimizers.adam import AdamOptions, build_adamw
from yolox_sdk.builtin.optimizers.sgd import SgdOptions, build_sgd, yolox_parameter_groups
from yolox_sdk.config.schema import TrainingConfig
from yolox_sdk.engine.ema import WeightAverage
from yolox_sdk.models.factory import create_model


def _nano() -> torch.nn.Module:
    model = create_model("yolox-nano", num_classes=3, pretrained=True, input_size=(160, 160))[0]
    return model.to(memory_format=torch.channels_last)


def test_fused_average_follows_yolox_model_ema_over_many_updates() -> None:
    model = _nano()
    ours, reference = WeightAverage(model, 0.9998), ModelEMA(model, 0.9998)
    generator = torch.Generator().manual_seed(0)
    for step in range(5):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 1e-2)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.add_(0.1 * (step + 1))
        ours.update(model)
        reference.update(model)
    assert ours.updates == reference.updates == 5
    assert ours.decay(5) == reference.decay(5)
    ours_state, reference_state = ours.ema.state_dict(), reference.ema.state_dict()
    assert list(ours_state) == list(reference_state)
    moved = 0
    for name, value in reference_state.items():
        torch.testing.assert_close(ours_state[name], value, rtol=1e-6, atol=1e-7, msg=name)
        moved += int(value.dtype.is_floating_point and not torch.equal(value, model.state_dict()[name]))
    assert moved > 100  # the averages lag the weights: the comparison is not between copies of the model
    assert not any(parameter.requires_grad for parameter in ours.ema.parameters())
    assert not ours.ema.training


def test_integer_buffers_are_left_alone() -> None:
    model = _nano()
    average = WeightAverage(model)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.num_batches_tracked += 7
    average.update(model)
    counters = [v for k, v in average.ema.state_dict().items() if k.endswith("num_batches_tracked")]
    assert counters and all(int(v) == 0 for v in counters)


def _real_gradients(model: torch.nn.Module, generator: torch.Generator) -> None:
    """A training loss's backward on two images with boxes (autograd gives each gradient its parameter's
    memory layout, which the fused kernels rely on: hand-made contiguous gradients on channels-last
    weights are updated wrongly by torch's fused CPU SGD, measured 0.02 off after 3 steps)."""
    model.train()
    model.zero_grad(set_to_none=True)
    images = torch.rand(2, 3, 160, 160, generator=generator).contiguous(memory_format=torch.channels_last)
    targets = torch.zeros(2, 4, 5)
    targets[0, :2] = torch.tensor([[0, 50.0, 60, 30, 40], [2, 110, 100, 50, 30]])
    targets[1, :1] = torch.tensor([[1, 80.0, 80, 60, 60]])
    model(images, targets)["total_loss"].backward()


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_fused_optimizer_steps_like_the_per_tensor_one(name: str) -> None:
    fused_model, plain_model = _nano(), _nano()
    plain_model.load_state_dict(fused_model.state_dict())  # the new class head is drawn at random
    start = {key: value.clone() for key, value in fused_model.state_dict().items()}
    training = TrainingConfig(weight_decay=5e-4)
    if name == "sgd":
        fused = build_sgd(SgdOptions(), fused_model, training)
        groups = yolox_parameter_groups(plain_model, training.weight_decay)
        plain = torch.optim.SGD(groups, lr=0.0, momentum=0.9, nesterov=True, foreach=False)
    else:
        fused = build_adamw(AdamOptions(), fused_model, training)
        groups = yolox_parameter_groups(plain_model, training.weight_decay)
        plain = torch.optim.AdamW(groups, lr=0.0, betas=(0.9, 0.999), foreach=False)
    assert fused.defaults["fused" if name == "adamw" else "foreach"] is True
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        _real_gradients(fused_model, generator)
        for group_fused, group_plain in zip(fused.param_groups, plain.param_groups, strict=True):
            group_fused["lr"] = group_plain["lr"] = 0.01
            for a, b in zip(group_fused["params"], group_plain["params"], strict=True):
                if a.grad is not None:
                    assert a.grad.stride() == a.stride()
                    b.grad = a.grad.clone()
        fused.step()
        plain.step()
    changed = 0  # parameters only: the fused model's forwards also moved its BatchNorm statistics
    for (key, a), b in zip(fused_model.named_parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda text, key=key: f"{key}: {text}")
        changed += int(not torch.equal(a, start[key]))
    assert changed > 100  # the steps moved the weights


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_a_parameter_that_starts_training_later_is_stepped(name: str) -> None:
    """Unfreezing part-way (``model.unfreeze_schedule``): the next step has gradients, and SGD momentum
    buffers, for some parameters only (torch's fused SGD raises a TypeError there, so SGD is foreach)."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))
    early, late = model[0].weight, model[1].weight
    training = TrainingConfig(weight_decay=0.0)
    optimizer = (
        build_sgd(SgdOptions(), model, training)
        if name == "sgd"
        else build_adamw(AdamOptions(), model, training)
    )
    for group in optimizer.param_groups:
        group["lr"] = 0.1
    before = late.detach().clone()
    early.grad = torch.ones_like(early)
    optimizer.step()
    assert torch.equal(late.detach(), before)  # no gradient yet: untouched
    early.grad, late.grad = torch.ones_like(early), torch.ones_like(late)
    optimizer.step()
    assert bool((late.detach() < before).all())
