"""Where a run's weights came from: its lineage record.

A lineage record is plain data (JSON-ready) written at training start to ``<run_dir>/lineage.json`` and
into every checkpoint the run saves, so a ``best.pt`` found months later still says which weights it was
finetuned from, on which labels, with which code:

- ``parent``: path and sha256 of the initial weights file (``model.checkpoint`` or the resolved
  ``model.pretrained`` file), ``null`` when training from scratch;
- ``resumed_from``: path and sha256 of the checkpoint a ``--resume``/``--from-best`` run continued from;
- ``teacher``: path and sha256 of the distillation teacher (``training.distillation.teacher``), ``null``
  without one: a distilled model's weights depend on it as much as on the parent's;
- ``dataset``: a fingerprint of the train and val labels (see ``dataset_fingerprint``);
- ``git``: commit and dirty flag of the working directory's repository, ``null`` outside one;
- versions (SDK, torch, yolox, Python), host name, start time and the config hash.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from yolox_sdk.assets.download import sha256_of
from yolox_sdk.config.schema import Config
from yolox_sdk.data.records import DetectionDataset, ImageRecord
from yolox_sdk.engine.run_dir import config_hash
from yolox_sdk.files import write_text_atomically

log = logging.getLogger(__name__)

LINEAGE_FILENAME = "lineage.json"
LINEAGE_VERSION = 1
GIT_TIMEOUT_SECONDS = 5.0


def file_record(path: Path) -> dict[str, Any]:
    """``{"path", "sha256", "bytes"}`` of a weights or checkpoint file (hashed in 1 MiB chunks)."""
    path = Path(path)
    return {"path": str(path.resolve()), "sha256": sha256_of(path), "bytes": path.stat().st_size}


def dataset_fingerprint(dataset: DetectionDataset) -> dict[str, Any]:
    """A sha256 over what training reads from the labels, plus the counts.

    Hashed: the class names (and source category ids), then for each image its path relative to the
    dataset root, its width and height, its boxes (float32) and labels (int64). Image bytes are not read:
    hashing pixels would cost minutes on 100k images, while a label edit, an added or removed image, a
    renamed class or a resized image (its recorded size changes) all change the fingerprint. Paths are
    relative and records sorted by them, so the same dataset copied elsewhere, or listed by the file
    system in another order, keeps its fingerprint.
    """
    root = _dataset_root(dataset)
    keyed = sorted((_relative_path(record.image_path, root), record) for record in dataset.records)
    digest = hashlib.sha256()
    header = {"classes": list(dataset.class_names), "category_ids": [int(i) for i in dataset.category_ids]}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for relative, record in keyed:
        _update_with_record(digest, relative, record)
    return {
        "sha256": digest.hexdigest(),
        "images": len(dataset.records),
        "boxes": dataset.num_boxes(),
        "class_names": list(dataset.class_names),
        "source": str(dataset.source) if dataset.source is not None else None,
        "format": dataset.format,
    }


def _dataset_root(dataset: DetectionDataset) -> Path | None:
    """The folder image paths are made relative to: the dataset's folder (or its annotation file's)."""
    if dataset.source is None:
        paths = [str(record.image_path.parent) for record in dataset.records]
        return Path(os.path.commonpath(paths)) if paths else None
    source = Path(dataset.source)
    return source if source.is_dir() else source.parent


def _relative_path(path: Path, root: Path | None) -> str:
    if root is None:
        return path.as_posix()
    return Path(os.path.relpath(path, root)).as_posix()


def _update_with_record(digest: Any, relative: str, record: ImageRecord) -> None:
    """Feed one image into ``digest``; the box count in the header keeps record boundaries unambiguous."""
    header = [relative, int(record.width), int(record.height), len(record.boxes)]
    digest.update(json.dumps(header).encode())
    digest.update(np.ascontiguousarray(record.boxes, dtype="<f4").tobytes())
    digest.update(np.ascontiguousarray(record.labels, dtype="<i8").tobytes())


def combined_fingerprint(train: dict[str, Any], val: dict[str, Any] | None) -> str:
    """One sha256 for "the same data": the train and val fingerprints together."""
    text = f"{train['sha256']}:{val['sha256'] if val else 'none'}"
    return hashlib.sha256(text.encode()).hexdigest()


def git_state(directory: Path | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty", "root"}`` of the git repository holding ``directory`` (default: the cwd).

    ``None`` when git is not installed, ``directory`` is not in a repository, the repository has no commit
    yet, or git does not answer within a few seconds (a network file system): lineage must never stop or
    slow down training. ``dirty`` counts changes to tracked files only, as ``git describe --dirty`` does.
    """
    directory = Path(directory) if directory is not None else Path.cwd()
    commit = _git(directory, "rev-parse", "HEAD")
    if commit is None:
        return None
    status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    root = _git(directory, "rev-parse", "--show-toplevel")
    return {"commit": commit, "dirty": bool(status) if status is not None else None, "root": root}


