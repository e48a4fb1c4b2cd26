"""Config loading: YAML + overrides, strict types, clear errors naming the key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from yolox_sdk.cli.config_commands import default_config_text
from yolox_sdk.config.loader import apply_overrides, dump_config, load_config, parse_override
from yolox_sdk.config.schema import Config
from yolox_sdk.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_commented_default_equals_schema_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, default_config_text())
    assert load_config(path) == Config()


def test_plan_keys_and_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "model:\n  name: yolox-nano\ndata:\n  train_path: bccd\n  batch_size: 16\ntraining:\n  lr: 0.01\n",
    )
    config = load_config(path, ["training.lr=0.005", "data.batch_size=8", "model.input_size=[320,320]"])
    assert config.model.name == "yolox-nano"
    assert config.training.lr == 0.005
    assert config.data.batch_size == 8
    assert config.model.input_size == (320, 320)
    assert config.data.train_path == "bccd"


def test_round_trip_through_dump(tmp_path: Path) -> None:
    config = load_config(None, ["training.epochs=7", "augmentation.scale=[0.5,1.5]"])
    path = write(tmp_path, dump_config(config))
    assert load_config(path) == config


def test_unknown_key_suggests_and_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  name: yolox-nano\ntraining:\n  epochs: 3\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "training.learning_rate" in message
    assert str(path) in message
    assert "(line 5)" in message


def test_unknown_section_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'training'"):
        load_config(write(tmp_path, "trainig:\n  epochs: 3\n"))


def test_wrong_type_is_not_coerced(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "training:\n  epochs: ten\n"))
    assert "training.epochs: expected int, got str 'ten'" in str(error.value)
    with pytest.raises(ConfigError, match="training.ema: expected bool"):
        load_config(None, ["training.ema=maybe"])


def test_bad_values(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"model.input_size: expected \[height, width\], both positive multiples of 32"
    ):
        load_config(None, ["model.input_size=[416,400]"])
    with pytest.raises(ConfigError, match="training.momentum: expected a number >= 0.0 and < 1.0, got 1.5"):
        load_config(None, ["training.momentum=1.5"])
    with pytest.raises(ConfigError, match="Did you mean 'yolox-nano'"):
        load_config(None, ["model.name=yolox-nana"])
    with pytest.raises(ConfigError, match=r"augmentation.scale: expected \[min, max\]"):
        load_config(None, ["augmentation.scale=[2.0,1.0]"])


def test_several_problems_reported_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(
            write(
                tmp_path, "training:\n  epochs: 0\nmodel:\n  input_size: [10, 10]\ndata:\n  batch_size: x\n"
            )
        )
    assert "3 problems" in str(error.value)
    for key in ("training.epochs", "model.input_size", "data.batch_size"):
        assert key in str(error.value)


@pytest.mark.parametrize("text", ["training.lr", "=3", "training..lr=1", "training lr=1", "1abc=2"])
def test_bad_override_syntax(text: str) -> None:
    with pytest.raises(ConfigError, match="Bad override"):
        parse_override(text)


def test_override_into_a_value_is_refused() -> None:
    with pytest.raises(ConfigError, match="'training.lr' is a value"):
        apply_overrides({"training": {"lr": 0.1}}, ["training.lr.x=1"])


def test_malformed_yaml_names_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid YAML at line 4, column \d+"):
        load_config(write(tmp_path, "model:\n  name: yolox-s\n  bad: [1, 2\n  other: 3\n"))


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config init"):
        load_config(tmp_path / "nope.yaml")


def test_plugin_names_and_options_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="training.optimizer: Unknown optimizer 'sgdd'. Did you mean 'sgd'"):
        load_config(None, ["training.optimizer=sgdd"])
    with pytest.raises(ConfigError, match="training.optimizer_options.nesterov: expected bool"):
        load_config(None, ["training.optimizer_options={nesterov: 3}"])
    with pytest.raises(
        ConfigError, match="unknown key 'training.optimizer_options.nestrov'. Did you mean 'nesterov'"
    ):
        load_config(None, ["training.optimizer_options={nestrov: true}"])


def test_wandb_without_plugin_says_how_to_install() -> None:
    from yolox_sdk.plugins import get_registry

    if "wandb" in get_registry().names("logger"):
        pytest.skip("the W&B plugin is installed in this environment")
    with pytest.raises(ConfigError, match="pip install ./plugins/yolox-sdk-wandb"):
        load_config(None, ["monitoring.wandb.enabled=true"])
