"""One process per run directory: ``run.lock`` refuses a second trainer, names the first, and is taken over
when its holder died. Real processes (``yolox-sdk train`` and bare lock takers) on BCCD runs."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_fault_tolerance import PROCESS_TIMEOUT_S, overrides, start_cli

from yolox_sdk.config.loader import dump_config, load_config
from yolox_sdk.engine import run_lock, setup
from yolox_sdk.engine.run_lock import LOCK_FILENAME, RunLock, read_lock_holder
from yolox_sdk.engine.trainer import Trainer, train
from yolox_sdk.errors import DatasetError, RunLockedError
from yolox_sdk.plugins.interfaces import Callback


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped) on this host."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_lock(run_dir: Path, pid: int, host: str | None = None) -> Path:
    """A lock file as a holder that is gone (or on another machine) leaves it."""
    path = run_dir / LOCK_FILENAME
    record = {"pid": pid, "host": host or socket.gethostname(), "started": "2024-05-01T10:00:00+00:00"}
    path.write_text(json.dumps(record))
    return path


def bccd_run_dir(tmp_path: Path, *extra: str) -> Path:
    """A run directory holding only its config.yaml (as a run killed before its first checkpoint)."""
    run_dir = tmp_path / "runs" / "bccd"
    run_dir.mkdir(parents=True)
    config = load_config(None, overrides(tmp_path / "runs", "monitoring.run_name=bccd", *extra))
    (run_dir / "config.yaml").write_text(dump_config(config))
    return run_dir


def wait_for_holder(run_dir: Path, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while (holder := read_lock_holder(run_dir)) is None or holder.pid != process.pid:
        assert process.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, "the first process never locked the run"
        time.sleep(0.05)


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "yolox_sdk.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
    )


# ----- the lock itself (fast) --------------------------------------------------------------------------


def test_a_second_holder_is_refused_and_the_lock_is_released(tmp_path: Path) -> None:
    with RunLock(tmp_path) as first:
        first.acquire()
        holder = read_lock_holder(tmp_path)
        assert (holder.pid, holder.host) == (os.getpid(), socket.gethostname())
        with pytest.raises(RunLockedError, match=rf"being trained by process {os.getpid()} on host"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_FILENAME).exists()
    RunLock(tmp_path).acquire()  # free again (the lock object is dropped with the test)


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pid = dead_pid()
    write_lock(tmp_path, pid)
    lock = RunLock(tmp_path)
    with caplog.at_level(logging.WARNING, logger="yolox_sdk.engine.run_lock"):
        lock.acquire()
    assert f"Taking over the stale lock {tmp_path / LOCK_FILENAME}: process {pid} on host" in caplog.text
    assert read_lock_holder(tmp_path).pid == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_FILENAME).exists()


def test_a_lock_from_another_host_is_refused_with_how_to_remove_it(tmp_path: Path) -> None:
    path = write_lock(tmp_path, 4242, host="gpu-node-17")
    with pytest.raises(RunLockedError) as error:
        RunLock(tmp_path).acquire()
    message = str(error.value)
    assert "process 4242 on host gpu-node-17" in message and "cannot be checked" in message
    assert f"delete {path}" in message
    assert path.exists()


def test_without_flock_the_holders_pid_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a filesystem without flock (``ENOLCK``) a live holder is still refused and a dead one replaced."""
    monkeypatch.setattr(run_lock, "_try_flock", lambda fd: None)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(tmp_path, holder.pid)
        with pytest.raises(RunLockedError, match=rf"being trained by process {holder.pid} on host"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path) as lock:
        lock.acquire()
        assert read_lock_holder(tmp_path).pid == os.getpid()


TAKE_LOCK = """
import sys, time
from yolox_sdk.engine.run_lock import RunLock
from yolox_sdk.errors import RunLockedError
lock = RunLock(sys.argv[1])
try:
    lock.acquire()
except RunLockedError as error:
    print("refused", error)
    sys.exit(1)
print("acquired")
sys.stdout.flush()
time.sleep(float(sys.argv[2]))
lock.release()
"""


