"""Our checkpoint format, written atomically and self-describing.

A checkpoint holds, besides the weights, everything needed to use them later without the training
config: the model spec (variant, depth/width, input size, class count), the class names, the resolved
config and the SDK version. ``eval``, ``predict`` and ``export`` therefore need nothing but the file.
Training state (optimizer, EMA, epoch, iteration, RNG states) is included for ``--resume``.

Files are written to a temporary name in the same folder, flushed to disk and renamed, so a crash or
``kill -9`` never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from yolox_sdk.engine.torch_files import atomic_torch_save, load_torch_file
from yolox_sdk.errors import CheckpointError
from yolox_sdk.models.variants import ModelSpec

FORMAT_VERSION = 1
FORMAT_NAME = "yolox-sdk-checkpoint"


def _sdk_version() -> str:
    from yolox_sdk import __version__

    return __version__


@attrs.define
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        model: the model state dict (raw weights).
        ema: the EMA state dict, or ``None``; the EMA weights are what evaluation uses.
        spec: the model spec the weights fit.
        class_names: the class names, index = class id.
        config: the resolved run config as plain data (may be empty for converted files).
        sdk_version: the SDK version that wrote it.
        training_state: optimizer, epoch, iteration, RNG, metrics (empty for inference-only files).
    """

    model: dict[str, torch.Tensor]
    spec: ModelSpec
    class_names: tuple[str, ...]
    ema: dict[str, torch.Tensor] | None = None
    config: dict[str, Any] = attrs.field(factory=dict)
    sdk_version: str = ""
    training_state: dict[str, Any] = attrs.field(factory=dict)

    @property
    def inference_weights(self) -> dict[str, torch.Tensor]:
        """EMA weights when present (those are the evaluated ones), else the raw weights."""
        return self.ema if self.ema is not None else self.model


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` atomically to ``path``."""
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": checkpoint.model,
        "ema": checkpoint.ema,
        "meta": {
            "spec": attrs.asdict(checkpoint.spec),
            "class_names": list(checkpoint.class_names),
            "config": checkpoint.config,
            "sdk_version": checkpoint.sdk_version or _sdk_version(),
        },
        "training_state": checkpoint.training_state,
    }
    atomic_torch_save(payload, path)
    return path


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Read one of our checkpoints.

    Raises:
        CheckpointError: for a missing, truncated or foreign file (an official YOLOX file is refused here
            with a hint: it carries no class names; use it as ``model.pretrained`` instead).
    """
    path = Path(path)
    payload = load_torch_file(path)
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{path} is not a yolox-sdk checkpoint (no class names or model spec inside). An official YOLOX "
            "file can be used as starting weights: set model.pretrained or model.checkpoint to it and train."
        )
    meta = payload["meta"]
    spec_fields = dict(meta["spec"])
    return Checkpoint(
        model=payload["model"],
        ema=payload.get("ema"),
        spec=ModelSpec(**spec_fields),
        class_names=tuple(meta["class_names"]),
        config=meta.get("config", {}),
        sdk_version=meta.get("sdk_version", ""),
        training_state=payload.get("training_state", {}),
    )