def _git(directory: Path, *args: str) -> str | None:
    """The stripped output of ``git args`` in ``directory``, or ``None`` on any failure."""
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _package_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def environment_versions() -> dict[str, Any]:
    """The versions that decide what the same config computes."""
    import torch

    from yolox_sdk import __version__

    return {
        "sdk": __version__,
        "torch": str(torch.__version__),  # a str subclass the restricted unpickler would refuse
        "yolox": _package_version("pixeltable-yolox") or _package_version("yolox"),
        "python": platform.python_version(),
    }


def build_lineage(
    config: Config,
    train_data: DetectionDataset,
    val_data: DetectionDataset | None,
    initial_weights: Path | None,
    resumed_from: Path | None = None,
) -> dict[str, Any]:
    """The lineage record of a run starting now (see the module docstring for its fields)."""
    train = dataset_fingerprint(train_data)
    val = dataset_fingerprint(val_data) if val_data is not None else None
    return {
        "lineage_version": LINEAGE_VERSION,
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "config_hash": config_hash(config),
        "versions": environment_versions(),
        "parent": file_record(initial_weights) if initial_weights is not None else None,
        "resumed_from": file_record(resumed_from) if resumed_from is not None else None,
        "teacher": _teacher_record(config),
        "dataset": {"sha256": combined_fingerprint(train, val), "train": train, "val": val},
        "git": git_state(),
    }


def _teacher_record(config: Config) -> dict[str, Any] | None:
    distillation = config.training.distillation
    if distillation is None or not Path(distillation.teacher).is_file():
        return None  # no teacher (a missing one is refused before training starts)
    return file_record(Path(distillation.teacher))


def record_lineage(
    config: Config,
    run_dir: Path,
    train_data: DetectionDataset,
    val_data: DetectionDataset | None,
    initial_weights: Path | None,
    resumed_from: Path | None = None,
) -> dict[str, Any]:
    """Build the lineage of a run starting (or resuming) now and write it to ``run_dir/lineage.json``.

    A resumed run nests the record of the segment it continues under ``previous`` (read from the
    ``lineage.json`` it replaces), so the chain of interruptions stays readable in one file.
    """
    lineage = build_lineage(config, train_data, val_data, initial_weights, resumed_from)
    if resumed_from is not None:
        lineage["previous"] = read_lineage(run_dir) or None
    write_lineage(run_dir, lineage)
    return lineage


def write_lineage(run_dir: Path, lineage: dict[str, Any]) -> Path:
    """Write ``lineage.json`` in ``run_dir`` atomically."""
    return write_text_atomically(Path(run_dir) / LINEAGE_FILENAME, json.dumps(lineage, indent=2) + "\n")


def read_lineage(run_dir: Path) -> dict[str, Any]:
    """A run directory's lineage record, or ``{}`` for runs written before lineage existed."""
    path = Path(run_dir) / LINEAGE_FILENAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log.warning("Ignoring unreadable %s (%s).", path, error)
        return {}
    return data if isinstance(data, dict) else {}
