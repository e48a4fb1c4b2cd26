"""Fault tolerance on real BCCD training: ``kill -9``, SIGTERM or SIGINT then resume equals a run never
interrupted; damaged checkpoints are detected and skipped; ``training.auto_resume`` finds the run to
continue.

One uninterrupted 3-epoch run (module fixture) is the reference every other run must match exactly:
training is deterministic on CPU (``training.deterministic``, no loader workers), so any state a resume
failed to restore (weights, EMA, optimizer, RNG, sampler, augmentation phase) shows up as a difference.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ASSETS

from yolox_sdk.checkpoints.content_digest import content_digest
from yolox_sdk.checkpoints.format import Checkpoint, load_checkpoint, save_checkpoint
from yolox_sdk.config.loader import dump_config, load_config
from yolox_sdk.engine.resume import find_run_to_resume, load_resume_checkpoint, resume_identity
from yolox_sdk.engine.trainer import Trainer, TrainResult, train
from yolox_sdk.errors import CheckpointError
from yolox_sdk.models.variants import make_spec

EPOCHS = 3
PROCESS_TIMEOUT_S = 600  # generous: other jobs may share the 2 cores


def overrides(output_dir: Path, *extra: str) -> list[str]:
    """3 epochs of yolox-nano at 160 px on BCCD's small val split (87 images), evaluated every epoch."""
    return [
        "model.name=yolox-nano",
        "model.input_size=[160,160]",
        "data.train_path=bccd",
        "data.train_split=val",
        "data.val_path=bccd",
        "data.val_split=test",
        "data.batch_size=8",
        "data.num_workers=0",
        "augmentation.mosaic_prob=0.5",
        "augmentation.mixup=false",
        f"training.epochs={EPOCHS}",
        "training.no_aug_epochs=1",
        "training.warmup_epochs=1",
        "training.lr=0.04",
        "training.multiscale_range=1",
        "training.multiscale_interval=4",
        "training.deterministic=true",
        "evaluation.eval_interval=1",
        "evaluation.conf_threshold=0.05",
        "monitoring.progress_bar=false",
        "monitoring.tensorboard=false",
        f"monitoring.output_dir={output_dir}",
        *extra,
    ]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainResult]:
    """The uninterrupted run, trained in this process."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
        patch.setenv("YOLOX_SDK_HOME", str(tmp_path_factory.mktemp("home")))
        output_dir = tmp_path_factory.mktemp("reference")
        yield train(load_config(None, overrides(output_dir, "monitoring.run_name=reference")))


# ----- helpers -----------------------------------------------------------------------------------------


def start_cli(args: list[str], log_path: Path) -> subprocess.Popen:
    """``yolox-sdk ARGS`` as a real process (stdout and stderr to ``log_path``)."""
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "yolox_sdk.cli.main", *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )


def epoch_rows(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def kill_during_epoch(process: subprocess.Popen, run_dir: Path, epoch: int, log_path: Path) -> None:
    """SIGKILL ``process`` a moment after epoch ``epoch - 1`` was saved and logged, i.e. inside ``epoch``."""
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while len(epoch_rows(run_dir)) < epoch - 1:
        assert process.poll() is None, f"training exited early:\n{log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.1)
    time.sleep(1.0)  # well inside the next epoch (an epoch takes several seconds here)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert len(epoch_rows(run_dir)) == epoch - 1, "killed too late: the epoch had already finished"


def finish(process: subprocess.Popen, log_path: Path) -> str:
    returncode = process.wait(timeout=PROCESS_TIMEOUT_S)
    output = log_path.read_text()
    assert returncode == 0, output[-3000:]
    return output


def assert_same_result(run_dir: Path, reference_dir: Path) -> None:
    """Every epoch's losses and val metrics, and the final weights (raw, EMA) equal the reference's, bit for
    bit: CPU training in deterministic mode has no excuse for the smallest difference."""
    rows, expected_rows = epoch_rows(run_dir), epoch_rows(reference_dir)
    assert [row["epoch"] for row in rows] == [str(e) for e in range(1, EPOCHS + 1)]
    for row, expected in zip(rows, expected_rows, strict=True):
        for key, value in expected.items():
            if key.startswith(("train/", "val/")) or key == "lr":
                assert row[key] == value, (row["epoch"], key)
    assert float(expected_rows[-1]["val/mAP50"]) > 0  # the comparison is not between two empty results
    final, expected = load_checkpoint(run_dir / "last.pt"), load_checkpoint(reference_dir / "last.pt")
    assert final.training_state["state"]["epoch"] == EPOCHS
    for weights, expected_weights in ((final.model, expected.model), (final.ema, expected.ema)):
        assert weights.keys() == expected_weights.keys()
        for key, tensor in expected_weights.items():
            assert torch.equal(weights[key], tensor), key


def copy_run(run_dir: Path, destination: Path) -> Path:
    shutil.copytree(run_dir, destination)
    return destination


# ----- tests -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_result(reference: TrainResult, tmp_path: Path) -> None:
    """Killed in epoch 2, picked up by ``training.auto_resume``, killed again in epoch 3, finished with
    ``--resume RUN_DIR``: the same metrics and weights as the run that was never interrupted."""
    output_dir, log_path = tmp_path / "runs", tmp_path / "train.log"
    config_file = tmp_path / "config.yaml"
    config_file.write_text("{}\n")
    command = ["train", str(config_file), *overrides(output_dir, "monitoring.run_name=killed")]
    run_dir = output_dir / "killed"

    kill_during_epoch(start_cli(command, log_path), run_dir, 2, log_path)
    assert load_checkpoint(run_dir / "last.pt").training_state["state"]["epoch"] == 1

    # the same command again, with auto-resume: it must continue the killed run, not start a new one
    kill_during_epoch(start_cli([*command, "training.auto_resume=true"], log_path), run_dir, 3, log_path)
    assert sorted(path.name for path in output_dir.iterdir()) == ["killed"]
    assert load_checkpoint(run_dir / "last.pt").training_state["state"]["epoch"] == 2
    assert load_checkpoint(run_dir / "last.prev.pt").training_state["state"]["epoch"] == 1

    output = finish(start_cli(["train", str(config_file), "--resume", str(run_dir)], log_path), log_path)
    assert f"Run directory: {run_dir}" in output
    assert_same_result(run_dir, reference.run_dir)
    assert not list(run_dir.glob(".*.tmp")), "a half-written checkpoint was left behind"


def mid_epoch_position(path: Path) -> tuple[int, int]:
    """(epochs completed, batches done in the next epoch) of a checkpoint; (-1, -1) while unreadable."""
    try:
        state = load_checkpoint(path).training_state["state"]
    except CheckpointError:
        return -1, -1
    return state["epoch"], state.get("batch_in_epoch", 0)


@pytest.mark.slow
def test_kill_9_mid_epoch_resumes_at_the_batch(reference: TrainResult, tmp_path: Path) -> None:
    """With ``save_every_minutes`` tiny, ``last.pt`` is refreshed after every step: a run killed in the
    middle of epoch 2 resumes at the next batch (not at the epoch start) and still ends bit-identical."""
    output_dir, log_path = tmp_path / "runs", tmp_path / "train.log"
    config_file = tmp_path / "config.yaml"
    config_file.write_text("{}\n")
    extra = ("monitoring.run_name=mid", "monitoring.save_every_minutes=0.000001")
    process = start_cli(["train", str(config_file), *overrides(output_dir, *extra)], log_path)
    run_dir, deadline = output_dir / "mid", time.monotonic() + PROCESS_TIMEOUT_S
    while (position := mid_epoch_position(run_dir / "last.pt")) < (1, 3):  # 3+ batches into epoch 2
        assert position[0] < 2, "the kill came too late: epoch 2 was already finished"
        assert process.poll() is None, f"training exited early:\n{log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    epochs_done, batches_done = mid_epoch_position(run_dir / "last.pt")
    assert epochs_done == 1 and 0 < batches_done < 87 // 8, (epochs_done, batches_done)

    output = finish(start_cli(["train", str(config_file), "--resume", str(run_dir)], log_path), log_path)
    assert f"at epoch 1, iteration {10 + batches_done} (batch {batches_done} of epoch 2)" in output
    assert_same_result(run_dir, reference.run_dir)


@pytest.mark.slow
def test_truncated_last_checkpoint_falls_back_to_the_previous_one(
    reference: TrainResult, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = copy_run(reference.run_dir, tmp_path / "truncated")
    last = run_dir / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="yolox_sdk.engine.resume"):
        result = train(load_config(run_dir / "config.yaml"), resume_dir=run_dir)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(last) in message and str(run_dir / "last.prev.pt") in message for message in warnings), (
        warnings
    )
    assert result.epochs_completed == EPOCHS and result.run_dir == run_dir
    assert_same_result(run_dir, reference.run_dir)


@pytest.mark.slow
def test_auto_resume_returns_a_finished_run_without_training(
    reference: TrainResult, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output_dir = tmp_path / "runs"
    copy_run(reference.run_dir, output_dir / "finished")
    other = copy_run(reference.run_dir, output_dir / "other-config")
    text = (other / "config.yaml").read_text()
    (other / "config.yaml").write_text(text.replace("seed: 0", "seed: 1"))
    os.utime(other / "last.pt")  # the newest run in the folder, but not the same experiment
    before = (output_dir / "finished" / "last.pt").stat().st_mtime_ns
    config = load_config(
        None, overrides(output_dir, "monitoring.run_name=reference", "training.auto_resume=true")
    )
    with caplog.at_level(logging.INFO, logger="yolox_sdk.engine.resume"):
        result = train(config)
    assert result.run_dir == output_dir / "finished" and result.epochs_completed == EPOCHS
    assert result.metrics["val/mAP"] == pytest.approx(reference.metrics["val/mAP"], abs=1e-9)
    assert (output_dir / "finished" / "last.pt").stat().st_mtime_ns == before
    assert sorted(path.name for path in output_dir.iterdir()) == ["finished", "other-config"]
    assert any("already complete" in r.getMessage() for r in caplog.records)


# ----- fast tests on small synthetic checkpoints ------------------------------------------------------


def synthetic_checkpoint(epoch: int) -> Checkpoint:
    """A small but complete checkpoint: weights, EMA, optimizer state, RNG states, metrics."""
    weights = {"conv.weight": torch.full((4, 3), float(epoch)), "bn.num_batches_tracked": torch.tensor(epoch)}
    return Checkpoint(
        model=weights,
        ema={key: value.clone() for key, value in weights.items()},
        spec=make_spec("yolox-nano", 3),
        class_names=("RBC", "WBC", "Platelets"),
        config={"training": {"epochs": EPOCHS}},
        training_state={
            "optimizer": {
                "state": {0: {"momentum_buffer": torch.rand(4, 3)}},
                "param_groups": [{"lr": 0.01}],
            },
            "state": {"epoch": epoch, "metrics": {"val/mAP": 0.1 * epoch}},
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
            },
        },
    )


def synthetic_run(run_dir: Path, epochs: int = 1, save_interval: int = 0) -> Path:
    """A run directory as the trainer leaves it after ``epochs`` epochs (last.pt rotated each time)."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(load_config(None)))
    for epoch in range(1, epochs + 1):
        checkpoint = synthetic_checkpoint(epoch)
        save_checkpoint(run_dir / "last.pt", checkpoint, keep_previous=run_dir / "last.prev.pt")
        if save_interval and epoch % save_interval == 0:
            save_checkpoint(run_dir / f"epoch_{epoch}.pt", checkpoint)
    return run_dir


