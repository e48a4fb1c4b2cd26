"""SIGTERM and SIGINT during training: where they stop, what they save, that a second one stops at once,
that no DataLoader worker outlives the run, and that the handlers are put back afterwards.

The bit-identical resume after real signals is in ``test_fault_tolerance.py`` (it shares that module's
uninterrupted reference run).
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from test_fault_tolerance import (
    PROCESS_TIMEOUT_S,
    epoch_rows,
    mid_epoch_position,
    overrides,
    start_verbose,
    wait_for_line,
)
from test_run_lock import bccd_run_dir

from yolox_sdk.cli.main import cli
from yolox_sdk.config.loader import load_config
from yolox_sdk.data import training_data
from yolox_sdk.engine.interruption import SignalReceived, StopOnSignal
from yolox_sdk.engine.trainer import train
from yolox_sdk.errors import DatasetError, TrainingInterrupted

BATCHES = 87 // 8  # per epoch of BCCD's val split at batch 8


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def worker_pids(pid: int) -> list[int]:
    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


def exit_message(process, log_path: Path, signum: int) -> str:  # noqa: ANN001 - a Popen
    assert process.wait(timeout=PROCESS_TIMEOUT_S) == 128 + signum, log_path.read_text()[-3000:]
    return log_path.read_text().rstrip().splitlines()[-1]


# ----- real signals to a real training process -----------------------------------------------------------


@pytest.mark.slow
def test_signal_in_evaluation_finishes_the_epoch_and_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    """With 2 loader workers: SIGTERM during epoch 1's evaluation lets it finish, saves epoch 1 and exits
    143. Resumed, SIGTERM twice during epoch 2's evaluation: the second abandons it at once (no epoch 2
    row, ``last.pt`` still epoch 1). Neither exit leaves a worker process or the lock behind."""
    log_path, run_dir = tmp_path / "train.log", tmp_path / "runs" / "workers"
    config_file = tmp_path / "config.yaml"
    config_file.write_text("{}\n")
    extra = ("monitoring.run_name=workers", "data.num_workers=2")
    process = start_verbose(["train", str(config_file), *overrides(tmp_path / "runs", *extra)], log_path)
    wait_for_line(process, log_path, f"iter {BATCHES}:")  # epoch 1's last step: its evaluation follows
    workers = worker_pids(process.pid)
    assert len(workers) == 2, workers
    process.send_signal(signal.SIGTERM)
    message = exit_message(process, log_path, signal.SIGTERM)
    assert (
        f"Error: SIGTERM stopped training. {run_dir / 'last.pt'} holds the run up to epoch 1 (saved)"
        in message
    )
    assert len(epoch_rows(run_dir)) == 1 and "val/mAP" in epoch_rows(run_dir)[0]
    assert not any(alive(pid) for pid in workers), "a DataLoader worker outlived the run"

    process = start_verbose(["train", str(run_dir / "config.yaml"), "--resume", str(run_dir)], log_path)
    wait_for_line(process, log_path, f"iter {2 * BATCHES}:")
    workers, logged = worker_pids(process.pid), len(log_path.read_text())
    process.send_signal(signal.SIGTERM)
    wait_for_line(process, log_path, "SIGTERM received: finishing the current step", after=logged)
    process.send_signal(signal.SIGTERM)
    message = exit_message(process, log_path, signal.SIGTERM)
    assert "A second SIGTERM stopped training at once: the current step was abandoned." in message
    assert f"{run_dir / 'last.pt'} holds the run up to epoch 1 (kept)" in message
    assert mid_epoch_position(run_dir / "last.pt") == (1, 0)
    assert len(epoch_rows(run_dir)) == 1
    assert not any(alive(pid) for pid in workers), "a DataLoader worker outlived the run"
    assert not (run_dir / "run.lock").exists()


# ----- fast, in this process ---------------------------------------------------------------------------


def test_signals_are_deferred_only_inside_the_training_loop() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with StopOnSignal() as signals:
        with pytest.raises(SignalReceived) as raised:  # outside the loop: nothing to finish
            os.kill(os.getpid(), signal.SIGINT)
        assert (raised.value.signum, raised.value.second) == (signal.SIGINT, False)
    with StopOnSignal() as signals, signals.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.stop_requested and signals.received == signal.SIGTERM
        with pytest.raises(SignalReceived) as raised:
            os.kill(os.getpid(), signal.SIGTERM)
        assert raised.value.second
    assert signal.getsignal(signal.SIGTERM) is previous
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_before_the_first_step_stops_at_once_and_restores_the_handlers(tmp_path: Path) -> None:
    """SIGTERM while the run loads its data: exit code 143 at once, the resume command printed, the lock
    released, and the caller's own handler back in place."""
    run_dir = bccd_run_dir(tmp_path)
    load_training_data = training_data.load_training_data

    def signalled_while_loading(config):  # noqa: ANN001, ANN202 - wraps training_data.load_training_data
        os.kill(os.getpid(), signal.SIGTERM)
        return load_training_data(config)

    def callers_handler(signum, frame):  # noqa: ANN001, ANN202 - a signal handler
        raise AssertionError("training must replace the caller's handler while it runs")

    previous = signal.signal(signal.SIGTERM, callers_handler)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(training_data, "load_training_data", signalled_while_loading)
            with pytest.raises(TrainingInterrupted) as error:
                train(load_config(run_dir / "config.yaml"), resume_dir=run_dir)
        assert signal.getsignal(signal.SIGTERM) is callers_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert error.value.exit_code == 143 and error.value.run_dir == run_dir
    assert str(error.value) == (
        "SIGTERM stopped training. No checkpoint was written yet, so resuming starts the run again in the "
        f"same directory. Resume with: yolox-sdk train {run_dir / 'config.yaml'} --resume {run_dir}"
    )
    assert not (run_dir / "run.lock").exists()


