"""``yolox-sdk config wizard``: the proposal rules, and the real command driven through a terminal.

The command runs as a subprocess of the installed console script: through a pty with ``pexpect`` (keys
typed as a user would, ``questionary`` drawing its prompts), and with ``--yes``. Every written file is
loaded and validated with the SDK's own loader. The speed probe runs once for real, at 160 px
(``YOLOX_SDK_WIZARD_PROBE_SIZE``) and one timed step; the other runs skip it (``--probe-steps 0``).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pexpect
import pytest
import yaml

from yolox_sdk.config import wizard
from yolox_sdk.config.loader import load_config
from yolox_sdk.data.training_data import load_training_data

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("YOLOX_SDK_ASSETS", ROOT.parent / "shared" / "assets"))
BCCD = ASSETS / "datasets" / "bccd" / "BCCD"
COCO8 = ASSETS / "datasets" / "coco8"
COMMAND = str(ROOT / ".venv" / "bin" / "yolox-sdk")
DOWN, ENTER, CTRL_C = "\x1b[B", "\r", "\x03"

pytestmark = pytest.mark.skipif(not BCCD.is_dir(), reason="needs the BCCD mirror ($YOLOX_SDK_ASSETS)")


def environment(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "YOLOX_SDK_ASSETS": str(ASSETS),
        "PROMPT_TOOLKIT_NO_CPR": "1",  # no cursor-position request for pexpect to answer
        "TERM": "xterm",
        "NO_COLOR": "1",
        **extra,
    }


def run_yes(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, "config", "wizard", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment(),
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def spawn(*args: str, cwd: Path, **env: str) -> pexpect.spawn:
    child = pexpect.spawn(
        COMMAND,
        ["config", "wizard", *args],
        cwd=str(cwd),
        env=environment(**env),
        encoding="utf-8",
        timeout=90,
        dimensions=(50, 220),
    )
    return child


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0)


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "Unexpected error" not in text, text


def mixed_folder(tmp_path: Path) -> Path:
    """BCCD's VOC folders and coco8's YOLO files side by side (links: nothing is copied)."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("Annotations", "ImageSets", "JPEGImages"):
        (folder / name).symlink_to(BCCD / name)
    for name in ("data.yaml", "images", "labels"):
        (folder / name).symlink_to(COCO8 / name)
    return folder


def unlabelled_folder(tmp_path: Path) -> Path:
    """coco8's images in YOLO layout with every label file empty: images, but not one box."""
    folder = tmp_path / "unlabelled"
    shutil.copytree(COCO8 / "images", folder / "images")
    for image in (folder / "images").rglob("*.jpg"):
        label = folder / "labels" / image.parent.name / f"{image.stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("", encoding="utf-8")
    (folder / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames: {0: person}\n", encoding="utf-8"
    )
    return folder


# ------------------------------------------------------------------------------- proposal rules


def facts(
    train: int = 205, val: int = 87, long_side: int = 640, box_side: float = 100.0
) -> wizard.DatasetFacts:
    return wizard.DatasetFacts(
        path="/data/set",
        format="voc",
        formats=("voc",),
        class_names=("a", "b"),
        images=train + val,
        boxes=10 * (train + val),
        labelled_images=train + val,
        splits={"train": train, "val": val},
        median_long_side=long_side,
        median_box_side=box_side,
    )


CPU = wizard.DeviceChoice("cpu", "cpu (2 cores)", None, 2)
BIG_GPU = wizard.DeviceChoice("cuda:0", "cuda:0 (H200, 139 GiB)", 139.0, 16)
SMALL_GPU = wizard.DeviceChoice("cuda:1", "cuda:1 (laptop, 4 GiB)", 4.0, 8)


def test_model_follows_device_and_training_set_size() -> None:
    assert wizard.propose_model(facts(50_000), CPU).value == "yolox-nano"
    assert wizard.propose_model(facts(205), BIG_GPU).value == "yolox-s"
    assert wizard.propose_model(facts(5_000), BIG_GPU).value == "yolox-m"
    assert wizard.propose_model(facts(50_000), BIG_GPU).value == "yolox-l"
    small = wizard.propose_model(facts(5_000), SMALL_GPU)
    assert small.value == "yolox-s" and "4 GiB" in small.reason


