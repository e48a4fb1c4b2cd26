"""The optimizer step of ``Precision``: clipping by norm, and skipping a step whose gradient is not finite."""

from __future__ import annotations

import torch

from yolox_sdk.engine.precision import Precision
from yolox_sdk.models import create_model


def _model_with_gradients() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model, _, _ = create_model("yolox-nano", num_classes=2, pretrained=True, input_size=(128, 128))
    model.train()
    targets = torch.zeros(2, 4, 5)
    targets[:, 0] = torch.tensor([1.0, 64, 64, 40, 40])
    model(torch.rand(2, 3, 128, 128) * 255, targets)["total_loss"].backward()
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def _grad_norm(model: torch.nn.Module) -> float:
    return float(
        torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None])
        )
    )


def test_clipping_bounds_the_gradient_norm_of_the_step() -> None:
    model, optimizer = _model_with_gradients()
    norm = _grad_norm(model)
    assert norm > 1.0  # a real loss on a fresh head: clipping to 1 has work to do
    before = [p.detach().clone() for p in model.parameters()]
    assert Precision(torch.device("cpu"), amp=False).step(optimizer, model, clip_norm=1.0)
    assert abs(_grad_norm(model) - 1.0) < 1e-4
    moved = max(float((p - b).abs().max()) for p, b in zip(model.parameters(), before, strict=True))
    assert 0 < moved <= 0.01 * 1.0 + 1e-7  # an SGD step of lr x (a clipped gradient of norm 1)


def test_a_non_finite_gradient_skips_the_step() -> None:
    model, optimizer = _model_with_gradients()
    next(p for p in model.parameters() if p.grad is not None).grad[0].fill_(float("inf"))
    before = [p.detach().clone() for p in model.parameters()]
    assert not Precision(torch.device("cpu"), amp=False).step(optimizer, model, clip_norm=None)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    assert all(p.grad is None for p in model.parameters())  # nothing left to leak into the next step
