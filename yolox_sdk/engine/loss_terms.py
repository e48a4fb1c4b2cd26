"""Loss-term plugins (``register_loss_terms``) in a training step: which ones a config turns on, building
them before the run directory exists, reading the head's raw outputs, adding their terms to YOLOX's loss.

YOLOX's training forward returns its loss, not the head's outputs, so the student's raw outputs are read
with forward hooks on the head's prediction convolutions (``HeadCapture``), recording only inside a
training step. The hooks see what the loss sees, with its autograd graph, on any wrapper (DDP) and any
input size (multi-scale), without copying YOLOX's head code. A term plugin (the teacher of distillation)
may capture another model's head the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import torch
from torch import nn

from yolox_sdk.config.plugin_options import named_items
from yolox_sdk.config.schema import Config
from yolox_sdk.errors import ConfigError, TrainingError
from yolox_sdk.plugins.building import build_plugin
from yolox_sdk.plugins.interfaces import HeadLevel, LossContext, LossInputs
from yolox_sdk.plugins.registry import Registry

LOSS = "loss_term"
YOLOX_LOSS_KEYS = ("total_loss", "iou_loss", "conf_loss", "cls_loss", "l1_loss")
_PARTS = ("reg_preds", "obj_preds", "cls_preds")


class HeadCapture:
    """Forward hooks on a YOLOX head's ``reg_preds``/``obj_preds``/``cls_preds`` convolutions.

    Outputs are kept only inside ``recording()``, and ``levels()`` hands them over once, so evaluation
    forwards and copies of the model (EMA, SWA deep-copy the hooks) hold no tensors.
    """

    def __init__(self, model: nn.Module) -> None:
        head = getattr(model, "head", None)
        if head is None or not all(hasattr(head, part) for part in _PARTS):
            raise ConfigError(
                "Loss terms read YOLOX's head outputs, but this model has no YOLOX head "
                "(model.head.reg_preds/obj_preds/cls_preds)."
            )
        self.strides = tuple(int(stride) for stride in head.strides)
        self._recording = False
        self._seen: dict[tuple[str, int], torch.Tensor] = {}
        self._handles = [
            module.register_forward_hook(self._hook(part, level))
            for part in _PARTS
            for level, module in enumerate(getattr(head, part))
        ]

    def _hook(self, part: str, level: int) -> Any:
        def keep(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            if self._recording:
                self._seen[part, level] = output

        return keep

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Keep the head's outputs of the forwards run inside this block."""
        self._seen.clear()
        self._recording = True
        try:
            yield
        finally:
            self._recording = False

    def levels(self) -> tuple[HeadLevel, ...]:
        """The recorded outputs, one ``HeadLevel`` per stride, and forget them.

        Raises:
            TrainingError: nothing (or not every level) was recorded: the model's forward skipped its head.
        """
        seen, self._seen = self._seen, {}
        try:
            return tuple(
                HeadLevel(seen["reg_preds", k], seen["obj_preds", k], seen["cls_preds", k], stride)
                for k, stride in enumerate(self.strides)
            )
        except KeyError:
            raise TrainingError(
                "A loss term needs the head's outputs, but the forward did not run every head level."
            ) from None

    def remove(self) -> None:
        """Take the hooks off the model."""
        for handle in self._handles:
            handle.remove()


def configured_losses(config: Config, registry: Registry) -> list[tuple[str, Any, str]]:
    """``(name, raw options, yaml path)`` of every loss term a run uses: those registered with an
    ``enabled_by`` key that is set (``training.distillation``), then ``training.losses``.

    Raises:
        ConfigError: a term is switched on twice (by its key and in ``training.losses``).
    """
    chosen = []
    for entry in registry.entries(LOSS):
        value = _switch(config, entry.enabled_by) if entry.enabled_by else None
        if value is not None and value is not False:
            chosen.append((entry.name, _options_of(value), entry.enabled_by))
    chosen.extend(named_items(config.training.losses, "training.losses"))
    names = [name for name, _, _ in chosen]
    for name in names:
        if names.count(name) > 1:
            where = " and ".join(w for n, _, w in chosen if n == name)
            raise ConfigError(
                f"Invalid config: the loss term '{name}' is switched on twice ({where}); keep one."
            )
    return chosen


def _switch(config: Config, dotted: str) -> Any:
    value: Any = config
    for key in dotted.split("."):
        value = getattr(value, key, None)
    return value


def _options_of(value: Any) -> dict[str, Any]:
    if attrs.has(type(value)):
        return attrs.asdict(value)
    return dict(value) if isinstance(value, Mapping) else {}


@attrs.define
class LossTerms:
    """The run's loss terms and the hooks reading the student's head; empty when none is configured."""

    terms: tuple[Any, ...] = ()
    names: tuple[str, ...] = ()
    capture: HeadCapture | None = None

    def watch(self, model: nn.Module) -> None:
        """Hook the student ``model`` (its final form: after BatchNorm conversion, before any wrapper)."""
        if self.terms:
            self.capture = HeadCapture(model)

    def recording(self) -> Any:
        """Where the student's training forward runs."""
        return self.capture.recording() if self.capture is not None else contextlib.nullcontext()

    def add_to(self, outputs: dict[str, Any], images: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
        """YOLOX's loss ``outputs`` with every term's values added (each also under its own name)."""
        if self.capture is None:
            return outputs
        inputs = LossInputs(images, targets, self.capture.levels(), outputs)
        combined = dict(outputs)
        for term in self.terms:
            values = term(inputs)
            missing = [name for name in term.names if name not in values]
            if missing:
                raise TrainingError(
                    f"The loss term {type(term).__name__} returned {sorted(values)}, not its names {missing}."
                )
            for name in term.names:
                combined[name] = values[name]
                combined["total_loss"] = combined["total_loss"] + values[name]
        return combined


def build_loss_terms(
    config: Config, registry: Registry, class_names: tuple[str, ...], input_size: tuple[int, int], device: Any
) -> LossTerms:
    """Every configured term, built (their checks run) before the run directory exists.

    Raises:
        ConfigError: a term's options or files are wrong, its names clash, or a setting it cannot run with.
    """
    chosen = configured_losses(config, registry)
    if chosen and config.training.compile:
        where = ", ".join(w for _, _, w in chosen)
        raise ConfigError(
            f"Invalid config: training.compile cannot be combined with loss terms ({where}): they read the "
            "head's outputs through forward hooks, which torch.compile does not keep reliably. Set "
            "training.compile: false."
        )
    terms, names = [], []
    for name, options, where in chosen:
        context = LossContext(tuple(class_names), tuple(input_size), device, config, where)
        term = build_plugin(registry, LOSS, name, options, where, context)
        for key in term.names:
            if key in YOLOX_LOSS_KEYS or key in names:
                raise ConfigError(
                    f"Invalid config: {where}: the loss term '{name}' logs '{key}', a name already taken "
                    f"({', '.join((*YOLOX_LOSS_KEYS, *names))})."
                )
            names.append(key)
        terms.append(term)
    return LossTerms(tuple(terms), tuple(names))