def test_input_size_follows_images_and_objects() -> None:
    assert wizard.propose_input_size(facts(), "yolox-nano").value == 416
    assert wizard.propose_input_size(facts(), "yolox-s").value == 640
    assert wizard.propose_input_size(facts(long_side=300), "yolox-s").value == 320  # no upscaling
    small_objects = wizard.propose_input_size(facts(long_side=1280, box_side=30), "yolox-nano")
    assert small_objects.value == 640 and "small objects" in small_objects.reason  # 30 px -> 10 px at 416
    large = wizard.propose_input_size(facts(long_side=4000, box_side=40), "yolox-m")
    assert large.value == wizard.MAX_INPUT_SIZE


def test_batch_size_follows_device_memory_and_data() -> None:
    assert wizard.propose_batch_size(facts(), CPU, "yolox-nano", 416).value == 8
    assert wizard.propose_batch_size(facts(), BIG_GPU, "yolox-s", 640).value == 64
    small = wizard.propose_batch_size(facts(), SMALL_GPU, "yolox-s", 640).value
    assert 1 <= small < 64 and small & (small - 1) == 0  # a power of two that fits in 4 GiB
    tiny_set = wizard.propose_batch_size(facts(train=4), BIG_GPU, "yolox-s", 640)
    assert tiny_set.value == 2 and "half" in tiny_set.reason


def test_epochs_aim_at_a_number_of_images_seen_within_bounds() -> None:
    assert wizard.propose_epochs(facts(205)).value == 50
    assert wizard.propose_epochs(facts(4)).value == wizard.MAX_EPOCHS
    assert wizard.propose_epochs(facts(100_000)).value == wizard.MIN_EPOCHS
    assert wizard.propose_eval_interval(50).value == 5 and wizard.propose_eval_interval(3).value == 1


def test_budget_arithmetic_and_step_down() -> None:
    data = facts(train=200, val=100)
    seconds = wizard.estimate_seconds(data, 10.0, 20, 2)
    assert seconds == pytest.approx(20 * 20 + 10 * 100 / 30)
    assert wizard.epochs_in_budget(data, 10.0, seconds, 2) == 20
    assert wizard.epochs_in_budget(data, 10.0, seconds - 1, 2) == 19
    assert [wizard.budget_text(s) for s in (90, 1200, 5400, 3600)] == ["1m30s", "20m", "1h30m", "1h"]
    assert [wizard.default_budget(s) for s in (10, 200, 1000, 5000, 20000)] == [
        "1m",
        "4m",
        "20m",
        "1h30m",
        "6h",
    ]
    chain, setting = [], ("yolox-m", 640)
    while setting is not None:
        chain.append(setting)
        setting = wizard.smaller_setting(*setting)
    assert chain == [
        ("yolox-m", 640),
        ("yolox-s", 640),
        ("yolox-tiny", 416),
        ("yolox-nano", 416),
        ("yolox-nano", 320),
    ]
    assert wizard.relative_cost("yolox-s", 640) > wizard.relative_cost("yolox-nano", 416) * 20
    # yolox-m at 1 img/s: 1 epoch in 5 minutes; yolox-s (2.75x cheaper by compute) 3, yolox-tiny 15
    assert wizard.fitting_setting(data, "yolox-m", 640, 1.0, 300 * 5, 2) is None
    assert wizard.fitting_setting(data, "yolox-m", 640, 1.0, 300, 2) == ("yolox-tiny", 416)
    assert wizard.fitting_setting(data, "yolox-nano", 416, 0.01, 300, 2) == ("yolox-nano", 320)  # the last