def saved_epoch(point) -> int:
    return point.checkpoint.training_state["state"]["epoch"]


def test_changed_checkpoint_content_is_detected(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "last.pt", synthetic_checkpoint(2))
    payload = torch.load(path, map_location="cpu", weights_only=False)
    assert len(payload["sha256"]) == 64
    payload["model"]["conv.weight"][0, 0] += 1e-3  # one weight; the stored sha256 left as it was
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"{path} is damaged"):
        load_checkpoint(path)

    payload = torch.load(
        save_checkpoint(path, synthetic_checkpoint(2)), map_location="cpu", weights_only=False
    )
    payload["training_state"]["state"]["epoch"] = 3  # training state is covered too, not only weights
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)

    del payload["sha256"]  # a file from before checksums existed loads as it is
    torch.save(payload, path)
    assert load_checkpoint(path).training_state["state"]["epoch"] == 3


def test_content_digest_survives_a_round_trip_and_ignores_key_order() -> None:
    checkpoint = synthetic_checkpoint(1)
    digest = content_digest(checkpoint.training_state)
    buffer = io.BytesIO()
    torch.save(checkpoint.training_state, buffer)
    buffer.seek(0)
    assert content_digest(torch.load(buffer, weights_only=False)) == digest
    assert content_digest(dict(reversed(checkpoint.model.items()))) == content_digest(checkpoint.model)
    as_bfloat16 = {key: value.to(torch.bfloat16) for key, value in checkpoint.model.items()}
    assert content_digest(as_bfloat16) != content_digest(checkpoint.model)


