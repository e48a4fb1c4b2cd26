"""Real finetuning on BCCD: accuracy rises, runs resume exactly, `yolox-sdk run` produces every artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from yolox_sdk.checkpoints.format import load_checkpoint
from yolox_sdk.cli.main import cli
from yolox_sdk.config.loader import load_config
from yolox_sdk.data.training_data import align_classes, load_split
from yolox_sdk.engine.trainer import train
from yolox_sdk.evaluation.coco_eval import evaluate
from yolox_sdk.models import create_model
from yolox_sdk.plugins import build_plugin_manager, hookimpl
from yolox_sdk.plugins.interfaces import Callback

pytestmark = pytest.mark.slow


def bccd_overrides(tmp_path: Path, *extra: str) -> list[str]:
    """A small but real finetune: yolox-nano, COCO weights, BCCD train -> val at 320 px."""
    return [
        "model.name=yolox-nano",
        "model.input_size=[320,320]",
        "data.train_path=bccd",
        "data.train_split=train",
        "data.val_path=bccd",
        "data.val_split=val",
        "data.batch_size=8",
        "augmentation.mosaic_prob=0.5",
        "augmentation.mixup=false",
        "augmentation.scale=[0.5,1.5]",
        "training.warmup_epochs=1",
        "training.multiscale_range=2",
        "training.channels_last=true",
        "monitoring.progress_bar=false",
        "monitoring.tensorboard=true",
        f"monitoring.output_dir={tmp_path / 'runs'}",
        *extra,
    ]


def test_finetune_raises_map_above_the_untrained_head(tmp_path: Path) -> None:
    config = load_config(
        None,
        bccd_overrides(
            tmp_path, "training.epochs=4", "training.no_aug_epochs=1", "evaluation.eval_interval=4"
        ),
    )
    val = load_split(config, "val")
    untrained, spec, _ = create_model("yolox-nano", num_classes=3, pretrained=True, input_size=(320, 320))
    before = evaluate(untrained.eval(), val, spec.input_size, batch_size=8).metrics
    result = train(config)
    after = evaluate(
        __import__("yolox_sdk").model_from_checkpoint(load_checkpoint(result.best_checkpoint)),
        align_classes(val, load_checkpoint(result.best_checkpoint).class_names),
        (320, 320),
        batch_size=8,
    ).metrics
    assert after["mAP50"] > before["mAP50"] + 0.2, (before, after)
    assert after["mAP"] > before["mAP"] + 0.1, (before, after)
    assert result.metrics["val/mAP"] == pytest.approx(after["mAP"], abs=1e-6)
    assert result.train_images_per_second > 0
    csv_text = (result.run_dir / "metrics.csv").read_text()
    assert csv_text.splitlines()[0].startswith("epoch,") and len(csv_text.splitlines()) == 5
    assert list((result.run_dir / "tensorboard").glob("events.out.tfevents.*"))


class _StopAfterFirstEpoch(Callback):
    def on_epoch_end(self, view, epoch, metrics) -> None:
        view.request_stop("the test stops after one epoch")


class _StopPlugin:
    @hookimpl
    def register_callbacks(self, register) -> None:
        register("stop_after_first_epoch", lambda options: _StopAfterFirstEpoch())


def test_resume_continues_exactly(tmp_path: Path) -> None:
    _, registry = build_plugin_manager(extra_plugins=[("stop", _StopPlugin())])
    common = bccd_overrides(
        tmp_path,
        "training.epochs=2",
        "training.no_aug_epochs=1",
        "data.train_split=val",
        "data.val_split=test",
        "training.deterministic=true",
    )
    straight = train(
        load_config(None, [*common, "monitoring.run_name=straight"], registry), registry=registry
    )
    stopped = train(
        load_config(
            None,
            [*common, "monitoring.run_name=stopped", "training.callbacks=[stop_after_first_epoch]"],
            registry,
        ),
        registry=registry,
    )
    assert stopped.epochs_completed == 1
    interrupted_config = load_config(stopped.run_dir / "config.yaml", registry=registry)
    # A stopped run stays stopped while the callback that stopped it is configured; without it (the
    # run's config edited) it trains on.
    saved_config = (stopped.run_dir / "config.yaml").read_text()
    assert "callbacks: [stop_after_first_epoch]" in saved_config
    (stopped.run_dir / "config.yaml").write_text(saved_config.replace("[stop_after_first_epoch]", "[]"))
    assert interrupted_config.training.callbacks
    resumed = train(
        load_config(stopped.run_dir / "config.yaml", registry=registry),
        resume_dir=stopped.run_dir,
        registry=registry,
    )
    assert resumed.epochs_completed == 2 and resumed.run_dir == stopped.run_dir
    a, b = load_checkpoint(straight.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    for key, tensor in a.model.items():
        assert torch.allclose(tensor.float(), b.model[key].float(), atol=1e-5), key
    assert resumed.metrics["val/mAP"] == pytest.approx(straight.metrics["val/mAP"], abs=1e-4)


def test_cli_run_trains_evaluates_and_exports(tmp_path: Path) -> None:
    overrides = bccd_overrides(
        tmp_path,
        "training.epochs=1",
        "training.no_aug_epochs=0",
        "data.train_split=val",
        "data.val_split=test",
        "monitoring.run_name=cli",
        "model.input_size=[256,256]",
    )
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    result = CliRunner().invoke(cli, ["run", str(config), *overrides])
    assert result.exit_code == 0, result.output
    assert "mAP50" in result.output and "RBC" in result.output
    run_dir = tmp_path / "runs" / "cli"
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.csv", "eval_val.json", "export/best.onnx"):
        assert (run_dir / name).exists(), name
    evaluated = CliRunner().invoke(
        cli,
        [
            "eval",
            str(run_dir / "best.pt"),
            "--data",
            "bccd",
            "--split",
            "test",
            "--out",
            str(tmp_path / "e.json"),
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert (
        "Platelets" in evaluated.output
        and json.loads((tmp_path / "e.json").read_text())["metrics"]["mAP50"] >= 0
    )
    predicted = CliRunner().invoke(
        cli, ["predict", str(run_dir / "best.pt"), str(run_dir.parent), "--out", str(tmp_path / "pred")]
    )
    assert predicted.exit_code != 0 and "no images" in predicted.output.lower()
    image = sorted(
        (
            Path(__file__).resolve().parents[2]
            / "shared"
            / "assets"
            / "datasets"
            / "bccd"
            / "BCCD"
            / "JPEGImages"
        ).glob("*.jpg")
    )[0]
    predicted = CliRunner().invoke(
        cli, ["predict", str(run_dir / "best.pt"), str(image), "--out", str(tmp_path / "pred")]
    )
    assert predicted.exit_code == 0, predicted.output
    assert (tmp_path / "pred" / "detections.json").exists() and (tmp_path / "pred" / image.name).exists()
    again = CliRunner().invoke(cli, ["train", str(config), *overrides])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "runs" / "cli-2" / "last.pt").exists()
    assert (run_dir / "last.pt").stat().st_mtime < (tmp_path / "runs" / "cli-2" / "last.pt").stat().st_mtime


def test_without_validation_data_best_follows_last(tmp_path: Path) -> None:
    overrides = bccd_overrides(
        tmp_path,
        "training.epochs=2",
        "training.no_aug_epochs=0",
        "data.train_split=test",
        "data.val_path=null",
        "model.input_size=[160,160]",
        "monitoring.run_name=noval",
    )
    result = train(load_config(None, overrides))
    assert result.best_checkpoint == result.run_dir / "best.pt"
    best, last = load_checkpoint(result.best_checkpoint), load_checkpoint(result.last_checkpoint)
    assert best.training_state["state"]["epoch"] == last.training_state["state"]["epoch"] == 2


class _CountingSgdPlugin:
    """An optimizer plugin registered in code that counts optimizer steps."""

    steps = 0

    @hookimpl
    def register_optimizers(self, register) -> None:
        from yolox_sdk.builtin.optimizers.sgd import SgdOptions, build_sgd

        def build(options, model, training):
            optimizer = build_sgd(SgdOptions(), model, training)
            original = optimizer.step

            def counted_step(*args, **kwargs):
                _CountingSgdPlugin.steps += 1
                return original(*args, **kwargs)

            optimizer.step = counted_step
            return optimizer

        register("counting_sgd", build)


def test_gradient_accumulation_steps_every_n_batches(tmp_path: Path) -> None:
    _, registry = build_plugin_manager(extra_plugins=[("counting", _CountingSgdPlugin())])
    overrides = bccd_overrides(
        tmp_path,
        "training.epochs=1",
        "training.no_aug_epochs=0",
        "data.train_split=test",
        "data.val_path=null",
        "model.input_size=[160,160]",
        "data.batch_size=4",
        "training.accumulate=3",
        "training.optimizer=counting_sgd",
    )
    config = load_config(None, overrides, registry)
    from yolox_sdk.engine.setup import base_learning_rate

    assert base_learning_rate(config) == pytest.approx(0.01 * 12 / 64)
    _CountingSgdPlugin.steps = 0
    result = train(config, registry=registry)
    batches = 72 // 4  # the test split, partial batch dropped
    assert result.epochs_completed == 1
    assert _CountingSgdPlugin.steps == batches // 3  # 18 batches -> 6 steps, the last at the epoch's end


def test_from_best_rolls_back_and_continues(tmp_path: Path) -> None:
    import shutil

    overrides = bccd_overrides(
        tmp_path,
        "training.epochs=2",
        "training.no_aug_epochs=0",
        "data.train_split=test",
        "data.val_split=test",
        "model.input_size=[160,160]",
        "monitoring.run_name=rollback",
        "monitoring.save_interval=1",
        "evaluation.eval_interval=1",
    )
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    assert CliRunner().invoke(cli, ["train", str(config), *overrides]).exit_code == 0
    run_dir = tmp_path / "runs" / "rollback"
    shutil.copyfile(run_dir / "epoch_1.pt", run_dir / "best.pt")  # pretend epoch 1 was the best
    both = CliRunner().invoke(
        cli, ["train", str(config), "--resume", str(run_dir), "--from-best", str(run_dir)]
    )
    assert both.exit_code == 2
    rolled = CliRunner().invoke(cli, ["train", str(config), "--from-best", str(run_dir), *overrides])
    assert rolled.exit_code == 0, rolled.output
    assert "from best.pt at epoch 1" in rolled.output
    assert load_checkpoint(run_dir / "last.pt").training_state["state"]["epoch"] == 2