@pytest.mark.parametrize("command", ["train", "run"])
def test_the_cli_exits_with_the_signal_code_naming_its_own_resume_command(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``yolox-sdk run`` is resumed with ``yolox-sdk run ... --resume``, not with ``train``."""
    run_dir = bccd_run_dir(tmp_path)
    load_training_data = training_data.load_training_data

    def interrupted_while_loading(config):  # noqa: ANN001, ANN202 - wraps training_data.load_training_data
        os.kill(os.getpid(), signal.SIGINT)
        return load_training_data(config)

    monkeypatch.setattr(training_data, "load_training_data", interrupted_while_loading)
    config = run_dir / "config.yaml"
    result = CliRunner().invoke(cli, [command, str(config), "--resume", str(run_dir)])
    assert result.exit_code == 130, result.output
    assert f"Resume with: yolox-sdk {command} {config} --resume {run_dir}" in result.output
    assert "Traceback" not in result.output


def test_training_in_a_thread_runs_without_signal_handlers(tmp_path: Path) -> None:
    """Python installs signal handlers only in the main thread: in another one training goes on without
    them (here it reaches its own error, a missing validation set, not a signal error)."""
    run_dir = bccd_run_dir(tmp_path, f"data.val_path={tmp_path / 'missing'}")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            train(load_config(run_dir / "config.yaml"), resume_dir=run_dir)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=PROCESS_TIMEOUT_S)
    assert len(errors) == 1 and isinstance(errors[0], DatasetError), errors
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ----- SIGTERM outside training ---------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_during_eval_is_reported_and_exits_143(tmp_path: Path) -> None:
    """Outside the training loop SIGTERM used to end the process silently; now it unwinds like Ctrl-C."""
    from test_fault_tolerance import start_cli

    from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
    from yolox_sdk.models.factory import build_model
    from yolox_sdk.models.variants import make_spec

    spec = make_spec("yolox-nano", num_classes=3)
    state = build_model(spec).state_dict()
    checkpoint = save_checkpoint(
        tmp_path / "model.pt", Checkpoint(model=state, spec=spec, class_names=("Platelets", "RBC", "WBC"))
    )
    log_path = tmp_path / "eval.log"
    process = start_cli(["eval", str(checkpoint), "--data", "bccd", "--split", "trainval"], log_path)
    wait_for_line(process, log_path, "Dataset bccd")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=PROCESS_TIMEOUT_S) == 143, log_path.read_text()[-3000:]
    output = log_path.read_text()
    assert "Terminated (SIGTERM) before the command finished" in output
    assert "Traceback" not in output
