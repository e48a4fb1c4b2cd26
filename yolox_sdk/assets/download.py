"""Downloading files safely: progress bar, sha256 check, atomic rename.

A download goes to ``<dest>.part`` in the destination folder and is renamed into place only after its
size and sha256 match, so an interrupted or corrupt download never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from yolox_sdk.errors import WeightsError

CHUNK_BYTES = 1 << 20


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None, remove_on_mismatch: bool = False) -> None:
    """Raise ``WeightsError`` if ``path``'s sha256 differs from ``expected`` (``None`` skips the check)."""
    if expected is None:
        return
    actual = sha256_of(path)
    if actual != expected.lower():
        if remove_on_mismatch:
            path.unlink(missing_ok=True)
        removed = (
            " The file was removed; it will be downloaded again next time." if remove_on_mismatch else ""
        )
        raise WeightsError(
            f"{path} has sha256 {actual}, expected {expected}: the file is corrupt or not the one "
            f"published.{removed}"
        )


def download(
    url: str, dest: Path, sha256: str | None = None, size: int | None = None, progress: bool = True
) -> Path:
    """Download ``url`` to ``dest`` atomically and verify it.

    Raises:
        WeightsError: on network errors, a size or sha256 mismatch (nothing is left at ``dest``).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as handle:
            total = int(response.headers.get("Content-Length") or 0) or size
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    handle.write(chunk)
                    bar.update(len(chunk))
            handle.flush()
            os.fsync(handle.fileno())
        if size is not None and partial.stat().st_size != size:
            raise WeightsError(
                f"Download of {url} gave {partial.stat().st_size} bytes, expected {size}: the transfer was cut "
                "short or the server sent another file. Try again."
            )
        verify_sha256(partial, sha256)
        os.replace(partial, dest)
    except (urllib.error.URLError, OSError) as error:
        raise WeightsError(
            f"Cannot download {url}: {error}. Check your network, or put the file in $YOLOX_SDK_HOME or an "
            "offline mirror listed in $YOLOX_SDK_ASSETS."
        ) from error
    finally:
        partial.unlink(missing_ok=True)
    return dest


def copy_atomically(source: Path, dest: Path) -> Path:
    """Copy ``source`` to ``dest`` through a temporary file, so readers never see half a file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    shutil.copyfile(source, partial)
    os.replace(partial, dest)
    return dest
