"""Moved to ``yolox_sdk.checkpoints.torch_files``; kept until the trainer imports the new path."""

from yolox_sdk.checkpoints.torch_files import TEMPORARY_SUFFIX, atomic_torch_save, load_torch_file

__all__ = ["TEMPORARY_SUFFIX", "atomic_torch_save", "load_torch_file"]
