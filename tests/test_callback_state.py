"""Callback states travel in every checkpoint: a run stopped or killed and resumed gives what the
uninterrupted run gives, for early stopping, SWA and a third party's callback.

The kill is a ``BaseException`` raised right after ``last.pt`` of an epoch is written (``on_checkpoint``),
which leaves the run directory exactly as ``kill -9`` at that moment would; the real ``kill -9`` and
signal tests are in ``test_fault_tolerance.py``. Runs are tiny: yolox-nano at 160 px on 8 BCCD images,
one optimizer step per epoch, deterministic on CPU.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from yolox_sdk.checkpoints.format import load_checkpoint
from yolox_sdk.config.loader import load_config
from yolox_sdk.engine import setup
from yolox_sdk.engine.saved_state import checked_train_state
from yolox_sdk.engine.trainer import TrainResult, train
from yolox_sdk.engine.training_view import TrainingView
from yolox_sdk.errors import CheckpointError
from yolox_sdk.plugins.hookspecs import hookimpl
from yolox_sdk.plugins.interfaces import Callback
from yolox_sdk.plugins.manager import build_plugin_manager

# Early stopping that stops after exactly ``patience`` observations whatever the loss does: in "max" mode
# with a huge min_delta no observation after the first counts as an improvement.
NEVER_IMPROVES = "{name: early_stopping, metric: train/total_loss, mode: max, min_delta: 1000, patience: 2}"


class _Killed(BaseException):
    """Stands for kill -9: nothing after it runs, nothing is cleaned up by the trainer's own code."""


class _KillAfterLast(Callback):
    """Raises ``_Killed`` once ``last.pt`` of epoch ``epoch`` (1-based) is on disk."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_checkpoint(self, view: TrainingView, path: Path, kind: str) -> None:
        if kind == "last" and view.epoch == self.epoch:
            raise _Killed(path)


class _CountingCallback(Callback):
    """A third party's callback with its own state: a count, a list and a tensor."""

    def __init__(self) -> None:
        self.iterations = 0
        self.epochs: list[int] = []
        self.loss_sum = torch.zeros(())

    def on_iteration_end(self, view: TrainingView, iteration: int, losses: Mapping[str, float]) -> None:
        self.iterations += 1
        self.loss_sum = self.loss_sum + losses["total_loss"]

    def on_epoch_end(self, view: TrainingView, epoch: int, metrics: Mapping[str, float]) -> None:
        self.epochs.append(epoch + 1)

    def state_dict(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "epochs": list(self.epochs), "loss_sum": self.loss_sum.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iterations, self.epochs, self.loss_sum = (
            state["iterations"],
            list(state["epochs"]),
            state["loss_sum"],
        )


class _CountingPlugin:
    made: list[_CountingCallback] = []

    @hookimpl
    def register_callbacks(self, register) -> None:  # noqa: ANN001 - the hook's register function
        def build(options: Mapping[str, Any]) -> _CountingCallback:
            callback = _CountingCallback()
            type(self).made.append(callback)
            return callback

        register("counting", build)


def _bccd_subset(bccd_dir: Path, root: Path, size: int = 8) -> Path:
    root.mkdir()
    for folder in ("Annotations", "JPEGImages"):
        (root / folder).symlink_to(bccd_dir / folder, target_is_directory=True)
    splits = root / "ImageSets" / "Main"
    splits.mkdir(parents=True)
    ids = (bccd_dir / "ImageSets" / "Main" / "train.txt").read_text().split()[:size]
    (splits / "train.txt").write_text("\n".join(ids) + "\n")
    return root


def _overrides(data: Path, output_dir: Path, name: str, epochs: int, callbacks: str) -> list[str]:
    return [
        "model.name=yolox-nano",
        "model.input_size=[160,160]",
        f"data.train_path={data}",
        "data.train_split=train",
        "data.format=voc",
        "data.batch_size=8",
        "data.num_workers=0",
        "augmentation.mixup=false",
        f"training.epochs={epochs}",
        "training.warmup_epochs=0",
        "training.no_aug_epochs=1",
        "training.multiscale_range=0",
        "training.deterministic=true",
        f"training.callbacks=[{callbacks}]",
        "monitoring.progress_bar=false",
        "monitoring.tensorboard=false",
        f"monitoring.output_dir={output_dir}",
        f"monitoring.run_name={name}",
    ]


def _train_killed(config: Any, epoch: int, registry: Any = None) -> Path:
    """Train ``config`` until ``_Killed`` after ``last.pt`` of ``epoch``; return the run directory."""
    build_callbacks = setup.build_callbacks
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            setup, "build_callbacks", lambda *args: [*build_callbacks(*args), _KillAfterLast(epoch)]
        )
        with pytest.raises(_Killed) as killed:
            train(config, registry=registry)
    return Path(str(killed.value)).parent


def _resume(run_dir: Path, registry: Any = None) -> TrainResult:
    return train(
        load_config(run_dir / "config.yaml", registry=registry), resume_dir=run_dir, registry=registry
    )


def _epoch_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def tiny_bccd(bccd_dir: Path, tmp_path: Path) -> Path:
    return _bccd_subset(bccd_dir, tmp_path / "bccd")


