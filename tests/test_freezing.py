"""Freezing: which parameters train each epoch, frozen BatchNorm statistics, errors, and a real finetune.

Expected parameter counts are summed straight from ``named_parameters`` by name prefix, not through the
freezing module's own grouping.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
import torch
from test_training import bccd_overrides

from yolox_sdk.checkpoints.format import load_checkpoint
from yolox_sdk.config.loader import load_config
from yolox_sdk.engine.freezing import apply_freezing, count_trainable_parameters, plan_freezing
from yolox_sdk.engine.trainer import train
from yolox_sdk.errors import ConfigError
from yolox_sdk.models import create_model

PREFIXES = {"backbone": "backbone.backbone.", "head": "head."}


def nano() -> torch.nn.Module:
    model, _, _ = create_model("yolox-nano", num_classes=3, pretrained=False, input_size=(160, 160))
    return model


def count(model: torch.nn.Module, group: str) -> int:
    """Parameters of one group, summed by name prefix (the neck is ``backbone.`` minus the backbone)."""
    names = dict(model.named_parameters())
    if group == "neck":
        return sum(
            p.numel()
            for n, p in names.items()
            if n.startswith("backbone.") and not n.startswith("backbone.backbone.")
        )
    return sum(p.numel() for n, p in names.items() if n.startswith(PREFIXES[group]))


def model_config(*overrides: str):
    return load_config(None, ["model.name=yolox-nano", *overrides]).model


def trainable_per_epoch(model: torch.nn.Module, config, epochs: int) -> list[int]:
    plan = plan_freezing(config, model, epochs)
    result = []
    for epoch in range(1, epochs + 1):
        apply_freezing(model, plan, epoch)
        result.append(count_trainable_parameters(model))
    return result


def test_progressive_unfreezing_follows_the_schedule() -> None:
    model = nano()
    config = model_config("model.unfreeze_schedule={2: [neck], 4: [backbone]}")
    head, neck, backbone = count(model, "head"), count(model, "neck"), count(model, "backbone")
    assert trainable_per_epoch(model, config, 5) == [
        head,
        head + neck,
        head + neck,
        head + neck + backbone,
        head + neck + backbone,
    ]
    assert all(p.requires_grad for p in model.parameters())


def test_pattern_unfrozen_before_its_group_trains_first() -> None:
    model = nano()
    config = model_config(
        "model.freeze=[head.cls_preds.*]",
        "model.unfreeze_schedule={2: [backbone.backbone.dark5], 3: [backbone]}",
    )
    names = dict(model.named_parameters())
    dark5 = sum(p.numel() for n, p in names.items() if n.startswith("backbone.backbone.dark5."))
    cls_preds = sum(p.numel() for n, p in names.items() if n.startswith("head.cls_preds."))
    rest = count(model, "head") + count(model, "neck") - cls_preds
    assert dark5 > 0 and cls_preds > 0
    assert trainable_per_epoch(model, config, 3) == [rest, rest + dark5, rest + count(model, "backbone")]
    assert not names["head.cls_preds.0.weight"].requires_grad
    assert names["backbone.backbone.dark2.0.dconv.conv.weight"].requires_grad


def test_freeze_backbone_and_freeze_until_epoch_keep_their_meaning() -> None:
    model = nano()
    total, backbone = count_trainable_parameters(model), count(model, "backbone")
    until_two = model_config("model.freeze_backbone=true", "model.freeze_until_epoch=2")
    assert trainable_per_epoch(model, until_two, 4) == [total - backbone, total - backbone, total, total]
    always = model_config("model.freeze_backbone=true")
    assert trainable_per_epoch(nano(), always, 3) == [total - backbone] * 3


def batchnorm_means(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: m.running_mean.clone()
        for name, m in module.named_modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    }


def forward_backbone_and_neck(model: torch.nn.Module) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        model.backbone(torch.rand(2, 3, 64, 64) * 255)


def test_frozen_batchnorm_keeps_its_statistics_in_a_train_mode_forward() -> None:
    model = nano()
    apply_freezing(model, plan_freezing(model_config("model.freeze=[backbone]"), model), 1)
    assert model.training and model.head.training  # the head needs train mode to compute its loss
    before = batchnorm_means(model)
    forward_backbone_and_neck(model)
    after = batchnorm_means(model)
    backbone = [n for n in before if n.startswith("backbone.backbone.")]
    neck = [n for n in before if n.startswith("backbone.") and n not in backbone]
    assert backbone and neck
    assert all(torch.equal(before[n], after[n]) for n in backbone)
    assert all(not torch.equal(before[n], after[n]) for n in neck)


def test_freeze_bn_keeps_every_batchnorm_statistic_but_trains_the_weights() -> None:
    model = nano()
    apply_freezing(model, plan_freezing(model_config("model.freeze_bn=true"), model), 1)
    before = batchnorm_means(model)
    forward_backbone_and_neck(model)
    after = batchnorm_means(model)
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert count_trainable_parameters(model) == sum(p.numel() for p in model.parameters())


def test_a_pattern_that_matches_nothing_names_the_key_and_the_modules() -> None:
    config = model_config("model.unfreeze_schedule={3: [backbone.dark5]}")
    with pytest.raises(ConfigError) as error:
        plan_freezing(config, nano())
    message = str(error.value)
    assert "model.unfreeze_schedule.3" in message and "'backbone.dark5'" in message
    assert "backbone.backbone.{stem, dark2, dark3, dark4, dark5}" in message


@pytest.mark.parametrize(
    ("overrides", "until"),
    [
        (["model.freeze=[backbone, neck, head]"], "in any epoch"),
        (["model.freeze=['*']", "model.unfreeze_schedule={3: [head]}"], "until epoch 3"),
    ],
)
def test_freezing_every_parameter_is_a_config_error_not_a_failed_backward(
    overrides: list[str], until: str
) -> None:
    with pytest.raises(ConfigError, match=f"nothing would train {until}"):
        plan_freezing(model_config(*overrides), nano())


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.freeze=[bakbone]", "Did you mean 'backbone'?"),
        ("model.unfreeze_schedule={1: [neck]}", "Epoch 1 is not after the first epoch"),
        ("model.unfreeze_schedule={3: []}", "Epoch 3 has an empty list"),
    ],
)
def test_config_load_rejects_bad_freeze_settings(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match="model\\.(freeze|unfreeze_schedule)") as error:
        load_config(None, [override])
    assert expected in str(error.value)


def test_the_log_says_what_trains_when_it_changes(caplog: pytest.LogCaptureFixture) -> None:
    model = nano()
    plan = plan_freezing(model_config("model.unfreeze_schedule={2: [backbone]}"), model)
    total, backbone = count_trainable_parameters(model), count(model, "backbone")
    with caplog.at_level(logging.INFO, logger="yolox_sdk.engine.freezing"):
        for epoch in (1, 2, 3):
            apply_freezing(model, plan, epoch)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        f"Epoch 1: training head, neck ({total - backbone:,} of {total:,} parameters); frozen: backbone",
        f"Epoch 2: training head, neck, backbone ({total:,} of {total:,} parameters); frozen: nothing",
    ]


def small_bccd(bccd_dir: Path, dest: Path, count: int = 16) -> Path:
    """A VOC dataset of the first ``count`` BCCD test images (links to the real files), split ``train``."""
    stems = (bccd_dir / "ImageSets" / "Main" / "test.txt").read_text().split()[:count]
    for folder, suffix in (("Annotations", ".xml"), ("JPEGImages", ".jpg")):
        (dest / folder).mkdir(parents=True)
        for stem in stems:
            (dest / folder / f"{stem}{suffix}").symlink_to(bccd_dir / folder / f"{stem}{suffix}")
    (dest / "ImageSets" / "Main").mkdir(parents=True)
    (dest / "ImageSets" / "Main" / "train.txt").write_text("".join(f"{stem}\n" for stem in stems))
    return dest


@pytest.mark.slow
def test_finetune_keeps_frozen_weights_bit_identical(tmp_path: Path, bccd_dir: Path) -> None:
    config = load_config(
        None,
        bccd_overrides(
            tmp_path,
            "model.input_size=[224,224]",
            f"data.train_path={small_bccd(bccd_dir, tmp_path / 'bccd16')}",
            "data.format=voc",
            "data.val_path=null",
            "training.epochs=2",
            "training.warmup_epochs=0",
            "training.no_aug_epochs=0",
            "monitoring.save_interval=1",
            "monitoring.tensorboard=false",
            "model.freeze=[backbone]",
            "model.unfreeze_schedule={2: [neck]}",
        ),
    )
    pretrained, _, _ = create_model("yolox-nano", num_classes=3, pretrained=True, input_size=(224, 224))
    initial = pretrained.state_dict()
    result = train(config)
    after_first = load_checkpoint(result.run_dir / "epoch_1.pt").model
    final = load_checkpoint(result.last_checkpoint).model

    def same(state: dict[str, torch.Tensor], prefix: str, exclude: str = "\0") -> bool:
        keys = [k for k in initial if k.startswith(prefix) and not k.startswith(exclude)]
        assert keys
        return all(torch.equal(state[k].cpu(), initial[k]) for k in keys)

    assert same(final, "backbone.backbone.")  # weights and BatchNorm statistics
    assert same(after_first, "backbone.", exclude="backbone.backbone.")  # neck frozen in epoch 1
    assert not same(final, "backbone.", exclude="backbone.backbone.")  # ... and trained in epoch 2
    assert not same(after_first, "head.stems.")
    with open(result.run_dir / "metrics.csv", newline="") as handle:
        trainable = [int(row["trainable_params"]) for row in csv.DictReader(handle)]
    head, neck = count(pretrained, "head"), count(pretrained, "neck")
    assert trainable == [head, head + neck]