def test_resume_falls_back_newest_first(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_dir = synthetic_run(tmp_path / "run", epochs=5, save_interval=2)
    assert saved_epoch(load_resume_checkpoint(run_dir)) == 5
    assert load_checkpoint(run_dir / "last.prev.pt").training_state["state"]["epoch"] == 4

    last = run_dir / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated
    with caplog.at_level(logging.WARNING, logger="yolox_sdk.engine.resume"):
        point = load_resume_checkpoint(run_dir)
    assert point.path == run_dir / "last.prev.pt" and saved_epoch(point) == 4
    assert str(last) in caplog.text and str(run_dir / "last.prev.pt") in caplog.text

    (run_dir / "last.prev.pt").write_bytes(b"garbage")
    assert load_resume_checkpoint(run_dir).path == run_dir / "epoch_4.pt"
    (run_dir / "epoch_4.pt").unlink()
    assert load_resume_checkpoint(run_dir).path == run_dir / "epoch_2.pt"

    for path in run_dir.glob("*.pt"):
        path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="none of its checkpoints .* is usable"):
        load_resume_checkpoint(run_dir)


def test_killed_between_the_two_renames_resumes_from_the_previous(tmp_path: Path) -> None:
    run_dir = synthetic_run(tmp_path / "run", epochs=2)
    (run_dir / "last.pt").replace(run_dir / "last.prev.pt")  # the state a kill between the renames leaves
    point = load_resume_checkpoint(run_dir)
    assert point.path == run_dir / "last.prev.pt" and saved_epoch(point) == 2


