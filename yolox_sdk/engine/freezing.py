"""Which parameters train in each epoch: freezing by group or name pattern, progressive unfreezing, and
BatchNorm layers whose running statistics stay fixed.

The rules come from ``model.freeze`` (frozen for the whole run), ``model.unfreeze_schedule`` (frozen until a
1-based epoch, trained from it on) and the older ``model.freeze_backbone``/``model.freeze_until_epoch``. A
parameter named by several rules trains from the earliest epoch any timed rule gives it, so unfreezing only
ever adds parameters and "dark5 at epoch 3, the whole backbone at epoch 5" reads as written.

Freezing only flips ``requires_grad``. The optimizer is built once with every parameter; a frozen parameter
gets no gradient, and torch optimizers skip parameters whose gradient is ``None`` (no update, no weight
decay, no momentum), so unfreezing needs no new optimizer. BatchNorm layers whose affine parameters are
frozen run in eval mode so their running statistics stay those of the pretrained weights; eval mode is set
per BatchNorm layer, never on whole modules, because the YOLOX head computes its loss only in train mode.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from fnmatch import fnmatchcase

import attrs
from torch import nn

from yolox_sdk.config.schema import FREEZE_GROUPS, ModelConfig
from yolox_sdk.errors import ConfigError

log = logging.getLogger(__name__)

# Where each group lives in a YOLOX model; the backbone's root lies inside the neck's, so it is tested first.
GROUP_ROOTS = {"backbone": "backbone.backbone", "head": "head", "neck": "backbone"}


@attrs.frozen
class FreezeRule:
    """One entry of the config: what it names, which key gave it, and the epoch it trains from."""

    entry: str
    key: str
    trains_from: int | None  # 1-based epoch; None = frozen for the whole run


@attrs.frozen
class FreezePlan:
    """For each parameter that some rule names, the 1-based epoch it starts training (``None``: never).

    Parameters absent from ``trains_from`` train in every epoch.
    """

    trains_from: dict[str, int | None]
    freeze_bn: bool = False

    def frozen_at(self, epoch: int) -> frozenset[str]:
        """Names of the parameters frozen during 1-based ``epoch``."""
        return frozenset(name for name, start in self.trains_from.items() if start is None or epoch < start)


def parameter_group(name: str) -> str:
    """The group (``backbone``, ``neck``, ``head``) of a YOLOX parameter name; ``other`` outside them."""
    for group, root in GROUP_ROOTS.items():
        if name.startswith(root + "."):
            return group
    return "other"


def entry_matches(entry: str, name: str) -> bool:
    """Whether a group name or fnmatch pattern names parameter ``name``.

    A pattern matches a parameter name or any module above it, so ``backbone.backbone.dark2`` and
    ``backbone.backbone.dark2.*`` both name every parameter of that stage.
    """
    if entry in FREEZE_GROUPS:
        return parameter_group(name) == entry
    return fnmatchcase(name, entry) or fnmatchcase(name, entry + ".*")


def freeze_rules(model_config: ModelConfig) -> list[FreezeRule]:
    """Every freezing rule of the ``model`` section, in config order."""
    m = model_config
    rules = [FreezeRule(entry, f"model.freeze[{index}]", None) for index, entry in enumerate(m.freeze)]
    if m.freeze_backbone:
        until = m.freeze_until_epoch + 1 if m.freeze_until_epoch else None
        rules.append(FreezeRule("backbone", "model.freeze_backbone", until))
    for epoch in sorted(m.unfreeze_schedule):
        key = f"model.unfreeze_schedule.{epoch}"
        rules.extend(FreezeRule(entry, key, epoch) for entry in m.unfreeze_schedule[epoch])
    return rules


def plan_freezing(model_config: ModelConfig, model: nn.Module, epochs: int | None = None) -> FreezePlan:
    """Resolve the config's rules against ``model``'s parameter names.

    Args:
        model_config: the ``model`` section.
        model: the YOLOX network (not wrapped: names start with ``backbone.`` or ``head.``).
        epochs: ``training.epochs``, to warn about schedule entries that would never take effect.

    Raises:
        ConfigError: a group or pattern matches no parameter of ``model``.
    """
    names = [name for name, _ in model.named_parameters()]
    starts: dict[str, list[int | None]] = defaultdict(list)
    for rule in freeze_rules(model_config):
        matched = [name for name in names if entry_matches(rule.entry, name)]
        if not matched:
            raise ConfigError(_no_match_message(rule, model))
        for name in matched:
            starts[name].append(rule.trains_from)
    _warn_about_ineffective_settings(model_config, epochs)
    plan = FreezePlan(
        trains_from={name: _earliest_timed(values) for name, values in starts.items()},
        freeze_bn=model_config.freeze_bn,
    )
    _check_something_trains(plan, len(names))
    return plan


def _check_something_trains(plan: FreezePlan, parameter_count: int) -> None:
    """Refuse a plan that freezes every parameter in epoch 1 (unfreezing only adds, so later epochs follow).

    Without this the first backward fails inside torch with "element 0 of tensors does not require grad".
    """
    if len(plan.frozen_at(1)) < parameter_count:
        return
    starts = [start for start in plan.trains_from.values() if start is not None]
    until = f"until epoch {min(starts)}" if starts else "in any epoch"
    raise ConfigError(
        f"Invalid config: model.freeze, model.unfreeze_schedule and model.freeze_backbone freeze every "
        f"parameter of the model, so nothing would train {until}. Leave at least one group "
        f"({', '.join(FREEZE_GROUPS)}) trainable from epoch 1, usually the new head: take it out of "
        "model.freeze and model.unfreeze_schedule."
    )


def _earliest_timed(starts: list[int | None]) -> int | None:
    """Timed rules (an epoch) win over permanent ones (``None``); among them the earliest epoch wins."""
    timed = [start for start in starts if start is not None]
    return min(timed) if timed else None


def _no_match_message(rule: FreezeRule, model: nn.Module) -> str:
    return (
        f"Invalid config: {rule.key}: '{rule.entry}' matches no parameter of the model. Use a group "
        "(backbone = the CSPDarknet under backbone.backbone, neck = the other backbone.* layers (PAFPN), "
        "head = the detection head) or an fnmatch pattern over parameter or module names. This model's "
        f"modules are {describe_modules(model)}; e.g. 'backbone.backbone.dark5' or 'head.cls_preds.*'."
    )


def describe_modules(model: nn.Module) -> str:
    """The first-level modules of each group, e.g. ``backbone.backbone.{stem, dark2}``, for error messages."""
    parts = []
    for root in ("backbone.backbone", "backbone", "head"):
        try:
            module = model.get_submodule(root)
        except AttributeError:
            continue
        children = [
            name
            for name, child in module.named_children()
            if f"{root}.{name}" not in GROUP_ROOTS.values() and any(True for _ in child.parameters())
        ]
        parts.append(f"{root}.{{{', '.join(children)}}}")
    return "; ".join(parts) or "(none found: is this a YOLOX model?)"


def _warn_about_ineffective_settings(model_config: ModelConfig, epochs: int | None) -> None:
    if model_config.freeze_until_epoch and not model_config.freeze_backbone:
        log.warning(
            "model.freeze_until_epoch is %d but model.freeze_backbone is false, so it has no effect; use "
            "model.unfreeze_schedule (e.g. {%d: [backbone]}) instead.",
            model_config.freeze_until_epoch,
            model_config.freeze_until_epoch + 1,
        )
    late = [epoch for epoch in model_config.unfreeze_schedule if epochs is not None and epoch > epochs]
    if late:
        log.warning(
            "model.unfreeze_schedule epochs %s come after the last epoch (%d): what they name stays frozen.",
            sorted(late),
            epochs,
        )


def apply_freezing(model: nn.Module, plan: FreezePlan, epoch: int) -> bool:
    """Put ``model`` in train mode with the parameters ``plan`` freezes for 1-based ``epoch`` frozen.

    Frozen BatchNorm layers (and every BatchNorm layer with ``freeze_bn``) are put in eval mode. When the
    trainable set changed, one INFO line says what trains (the full list of names at DEBUG level).

    Returns:
        Whether any parameter changed between frozen and trainable (a DDP wrapper must then be rebuilt).
    """
    frozen = plan.frozen_at(epoch)
    changed = False
    for name, parameter in model.named_parameters():
        trainable = name not in frozen
        if parameter.requires_grad != trainable:
            parameter.requires_grad_(trainable)
            changed = True
    model.train()
    set_batchnorm_modes(model, plan.freeze_bn)
    if changed:
        log.info("Epoch %d: %s", epoch, describe_trainable(model))
        trainable_names = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
        log.debug("Epoch %d trainable parameters: %s", epoch, ", ".join(trainable_names) or "none")
    return changed


def batchnorm_is_frozen(module: nn.Module, freeze_bn: bool) -> bool:
    """Whether training leaves this BatchNorm layer's statistics alone: all of them with ``freeze_bn``,
    else those whose affine parameters are all frozen (they run in eval mode)."""
    parameters = list(module.parameters(recurse=False))
    return freeze_bn or (bool(parameters) and not any(p.requires_grad for p in parameters))


def set_batchnorm_modes(model: nn.Module, freeze_bn: bool) -> None:
    """Eval mode for the BatchNorm layers ``batchnorm_is_frozen`` names."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and batchnorm_is_frozen(module, freeze_bn):
            module.eval()


def count_trainable_parameters(model: nn.Module) -> int:
    """The number of parameter values that currently train (``requires_grad``)."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def describe_trainable(model: nn.Module) -> str:
    """E.g. ``training head, neck (530,000 of 897,144 parameters); frozen: backbone``.

    A group of which only some parameters train appears as ``part of <group>`` and ``rest of <group>``.
    """
    trainable: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for name, parameter in model.named_parameters():
        group = parameter_group(name)
        total[group] += parameter.numel()
        trainable[group] += parameter.numel() if parameter.requires_grad else 0
    order = sorted(total, key=lambda group: (*FREEZE_GROUPS, "other").index(group), reverse=True)
    training = [g if trainable[g] == total[g] else f"part of {g}" for g in order if trainable[g]]
    frozen = [g if not trainable[g] else f"rest of {g}" for g in order if trainable[g] < total[g]]
    return (
        f"training {', '.join(training) or 'nothing'} "
        f"({sum(trainable.values()):,} of {sum(total.values()):,} parameters); "
        f"frozen: {', '.join(frozen) or 'nothing'}"
    )
