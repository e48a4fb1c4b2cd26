"""The error types users see.

Every failure caused by the user's input (a config key, a dataset file, a checkpoint) is raised as a
``YoloxSdkError`` whose message says what is wrong, where, and how to fix it. The CLI prints these
without a traceback; anything else is a bug and is shown with its traceback.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Iterable


class YoloxSdkError(Exception):
    """Base class of every error meant to be read by a user.

    ``exit_code`` is what the CLI returns: 2 for usage and config errors, 1 for runtime failures.
    """

    exit_code = 1


class ConfigError(YoloxSdkError):
    """A config file, a key=value override or a plugin's options are invalid."""

    exit_code = 2


class PluginError(YoloxSdkError):
    """A plugin is unknown, broken, or claims a name another plugin already holds."""

    exit_code = 2


class DatasetError(YoloxSdkError):
    """A dataset cannot be read as given: missing files, malformed annotations, no usable images, a layout
    no format recognises, an output folder that is not safe to write.

    Exit code 2, like a config error: the user's input has to change. Failures of the machine while
    reading (a full disk, a broken download) are ``DataUnavailableError`` (exit 1).
    """

    exit_code = 2


class DataUnavailableError(DatasetError):
    """Data that is fine could not be made available on this machine: a download or archive failed, the
    disk image cache has no room. Exit code 1: retrying or freeing resources fixes it, not the dataset."""

    exit_code = 1


class WeightsError(YoloxSdkError):
    """Pretrained weights or a checkpoint cannot be found, downloaded, verified or loaded."""


class CheckpointError(WeightsError):
    """A checkpoint file is corrupt, truncated or does not fit the model."""


class ExportError(YoloxSdkError):
    """An exported model failed to build or disagrees with the PyTorch model."""


class TrainingError(YoloxSdkError):
    """Training cannot continue (for example the loss stopped being finite)."""


class RunDirectoryError(YoloxSdkError):
    """A path given as a run directory (``yolox-sdk runs ...``) is not one, or its files are unreadable."""

    exit_code = 2


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return a ``" Did you mean 'x'?"`` suffix for the closest candidate, or an empty string."""
    by_lower = {str(candidate).lower(): str(candidate) for candidate in candidates}
    matches = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1, cutoff=0.6)
    return f" Did you mean '{by_lower[matches[0]]}'?" if matches else ""


class RunLockedError(YoloxSdkError):
    """Another process holds the lock of the run directory this process was asked to train."""


class TrainingInterrupted(YoloxSdkError):
    """Training stopped on SIGTERM or SIGINT; ``exit_code`` is 128 + the signal number (143, 130), as a
    shell reports a process killed by that signal, so schedulers still see "terminated by SIGTERM".

    The message ends with the command that resumes the run; ``command`` is the CLI command to name
    (``yolox-sdk run`` sets it to ``run``).
    """

    command = "train"

    def __init__(self, message: str, signum: int, run_dir: object = None, config_path: object = None) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
        self.run_dir = run_dir
        self.config_path = config_path

    def __str__(self) -> str:
        message = super().__str__()
        if self.run_dir is None:
            return f"{message} Run the same command again."
        config, run_dir = shlex.quote(str(self.config_path)), shlex.quote(str(self.run_dir))
        return f"{message} Resume with: yolox-sdk {self.command} {config} --resume {run_dir}"