def test_a_short_budget_steps_down_and_measures_the_new_setting() -> None:
    from yolox_sdk.cli.wizard_commands import Session, budget_choice

    speeds = {("yolox-s", 640): 2.0, ("yolox-tiny", 416): 20.0}  # images/s the fake probe "measures"
    measured = []

    class FakeProbe(Session):
        def measure(self, facts: Any, device: Any, proposal: Any) -> wizard.SpeedMeasurement:
            key = (proposal.model.value, proposal.input_size.value)
            measured.append(key)
            return wizard.SpeedMeasurement(speeds[key], *key, proposal.batch_size.value, 8, key[1], 2, 1.0)

    data = facts(train=200, val=100)
    session = FakeProbe(Path("unused.yaml"), True, False, 2)
    proposal = wizard.propose(data, BIG_GPU)
    assert (proposal.model.value, proposal.input_size.value) == ("yolox-s", 640)
    speed = session.measure(data, BIG_GPU, proposal)
    stepped, speed = session.fit_budget(data, BIG_GPU, proposal, speed, 300.0)  # 2 epochs of yolox-s
    assert measured == [("yolox-s", 640), ("yolox-tiny", 416)]  # nano was not needed: tiny fits
    assert stepped.model.value == "yolox-tiny" and "time budget" in stepped.model.reason
    budget = budget_choice(data, stepped, speed, "5m", 300.0)
    assert budget.time_budget == "5m" and budget.expected_epochs == 29  # 200/20 s + evaluations each


@pytest.mark.parametrize(
    "text", ["yes", "null", "a: b", "#not a comment", "with space/x", "ünï", "1e3", "[x]"]
)
def test_yaml_scalars_read_back_as_written(text: str) -> None:
    assert yaml.safe_load(f"key: {wizard.yaml_scalar(text)}  # comment") == {"key": text}


def test_inspect_reads_bccd_like_data_info() -> None:
    found = wizard.inspect_dataset(str(BCCD))
    assert found.format == "voc" and found.class_names == ("Platelets", "RBC", "WBC")
    assert (found.images, found.boxes, found.splits) == (364, 4886, {"train": 205, "val": 87, "test": 72})
    assert found.notes == ("2 x zero-area box dropped",)
    assert wizard.summary_line(found).startswith(
        "VOC, 3 classes, 364 images (train 205, val 87, test 72), 4,886 boxes"
    )


def test_rendered_config_loads_and_says_why(tmp_path: Path) -> None:
    found = wizard.inspect_dataset(str(BCCD))
    proposal = wizard.propose(found, CPU)
    budget = wizard.Budget(time_budget="20m", reason="about 12 epochs")
    text = wizard.render_config(
        found, CPU, proposal, budget, None, "the time budget", tmp_path / "c.yaml", "run"
    )
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    config = load_config(tmp_path / "c.yaml")
    assert config.training.time_budget == "20m" and "epochs:" not in text
    assert config.model.name == "yolox-nano" and config.data.train_split == "train"
    body = [
        line
        for line in text.splitlines()
        if line.strip() and not line.startswith("#") and not line.endswith(":")
    ]
    commented = {"train_path", "val_path", "test_path", "run_name"}
    assert all("#" in line for line in body if line.split(":")[0].strip() not in commented), text


# ------------------------------------------------------------------------------ the real command


