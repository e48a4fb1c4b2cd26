"""The ``swa`` callback: the average, its resumable state, the SWA learning rate, BatchNorm recomputation,
and a real BCCD finetune that writes ``swa.pt``.

Expected values come from independent paths: the mean of weight snapshots taken by the test, torch's own
``SWALR`` for the annealed learning rate, and BatchNorm inputs captured with forward hooks.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import SWALR

from yolox_sdk.builtin.callbacks.swa import (
    SWA_STATE,
    SwaCallback,
    SwaOptions,
    SwaSchedule,
    default_start_epoch,
)
from yolox_sdk.checkpoints.format import load_checkpoint
from yolox_sdk.config.loader import load_config
from yolox_sdk.data.eval_dataset import make_eval_loader
from yolox_sdk.data.training_data import load_split
from yolox_sdk.engine.averaging import new_average, recompute_batchnorm
from yolox_sdk.engine.trainer import train
from yolox_sdk.errors import ConfigError
from yolox_sdk.models import create_model, model_from_checkpoint

SIZE = (160, 160)


def _stand_in_view(model: nn.Module, run_dir: Path, epochs: int, done: int) -> SimpleNamespace:
    """What the callback reads from its training view before train end: model, run dir, progress."""
    return SimpleNamespace(model=model, run_dir=run_dir, epochs=epochs, epoch=done, is_main=True)


def _train_an_epoch(model: nn.Module, epoch: int) -> dict[str, torch.Tensor]:
    """Move every parameter as an optimizer would (seeded), and return a copy of the parameters."""
    generator = torch.Generator().manual_seed(epoch)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _assert_average_of(averaged: nn.Module, snapshots: list[dict[str, torch.Tensor]]) -> None:
    for name, parameter in averaged.named_parameters():
        expected = torch.stack([snapshot[name] for snapshot in snapshots]).mean(dim=0)
        torch.testing.assert_close(parameter.detach(), expected, rtol=1e-5, atol=1e-6)


def test_average_is_the_mean_of_the_window_snapshots_and_survives_a_resume(tmp_path: Path) -> None:
    model, _, _ = create_model("yolox-nano", num_classes=3, input_size=SIZE)
    view = _stand_in_view(model, tmp_path, epochs=4, done=0)
    swa = SwaCallback(SwaOptions(start_epoch=2))
    swa.on_train_start(view)
    snapshots = []
    for epoch in range(3):  # epochs 1-3 (1-based); the window starts at 2
        snapshot = _train_an_epoch(model, epoch)
        if epoch + 1 >= 2:
            snapshots.append(snapshot)
        swa.on_epoch_end(view, epoch, {})
    assert swa.epochs == [2, 3] and int(swa.averaged.n_averaged) == 2
    _assert_average_of(swa.averaged.module, snapshots)
    assert not (tmp_path / SWA_STATE).exists()  # the average travels in the checkpoints now

    # A resumed run (3 epochs done) gets the state back through a checkpoint-safe file and keeps averaging.
    torch.save(swa.state_dict(), tmp_path / "state.pt")
    resumed = SwaCallback(SwaOptions(start_epoch=2))
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    resumed.on_train_start(_stand_in_view(model, tmp_path, epochs=4, done=3))
    _assert_average_of(resumed.averaged.module, snapshots)
    snapshots.append(_train_an_epoch(model, 3))
    resumed.on_epoch_end(view, 3, {})
    assert resumed.epochs == [2, 3, 4] and int(resumed.averaged.n_averaged) == 3
    _assert_average_of(resumed.averaged.module, snapshots)


def test_a_run_started_before_callback_states_reads_its_swa_state_file(tmp_path: Path) -> None:
    """Older runs kept the average in swa_state.pt: a checkpoint without SWA state falls back to it,
    unless it holds epochs the run has rolled back (--from-best)."""
    model, _, _ = create_model("yolox-nano", num_classes=3, input_size=SIZE)
    _train_an_epoch(model, 0)
    average, snapshots = new_average(model), []
    for epoch in (1, 2):  # what the older callback averaged: epochs 2 and 3
        snapshots.append(_train_an_epoch(model, epoch))
        average.update_parameters(model)
    torch.save({"averaged": average.state_dict(), "epochs": [2, 3]}, tmp_path / SWA_STATE)

    resumed = SwaCallback(SwaOptions(start_epoch=2))
    resumed.on_train_start(_stand_in_view(model, tmp_path, epochs=4, done=3))
    assert resumed.epochs == [2, 3]
    _assert_average_of(resumed.averaged.module, snapshots)

    rolled_back = SwaCallback(SwaOptions(start_epoch=2))
    rolled_back.on_train_start(_stand_in_view(model, tmp_path, epochs=4, done=2))
    assert rolled_back.averaged is None and rolled_back.epochs == []


def test_the_average_of_a_sync_batchnorm_model_has_plain_batchnorm() -> None:
    """Multi-process runs convert BatchNorm to SyncBatchNorm; the average (first process only) must not."""
    model, _, _ = create_model("yolox-nano", num_classes=3, input_size=SIZE)
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    averaged = new_average(synced)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in averaged.module.modules())
    assert list(averaged.module.state_dict()) == list(synced.state_dict())
    snapshot = _train_an_epoch(synced, 0)
    averaged.update_parameters(synced)
    _assert_average_of(averaged.module, [snapshot])


def test_default_window_and_a_start_after_the_last_epoch() -> None:
    assert [default_start_epoch(epochs) for epochs in (1, 3, 4, 10, 300)] == [1, 3, 4, 8, 226]
    swa = SwaCallback(SwaOptions(start_epoch=6))
    with pytest.raises(ConfigError, match=r"start_epoch is 6 but training.epochs is 5"):
        swa.on_train_start(_stand_in_view(nn.Linear(1, 1), Path("unused"), epochs=5, done=0))


@pytest.mark.parametrize("strategy", ["cos", "linear"])
def test_swa_learning_rate_follows_torch_swalr(strategy: str) -> None:
    """One iteration per epoch makes our per-iteration schedule comparable with SWALR's per-epoch steps."""
    base = SimpleNamespace(lr_at=lambda iteration: 0.1 / (1 + iteration))
    schedule = SwaSchedule(base, start_iteration=3, anneal_iterations=4, swa_lr=0.002, strategy=strategy)
    assert [schedule.lr_at(i) for i in range(3)] == [base.lr_at(i) for i in range(3)]
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base.lr_at(3))
    reference = SWALR(optimizer, swa_lr=0.002, anneal_epochs=4, anneal_strategy=strategy)
    for step in range(7):
        assert schedule.lr_at(3 + step) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9)
        optimizer.step()
        reference.step()
    assert schedule.lr_at(100) == pytest.approx(0.002)


