"""Weight averaging helpers for SWA: an ``AveragedModel`` without SyncBatchNorm, and BatchNorm statistics
recomputed for averaged weights (the ``swa`` callback plugin uses them; they need torch, the plugin module
does not, so loading plugins stays fast).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from yolox_sdk.errors import TrainingError

BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def batchnorm_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every BatchNorm layer of ``model`` that tracks running statistics, by module name."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, BATCHNORM_TYPES) and module.track_running_stats
    }


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], keep: Collection[str] = ()) -> int:
    """Replace the running statistics of ``model``'s BatchNorm layers with their mean over ``batches``.

    What ``torch.optim.swa_utils.update_bn`` does, except that only the BN layers are put in train mode:
    a YOLOX model in train mode wants targets to compute its loss, in eval mode it just predicts, and the
    BN layers see the same activations either way. Layers named in ``keep`` (a frozen backbone's) are left
    alone. Returns the number of batches seen; the model's train/eval mode is restored.

    Raises:
        TrainingError: when ``batches`` is empty (the reset statistics would be meaningless).
    """
    layers = {name: layer for name, layer in batchnorm_layers(model).items() if name not in keep}
    if not layers:
        return 0
    momenta = {name: layer.momentum for name, layer in layers.items()}
    was_training = model.training
    for layer in layers.values():
        layer.reset_running_stats()
        layer.momentum = None
    model.eval()
    for layer in layers.values():
        layer.train()
    seen = 0
    try:
        for images in batches:
            model(images)
            seen += 1
    finally:
        for name, layer in layers.items():
            layer.momentum = momenta[name]
        model.train(was_training)
    if seen == 0:
        raise TrainingError(
            "SWA: the training loader gave no batch for the BatchNorm recomputation, so the averaged model "
            "has no statistics. Check data.train_path and data.batch_size (at most the number of images)."
        )
    return seen


def local_batchnorm(module: nn.Module) -> nn.Module:
    """Replace (in place) every ``SyncBatchNorm`` of ``module`` with a ``BatchNorm2d`` holding the same
    weights and statistics, and return ``module``.

    The average lives in the first process only: a synchronised BatchNorm there would wait forever for
    the other processes while its statistics are recomputed. The state dict keys do not change.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.SyncBatchNorm):
            plain = nn.BatchNorm2d(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
                device=child.running_mean.device if child.running_mean is not None else None,
            )
            plain.load_state_dict(child.state_dict())
            plain.train(child.training)
            setattr(module, name, plain)
        else:
            local_batchnorm(child)
    return module


def new_average(model: nn.Module) -> AveragedModel:
    """An ``AveragedModel`` (a copy of ``model``, parameters averaged, buffers not) without SyncBatchNorm."""
    averaged = AveragedModel(model)
    local_batchnorm(averaged.module)
    return averaged