def test_killed_in_the_first_epoch_restarts_in_the_same_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(dump_config(load_config(None)))
    (run_dir / ".last.pt.x1y2z3.tmp").write_bytes(b"half a file")  # a kill during the first save
    assert load_resume_checkpoint(run_dir) is None
    assert not (run_dir / ".last.pt.x1y2z3.tmp").exists()
    with pytest.raises(CheckpointError, match="not a run directory"):
        Trainer(load_config(None), resume_dir=tmp_path)
    with pytest.raises(CheckpointError, match="has no best.pt"):
        Trainer(load_config(None), resume_dir=run_dir, from_best=True)


def test_auto_resume_picks_the_latest_run_of_the_same_config(tmp_path: Path) -> None:
    output_dir = tmp_path / "runs"
    config = load_config(None, [f"monitoring.output_dir={output_dir}", "training.auto_resume=true"])
    assert find_run_to_resume(config) is None  # no output folder yet: a new run

    older, newer = synthetic_run(output_dir / "a"), synthetic_run(output_dir / "b")
    other = synthetic_run(output_dir / "c")
    (other / "config.yaml").write_text(dump_config(load_config(None, ["training.seed=7"])))
    (output_dir / "not-a-run").mkdir()
    (output_dir / "broken").mkdir()
    (output_dir / "broken" / "config.yaml").write_text("training: {epochs: -1}\n")
    for age, run_dir in ((300, older), (200, newer), (100, other)):
        stamp = time.time() - age
        for path in [run_dir, *run_dir.iterdir()]:
            os.utime(path, (stamp, stamp))
    # saved without auto_resume and in another output_dir: still the same experiment
    assert find_run_to_resume(config) == newer
    os.utime(older / "config.yaml")
    assert find_run_to_resume(config) == older
    assert resume_identity(config) != resume_identity(load_config(None, ["training.epochs=5"]))


