"""Surviving a killed run: which checkpoint to resume from, and which run ``training.auto_resume`` continues.

Checkpoints are written atomically and carry a content digest (``checkpoints.format``), so a file either
loads intact or is refused. Resuming therefore tries the run's checkpoints newest first: ``last.pt``, then
``last.prev.pt`` (the previous ``last.pt``, kept at each save), then ``epoch_N.pt`` files from the highest
N down, and says with a warning when it had to skip one. A run killed before its first checkpoint has only
``config.yaml``; it restarts from scratch in the same directory, which gives the same result as a run that
was never interrupted because every run starts from the same seeds.

``training.auto_resume`` finds the run to continue by comparing configs, not directory names: run names
may carry a ``-2`` suffix or a user-chosen ``monitoring.run_name``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import attrs

from yolox_sdk.checkpoints.format import Checkpoint, load_checkpoint
from yolox_sdk.checkpoints.torch_files import TEMPORARY_SUFFIX
from yolox_sdk.config.loader import config_to_dict, load_config
from yolox_sdk.config.schema import Config
from yolox_sdk.engine.run_dir import CONFIG_FILENAME, config_dict_hash
from yolox_sdk.engine.saved_state import checked_train_state
from yolox_sdk.engine.train_state import TrainState
from yolox_sdk.errors import CheckpointError, YoloxSdkError
from yolox_sdk.plugins.registry import Registry

log = logging.getLogger(__name__)

LAST = "last.pt"
PREVIOUS_LAST = "last.prev.pt"
_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pt$")


@attrs.frozen
class ResumePoint:
    """The checkpoint a run continues from, and the file it was read from."""

    path: Path
    checkpoint: Checkpoint
    state: TrainState  # checked (``engine.saved_state``) before the run relies on it

    @property
    def epoch(self) -> int:
        """Epochs completed when the checkpoint was written."""
        return self.state.epoch


def resume_candidates(run_dir: Path, first: str = LAST) -> list[Path]:
    """The existing checkpoints to try, in order: ``first``, then (for ``last.pt``) the fallbacks.

    Only ``last.pt`` has fallbacks: ``--from-best`` asks for ``best.pt`` itself, and rolling back to
    anything else would silently do something other than what was asked.
    """
    names = [first]
    if first == LAST:
        names.append(PREVIOUS_LAST)
        names.extend(path.name for path in _epoch_checkpoints(run_dir))
    return [run_dir / name for name in names if (run_dir / name).is_file()]


def _epoch_checkpoints(run_dir: Path) -> list[Path]:
    """``epoch_N.pt`` files, highest N first."""
    numbered = [
        (int(match.group(1)), path)
        for path in run_dir.glob("epoch_*.pt")
        if (match := _EPOCH_FILE.match(path.name))
    ]
    return [path for _, path in sorted(numbered, reverse=True)]


def check_resumable(run_dir: Path, first: str = LAST) -> None:
    """Fail early, before the config is read, when ``run_dir`` cannot be continued at all.

    Raises:
        CheckpointError: when the folder is not a run directory (no config.yaml), or ``first`` is
            ``best.pt`` (``--from-best``) and the run has none.
    """
    if not (run_dir / CONFIG_FILENAME).is_file():
        raise CheckpointError(
            f"Cannot resume {run_dir}: it has no {CONFIG_FILENAME}, so it is not a run directory (or it was "
            "never started). Pass the folder that `yolox-sdk train` printed as its run directory."
        )
    if first != LAST and not (run_dir / first).is_file():
        raise CheckpointError(
            f"Cannot roll {run_dir} back: it has no {first} (no evaluation has improved the best metric yet). "
            "Use --resume to continue from its last checkpoint instead."
        )


def load_resume_checkpoint(
    run_dir: Path, first: str = LAST, remove_temporaries: bool = True
) -> ResumePoint | None:
    """The newest intact checkpoint of ``run_dir``; ``None`` when it never wrote one (restart from scratch).

    Only the process holding the run's lock may ``remove_temporaries`` (under torchrun, rank 0): another
    one could delete a save in progress.

    Raises:
        CheckpointError: when checkpoints exist but none of them can be read, naming each and why.
    """
    run_dir = Path(run_dir)
    if remove_temporaries:
        remove_stale_temporaries(run_dir)
    candidates = resume_candidates(run_dir, first)
    if not candidates:
        if first != LAST:
            check_resumable(run_dir, first)
        log.warning(
            "%s has a %s but no checkpoint: the run was stopped during its first epoch. Starting it again "
            "from scratch in the same directory.",
            run_dir,
            CONFIG_FILENAME,
        )
        return None
    failures = (
        [] if (run_dir / first).is_file() else [f"{run_dir / first} is missing (killed while replaced)."]
    )
    for path in candidates:
        try:
            checkpoint = load_checkpoint(path)
            state = checked_train_state(path, checkpoint.training_state)
        except CheckpointError as error:
            failures.append(str(error))
            continue
        if failures:
            log.warning(
                "Resuming %s from %s, the newest usable checkpoint: %s", run_dir, path, " | ".join(failures)
            )
        return ResumePoint(path, checkpoint, state)
    raise CheckpointError(
        f"Cannot resume {run_dir}: none of its checkpoints ({', '.join(p.name for p in candidates)}) is "
        f"usable. {' | '.join(failures)} Start the run again (without --resume), or restore a copy of one "
        "of these files."
    )


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the half-written ``.<name>.pt.<random>.tmp`` files a ``kill -9`` during a save leaves."""
    for path in run_dir.glob(f".*.pt.*{TEMPORARY_SUFFIX}"):
        log.debug("Removing %s, left by an interrupted save.", path)
        path.unlink(missing_ok=True)


