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


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1.0e+400", "-1e400"])
def test_non_finite_lr_is_refused_with_path_and_line(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"model:\n  name: yolox-nano\ntraining:\n  lr: {value}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message and "training.lr: expected a finite number" in message
    assert "(line 4)" in message
    with pytest.raises(ConfigError, match="training.lr: expected a finite number"):
        load_config(None, [f"training.lr={value}"])


def test_train_refuses_an_infinite_lr_before_training(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from yolox_sdk.cli.main import cli

    path = write(tmp_path, "model:\n  name: yolox-nano\ntraining:\n  lr: .inf\n  epochs: 1\n")
    result = CliRunner().invoke(cli, ["train", str(path), f"monitoring.output_dir={tmp_path / 'runs'}"])
    assert result.exit_code == 2, result.output
    assert "training.lr: expected a finite number" in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "override, fragment",
    [
        (
            "model.input_size=[320000,320000]",
            "model.input_size: expected [height, width], both positive multiples",
        ),
        ("model.input_size=[4128,4128]", "up to 4096"),
        ("model.input_size=[0,0]", "model.input_size"),
        ("model.depth=0", "model.depth: expected a number > 0.0"),
        ("model.width=1000", "model.width: expected a number > 0.0 and <= 4.0"),
        ("model.num_classes=0", "model.num_classes"),
        ("data.batch_size=0", "data.batch_size: expected a number >= 1"),
        ("data.batch_size=1000000000", "data.batch_size: expected a number >= 1 and <= 4096"),
        ("data.num_workers=-1", "data.num_workers"),
        ("data.num_workers=100000", "data.num_workers"),
        ("data.repeat_factor_threshold=.nan", "data.repeat_factor_threshold: expected a finite number"),
        ("training.lr=0", "training.lr: expected a number > 0.0"),
        ("training.lr=-0.01", "training.lr"),
        ("training.momentum=1", "training.momentum: expected a number >= 0.0 and < 1.0"),
        ("training.weight_decay=-1e-4", "training.weight_decay: expected a number >= 0.0"),
        ("training.epochs=100000000000", "training.epochs: expected a number >= 1 and <= 100000"),
        ("training.accumulate=0", "training.accumulate"),
        ("training.seed=-1", "training.seed: expected a number >= 0"),
        ("training.ema_decay=1", "training.ema_decay"),
        ("training.gradient_clip=.inf", "training.gradient_clip: expected a finite number"),
        ("training.multiscale_range=1000", "training.multiscale_range"),
        ("augmentation.scale=[0.1,1e300]", "augmentation.scale: expected [min, max]"),
        ("augmentation.mixup_scale=[.nan,1]", "augmentation.mixup_scale: expected a finite number"),
        ("augmentation.flip_prob=1.5", "augmentation.flip_prob"),
        ("evaluation.conf_threshold=.nan", "evaluation.conf_threshold: expected a finite number"),
        ("evaluation.nms_threshold=-.inf", "evaluation.nms_threshold"),
        ("evaluation.batch_size=0", "evaluation.batch_size"),
        ("device.gpu_ids=[-1]", "device.gpu_ids: expected a list of indices"),
        ("monitoring.save_every_minutes=.inf", "monitoring.save_every_minutes: expected a finite number"),
        ("monitoring.log_interval=0", "monitoring.log_interval"),
    ],
)
def test_numbers_out_of_range_are_refused(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert fragment in str(error.value)


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["training.optimizer=adam", "training.optimizer_options={eps: .inf}"], "optimizer_options.eps"),
        (["export.options.onnx={tolerance: .nan}"], "export.options.onnx.tolerance: expected a finite"),
        (["training.callbacks=[{name: early_stopping, min_delta: .inf}]"], "min_delta: expected a finite"),
        (["training.scheduler=multistep", "training.scheduler_options={milestones: [.nan]}"], "milestones"),
    ],
)
def test_plugin_options_refuse_non_finite_numbers(overrides: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert fragment in str(error.value)


def test_validators_refuse_non_finite_values_from_python() -> None:
    from yolox_sdk.config.schema import ModelConfig, TrainingConfig

    with pytest.raises(
        ValueError, match="lr: expected a number > 0.0 and <= 10.0, got inf. NaN and infinities"
    ):
        TrainingConfig(lr=float("inf"))
    with pytest.raises(ValueError, match="momentum"):
        TrainingConfig(momentum=float("nan"))
    with pytest.raises(ValueError, match="input_size"):
        ModelConfig(input_size=(float("inf"), 32))


def test_exponent_floats_are_read_as_numbers_in_files_and_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "training:\n  lr: 1e-4\n  weight_decay: 5E-4\n  warmup_lr: 1.0e-6\n")
    config = load_config(path, ["training.gradient_clip=1e+1", "training.min_lr_ratio=5e-2"])
    assert config.training.lr == pytest.approx(1e-4)
    assert config.training.weight_decay == pytest.approx(5e-4)
    assert config.training.warmup_lr == pytest.approx(1e-6)
    assert config.training.gradient_clip == 10.0
    assert config.training.min_lr_ratio == pytest.approx(0.05)
    assert parse_override("training.lr=1e-4") == (["training", "lr"], 1e-4)
    assert parse_override("x.y=-3E2")[1] == -300.0
    assert parse_override("x.y=1e5e")[1] == "1e5e"


