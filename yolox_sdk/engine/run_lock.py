"""One training process per run directory: the ``run.lock`` file.

Two processes training one run (``--resume DIR`` started twice, or a preempted ``training.auto_resume``
job launched twice) would overwrite each other's checkpoints and both report success, so the trainer
takes this lock before it writes anything into a run directory and releases it when it stops, also on
errors and signals.

How it works:

- The lock file names its holder as JSON: pid, host, start time, command line and a random token.
- Exclusion comes from ``fcntl.flock`` on that file: the kernel drops the lock when the holder dies, even
  by ``kill -9``, so a lock file whose flock can be taken on the same host is stale by definition and is
  taken over with a warning. Two processes taking over one stale lock race on the flock, which only one
  wins; the loser refuses like any second process. A process that acquires the flock then checks that
  the file it holds is still the one at the path (the previous holder may have unlinked it meanwhile).
- A lock written by another host cannot be checked from here: a live holder on a network filesystem
  without coherent flock looks the same as a dead one. It is refused, naming the host and saying to delete
  the file if that job is dead.
- Where the filesystem has no ``flock`` at all (``ENOLCK``, ``EOPNOTSUPP``: some network and FUSE
  filesystems), the file is created with ``O_CREAT | O_EXCL`` and the holder's pid is checked with
  ``os.kill(pid, 0)``; there the take-over of a stale lock is not atomic against a second process taking
  it over in the same instant.
- Under torchrun only process 0 takes the lock: it alone writes into the run directory (the others read
  the checkpoint and learn the run directory from its broadcast). When process 0 is refused, torchrun
  stops the other processes, as for any failing process.
- Not covered: two ``training.auto_resume`` jobs started at the same moment with no earlier run both
  find nothing to resume and start two separate runs (``name`` and ``name-2``); neither overwrites the
  other.
"""

from __future__ import annotations

import datetime
import errno
import json
import logging
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.errors import RunLockedError

log = logging.getLogger(__name__)

LOCK_FILENAME = "run.lock"
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_RECORD_WAIT_S = 2.0  # how long to wait for a new holder to write its record before naming it


@attrs.frozen
class LockHolder:
    """Who holds (or held) a run's lock, as its lock file says."""

    pid: int
    host: str
    started: str
    command: str = ""
    token: str = ""

    def describe(self) -> str:
        """``process 123 on host h (since 2024-01-01 10:00:00+00:00, command: ...)``."""
        command = f", command: {self.command}" if self.command else ""
        return f"process {self.pid} on host {self.host} (since {self.started}{command})"

    def is_local(self) -> bool:
        return self.host == socket.gethostname()


