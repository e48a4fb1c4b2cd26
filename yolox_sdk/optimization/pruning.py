"""Channel pruning of a YOLOX network with torch-pruning's dependency graph (DepGraph).

Why torch-pruning: removing an output channel of one convolution means removing the matching input channel
of every layer it feeds, the BatchNorm between them, the other branch of each concatenation and, for a
depthwise convolution, the channel on both sides at once. DepGraph traces the network and prunes each such
coupled group together, so the result always runs; we only choose what to prune and how much.

What we choose:

- **Protected layers**: the head's final class, box and objectness convolutions keep their outputs (the
  class count and box layout the decoder and the loss rely on); their inputs are pruned with the layer
  feeding them.
- **Importance**: ``l1``/``l2`` are the group's weight magnitude (p=1/2); ``taylor`` is first-order Taylor
  (weight x gradient) and needs gradients of YOLOX's loss, which the caller accumulates first.
- **Scope**: ``sensitivity`` (default) chooses each group's share from the loss measured on training
  batches when its channels go (``optimization.sensitivity``); ``uniform`` removes the ratio from every
  group; ``global`` ranks all groups' channels together by importance (less important layers lose more).
  All are capped at ``MAX_LAYER_RATIO`` per layer so none is emptied. On BCCD nano at 30 %, mAP50:95 right
  after pruning was 0.24 with ``sensitivity`` and 0.000 with the other two.
- **Ratio**: the fraction of channels removed, measured against the *unpruned* network; pruning an
  already pruned network continues from where it is (0.3 on a network pruned 0.2 removes the 1/8 of
  the remaining channels that makes it 0.3 overall).
- **Targets**: a parameter or MAC count is reached by bisection over the ratio (each try prunes a copy).

torch-pruning is imported here only: loading a pruned checkpoint never needs it (``models.structure``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch
from torch import nn

from yolox_sdk.errors import ConfigError
from yolox_sdk.models.structure import is_prediction_layer
from yolox_sdk.optimization.sensitivity import (
    UNITS,
    Batch,
    GroupCurve,
    allocate,
    apply_allocation,
    measure_curves,
)

METHODS = ("l1", "l2", "taylor")
SCOPES = ("sensitivity", "global", "uniform")
DATA_SCOPES = ("sensitivity",)  # scopes that measure the loss on training batches
MAX_LAYER_RATIO = 0.9  # global scope: no layer loses more than this share of its channels
_BISECTION_STEPS = 8  # ratio precision ~ 0.95 / 2**8: finer than one channel of most nano layers
_MAX_TARGET_RATIO = 0.95


@attrs.frozen
class PruningPlan:
    """How to prune: ``ratio`` (of the unpruned channels) or a ``target_params``/``target_macs`` count.

    Attributes:
        ratio: fraction of channels removed, in (0, 1); ignored when a target is set.
        method: ``l1``, ``l2`` or ``taylor`` (see the module docstring).
        scope: ``sensitivity``, ``global`` or ``uniform``.
        target_params: prune until the network has at most this many parameters.
        target_macs: prune until one image at the model's input size costs at most this many MACs.
    """

    ratio: float | None = 0.3
    method: str = "l2"
    scope: str = "sensitivity"
    target_params: int | None = None
    target_macs: int | None = None

    @property
    def target(self) -> tuple[str, int] | None:
        """``("params", n)`` or ``("macs", n)`` when a count is the goal, else ``None``."""
        if self.target_params is not None:
            return "params", self.target_params
        if self.target_macs is not None:
            return "macs", self.target_macs
        return None


def check_plan(plan: PruningPlan) -> None:
    """Refuse a plan that cannot work, before anything is loaded or measured.

    Raises:
        ConfigError: a ratio outside (0, 1), an unknown method or scope, a target that is not a positive
            whole number, or both targets at once.
    """
    if plan.method not in METHODS:
        raise ConfigError(f"Unknown pruning method '{plan.method}'. Use one of: {', '.join(METHODS)}.")
    if plan.scope not in SCOPES:
        raise ConfigError(f"Unknown pruning scope '{plan.scope}'. Use one of: {', '.join(SCOPES)}.")
    if plan.target_params is not None and plan.target_macs is not None:
        raise ConfigError("Give either a target in parameters or one in MACs, not both.")
    target = plan.target
    if target is not None:
        if isinstance(target[1], bool) or not isinstance(target[1], int) or target[1] <= 0:
            raise ConfigError(
                f"The target {target[0]} count should be a positive whole number, got {target[1]!r}."
            )
        return
    ratio = plan.ratio
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio < 1:
        raise ConfigError(
            f"The pruning ratio should be a fraction strictly between 0 and 1 (the share of channels removed, "
            f"e.g. 0.3), got {ratio!r}."
        )


def prunable_channels(model: nn.Module) -> int:
    """Output channels of every convolution pruning may shrink (all but the head's predictions)."""
    return sum(
        module.out_channels
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d) and not is_prediction_layer(name)
    )


def step_ratio(overall: float, already: float) -> float:
    """The share of the *remaining* channels to remove so that ``overall`` of the unpruned ones are gone,
    when ``already`` of them were removed before."""
    return 1 - (1 - overall) / (1 - already)