def test_strings_that_look_like_exponent_floats_round_trip(tmp_path: Path) -> None:
    config = load_config(None, ["monitoring.run_name='1e5'", "training.lr=1e-9"])
    text = dump_config(config)
    assert "run_name: '1e5'" in text
    again = load_config(write(tmp_path, text))
    assert again.monitoring.run_name == "1e5"
    assert again == config


def test_export_option_accepts_an_exponent_float(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from yolox_sdk.cli.main import cli
    from yolox_sdk.config.plugin_options import resolve_options
    from yolox_sdk.engine import jobs
    from yolox_sdk.plugins import get_registry

    seen: dict = {}
    monkeypatch.setattr(
        jobs, "_export", lambda checkpoint, formats, options, *rest: seen.update(options) or []
    )
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not read: the export itself is replaced")
    image = tmp_path / "sample.jpg"
    image.write_bytes(b"")
    args = ["export", str(checkpoint), "--sample", str(image), "--option", "onnx.tolerance=1e-9"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert seen == {"onnx": {"tolerance": 1e-9}}
    options = resolve_options(get_registry(), "exporter", "onnx", seen["onnx"], "export.options.onnx")
    assert options.tolerance == 1e-9


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("export.formats=onnx", "export.formats: expected a list, got str 'onnx'"),
        ("monitoring.loggers=csv", "monitoring.loggers: expected a list, got str 'csv'"),
        ("model.freeze=backbone", "model.freeze: expected a list, got str 'backbone'"),
        ("augmentation.custom={name: flip}", "augmentation.custom: expected a list, got dict"),
        ("training.optimizer_options=[[nesterov, false]]", "training.optimizer_options: expected a mapping"),
        ("model.unfreeze_schedule=[3]", "model.unfreeze_schedule: expected a mapping"),
    ],
)
def test_a_scalar_is_not_split_into_a_list_nor_pairs_into_a_mapping(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert fragment in str(error.value)


def test_errors_quote_long_values_shortened(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, f"training:\n  epochs: {'x' * 100_000}\n"))
    message = str(error.value)
    assert "training.epochs: expected int, got str 'xxx" in message and "(100002 characters)" in message
    assert len(message) < 1000
    with pytest.raises(ConfigError) as error:
        load_config(None, [f"augmentation.custom=[{', '.join(['x'] * 500)}]"])
    message = str(error.value)
    assert "(500 problems)" in message and "... and 480 more like these" in message
    assert len(message) < 5000
