"""``training.recipe``: the finetune defaults fill only what a config leaves unset, and say so."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from yolox_sdk.cli.config_commands import default_config_text
from yolox_sdk.config.loader import dump_config, load_config
from yolox_sdk.config.recipes import apply_recipe, recipe_summary
from yolox_sdk.config.schema import Config
from yolox_sdk.errors import ConfigError


def test_a_short_budget_gets_the_finetune_recipe_and_the_summary_says_what_it_set(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="yolox_sdk.config.recipes"):
        config = load_config(None, ["training.epochs=10"])
    assert config.training.recipe == "auto"
    assert (config.training.warmup_epochs, config.training.no_aug_epochs) == (1, 2)
    assert config.model.unfreeze_schedule == {} and config.model.freeze == []  # freezing was tried, dropped
    assert "training.recipe finetune filled training.warmup_epochs=1, training.no_aug_epochs=2" in caplog.text
    assert recipe_summary(config) == (
        "training.recipe finetune (10 epochs <= 50): warm-up 1 epochs, the last 2 without mosaic; keys set in "
        "the config win over the recipe, and training.recipe: yolox keeps YOLOX's own defaults."
    )
    assert recipe_summary(load_config(None, ["training.epochs=10", "training.recipe=yolox"])) is None
    long = load_config(None, ["training.epochs=51"])
    assert (long.training.warmup_epochs, long.training.no_aug_epochs) == (5, 15)
    assert load_config(None) == Config()  # 300 epochs: YOLOX's own defaults, as the schema has them


def test_keys_the_user_set_win_and_yolox_turns_the_recipe_off() -> None:
    mine = load_config(None, ["training.epochs=20", "training.warmup_epochs=3"])
    assert mine.training.warmup_epochs == 3 and mine.training.no_aug_epochs == 4
    off = load_config(None, ["training.epochs=20", "training.recipe=yolox"])
    assert (off.training.warmup_epochs, off.training.no_aug_epochs) == (5, 15)
    forced = load_config(None, ["training.epochs=100", "training.recipe=finetune"])
    assert (forced.training.warmup_epochs, forced.training.no_aug_epochs) == (1, 20)


def test_a_config_init_file_with_a_short_budget_gets_the_recipe(tmp_path: Path) -> None:
    """``config init`` leaves the recipe's keys commented out, so editing only ``epochs`` in it is the
    same as writing nothing else."""
    text = default_config_text().replace("  epochs: 300\n", "  epochs: 10\n", 1)
    assert "  epochs: 10\n" in text
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path) == load_config(None, ["training.epochs=10"])


def test_the_saved_run_config_reloads_to_the_same_run(tmp_path: Path) -> None:
    config = load_config(None, ["training.epochs=12", "model.name=yolox-nano"])
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config), encoding="utf-8")
    assert load_config(path) == config


@pytest.mark.parametrize(
    ("value", "hint"), [("finetun", "Did you mean 'finetune'"), ("fast", "auto, finetune, yolox")]
)
def test_unknown_recipes_are_refused_with_the_choices(value: str, hint: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(None, ["training.epochs=10", f"training.recipe={value}"])
    assert "training.recipe" in str(raised.value) and hint in str(raised.value)


@pytest.mark.parametrize("epochs", [0, -1, -(10**300), 10**300, "ten", True])
def test_bad_epochs_get_no_recipe_and_the_schema_error(epochs: object) -> None:
    data = {"training": {"epochs": epochs}}
    assert apply_recipe(data) == {"training": {"epochs": epochs}}
    with pytest.raises(ConfigError) as raised:
        load_config(None, [f"training.epochs={epochs}"])
    assert "training.epochs" in str(raised.value) and "recipe" not in str(raised.value)
