"""Writing small text files (JSON records, caches) so that a crash never leaves half of one.

The text goes to ``<name>.<pid>.tmp`` beside the target (one per process: two processes writing the same
cache, e.g. torchrun "nodes" sharing a home directory, must not rename each other's file away) and is
renamed over it: readers see the old file or the new one. Checkpoints have their own writer with fsync
and a kept previous copy (``checkpoints.torch_files``).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> Path:
    """Replace ``path`` with ``text`` (UTF-8) in one rename; returns ``path``."""
    path = Path(path)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
