"""Checkpoint files: our self-describing format, safe ``torch.load``, atomic writes and content digests.

A package of its own, below ``models``, ``evaluation``, ``export`` and ``engine``, so that everything that
reads or writes a ``.pt`` file does so without importing the trainer. It depends only on
``yolox_sdk.models.variants`` (the model spec a checkpoint carries) and ``yolox_sdk.errors``.

- ``format``: the ``Checkpoint`` record, ``save_checkpoint`` and ``load_checkpoint``.
- ``torch_files``: the one place that calls ``torch.load`` (always ``weights_only=True``) and the atomic writer.
- ``content_digest``: the sha256 over a checkpoint's values that every load checks.
"""

from yolox_sdk.checkpoints.format import Checkpoint, load_checkpoint, save_checkpoint

__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint"]
