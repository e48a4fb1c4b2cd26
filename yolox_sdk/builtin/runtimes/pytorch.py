"""The ``pytorch`` runtime: our own ``.pt`` checkpoints, run in PyTorch eager mode (EMA weights)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import numpy as np

from yolox_sdk.plugins.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    import torch

    from yolox_sdk.checkpoints.format import Checkpoint


@hookimpl
def register_runtimes(register: Register) -> None:
    """Register the ``pytorch`` runtime."""
    register("pytorch", PytorchRuntime, description="yolox-sdk checkpoints (.pt, .pth), PyTorch eager")


@attrs.define
class PytorchModel:
    """A checkpoint's network with what the checkpoint says about it; ``module`` is used directly by
    ``runtimes.as_torch_module``, so evaluating a checkpoint is what training measured."""

    module: torch.nn.Module
    checkpoint: Checkpoint
    device: str
    runtime: str = "pytorch"

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.checkpoint.class_names)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.checkpoint.spec.input_size

    @property
    def recommended_conf(self) -> float | None:
        return self.checkpoint.recommended_conf

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Decoded rows for a numpy batch (the benchmark's entry point; eval and predict call ``module``)."""
        import torch

        from yolox_sdk.evaluation.postprocess import decoding_eval_mode

        with torch.inference_mode(), decoding_eval_mode(self.module):
            return self.module(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()


class PytorchRuntime:
    """Loads ``.pt``/``.pth`` files with ``checkpoints.format.load_checkpoint`` (tensors only, checked)."""

    suffixes = (".pt", ".pth")

    def __init__(self, options: object = None) -> None:
        self.options = options

    def accepts(self, path: Path) -> bool:
        return Path(path).suffix.lower() in self.suffixes

    def load(self, path: Path, device: str) -> PytorchModel:
        """Raises ``CheckpointError`` for a corrupt, truncated or foreign file."""
        from yolox_sdk.checkpoints.format import load_checkpoint
        from yolox_sdk.models import model_from_checkpoint

        checkpoint = load_checkpoint(path)
        module = model_from_checkpoint(checkpoint).to(str(device)).eval()
        return PytorchModel(module, checkpoint, str(device))
