"""OS errors during training and saving: reported as what they are, naming the path and the fix, exit 1, and
nothing saved before is lost.

The real case runs training into a small tmpfs (mounted here when the process may mount, as root in CI); the
injected case makes the checkpoint file's writes fail with ``ENOSPC`` after some bytes, which is what a full
disk does, and runs everywhere.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import ASSETS

from yolox_sdk.checkpoints import torch_files
from yolox_sdk.checkpoints.format import load_checkpoint
from yolox_sdk.checkpoints.torch_files import atomic_torch_save
from yolox_sdk.cli.main import cli

# One checkpoint of yolox-nano with 3 classes (weights, EMA, optimizer) is about 11.5 MB: epoch 1 writes
# last.pt and best.pt (no validation data: best follows last); epoch 2's new last.pt no longer fits.
TMPFS_MB = 30


def _mount_tmpfs(path: Path, megabytes: int, *options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", ",".join([f"size={megabytes}m", *options]), "tmpfs", str(path)]
    try:
        return subprocess.run(command, capture_output=True).returncode == 0
    except OSError:
        return False


def _fail_writes_after(monkeypatch: pytest.MonkeyPatch, limit: int, from_save: int = 1) -> None:
    """From the ``from_save``-th checkpoint save on, its file's writes raise ENOSPC after ``limit`` bytes."""
    original = torch_files._ErrorRecordingStream.__init__
    saves = {"count": 0}

    def counting_init(self: torch_files._ErrorRecordingStream, stream: object) -> None:
        original(self, stream)  # type: ignore[arg-type]
        saves["count"] += 1
        if saves["count"] >= from_save:
            self._stream = _FullDisk(stream, limit)  # type: ignore[arg-type]

    monkeypatch.setattr(torch_files._ErrorRecordingStream, "__init__", counting_init)


class _FullDisk:
    """A file whose disk fills up after ``limit`` bytes."""

    def __init__(self, stream: object, limit: int) -> None:
        self.stream, self.left = stream, limit

    def write(self, data: bytes) -> int:
        if len(data) > self.left:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.left -= len(data)
        return self.stream.write(data)  # type: ignore[attr-defined]

    def flush(self) -> None:
        self.stream.flush()  # type: ignore[attr-defined]


def test_a_full_disk_is_reported_as_such_and_the_previous_file_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "last.pt"
    atomic_torch_save({"weights": torch.arange(10)}, target)
    _fail_writes_after(monkeypatch, limit=4096)
    with pytest.raises(OSError) as raised:
        atomic_torch_save({"weights": torch.zeros(100_000)}, target)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert torch.equal(torch.load(target, weights_only=True)["weights"], torch.arange(10))
    assert [path.name for path in tmp_path.iterdir()] == ["last.pt"], "temporary file left behind"


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "read-only-disk"
    if not _mount_tmpfs(mount_point, 1, "ro"):
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], capture_output=True)


def test_training_into_a_read_only_file_system_names_the_path(
    read_only_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
    result = CliRunner().invoke(cli, _train_arguments(read_only_disk))
    assert result.exit_code == 1, result.output
    assert "Read-only file system" in result.output and str(read_only_disk / "full") in result.output
    assert "write elsewhere (monitoring.output_dir" in result.output
    assert "bug" not in result.output and "Traceback" not in result.output


def test_an_output_folder_under_a_file_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
    (tmp_path / "a-file").write_text("not a folder")
    result = CliRunner().invoke(cli, _train_arguments(tmp_path / "a-file" / "runs"))
    assert result.exit_code == 1, result.output
    assert str(tmp_path / "a-file") in result.output
    assert "bug" not in result.output and "Traceback" not in result.output


def _train_arguments(output_dir: Path) -> list[str]:
    return [
        "train",
        "/dev/null",
        "model.name=yolox-nano",
        "model.input_size=[160,160]",
        "data.train_path=bccd",
        "data.train_split=test",
        "data.batch_size=8",
        "data.num_workers=0",
        "training.epochs=2",
        "monitoring.progress_bar=false",
        "monitoring.tensorboard=false",
        "monitoring.run_name=full",
        f"monitoring.output_dir={output_dir}",
    ]


def _assert_clean_disk_full_exit(result: object, run_dir: Path) -> None:
    output = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 1, output  # type: ignore[attr-defined]
    assert "No space left on device" in output and str(run_dir / "last.pt") in output
    assert f"--resume {run_dir}" in output
    assert "bug" not in output and "Traceback" not in output and "enforce fail" not in output
    assert load_checkpoint(run_dir / "last.pt").training_state["state"]["epoch"] == 1
    assert not list(run_dir.glob(".*.tmp")), "a temporary checkpoint was left on the full disk"


def _resume_to_the_end(run_dir: Path, tmp_path: Path) -> None:
    """The saved run continues to the end once there is space (copied to a roomy disk)."""
    roomy = tmp_path / "roomy" / run_dir.name
    shutil.copytree(run_dir, roomy)
    result = CliRunner().invoke(cli, ["train", str(roomy / "config.yaml"), "--resume", str(roomy)])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(roomy / "last.pt").training_state["state"]["epoch"] == 2
    # What the trainer writes needs nothing beyond torch's own allow-list (no NumPy or torch-version objects).
    assert torch.serialization.get_unsafe_globals_in_checkpoint(roomy / "last.pt") == []


@pytest.mark.slow
def test_training_onto_a_full_disk_stops_cleanly_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real full tmpfs where this process may mount one (root, as in CI); else ENOSPC injected at the same
    point (the third checkpoint write: epoch 1 wrote last.pt and best.pt)."""
    monkeypatch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
    disk = tmp_path / "small-disk"
    mounted = _mount_tmpfs(disk, TMPFS_MB)
    try:
        with monkeypatch.context() as patch:
            if not mounted:
                _fail_writes_after(patch, limit=1_000_000, from_save=3)
            result = CliRunner().invoke(cli, _train_arguments(disk))
        _assert_clean_disk_full_exit(result, disk / "full")
        _resume_to_the_end(disk / "full", tmp_path)
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], capture_output=True)
