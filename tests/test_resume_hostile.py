"""``--resume`` on checkpoints whose training state was edited or forged: refused naming the file (and
falling back to the run's earlier checkpoint when that one is sound), never a crash inside torch or attrs.

The run is real: one epoch of yolox-nano at 160 px on coco8's 4 images, written by the trainer, then given a
second epoch to train in its config.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import ASSETS

from yolox_sdk.checkpoints.format import load_checkpoint, save_checkpoint
from yolox_sdk.cli.main import cli


@pytest.fixture(scope="module")
def finished_epoch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory after 1 epoch whose config asks for 2, so ``--resume`` has an epoch to train."""
    output = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
        arguments = ["train", "/dev/null", "model.name=yolox-nano", "model.input_size=[160,160]"]
        arguments += ["data.train_path=coco8", "data.num_workers=0", "training.epochs=1"]
        arguments += [
            "monitoring.progress_bar=false",
            "monitoring.tensorboard=false",
            "monitoring.run_name=one",
        ]
        result = CliRunner().invoke(cli, [*arguments, f"monitoring.output_dir={output}"])
    assert result.exit_code == 0, result.output
    run_dir = output / "one"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["training"]["epochs"] = 2
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


def _copy(run_dir: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("config.yaml", "last.pt"):
        (target / name).write_bytes((run_dir / name).read_bytes())
    return target


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    checkpoint = load_checkpoint(path)
    state = dict(checkpoint.training_state)
    change(state)
    save_checkpoint(
        path, attrs.evolve(checkpoint, training_state=state)
    )  # a valid digest: only structure speaks


def _resume(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
    return CliRunner().invoke(cli, ["train", str(run_dir / "config.yaml"), "--resume", str(run_dir)])


FORGERIES: dict[str, Callable[[dict[str, Any]], None]] = {
    "no progress record": lambda state: state.pop("state"),
    "epoch a string": lambda state: state.update(state={**state["state"], "epoch": "one"}),
    "negative iteration": lambda state: state.update(state={**state["state"], "iteration": -4}),
    "unknown progress field": lambda state: state.update(state={**state["state"], "evil": 1}),
    "metrics not numbers": lambda state: state.update(state={**state["state"], "metrics": {"a": "b"}}),
    "optimizer a list": lambda state: state.update(optimizer=[1]),
    "rng missing": lambda state: state.pop("rng"),
    "python rng of the wrong form": lambda state: state.update(
        rng={**state["rng"], "python": (3, (1, 2), None)}
    ),
    "torch rng not bytes": lambda state: state.update(rng={**state["rng"], "torch": torch.zeros(3)}),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_forged_training_state_is_refused_naming_the_file(
    forgery: str, finished_epoch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = _copy(finished_epoch, tmp_path / "run")
    _edit(run_dir / "last.pt", FORGERIES[forgery])
    result = _resume(run_dir, monkeypatch)
    assert result.exit_code == 1, result.output
    assert f"Checkpoint {run_dir / 'last.pt'} cannot be resumed: its training state" in result.output
    assert "Traceback" not in result.output and "bug" not in result.output


def test_resume_falls_back_past_a_forged_last_checkpoint(
    finished_epoch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = _copy(finished_epoch, tmp_path / "run")
    (run_dir / "last.prev.pt").write_bytes((run_dir / "last.pt").read_bytes())
    _edit(run_dir / "last.pt", FORGERIES["epoch a string"])
    result = _resume(run_dir, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "from " in result.output and "last.prev.pt" in result.output
    assert load_checkpoint(run_dir / "last.pt").training_state["state"]["epoch"] == 2


def test_an_optimizer_state_of_another_model_is_refused(
    finished_epoch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = _copy(finished_epoch, tmp_path / "run")

    def one_group_too_few(state: dict[str, Any]) -> None:
        optimizer = dict(state["optimizer"])
        optimizer["param_groups"] = optimizer["param_groups"][:1]
        state["optimizer"] = optimizer

    _edit(run_dir / "last.pt", one_group_too_few)
    result = _resume(run_dir, monkeypatch)
    assert result.exit_code == 1, result.output
    assert f"Checkpoint {run_dir / 'last.pt'} does not fit the run it is resumed into" in result.output
    assert "Traceback" not in result.output and "bug" not in result.output
