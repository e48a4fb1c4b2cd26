"""Lookahead (Zhang et al., 2019) around any registered optimizer.

The inner ("fast") optimizer steps as usual; every ``k`` steps the slow weights move ``alpha`` of the way
towards the fast ones and the fast weights restart from there. Written as a ``torch.optim.Optimizer``
subclass that shares the inner optimizer's parameter groups, so the trainer's per-iteration learning
rate, checkpointing (``state_dict``) and resume work unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from yolox_sdk.config.validators import number
from yolox_sdk.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    import torch
    from torch import nn

    from yolox_sdk.config.schema import TrainingConfig


@attrs.frozen
class LookaheadOptions:
    """``inner`` is any optimizer plugin name, ``inner_options`` its options."""

    inner: str = "sgd"
    inner_options: dict[str, Any] = attrs.field(factory=dict)
    k: int = attrs.field(default=5, validator=number(1))
    alpha: float = attrs.field(default=0.5, validator=number(0.0, 1.0, low_inclusive=False))


def _lookahead_class() -> type:
    import torch

    class Lookahead(torch.optim.Optimizer):
        """Slow/fast weights around ``inner``; ``param_groups`` are the inner optimizer's own."""

        def __init__(self, inner: torch.optim.Optimizer, k: int, alpha: float) -> None:
            self.inner = inner
            self.k = k
            self.alpha = alpha
            self.param_groups = inner.param_groups
            self.defaults = inner.defaults
            self.state = inner.state
            self.steps = 0
            self.slow = [[p.detach().clone() for p in group["params"]] for group in self.param_groups]

        def step(self, closure: Callable[[], float] | None = None) -> Any:
            loss = self.inner.step(closure)
            self.steps += 1
            if self.steps % self.k == 0:
                with torch.no_grad():
                    for group, slow_group in zip(self.param_groups, self.slow, strict=True):
                        for fast, slow in zip(group["params"], slow_group, strict=True):
                            slow.add_(fast.detach() - slow, alpha=self.alpha)
                            fast.copy_(slow)
            return loss

        def zero_grad(self, set_to_none: bool = True) -> None:
            self.inner.zero_grad(set_to_none=set_to_none)

        def state_dict(self) -> dict[str, Any]:
            return {"inner": self.inner.state_dict(), "slow": self.slow, "steps": self.steps}

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            self.inner.load_state_dict(state_dict["inner"])
            self.param_groups = self.inner.param_groups
            self.state = self.inner.state
            with torch.no_grad():
                for slow_group, saved_group in zip(self.slow, state_dict["slow"], strict=True):
                    for slow, saved in zip(slow_group, saved_group, strict=True):
                        slow.copy_(saved)
            self.steps = state_dict["steps"]

    return Lookahead


def build_lookahead(
    options: LookaheadOptions, model: nn.Module, training: TrainingConfig
) -> torch.optim.Optimizer:
    """Lookahead around the optimizer plugin ``options.inner``."""
    from yolox_sdk.plugins.building import build_plugin
    from yolox_sdk.plugins.manager import get_registry

    inner = build_plugin(
        get_registry(),
        "optimizer",
        options.inner,
        options.inner_options,
        "training.optimizer_options.inner_options",
        model,
        training,
    )
    return _lookahead_class()(inner, options.k, options.alpha)


@hookimpl
def register_optimizers(register) -> None:
    register(
        "lookahead", build_lookahead, options=LookaheadOptions, description="Lookahead around any optimizer"
    )