def log_completed(point: ResumePoint | None, run_dir: Path, epochs: int) -> None:
    """Say plainly that a resumed run has nothing left to train (it returns its existing result)."""
    if point is not None and point.epoch >= epochs:
        log.info(
            "Run %s is already complete (%d of %d epochs); nothing to train, returning its result.",
            run_dir,
            point.epoch,
            epochs,
        )


def resume_identity(config: Config) -> str:
    """The hash that decides "same experiment" for auto-resume.

    It is ``config_hash`` (the hash in run names) with ``training.auto_resume`` and
    ``monitoring.output_dir`` neutralised: turning auto-resume on, or naming the same output folder by
    another path, does not make it a different experiment. Run names keep using ``config_hash``.
    """
    data = config_to_dict(config)
    data["training"]["auto_resume"] = False
    data["monitoring"]["output_dir"] = ""
    return config_dict_hash(data)


def find_run_to_resume(config: Config, registry: Registry | None = None) -> Path | None:
    """The run directory ``training.auto_resume`` continues, or ``None`` to start a new run.

    Among the runs in ``monitoring.output_dir`` whose saved config is the same experiment
    (``resume_identity``), the most recently modified one decides: if unfinished it is resumed, if
    finished the trainer returns its result without training (so re-running a preempted job's command is
    always safe and never trains twice). Folders whose config cannot be read are skipped.
    """
    output_dir = Path(config.monitoring.output_dir)
    wanted = resume_identity(config)
    matches = [run for run in _run_dirs(output_dir) if _identity_of(run, registry) == wanted]
    if not matches:
        log.info("training.auto_resume: no earlier run of this config in %s; starting a new run.", output_dir)
        return None
    newest = max(matches, key=_last_modified)
    log.info(
        "training.auto_resume: continuing %s (the most recent of %d run(s) of this config in %s).",
        newest,
        len(matches),
        output_dir,
    )
    return newest


def _run_dirs(output_dir: Path) -> list[Path]:
    if not output_dir.is_dir():
        return []
    return [path for path in output_dir.iterdir() if (path / CONFIG_FILENAME).is_file()]


def _identity_of(run_dir: Path, registry: Registry | None) -> str | None:
    """The run's ``resume_identity``, read through ``load_config`` so keys added since it ran get defaults."""
    try:
        return resume_identity(load_config(run_dir / CONFIG_FILENAME, registry=registry))
    except YoloxSdkError as error:
        log.debug("training.auto_resume: skipping %s (%s)", run_dir, error)
        return None


def _last_modified(run_dir: Path) -> float:
    """The newest modification time of the run's files: when it last made progress."""
    times = [run_dir.stat().st_mtime]
    with os.scandir(run_dir) as entries:
        times.extend(entry.stat().st_mtime for entry in entries if entry.is_file())
    return max(times)
