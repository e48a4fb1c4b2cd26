"""Rebuilding a channel-pruned network from its weights alone, without torch-pruning or unpickled code.

A pruned YOLOX network is the spec's network with fewer channels in some convolutions and BatchNorms; its
state dict therefore says everything about its structure. We rebuild the spec's network, then give every
``Conv2d``/``BatchNorm2d`` the channel counts its saved tensors have, and check the result by running it:

- only channel counts may differ (kernel sizes, strides, groups layout, module names stay the spec's), and
  only downwards (pruning removes channels, it never adds them);
- a depthwise convolution stays depthwise (``groups`` follows its channel count, as torch-pruning keeps it);
- the head's final class/box/objectness convolutions keep the model's output channels (class count and box
  layout): only their input channels follow the weights;
- the reshaped network must run a small forward pass, which proves that every layer's input matches the
  output feeding it.

Anything else is refused with ``CheckpointError`` naming the file and the module. Weights whose shapes equal
the spec's (every unpruned checkpoint) leave the network untouched, so old checkpoints load unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from yolox_sdk.errors import CheckpointError

# The head's prediction convolutions: their output channels are the class count and box layout.
PREDICTION_LAYERS = ("head.cls_preds.", "head.reg_preds.", "head.obj_preds.")
_CHECK_SIDE = 64  # a forward pass at 64 px proves the channel chain is consistent, cheaply


def is_prediction_layer(name: str) -> bool:
    """Whether the module ``name`` is one of the head's final prediction convolutions."""
    return name.startswith(PREDICTION_LAYERS)


def pruned_layers(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the convolutions/BatchNorms whose tensors in ``state`` differ in shape from ``model``'s.

    A prediction convolution that differs in its outputs only is a class-count change, not pruning: that
    stays the business of class-count surgery (``weights.load_matching_weights``).
    """
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d | nn.BatchNorm2d)
        and f"{name}.weight" in state
        and _differs(name, tuple(state[f"{name}.weight"].shape), tuple(module.weight.shape))
    ]


def _differs(name: str, saved: tuple[int, ...], built: tuple[int, ...]) -> bool:
    if is_prediction_layer(name):
        return saved[1:] != built[1:]
    return saved != built


def fit_structure(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> int:
    """Give ``model``'s convolutions and BatchNorms the channel counts of ``state`` (a pruned network's).

    Replaced modules are freshly initialised (the caller loads ``state`` next); BatchNorms keep the
    model's eps and momentum. ``source`` names the file in errors.

    Returns:
        How many modules were reshaped (0: the weights fit the network as built).

    Raises:
        CheckpointError: when the shapes are not a channel-pruned version of the network.
    """
    changed = pruned_layers(model, state)
    for name in changed:
        module = model.get_submodule(name)
        weight = state[f"{name}.weight"]
        if isinstance(module, nn.Conv2d):
            replacement: nn.Module = _smaller_conv(module, weight, name, source)
        else:
            replacement = _smaller_batchnorm(module, weight, name, source)
        _replace(model, name, replacement)
    if changed:
        _check_runs(model, source)
    return len(changed)


def _refuse(source: str, name: str, what: str) -> CheckpointError:
    return CheckpointError(
        f"The weights in {source} do not describe a channel-pruned version of their model: {name} {what}. "
        "Only channel counts may differ from the model spec (as `yolox-sdk prune` writes them); the file was "
        "edited or belongs to another model. Use a checkpoint written by yolox-sdk."
    )


def _smaller_conv(conv: nn.Conv2d, weight: torch.Tensor, name: str, source: str) -> nn.Conv2d:
    """A convolution like ``conv`` with the channel counts of ``weight``."""
    if weight.dim() != 4 or tuple(weight.shape[2:]) != tuple(conv.weight.shape[2:]):
        raise _refuse(
            source,
            name,
            f"has weights of shape {tuple(weight.shape)}, expected a kernel of "
            f"{tuple(conv.weight.shape[2:])}",
        )
    out_channels, per_group = int(weight.shape[0]), int(weight.shape[1])
    if is_prediction_layer(name):
        out_channels = conv.out_channels  # class count and box layout: the model's own
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
    if depthwise:
        if per_group != 1:
            raise _refuse(source, name, f"is depthwise but its weights have {per_group} inputs per group")
        in_channels, groups = out_channels, out_channels
    elif conv.groups == 1:
        in_channels, groups = per_group, 1
    else:
        raise _refuse(source, name, f"has {conv.groups} groups, which pruning does not change")
    if not (0 < out_channels <= conv.out_channels and 0 < in_channels <= conv.in_channels):
        raise _refuse(
            source,
            name,
            f"has {in_channels}->{out_channels} channels, more than the model's "
            f"{conv.in_channels}->{conv.out_channels} (pruning only removes channels)",
        )
    return nn.Conv2d(
        in_channels, out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups,
        bias=conv.bias is not None, padding_mode=conv.padding_mode,
    )  # fmt: skip


def _smaller_batchnorm(norm: nn.BatchNorm2d, weight: torch.Tensor, name: str, source: str) -> nn.BatchNorm2d:
    """A BatchNorm like ``norm`` over the channel count of ``weight``."""
    if weight.dim() != 1 or not 0 < weight.shape[0] <= norm.num_features:
        raise _refuse(
            source,
            name,
            f"has weights of shape {tuple(weight.shape)}, expected at most {norm.num_features} channels",
        )
    return nn.BatchNorm2d(
        int(weight.shape[0]), norm.eps, norm.momentum, norm.affine, norm.track_running_stats
    )


def _replace(model: nn.Module, name: str, replacement: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, replacement)


def _check_runs(model: nn.Module, source: str) -> None:
    """Run the reshaped network once: a channel chain that does not connect fails here, not in eval."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, _CHECK_SIDE, _CHECK_SIDE))
    except RuntimeError as error:
        raise CheckpointError(
            f"The weights in {source} have channel counts that do not connect: "
            f"{str(error).splitlines()[0]}. The file was edited or is corrupt; use a checkpoint written by "
            "yolox-sdk."
        ) from None
    finally:
        model.train(training)