@pytest.mark.slow
def test_early_stopping_killed_and_resumed_stops_at_the_same_epoch(tiny_bccd: Path, tmp_path: Path) -> None:
    """Uninterrupted, patience 2 stops after epoch 3. Killed after epoch 1 and resumed, the patience
    counter continues (not fresh: that trained to epoch 4); resumed again, a stopped run stays stopped."""
    runs = tmp_path / "runs"
    straight = train(load_config(None, _overrides(tiny_bccd, runs, "straight", 5, NEVER_IMPROVES)))
    assert straight.epochs_completed == 3

    run_dir = _train_killed(load_config(None, _overrides(tiny_bccd, runs, "killed", 5, NEVER_IMPROVES)), 1)
    saved = load_checkpoint(run_dir / "last.pt").training_state
    best = saved["state"]["metrics"]["train/total_loss"]
    assert saved["callbacks"]["early_stopping"] == {"best": pytest.approx(best), "stale": 0}
    resumed = _resume(run_dir)
    assert resumed.epochs_completed == 3 and len(_epoch_rows(run_dir)) == 3
    state = load_checkpoint(run_dir / "last.pt").training_state["state"]
    assert state["stopped_by"] == "early_stopping" and "not improved" in state["stop_reason"]

    again = _resume(run_dir)
    assert again.epochs_completed == 3 and len(_epoch_rows(run_dir)) == 3
    assert again.metrics["train/total_loss"] == pytest.approx(straight.metrics["train/total_loss"], abs=1e-6)


@pytest.mark.slow
def test_swa_killed_mid_window_and_resumed_equals_the_uninterrupted_average(
    tiny_bccd: Path, tmp_path: Path
) -> None:
    """The window is epochs 2-4; killed right after epoch 2 was averaged and saved, the resumed run's
    swa.pt equals the straight run's (the average came back from last.pt, not from epoch 3 on)."""
    runs = tmp_path / "runs"
    swa = "{name: swa, start_epoch: 2, swa_lr: 0.002, anneal_epochs: 1, bn_batches: 1}"
    straight = train(load_config(None, _overrides(tiny_bccd, runs, "straight", 4, swa)))
    run_dir = _train_killed(load_config(None, _overrides(tiny_bccd, runs, "killed", 4, swa)), 2)
    assert load_checkpoint(run_dir / "last.pt").training_state["callbacks"]["swa"]["epochs"] == [2]
    assert not (run_dir / "swa_state.pt").exists()
    resumed = _resume(run_dir)

    expected, got = load_checkpoint(straight.run_dir / "swa.pt"), load_checkpoint(resumed.run_dir / "swa.pt")
    assert got.training_state["swa"]["epochs"] == [2, 3, 4]
    for key, tensor in expected.model.items():
        torch.testing.assert_close(got.model[key], tensor, rtol=0, atol=1e-6, msg=key)


@pytest.mark.slow
def test_a_third_party_callback_state_round_trips_through_checkpoints(
    tiny_bccd: Path, tmp_path: Path
) -> None:
    _, registry = build_plugin_manager(extra_plugins=[("counting", _CountingPlugin())])
    runs = tmp_path / "runs"
    _CountingPlugin.made.clear()
    train(
        load_config(None, _overrides(tiny_bccd, runs, "straight", 3, "counting"), registry), registry=registry
    )
    straight = _CountingPlugin.made[-1]
    run_dir = _train_killed(
        load_config(None, _overrides(tiny_bccd, runs, "killed", 3, "counting"), registry), 1, registry
    )
    saved = load_checkpoint(run_dir / "last.pt").training_state["callbacks"]["counting"]
    assert saved["iterations"] == 1 and saved["epochs"] == [1] and isinstance(saved["loss_sum"], torch.Tensor)
    _resume(run_dir, registry)
    resumed = _CountingPlugin.made[-1]
    assert (resumed.iterations, resumed.epochs) == (straight.iterations, straight.epochs) == (3, [1, 2, 3])
    torch.testing.assert_close(resumed.loss_sum, straight.loss_sum)


def test_a_malformed_callback_state_is_refused_naming_the_file(tmp_path: Path) -> None:
    from yolox_sdk.engine.train_state import rng_state

    good = {"state": {"epoch": 1}, "optimizer": {"state": {}, "param_groups": []}, "rng": rng_state()}
    assert (
        checked_train_state(tmp_path / "last.pt", {**good, "callbacks": {"swa": {"epochs": []}}}).epoch == 1
    )
    for callbacks in ([1, 2], {"swa": [1]}, {3: {}}):
        with pytest.raises(CheckpointError, match=r"last.pt cannot be resumed: .*callback states"):
            checked_train_state(tmp_path / "last.pt", {**good, "callbacks": callbacks})
    with pytest.raises(CheckpointError, match="'stopped_by'"):
        checked_train_state(tmp_path / "last.pt", {**good, "state": {"epoch": 1, "stopped_by": 3}})


def test_the_view_is_read_only_and_should_stop_still_stops() -> None:
    from yolox_sdk.engine.training_view import CallbackRequests

    class _Trainer:
        requests = CallbackRequests()

    view = TrainingView(_Trainer())
    with pytest.raises(AttributeError, match="read-only .*request_stop"):
        view.epoch = 3  # type: ignore[misc]
    view._called_by("legacy")
    with pytest.warns(DeprecationWarning, match="request_stop"):
        view.should_stop = True
    assert _Trainer.requests.stop_by == "legacy"
