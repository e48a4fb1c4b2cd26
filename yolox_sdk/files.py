"""Writing small text files (JSON records, caches) so that a crash never leaves half of one.

The text goes to ``<name>.tmp`` beside the target and is renamed over it: readers see the old file or the
new one. Checkpoints have their own writer with fsync and a kept previous copy (``checkpoints.torch_files``).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> Path:
    """Replace ``path`` with ``text`` (UTF-8) in one rename; returns ``path``."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return path
