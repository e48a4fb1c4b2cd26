"""Memory and speed switches of training: activation checkpointing of the backbone, and ``torch.compile``.

Both change how the training forward runs, never what the model is: parameter and buffer names stay the
same (checkpoints, EMA, evaluation and export see the plain model), and evaluation runs the eager model.

* ``training.gradient_checkpointing`` keeps only the inputs of the four CSPDarknet stages (``dark2`` to
  ``dark5``) during the forward and recomputes their activations in the backward: less activation memory
  (the backbone holds most of it at high resolution) for roughly one more backbone forward per step.
* ``training.compile`` runs the training forward through ``torch.compile``. A failure to compile, at wrap
  time or at any later call, falls back to the eager model with a warning instead of ending the run.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from yolox_sdk.errors import ConfigError

log = logging.getLogger(__name__)

BACKBONE_STAGES = ("dark2", "dark3", "dark4", "dark5")


@contextlib.contextmanager
def batchnorm_statistics_kept(module: nn.Module) -> Iterator[None]:
    """Run a block with ``module``'s BatchNorm running statistics restored afterwards.

    The recomputation in the backward is a second training-mode forward of the same batch; without this it
    would update the running mean and variance (and the batch counter) a second time, so a checkpointed
    model would drift from the same model trained without checkpointing.
    """
    saved = [
        (norm, norm.running_mean.clone(), norm.running_var.clone(), norm.num_batches_tracked.clone())
        for norm in module.modules()
        if isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.track_running_stats
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for norm, mean, var, count in saved:
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(var)
                norm.num_batches_tracked.copy_(count)


class CheckpointedStage(nn.Sequential):
    """A backbone stage whose activations are recomputed in the backward instead of kept.

    It is an ``nn.Sequential`` holding the very same child modules under the same names as the stage it
    replaces, so ``state_dict`` keys do not change. Checkpointing applies only when training with grad
    enabled: evaluation, ``torch.no_grad`` and a frozen (``eval()``) backbone run the plain forward.
    ``use_reentrant=False`` is torch's recommended variant: it works when the stage input needs no grad
    and keeps autocast state for the recomputation.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(x)
        calls = 0

        def run(inputs: torch.Tensor) -> torch.Tensor:
            nonlocal calls
            calls += 1
            if calls == 1:
                return nn.Sequential.forward(self, inputs)
            with batchnorm_statistics_kept(self):
                return nn.Sequential.forward(self, inputs)

        return checkpoint(run, x, use_reentrant=False)


def enable_gradient_checkpointing(model: nn.Module) -> list[str]:
    """Make the CSPDarknet stages of a YOLOX ``model`` checkpointed stages; returns the stages changed.

    Raises:
        ConfigError: when the model has no CSPDarknet backbone (``model.backbone.backbone.dark2`` ...).
    """
    darknet = getattr(getattr(model, "backbone", None), "backbone", None)
    stages = [name for name in BACKBONE_STAGES if isinstance(getattr(darknet, name, None), nn.Sequential)]
    if not stages:
        raise ConfigError(
            "training.gradient_checkpointing is true, but the model has no CSPDarknet backbone stages "
            f"(model.backbone.backbone.{'/'.join(BACKBONE_STAGES)}) to checkpoint. Set "
            "training.gradient_checkpointing: false for this model."
        )
    changed = []
    for name in stages:
        stage = getattr(darknet, name)
        if isinstance(stage, CheckpointedStage):
            continue
        replacement = CheckpointedStage(OrderedDict(stage.named_children()))
        replacement.train(stage.training)
        setattr(darknet, name, replacement)
        changed.append(name)
    log.info("Gradient checkpointing on backbone stages %s.", ", ".join(changed) or "(already on)")
    return changed


class CompiledForward:
    """The training forward through ``torch.compile``, with the eager model as the fallback.

    ``torch.compile`` compiles lazily, so errors surface at the first call (or at a later recompile);
    any exception from the compiled module switches this object to the eager module for good, with one
    WARNING, and the batch is run again eagerly (a genuine error in the model then raises from there).
    """

    def __init__(self, model: nn.Module, compiled: Callable[..., Any]) -> None:
        self.model = model
        self.compiled: Callable[..., Any] | None = compiled

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - any compiler failure means "run eagerly"
                self.compiled = None
                log.warning(
                    "training.compile: torch.compile failed (%s: %s); training continues with the eager "
                    "model. Set training.compile: false to skip the attempt.",
                    type(error).__name__,
                    str(error).splitlines()[0] if str(error) else "",
                )
        return self.model(*args, **kwargs)


def compile_for_training(model: nn.Module, enabled: bool, device: torch.device) -> Callable[..., Any]:
    """The callable the training step runs ``model(images, targets)`` with.

    Disabled: ``model`` itself. Enabled: a ``CompiledForward`` over ``torch.compile(model)``, which shares
    ``model``'s parameters; the trainer keeps ``model`` for ``state_dict``, EMA and evaluation, so
    checkpoints never see the compiled wrapper's ``_orig_mod.`` key prefix. Shapes: multi-scale training
    changes the input size every ``training.multiscale_interval`` iterations; with torch's default
    ``dynamic=None`` the first size compiles a static graph, the second triggers one recompile with
    dynamic height/width, and later sizes mostly reuse it (a size-specific guard can still cost a short
    recompile). The loss's per-image label assignment has data-dependent shapes and runs with graph
    breaks. On CPU, compiling needs a C++ compiler and takes minutes for the first steps of a YOLOX
    model, which is why the switch is off by default.
    """
    if not enabled:
        return model
    try:
        compiled = torch.compile(model)
    except Exception as error:  # noqa: BLE001 - e.g. an unsupported Python or platform
        log.warning(
            "training.compile: torch.compile is not available here (%s: %s); training runs eagerly.",
            type(error).__name__,
            error,
        )
        return model
    log.info("training.compile: the training forward on %s runs through torch.compile.", device)
    return CompiledForward(model, compiled)