class RunLock:
    """The lock of one run directory, held from ``acquire`` to ``release``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILENAME
        self._fd: int | None = None
        self._holder: LockHolder | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, why: str = "") -> None:
        """Take the lock or raise ``RunLockedError`` naming the holder; ``why`` says how this run was
        chosen (for the message). A stale lock (its holder is dead) is taken over with a warning."""
        for _ in range(5):  # a retry only when a holder released (unlinked) the file under us
            if self._try_acquire(why):
                return
        raise RunLockedError(
            f"Could not lock {self.run_dir}: its lock file {self.path} kept changing (another process is "
            "starting and stopping on this run). Run this again once that has settled."
        )

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and drop the flock; safe to call twice."""
        if self._fd is None:
            return
        try:
            if _read_holder(self.path) == self._holder:
                self.path.unlink(missing_ok=True)
        except OSError as error:
            log.warning("Could not remove the lock file %s: %s", self.path, error)
        finally:
            os.close(self._fd)
            self._fd, self._holder = None, None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ----- acquiring ----------------------------------------------------------------------------------

    def _try_acquire(self, why: str) -> bool:
        """One attempt; False when the file was replaced under us (try again)."""
        fd, created = _open_lock_file(self.path)
        if fd is None:
            return False
        try:
            locked = _try_flock(fd)
            if locked is False:
                raise self._locked_error(_wait_for_live_record(self.path), why, busy=True)
            if not _same_file(fd, self.path):
                os.close(fd)
                return False
            if not created:
                self._check_previous(_read_holder(self.path), flock_held=locked is True, why=why)
            self._holder = _write_record(fd)
            self._fd = fd
            return True
        except BaseException:
            if self._fd != fd:
                os.close(fd)
            raise

    def _check_previous(self, previous: LockHolder | None, flock_held: bool, why: str) -> None:
        """Decide about a lock file left in place: take over (stale) or refuse (held, or not checkable)."""
        if previous is None:
            log.debug("%s has no readable holder (a process died while creating it); taking it.", self.path)
            return
        if not previous.is_local():
            raise self._locked_error(previous, why, busy=False)
        if not flock_held and _pid_alive(previous.pid):
            raise self._locked_error(previous, why, busy=True)
        log.warning(
            "Taking over the stale lock %s: %s is no longer running (it was probably killed).",
            self.path,
            previous.describe(),
        )

    def _locked_error(self, holder: LockHolder | None, why: str, busy: bool) -> RunLockedError:
        why = f" ({why})" if why else ""
        if holder is None:
            return RunLockedError(
                f"The run directory {self.run_dir}{why} is locked by another process that is starting on it "
                f"right now ({self.path} names no holder yet). Only one process may train a run; wait for "
                "that one or stop it."
            )
        if busy or holder.is_local():
            return RunLockedError(
                f"The run directory {self.run_dir}{why} is being trained by {holder.describe()}; its lock is "
                f"{self.path}. Only one process may train a run, or they overwrite each other's "
                f"checkpoints. Wait for it to finish, or stop it (`kill -TERM {holder.pid}` saves a resume "
                "point) and resume this run afterwards."
            )
        return RunLockedError(
            f"The run directory {self.run_dir}{why} is locked by {holder.describe()}, another machine than "
            f"this one ({socket.gethostname()}), so whether that job still runs cannot be checked from "
            f"here. If it still runs, wait for it or stop it there. If it is dead (its machine was lost or "
            f"the job was killed with SIGKILL), delete {self.path} and run this command again."
        )


def read_lock_holder(run_dir: Path) -> LockHolder | None:
    """Who the lock file of ``run_dir`` names (whether or not that process still runs), or ``None``."""
    return _read_holder(Path(run_dir) / LOCK_FILENAME)


def _open_lock_file(path: Path) -> tuple[int | None, bool]:
    """Open (creating atomically if absent) the lock file: ``(fd, created)``, or ``(None, False)`` when it
    vanished between the two opens."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
    except FileExistsError:
        pass
    try:
        return os.open(path, os.O_RDWR), False
    except FileNotFoundError:
        return None, False


def _try_flock(fd: int) -> bool | None:
    """True when the flock was taken, False when another open file holds it, None without flock support."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the pid check decides
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno in _UNSUPPORTED:
            log.debug("flock is not supported on this filesystem (%s); checking the holder's pid.", error)
            return None
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (a releasing holder unlinks it)."""
    try:
        on_disk, held = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _write_record(fd: int) -> LockHolder:
    holder = LockHolder(
        pid=os.getpid(),
        host=socket.gethostname(),
        started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        command=" ".join(sys.argv),
        token=secrets.token_hex(8),
    )
    data = json.dumps(attrs.asdict(holder), indent=1).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)
    return holder


def _read_holder(path: Path) -> LockHolder | None:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(
            pid=int(data["pid"]),
            host=str(data["host"]),
            started=str(data["started"]),
            command=str(data.get("command", "")),
            token=str(data.get("token", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _wait_for_live_record(path: Path) -> LockHolder | None:
    """The holder of a busy lock. Right after a take-over the file may still name the dead holder (or
    nothing): wait briefly for the new holder's record so the message names the live process."""
    deadline = time.monotonic() + _RECORD_WAIT_S
    while True:
        holder = _read_holder(path)
        if holder is not None and (not holder.is_local() or _pid_alive(holder.pid)):
            return holder
        if time.monotonic() >= deadline:
            return holder if holder is not None and _pid_alive(holder.pid) else None
        time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]
