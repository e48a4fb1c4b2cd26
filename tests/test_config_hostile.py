"""Hostile configs: alias bombs, absurd nesting, huge files, non-finite and out-of-range numbers.

Every case ends in a one-paragraph error naming the file (exit 2), quickly, never in a hang, a traceback or
the CLI's "This is a bug" catch-all. Cases that hung before the safe YAML reader run in a subprocess with a
timeout and a memory cap, so a regression fails the test instead of stalling the suite.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from yolox_sdk.cli.main import cli
from yolox_sdk.config.loader import load_config, parse_override
from yolox_sdk.errors import ConfigError

HANG_TIMEOUT_S = 60  # a bomb took minutes and gigabytes before; refused now in well under a second
MEMORY_CAP_BYTES = 4 * 1024**3
DEEP = 100_000


def dict_bomb(levels: int = 20) -> str:
    """About 2 KB that expand to 9**19 mappings: every level aliases the previous one nine times."""
    lines = ["data:", "  format_options:", "    a0: &a0 {x: 1, y: 2}"]
    for level in range(1, levels):
        refs = ", ".join(f"k{index}: *a{level - 1}" for index in range(9))
        lines.append(f"    a{level}: &a{level} {{{refs}}}")
    return "\n".join(lines) + "\n"


def list_bomb(levels: int = 20) -> str:
    """The list form ("billion laughs"): about 1 KB expanding to 9**20 strings."""
    lines = ["data:", "  format_options:", "    l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        lines.append(f"    l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def flow_list_bomb(levels: int = 12) -> str:
    """A bomb in one flow value, as an override or ``--option`` value would carry it."""
    items = ["&l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    items += [f"&l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]" for level in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))


def run_cli_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``yolox-sdk ARGS`` in a child process that cannot hang the suite or take the machine's memory."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "yolox_sdk", *args],
            capture_output=True,
            text=True,
            timeout=HANG_TIMEOUT_S,
            preexec_fn=_cap_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"yolox-sdk {' '.join(args)[:80]} still ran after {HANG_TIMEOUT_S} s: the YAML was expanded"
        )


def assert_clean_refusal(result: subprocess.CompletedProcess[str] | object, *fragments: str) -> str:
    """Exit 2, one error paragraph holding ``fragments``, no traceback, no catch-all."""
    exit_code = getattr(result, "returncode", getattr(result, "exit_code", None))
    output = getattr(result, "stderr", None) or getattr(result, "output", "")
    assert exit_code == 2, output[-2000:]
    assert "Traceback" not in output
    assert "This is a bug" not in output and "Unexpected error" not in output
    for fragment in fragments:
        assert fragment in output, output[-2000:]
    return output


@pytest.mark.parametrize("bomb", [dict_bomb, list_bomb], ids=["dict-aliases", "list-aliases"])
def test_alias_bomb_file_is_refused_by_config_show(tmp_path: Path, bomb) -> None:
    path = write(tmp_path, bomb())
    assert path.stat().st_size < 2048
    result = run_cli_process("config", "show", str(path))
    assert_clean_refusal(result, str(path), "is refused at line", "aliases expand to more than")


def test_alias_bomb_is_refused_by_train(tmp_path: Path) -> None:
    path = write(tmp_path, dict_bomb())
    result = run_cli_process("train", str(path))
    assert_clean_refusal(result, str(path), "aliases expand to more than")


def test_alias_bomb_in_an_override_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  name: yolox-nano\n")
    result = run_cli_process("config", "show", str(path), f"data.format_options={{x: {flow_list_bomb()}}}")
    assert_clean_refusal(result, "Bad override", "aliases expand to more than")


def test_endless_file_is_refused_without_reading_it_all() -> None:
    result = run_cli_process("config", "show", "/dev/zero")
    assert_clean_refusal(result, "/dev/zero", "larger than")


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 2, column \d+: the alias \*loop refers to a collection"):
        load_config(write(tmp_path, "data:\n  format_options: &loop {again: *loop}\n"))


def test_anchors_reused_a_few_times_still_work(tmp_path: Path) -> None:
    text = (
        "augmentation:\n  scale: &range [0.5, 1.5]\n  mixup_scale: *range\n"
        "export:\n  formats: [onnx]\n  options:\n    onnx: &onnx {opset: 17, dynamic_batch: true}\n"
        "data:\n  format_options: {shared: *onnx, merged: {<<: *onnx, opset: 18}}\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.augmentation.scale == config.augmentation.mixup_scale == (0.5, 1.5)
    assert config.data.format_options["merged"] == {"opset": 18, "dynamic_batch": True}


@pytest.mark.parametrize(
    "text",
    ["training: " + "[" * DEEP + "]" * DEEP, "training: " + "{a: " * DEEP + "1" + "}" * DEEP],
    ids=["lists", "mappings"],
)
def test_deep_nesting_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text + "\n")
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["config", "show", str(path)])
    assert time.monotonic() - started < HANG_TIMEOUT_S
    assert_clean_refusal(result, str(path), "line 1", "nests deeper than 50 levels")


def test_deep_nesting_in_an_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="Bad override 'training.lr=.*nests deeper than"):
        parse_override("training.lr=" + "[" * DEEP + "]" * DEEP)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("training:\n  lr: 2024-13-45\n", "cannot read the value '2024-13-45'"),
        ("training:\n  epochs: " + "9" * 5000 + "\n", "Exceeds the limit (4300 digits)"),
        ("training:\n  lr: !!float fast\n", "cannot read the value 'fast'"),
        ("training:\n  lr: !!python/object/apply:os.system [echo]\n", "could not determine a constructor"),
    ],
    ids=["bad-date", "5000-digit-int", "bad-float-tag", "python-tag"],
)
def test_values_yaml_cannot_build_name_their_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    result = CliRunner().invoke(cli, ["config", "show", str(path)])
    assert_clean_refusal(result, str(path), "line 2", fragment)


def test_non_utf8_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"training:\n  lr: \xff\xfe\n")
    result = CliRunner().invoke(cli, ["config", "show", str(path)])
    assert_clean_refusal(result, str(path), "not UTF-8")


@pytest.mark.parametrize(
    "extra, fragment",
    [
        ("extra: " + "[" * DEEP + "]" * DEEP, "nests deeper than 50 levels"),
        (dict_bomb().replace("data:\n  format_options:\n", "extra:\n"), "aliases expand to more than"),
    ],
    ids=["deep", "alias-bomb"],
)
def test_hostile_yolo_data_yaml_is_a_dataset_error(
    coco8_dir: Path, tmp_path: Path, extra: str, fragment: str
) -> None:
    dataset = tmp_path / "coco8"
    dataset.mkdir()
    for name in ("images", "labels"):
        (dataset / name).symlink_to(coco8_dir / name)
    data_yaml = dataset / "data.yaml"
    data_yaml.write_text(
        (coco8_dir / "data.yaml").read_text(encoding="utf-8") + extra + "\n", encoding="utf-8"
    )
    result = CliRunner().invoke(cli, ["data", "info", str(dataset)])
    assert result.exit_code == 2, result.output
    assert f"{data_yaml}:" in result.output and fragment in result.output
    assert "This is a bug" not in result.output and "Traceback" not in result.output


def test_hostile_run_config_is_a_run_directory_error(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name in ("a", "b"):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.yaml").write_text(
            "training: " + "{a: " * DEEP + "1" + "}" * DEEP, encoding="utf-8"
        )
    result = CliRunner().invoke(cli, ["runs", "compare", str(runs / "a"), str(runs / "b")])
    assert_clean_refusal(result, str(runs / "a" / "config.yaml"), "nests deeper than 50 levels")


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("[" * DEEP + "]" * DEEP, "nests deeper than 50 levels"),
        (flow_list_bomb(), "aliases expand to more than"),
    ],
    ids=["deep", "alias-bomb"],
)
def test_hostile_export_option_values_are_refused(tmp_path: Path, value: str, fragment: str) -> None:
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"never read: the option is refused first")
    result = CliRunner().invoke(cli, ["export", str(checkpoint), "--option", f"onnx.tolerance={value}"])
    assert_clean_refusal(result, "Bad --option 'onnx.tolerance=", fragment)


def test_yolo_data_yaml_keeps_pyyaml_strings(coco8_dir: Path, tmp_path: Path) -> None:
    """A class named ``1e5`` in a PyYAML-written data.yaml stays a name, while configs read 1e5 as a float."""
    dataset = tmp_path / "coco8"
    dataset.mkdir()
    for name in ("images", "labels"):
        (dataset / name).symlink_to(coco8_dir / name)
    text = (coco8_dir / "data.yaml").read_text(encoding="utf-8").replace(": person\n", ": 1e5\n", 1)
    (dataset / "data.yaml").write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["data", "info", str(dataset)])
    assert result.exit_code == 0, result.output
    assert " 1e5 " in result.output and "100000.0" not in result.output