def count_macs_and_params(model: nn.Module, input_size: tuple[int, int]) -> tuple[int, int]:
    """MACs of one image at ``input_size`` and the parameter count, as torch-pruning counts them (its
    thop-like counter: multiply-accumulates of convolutions, BatchNorms, activations and upsampling)."""
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model.eval(), torch.zeros(1, 3, *input_size))
    return int(macs), int(params)


def prune_network(
    model: nn.Module,
    input_size: tuple[int, int],
    ratio: float,
    method: str,
    scope: str,
    batches: Sequence[Batch] = (),
) -> None:
    """Remove ``ratio`` of the channels of ``model`` (in place, eval mode after), per ``scope``.

    ``ratio`` is relative to the channels ``model`` has now. For ``taylor``, the parameters' ``.grad`` must
    hold the loss gradients already (``taylor.accumulate_loss_gradients``); ``sensitivity`` measures the
    loss on ``batches`` (``Sensitivity.measure`` once, then ``Sensitivity.prune``, when several ratios are
    tried).
    """
    if scope == "sensitivity":
        Sensitivity.measure(model, input_size, method, batches).prune(model, ratio)
        return
    import torch_pruning as tp

    pruner = tp.pruner.BasePruner(
        model.eval(),
        torch.zeros(1, 3, *input_size),
        importance=_importance(method),
        global_pruning=scope == "global",
        pruning_ratio=ratio,
        max_pruning_ratio=MAX_LAYER_RATIO,
        ignored_layers=_protected(model),
    )
    pruner.step()
    model.zero_grad(set_to_none=True)
    model.eval()


def _protected(model: nn.Module) -> list[nn.Module]:
    return [m for name, m in model.named_modules() if is_prediction_layer(name)]


@attrs.frozen
class Sensitivity:
    """Measured per-group loss curves of one network (``optimization.sensitivity``), reusable for any
    ratio of the channels that network has."""

    curves: tuple[GroupCurve, ...]
    input_size: tuple[int, int]

    @classmethod
    def measure(
        cls, model: nn.Module, input_size: tuple[int, int], method: str, batches: Sequence[Batch]
    ) -> Sensitivity:
        import torch_pruning as tp

        if not batches:
            raise ConfigError("Sensitivity pruning needs training batches to measure the loss on.")
        model.eval()
        graph = tp.DependencyGraph().build_dependency(model, torch.zeros(1, 3, *input_size))
        groups = list(graph.get_all_groups(ignored_layers=_protected(model), root_module_types=[nn.Conv2d]))
        names = {module: name for name, module in model.named_modules()}
        curves = measure_curves(model, graph, groups, names, _importance(method), batches, MAX_LAYER_RATIO)
        model.zero_grad(set_to_none=True)
        return cls(tuple(curves), input_size)

    def prune(self, model: nn.Module, ratio: float, unit: str = "channels") -> None:
        """Remove ``ratio`` of the measured network's channels from ``model`` (that network or a copy), or
        with ``unit`` ``params``/``macs``, about that share of the parameters or MACs the channels carry
        (the cheapest loss per parameter or per MAC first: what a size or speed target wants)."""
        if unit == "channels":
            total = float(prunable_channels(model))
        else:
            index = UNITS.index(unit)
            total = sum(curve.channels * curve.per_channel[index] for curve in self.curves)
        allocation = allocate(self.curves, ratio * total, unit)
        apply_allocation(model, self.input_size, self.curves, allocation)


def _importance(method: str) -> Any:
    import torch_pruning as tp

    if method == "taylor":
        return tp.importance.TaylorImportance()
    return tp.importance.MagnitudeImportance(p=1 if method == "l1" else 2)


def copy_with_gradients(model: nn.Module) -> nn.Module:
    """A deep copy that keeps each parameter's ``.grad`` (``deepcopy`` drops them; Taylor needs them)."""
    duplicate = copy.deepcopy(model)
    for original, copied in zip(model.parameters(), duplicate.parameters(), strict=True):
        copied.grad = None if original.grad is None else original.grad.clone()
    return duplicate


def ratio_for_target(
    model: nn.Module,
    input_size: tuple[int, int],
    plan: PruningPlan,
    prune: Callable[[nn.Module, float], None] | None = None,
) -> float:
    """The smallest ratio (relative to ``model`` now) whose pruned copy meets ``plan.target``.

    Raises:
        ConfigError: when the network is already within the target, or even ``_MAX_TARGET_RATIO`` misses it.
    """
    what, goal = plan.target or ("params", 0)
    index = 0 if what == "macs" else 1
    prune = prune or (
        lambda network, ratio: prune_network(network, input_size, ratio, plan.method, plan.scope)
    )

    def size_after(ratio: float) -> int:
        trial = copy_with_gradients(model)
        prune(trial, ratio)
        return count_macs_and_params(trial, input_size)[index]

    now = count_macs_and_params(model, input_size)[index]
    if now <= goal:
        raise ConfigError(
            f"The model already has {now:,} {what} ({what} target {goal:,}): nothing to prune. Give a smaller target."
        )
    if size_after(_MAX_TARGET_RATIO) > goal:
        raise ConfigError(
            f"The {what} target {goal:,} cannot be reached: even pruning {_MAX_TARGET_RATIO:.0%} of the channels "
            f"leaves more. Give a larger target (the model has {now:,} {what} now)."
        )
    low, high = 0.0, _MAX_TARGET_RATIO
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        low, high = (low, middle) if size_after(middle) <= goal else (middle, high)
    return high