# ----- SIGTERM and SIGINT --------------------------------------------------------------------------------


def start_verbose(args: list[str], log_path: Path) -> subprocess.Popen:
    """``yolox-sdk -v ARGS`` logging every iteration (``iter N:`` lines tell where training is)."""
    return start_cli(["-v", *args, "monitoring.log_interval=1"], log_path)


def wait_for_line(process: subprocess.Popen, log_path: Path, text: str, after: int = 0) -> None:
    """Wait until ``text`` is in the log (after its first ``after`` characters)."""
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while not (log_path.is_file() and text in log_path.read_text()[after:]):
        assert process.poll() is None, f"training exited early:\n{log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"never logged {text!r}"
        time.sleep(0.02)


def stop_with(signum: int, process: subprocess.Popen, log_path: Path) -> list[str]:
    """Send ``signum``; the process must exit 128 + signum printing the resume command, returned as argv."""
    process.send_signal(signum)
    assert process.wait(timeout=PROCESS_TIMEOUT_S) == 128 + signum, log_path.read_text()[-3000:]
    error = log_path.read_text().rstrip().splitlines()[-1]
    assert error.startswith(f"Error: {signal.Signals(signum).name} stopped training."), error
    assert "(saved). Resume with: yolox-sdk train " in error, error
    return shlex.split(error.split("Resume with: yolox-sdk ", 1)[1])


@pytest.mark.slow
def test_sigterm_and_sigint_save_a_resume_point_and_resume_to_the_uninterrupted_result(
    reference: TrainResult, tmp_path: Path
) -> None:
    """SIGTERM in the middle of epoch 2, then (resumed with the printed command) SIGINT in the middle of
    epoch 3: each exits 143 / 130 after saving ``last.pt`` at the step it finished, and resuming to the end
    gives the uninterrupted run's metrics and weights bit for bit. The lock is gone after each exit."""
    output_dir, log_path = tmp_path / "runs", tmp_path / "train.log"
    config_file = tmp_path / "config.yaml"
    config_file.write_text("{}\n")
    run_dir = output_dir / "signalled"
    batches = 87 // 8

    process = start_verbose(
        ["train", str(config_file), *overrides(output_dir, "monitoring.run_name=signalled")], log_path
    )
    wait_for_line(process, log_path, f"iter {batches + 3}:")
    resume = stop_with(signal.SIGTERM, process, log_path)
    assert resume == ["train", str(run_dir / "config.yaml"), "--resume", str(run_dir)]
    epochs_done, batches_done = mid_epoch_position(run_dir / "last.pt")
    assert epochs_done == 1 and 3 <= batches_done < batches, (epochs_done, batches_done)
    assert not (run_dir / "run.lock").exists()

    process = start_verbose(resume, log_path)
    wait_for_line(process, log_path, f"iter {2 * batches + 2}:")
    resume = stop_with(signal.SIGINT, process, log_path)
    epochs_done, batches_done = mid_epoch_position(run_dir / "last.pt")
    assert epochs_done == 2 and 2 <= batches_done < batches, (epochs_done, batches_done)

    finish(start_cli(resume, log_path), log_path)
    assert_same_result(run_dir, reference.run_dir)
    assert not (run_dir / "run.lock").exists()
