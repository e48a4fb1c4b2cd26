"""Building YOLOX networks from the ``yolox`` package, with YOLOX's own initialisation.

We never copy YOLOX code: backbone, head and losses come from ``yolox.models``; this module only
chooses the constructor arguments from a ``ModelSpec`` and applies the initialisation the official
experiment files apply (BatchNorm eps 1e-3 / momentum 0.03, prior-probability bias init of the heads).
Label assignment (``training.assignment``) is the one choice of ours: ``batched`` builds
``BatchedSimotaHead`` (our batched SimOTA, ``yolox_sdk.models.assignment``), ``yolox`` the package's head
with its image-by-image SimOTA. Both have the same layers and state-dict keys, so either loads the other's
weights and checkpoints do not record which one trained them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from torch import nn
from yolox.models import YoloPafpn, YoloxHead, YoloxModule

from yolox_sdk.errors import CheckpointError
from yolox_sdk.models.batched_head import BatchedSimotaHead
from yolox_sdk.models.structure import fit_structure
from yolox_sdk.models.variants import ModelSpec, make_spec
from yolox_sdk.models.weights import TransferReport, load_initial_weights

if TYPE_CHECKING:
    from yolox_sdk.checkpoints.format import Checkpoint

log = logging.getLogger(__name__)

PRIOR_PROBABILITY = 1e-2
_IN_CHANNELS = [256, 512, 1024]
# The heads ``training.assignment`` chooses between (``config.schema.ASSIGNMENTS`` lists the same names).
HEADS: dict[str, type[YoloxHead]] = {"batched": BatchedSimotaHead, "yolox": YoloxHead}


def build_model(spec: ModelSpec, assignment: str = "batched") -> YoloxModule:
    """A freshly initialised YOLOX network for ``spec`` (train mode, on CPU).

    Args:
        assignment: the head's label assignment, a key of ``HEADS`` (only the training loss differs).
    """
    backbone = YoloPafpn(
        spec.depth, spec.width, in_channels=_IN_CHANNELS, depthwise=spec.depthwise, act=spec.act
    )
    head = HEADS[assignment](
        spec.num_classes, spec.width, in_channels=_IN_CHANNELS, depthwise=spec.depthwise, act=spec.act
    )
    model = YoloxModule(backbone, head)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 1e-3
            module.momentum = 0.03
    model.head.initialize_biases(PRIOR_PROBABILITY)
    model.train()
    return model


def _pruning_summary(record: dict) -> str:
    """`` (l2, 31% of the channels, 0.912 M -> 0.450 M parameters)`` from a checkpoint's pruning record."""
    try:
        return (
            f" ({record['method']}, {float(record['ratio']):.0%} of the channels, "
            f"{int(record['params_before']) / 1e6:.3f} M -> {int(record['params_after']) / 1e6:.3f} M parameters)"
        )
    except (KeyError, TypeError, ValueError):
        return ""


def set_decode_in_inference(model: YoloxModule, decode: bool) -> None:
    """Choose whether the head decodes boxes to image coordinates in eval mode (YOLOX's default)."""
    model.head.decode_in_inference = decode


def create_model(
    name: str = "yolox-s",
    num_classes: int = 80,
    pretrained: bool | str = False,
    *,
    depth: float | None = None,
    width: float | None = None,
    depthwise: bool | None = None,
    input_size: tuple[int, int] | None = None,
    strict_shapes: bool = True,
    assignment: str = "batched",
) -> tuple[YoloxModule, ModelSpec, TransferReport | None]:
    """Build a YOLOX model, optionally initialised from pretrained weights of any class count.

    Args:
        name: ``yolox-nano`` ... ``yolox-x`` or ``custom`` (then ``depth`` and ``width`` are required).
        num_classes: classes of the new head.
        pretrained: ``True`` for the variant's COCO weights, a weights name/path/URL, or ``False``.
        strict_shapes: refuse weights of another variant instead of silently re-initialising most tensors.
        assignment: ``batched`` (our batched SimOTA) or ``yolox`` (the package's per-image SimOTA).

    Returns:
        The model (train mode, CPU), its spec, and the weight-transfer report (``None`` without weights).
    """
    spec = make_spec(name, num_classes, depth, width, depthwise, input_size)
    model = build_model(spec, assignment)
    return model, spec, load_initial_weights(model, pretrained, spec.name, strict_shapes=strict_shapes)


def model_from_checkpoint(checkpoint: Checkpoint, use_ema: bool = True) -> YoloxModule:
    """Rebuild the network stored in ``checkpoint`` in eval mode (EMA weights by default).

    A channel-pruned checkpoint (``yolox-sdk prune``, or a run trained from one) gets its pruned structure
    back from its tensors' shapes (``models.structure.fit_structure``): no torch-pruning, no unpickling.
    """
    model = build_model(checkpoint.spec)
    weights = checkpoint.inference_weights if use_ema else checkpoint.model
    source = str(getattr(checkpoint, "path", None) or f"the {checkpoint.spec.name} checkpoint")
    reshaped = fit_structure(model, weights, source)
    if reshaped:
        log.info(
            "%s is channel-pruned: %d layers narrower than %s%s.",
            source,
            reshaped,
            checkpoint.spec.name,
            _pruning_summary(getattr(checkpoint, "pruning", None) or {}),
        )
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # a tensor of the wrong shape
        raise CheckpointError(
            f"The checkpoint's weights do not fit its own model spec ({checkpoint.spec.name}): "
            f"{str(error).splitlines()[-1].strip()}. The file was edited or is corrupt."
        ) from None
    if missing or unexpected:
        raise CheckpointError(
            f"The checkpoint's weights do not fit its own model spec ({checkpoint.spec.name}): "
            f"{len(missing)} missing, {len(unexpected)} unexpected tensors. The file was edited or is corrupt."
        )
    return model.eval()
