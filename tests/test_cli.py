"""The command line: help, exit codes, clear errors without tracebacks, config and plugin commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from yolox_sdk.cli.main import cli


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_help_lists_every_command() -> None:
    code, output = invoke("--help")
    assert code == 0
    for command in ("run", "train", "eval", "predict", "export", "plugins", "config", "data"):
        assert command in output
    for command in ("run", "train", "eval", "predict", "export", "plugins", "config", "data"):
        assert invoke(command, "--help")[0] == 0


def test_console_script_runs_as_a_process() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "yolox_sdk.cli.main", "--version"], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0 and "yolox-sdk" in completed.stdout


def test_plugins_lists_builtins_with_distribution() -> None:
    code, output = invoke("plugins")
    assert code == 0
    assert "optimizers:" in output and "sgd" in output and "yolox-sdk 0.1.0" in output
    assert "yolox_cosine" in output and "tensorboard" in output


def test_config_init_then_show_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    assert invoke("config", "init", str(path))[0] == 0
    assert "# yolox-sdk configuration" in path.read_text()
    code, output = invoke("config", "init", str(path))
    assert code == 2 and "already exists" in output
    code, output = invoke("config", "show", str(path), "training.epochs=12", "model.name=yolox-nano")
    assert code == 0
    shown = yaml.safe_load(output)
    assert shown["training"]["epochs"] == 12 and shown["model"]["name"] == "yolox-nano"


def test_config_error_exit_code_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("training:\n  epocs: 3\n")
    code, output = invoke("config", "show", str(path))
    assert code == 2
    assert "Did you mean 'epochs'" in output and "(line 2)" in output
    assert "Traceback" not in output


def test_verbose_shows_traceback(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("training:\n  epocs: 3\n")
    result = subprocess.run(
        [sys.executable, "-m", "yolox_sdk.cli.main", "--verbose", "config", "show", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_bad_override_is_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("{}\n")
    code, output = invoke("config", "show", str(path), "training.lr")
    assert code == 2 and "Bad override 'training.lr'" in output


def test_data_commands_fail_clearly_on_a_missing_dataset() -> None:
    for name in ("validate", "stats", "split"):
        code, output = invoke("data", name, "no-such-dataset-here")
        assert code == 2 and output.startswith("Error: ") and "Traceback" not in output
    code, output = invoke("data", "convert", "no-such-dataset-here", "out")
    assert code == 2 and "--to" in output


def test_runtime_error_exit_code_1(tmp_path: Path) -> None:
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"not a checkpoint")
    code, output = invoke("eval", str(bogus), "--data", "bccd", "--split", "val")
    assert code == 1 and "Cannot read checkpoint" in output and "Traceback" not in output


def test_number_options_refuse_nan_and_infinity(tmp_path: Path) -> None:
    """``--conf nan`` passed click's FloatRange (NaN compares false with both bounds) and reached the model."""
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"")
    folder = tmp_path / "images"
    folder.mkdir()
    for arguments in (
        ["predict", str(weights), str(folder), "--conf", "nan"],
        ["predict", str(weights), str(folder), "--nms", "inf"],
        ["eval", str(weights), "--data", str(folder), "--conf", "-inf"],
        ["data", "split", str(folder), "--val", "nan"],
        ["data", "split", str(folder), "--seed", "-1"],
    ):
        code, output = invoke(*arguments)
        assert code == 2, output
        assert "Invalid value" in output and "Traceback" not in output
