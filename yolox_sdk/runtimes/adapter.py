"""A ``LoadedModel`` dressed as a ``torch.nn.Module`` so the evaluator and ``Predictor`` need no second
code path for exported files: tensors in, decoded rows out, as YOLOX's own head returns them."""

from __future__ import annotations

import numpy as np
import torch

from yolox_sdk.plugins.interfaces import LoadedModel


class RuntimeModule(torch.nn.Module):
    """Calls ``loaded.forward`` with the batch as float32 numpy and returns its rows on the batch's device.

    It has no parameters, so ``.to(device)`` and ``.eval()`` are harmless no-ops, and no ``head``, so
    ``decoding_eval_mode`` leaves it alone (every runtime returns decoded rows).
    """

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.loaded = loaded

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(images.detach().float().cpu().numpy())
        rows = np.asarray(self.loaded.forward(batch), dtype=np.float32)
        return torch.from_numpy(rows).to(images.device)
