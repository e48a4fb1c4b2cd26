"""Moved to ``yolox_sdk.checkpoints.format``; kept until the trainer imports the new path."""

from yolox_sdk.checkpoints.format import (
    DIGEST_KEY,
    DIGESTED_KEYS,
    FORMAT_NAME,
    FORMAT_VERSION,
    Checkpoint,
    load_checkpoint,
    payload_digest,
    save_checkpoint,
    verify_digest,
)

__all__ = [
    "DIGESTED_KEYS",
    "DIGEST_KEY",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Checkpoint",
    "load_checkpoint",
    "payload_digest",
    "save_checkpoint",
    "verify_digest",
]