def test_yes_writes_a_config_from_the_dataset(tmp_path: Path) -> None:
    result = run_yes("bccd.yaml", "--yes", "--data", str(BCCD), "--probe-steps", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "VOC, 3 classes, 364 images" in result.stdout and "yolox-sdk run bccd.yaml" in result.stdout
    text = (tmp_path / "bccd.yaml").read_text(encoding="utf-8")
    config = load_config(tmp_path / "bccd.yaml")
    assert "classes: Platelets, RBC, WBC" in text and "2 x zero-area box dropped" in text
    assert (config.data.format, config.data.train_split, config.data.val_split) == ("voc", "train", "val")
    assert config.data.train_path == str(BCCD.resolve()) and config.device.type == "cpu"
    assert (config.model.name, config.model.input_size, config.data.batch_size) == (
        "yolox-nano",
        (416, 416),
        8,
    )
    assert config.training.epochs == 50 and config.training.time_budget is None
    assert config.evaluation.eval_interval == 5
    train, val = load_training_data(config)  # the paths and splits read as training reads them
    assert (len(train), len(val), train.class_names) == (205, 87, ("Platelets", "RBC", "WBC"))


def test_yes_with_a_time_budget_on_coco8(tmp_path: Path) -> None:
    result = run_yes(
        "c.yaml", "-y", "--data", str(COCO8), "--time-budget", "1h30m", "--probe-steps", "0", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    config = load_config(tmp_path / "c.yaml")
    text = (tmp_path / "c.yaml").read_text(encoding="utf-8")
    assert config.training.time_budget == "1h30m" and "  epochs:" not in text
    assert config.data.format == "yolo" and config.data.batch_size == 2  # half of coco8's 4 training images
    assert "80 classes" in text and "person, bicycle, car" in text


def test_interactive_run_through_a_terminal(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    child = spawn("wizard.yaml", "--probe-steps", "0", cwd=tmp_path)
    child.expect("Dataset folder")
    child.send(f"{empty}{ENTER}")
    child.expect("is an empty folder")
    child.expect("Dataset folder")  # asked again
    child.send(f"{BCCD}{ENTER}")
    child.expect("VOC, 3 classes, 364 images")
    child.expect("How long should training run")
    child.send(DOWN + ENTER)  # another number of epochs
    child.expect("Epochs:")
    child.send("\b\b12" + ENTER)
    child.expect("Write this config to wizard.yaml")
    child.send(DOWN + ENTER)  # change the model, input size or batch size
    child.expect("Model variant")
    child.send(ENTER)
    child.expect("Input size")
    child.send("\b\b\b320" + ENTER)
    child.expect("Batch size")
    child.send(ENTER)
    child.expect("Write this config to wizard.yaml")
    child.send(ENTER)
    child.expect("yolox-sdk run wizard.yaml")
    assert finish(child) == 0
    config = load_config(tmp_path / "wizard.yaml")
    assert config.training.epochs == 12 and config.model.input_size == (320, 320)
    assert config.evaluation.eval_interval == 1
    assert "320]  " in (tmp_path / "wizard.yaml").read_text(encoding="utf-8")  # with its reason


@pytest.mark.slow  # two real probes (416 and 320 px), 20-60 s on the shared 2-core machine
def test_a_budget_under_one_epoch_is_asked_again(tmp_path: Path) -> None:
    args = ("short.yaml", "--data", str(BCCD), "--time-budget", "1s", "--probe-steps", "1")
    child = spawn(*args, cwd=tmp_path, **{wizard.PROBE_SIZE_ENV: "160"})
    child.logfile_read = transcript = io.StringIO()
    child.expect("yolox-nano at 416 px")
    child.expect("trying yolox-nano at 320 px")  # the budget holds no epoch: the input size steps down
    child.expect("shorter than one epoch at the measured speed")
    child.expect(r"Time budget \(one epoch of yolox-nano at 320 px takes")
    child.send("\b" * 10 + "1h" + ENTER)  # enough for the proposal at its own size again
    child.expect("Write this config")
    child.send(ENTER)
    assert finish(child) == 0
    config = load_config(tmp_path / "short.yaml")
    assert config.training.time_budget == "1h"
    assert transcript.getvalue().count("Measuring training speed") == 2  # each setting measured once


@pytest.mark.slow  # about 25 s on the loaded 2-core machine: the probe builds and steps a real run
def test_interactive_time_budget_with_a_real_speed_probe(tmp_path: Path) -> None:
    child = spawn(
        "budget.yaml",
        "--data",
        str(COCO8),
        "--probe-steps",
        "1",
        cwd=tmp_path,
        **{wizard.PROBE_SIZE_ENV: "160"},
    )
    child.expect("Measuring training speed: yolox-nano at 416 px")
    child.expect(r"images/s \(\d training steps? of 2 images")
    child.expect("How long should training run")
    child.send(DOWN + DOWN + ENTER)
    child.expect("Time budget:")
    child.send("\b" * 10 + "45m" + ENTER)
    child.expect("Write this config")
    child.send(ENTER)
    assert finish(child) == 0
    config = load_config(tmp_path / "budget.yaml")
    text = (tmp_path / "budget.yaml").read_text(encoding="utf-8")
    assert config.training.time_budget == "45m"
    assert "measured on this machine" in text and "at the measured speed" in text


def test_mixed_formats_are_named_and_chosen(tmp_path: Path) -> None:
    folder = mixed_folder(tmp_path)
    child = spawn("mixed.yaml", "--data", str(folder), "--probe-steps", "0", "--epochs", "10", cwd=tmp_path)
    child.expect("several dataset formats: voc, yolo")
    child.expect("Which format")
    child.send(DOWN + ENTER)
    child.expect("YOLO, 80 classes")
    child.expect("Write this config")
    child.send(ENTER)
    assert finish(child) == 0
    config = load_config(tmp_path / "mixed.yaml")
    assert config.data.format == "yolo" and config.training.epochs == 10
    result = run_yes("voc.yaml", "--yes", "--data", str(folder), "--probe-steps", "0", cwd=tmp_path)
    assert (
        result.returncode == 0 and "several dataset formats (voc, yolo); reading it as voc" in result.stdout
    )
    assert load_config(tmp_path / "voc.yaml").data.format == "voc"


def test_ctrl_c_half_way_writes_nothing(tmp_path: Path) -> None:
    child = spawn("never.yaml", "--data", str(BCCD), "--probe-steps", "0", cwd=tmp_path)
    child.expect("How long should training run")
    child.send(CTRL_C)
    child.expect("Cancelled: nothing was written")
    assert finish(child) == 130
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one
    child = spawn("never.yaml", "--data", str(COCO8), cwd=tmp_path, **{wizard.PROBE_SIZE_ENV: "160"})
    child.expect("Measuring training speed")  # interrupted while the probe builds or steps its run
    child.send(CTRL_C)
    child.expect("Cancelled: nothing was written")
    assert finish(child) == 130
    assert list(tmp_path.iterdir()) == []


def test_datasets_without_labelled_images_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, message in ((empty, "empty folder"), (unlabelled_folder(tmp_path), "no labelled image")):
        result = run_yes("x.yaml", "--yes", "--data", str(folder), "--probe-steps", "0", cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        no_traceback(result.stderr)
        assert not (tmp_path / "x.yaml").exists()


def test_unwritable_output_is_refused_before_any_question(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    for out, message in ((blocker / "c.yaml", "is a file, not a folder"), (Path("/proc/c.yaml"), "/proc")):
        result = run_yes(str(out), "--yes", "--data", str(BCCD), "--probe-steps", "0", cwd=tmp_path)
        assert result.returncode == 2 and str(out) in result.stderr and message in result.stderr, (
            result.stderr
        )
        assert "Reading" not in result.stdout
        no_traceback(result.stderr)


def test_an_existing_file_is_kept_unless_confirmed_or_forced(tmp_path: Path) -> None:
    existing = tmp_path / "config.yaml"
    existing.write_text("# mine\n", encoding="utf-8")
    refused = run_yes("--yes", "--data", str(BCCD), "--probe-steps", "0", cwd=tmp_path)
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert existing.read_text(encoding="utf-8") == "# mine\n"
    child = spawn("--data", str(BCCD), cwd=tmp_path)
    child.expect("config.yaml already exists. Overwrite it")
    child.send(ENTER)  # the default: no
    child.expect("Nothing was written")
    assert finish(child) == 1 and existing.read_text(encoding="utf-8") == "# mine\n"
    forced = run_yes("--yes", "--force", "--data", str(BCCD), "--probe-steps", "0", cwd=tmp_path)
    assert forced.returncode == 0 and load_config(existing).data.format == "voc"


def test_help_needs_neither_the_config_package_nor_plugins() -> None:
    """``yolox-sdk --help`` registers the command without importing the wizard (``cli.main``'s promise)."""
    code = (
        "import sys, yolox_sdk.cli.main; "
        "print('yolox_sdk.config.wizard' in sys.modules, 'yolox_sdk.config.loader' in sys.modules)"
    )
    shown = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", code], capture_output=True, text=True
    )
    assert shown.stdout.split()[0] == "False", shown.stderr
    result = subprocess.run([COMMAND, "config", "wizard", "--help"], capture_output=True, text=True)
    assert f"(default {wizard.PROBE_STEPS})" in " ".join(result.stdout.split())


def test_flags_that_cannot_work_are_refused(tmp_path: Path) -> None:
    for args, message in (
        (("--yes",), "--data"),
        (("--yes", "--data", str(BCCD), "--epochs", "5", "--time-budget", "5m"), "not both"),
        (("--yes", "--data", str(BCCD), "--time-budget", "20"), "not a duration"),
        (("--yes", "--data", str(BCCD), "--device", "tpu"), "not a device of this machine"),
        (("--data", str(BCCD)), "not one"),  # no terminal and no --yes
    ):
        result = run_yes(*args, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        no_traceback(result.stderr)