def test_processes_taking_over_one_stale_lock_at_once_end_with_one_holder(tmp_path: Path) -> None:
    write_lock(tmp_path, dead_pid())
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", TAKE_LOCK, str(tmp_path), "3"], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    winners = [process.pid for process, out in zip(processes, outputs, strict=True) if "acquired" in out]
    assert len(winners) == 1, outputs
    refusals = [out for out in outputs if out.startswith("refused")]
    assert len(refusals) == 3 and all(f"process {winners[0]} on host" in out for out in refusals), outputs
    assert not (tmp_path / LOCK_FILENAME).exists()


def test_the_lock_is_released_after_an_error_in_a_resumed_run(tmp_path: Path) -> None:
    run_dir = bccd_run_dir(tmp_path, f"data.val_path={tmp_path / 'missing'}")
    write_lock(run_dir, dead_pid())  # stale: taken over, then released on the error
    with pytest.raises(DatasetError):
        train(load_config(run_dir / "config.yaml"), resume_dir=run_dir)
    assert not (run_dir / LOCK_FILENAME).exists()


# ----- real trainers -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_resume_of_one_run_is_refused_naming_the_first(tmp_path: Path) -> None:
    """Two ``--resume DIR`` processes: the second exits 1 naming the first's pid; SIGTERM to the first
    releases the lock, after which the run resumes (and finishes, releasing it again)."""
    run_dir, log_path = bccd_run_dir(tmp_path), tmp_path / "first.log"
    config = str(run_dir / "config.yaml")
    first = start_cli(["train", config, "--resume", str(run_dir)], log_path)
    try:
        wait_for_holder(run_dir, first, log_path)
        second = run_cli(["train", config, "--resume", str(run_dir)])
        assert second.returncode == 1, second.stderr
        assert f"being trained by process {first.pid} on host {socket.gethostname()}" in second.stderr
        assert "Traceback" not in second.stderr
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=PROCESS_TIMEOUT_S) == 128 + signal.SIGTERM, log_path.read_text()[-3000:]
    finally:
        first.kill()
    assert not (run_dir / LOCK_FILENAME).exists()


@pytest.mark.slow
def test_auto_resume_launched_twice_trains_the_run_once(tmp_path: Path) -> None:
    """A preempted ``training.auto_resume`` job started twice: the second refuses the run the first holds,
    naming the run and the holder; a stale lock left by a killed job is taken over with a warning."""
    run_dir, log_path = bccd_run_dir(tmp_path), tmp_path / "first.log"
    write_lock(run_dir, dead_pid())
    config_file = tmp_path / "config.yaml"
    config_file.write_text("{}\n")
    command = [
        "train",
        str(config_file),
        *overrides(tmp_path / "runs", "monitoring.run_name=bccd", "training.auto_resume=true"),
    ]
    first = start_cli(command, log_path)
    try:
        wait_for_holder(run_dir, first, log_path)
        second = run_cli(command)
        assert second.returncode == 1, second.stderr
        assert f"{run_dir} (training.auto_resume chose it" in second.stderr
        assert f"process {first.pid} on host" in second.stderr
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=PROCESS_TIMEOUT_S) == 128 + signal.SIGINT
    finally:
        first.kill()
    assert "Taking over the stale lock" in log_path.read_text()
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["bccd"]
    assert not (run_dir / LOCK_FILENAME).exists()


@pytest.mark.slow
def test_a_fresh_run_holds_its_lock_while_training_and_leaves_none(tmp_path: Path) -> None:
    """A normal run (one epoch on BCCD's val split, no evaluation) locks its new directory and releases
    the lock at the end."""
    holders: list[int | None] = []

    class LockSpy(Callback):
        def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
            holder = read_lock_holder(trainer.run_dir)
            holders.append(holder.pid if holder else None)

    config = load_config(
        None,
        [
            *overrides(tmp_path / "runs", "monitoring.run_name=fresh"),
            "data.val_path=null",
            "training.epochs=1",
        ],
    )
    build_callbacks = setup.build_callbacks
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(setup, "build_callbacks", lambda *args: [*build_callbacks(*args), LockSpy()])
        result = train(config)
    assert holders == [os.getpid()]
    assert not (result.run_dir / LOCK_FILENAME).exists()