def test_option_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"training.callbacks\[0\].swa_lr: expected a number > 0"):
        load_config(None, ["training.callbacks=[{name: swa, swa_lr: 0}]"])
    with pytest.raises(ConfigError, match=r"training.callbacks\[1\].anneal_strategy: expected one of cos"):
        load_config(None, ["training.callbacks=[early_stopping, {name: swa, anneal_strategy: cosine}]"])
    with pytest.raises(ConfigError, match=r"unknown key 'training.callbacks\[0\].start'.*start_epoch"):
        load_config(None, ["training.callbacks=[{name: swa, start: 3}]"])


def _capture_inputs(layer: nn.Module, sink: list[torch.Tensor]):
    return layer.register_forward_hook(lambda module, inputs, output: sink.append(inputs[0].detach().clone()))


def _channel_statistics(batches: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cumulative BatchNorm statistics: the mean over batches of each batch's mean and unbiased variance."""
    means = torch.stack([batch.mean(dim=(0, 2, 3)) for batch in batches]).mean(dim=0)
    variances = torch.stack([batch.var(dim=(0, 2, 3), unbiased=True) for batch in batches]).mean(dim=0)
    return means, variances


def test_batchnorm_recomputation_matches_the_statistics_of_the_data(bccd_dir: Path) -> None:
    config = load_config(None, ["data.val_path=bccd", "data.val_split=test"])
    images = [batch for batch, _, _ in make_eval_loader(load_split(config, "val"), SIZE, batch_size=4)][:2]
    model, _, _ = create_model("yolox-nano", num_classes=3, pretrained=True, input_size=SIZE)
    stem_bn = model.backbone.backbone.stem.conv.bn
    head_bn = model.head.cls_convs[0][0].dconv.bn
    kept_bn = model.backbone.backbone.dark2[0].dconv.bn
    kept_before = kept_bn.running_mean.clone()
    head_before = head_bn.running_mean.clone()

    stem_inputs: list[torch.Tensor] = []
    model.eval()
    handle = _capture_inputs(stem_bn, stem_inputs)  # the stem's BN input does not depend on any BN state
    with torch.no_grad():
        for batch in images:
            model(batch)
    handle.remove()
    head_inputs: list[torch.Tensor] = []
    handle = _capture_inputs(head_bn, head_inputs)
    model.train()
    seen = recompute_batchnorm(model, images, keep={"backbone.backbone.dark2.0.dconv.bn"})
    handle.remove()

    assert seen == 2 and model.training and stem_bn.momentum == 0.03
    for layer, inputs in ((stem_bn, stem_inputs), (head_bn, head_inputs)):
        mean, variance = _channel_statistics(inputs)
        torch.testing.assert_close(layer.running_mean, mean, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(layer.running_var, variance, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(head_bn.running_mean, head_before)
    assert torch.equal(kept_bn.running_mean, kept_before)


def _metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _bccd_subset(bccd_dir: Path, root: Path, sizes: dict[str, int]) -> Path:
    """A Pascal VOC view of the real BCCD images and labels with short splits: the first ``sizes[split]``
    images of each BCCD split (training 2 steps an epoch keeps the slow test lean)."""
    root.mkdir()
    for folder in ("Annotations", "JPEGImages"):
        (root / folder).symlink_to(bccd_dir / folder, target_is_directory=True)
    splits = root / "ImageSets" / "Main"
    splits.mkdir(parents=True)
    for split, size in sizes.items():
        ids = (bccd_dir / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:size]
        (splits / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


@pytest.mark.slow
def test_bccd_finetune_writes_an_evaluated_swa_checkpoint(tmp_path: Path, bccd_dir: Path) -> None:
    data = _bccd_subset(bccd_dir, tmp_path / "bccd", {"train": 16, "test": 16})
    overrides = [
        "model.name=yolox-nano",
        f"model.input_size=[{SIZE[0]},{SIZE[1]}]",
        f"data.train_path={data}",
        "data.train_split=train",
        f"data.val_path={data}",
        "data.val_split=test",
        "data.format=voc",
        "data.batch_size=8",
        "augmentation.mixup=false",
        "training.epochs=2",
        "training.warmup_epochs=0",
        "training.no_aug_epochs=1",
        "training.multiscale_range=0",
        "training.callbacks=[{name: swa, start_epoch: 1, swa_lr: 0.002, anneal_epochs: 0, bn_batches: 1}]",
        "monitoring.progress_bar=false",
        "monitoring.tensorboard=false",
        f"monitoring.output_dir={tmp_path / 'runs'}",
    ]
    result = train(load_config(None, overrides))
    run_dir = result.run_dir

    checkpoint = load_checkpoint(run_dir / "swa.pt")
    assert checkpoint.ema is None and checkpoint.spec.input_size == SIZE
    last = load_checkpoint(result.last_checkpoint)
    assert checkpoint.class_names == last.class_names
    assert any(not torch.equal(checkpoint.model[key], last.model[key]) for key in last.model)

    last_row = _metrics_rows(run_dir)[-1]
    assert last_row["epoch"] == "2" and float(last_row["lr"]) == pytest.approx(0.002)
    assert float(last_row["val/swa_mAP50"]) == pytest.approx(result.metrics["val/swa_mAP50"])
    summary = json.loads((run_dir / "swa.json").read_text())
    assert summary["epochs_averaged"] == [1, 2] and summary["batchnorm_batches"] == 1
    assert summary["metrics"]["mAP50"] == pytest.approx(result.metrics["val/swa_mAP50"])

    # swa.pt is an ordinary checkpoint: evaluated again from the file, it scores what was logged.
    from yolox_sdk.evaluation.coco_eval import evaluate

    val = load_split(load_config(None, overrides), "val")
    again = evaluate(model_from_checkpoint(checkpoint), val, SIZE, batch_size=8).metrics
    assert again["mAP50"] == pytest.approx(result.metrics["val/swa_mAP50"], abs=1e-6)
    print("swa metrics", summary["metrics"], summary["comparison"])
