"""What the commands print: --json is one parseable document with real values, --quiet prints little, the
summary panel of run/train names files that exist, and training progress off a terminal is one line per
epoch without carriage returns."""

from __future__ import annotations

import csv
import json
import logging
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
from yolox_sdk.cli.main import cli
from yolox_sdk.config.loader import dump_config, load_config
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.engine import progress
from yolox_sdk.engine.progress import EpochProgress, RunClock
from yolox_sdk.models import create_model

# A run small enough for a test: coco8's 4 train images, one batch an epoch, yolox-nano at 160 px.
TINY_RUN = [
    "data.train_path=coco8",
    "data.val_path=coco8",
    "data.format=yolo",
    "data.train_split=train",
    "data.val_split=val",
    "model.name=yolox-nano",
    "model.input_size=[160,160]",
    "training.epochs=2",
    "training.warmup_epochs=0",
    "training.multiscale_range=0",
    "data.batch_size=4",
    "evaluation.eval_interval=1",
    "monitoring.tensorboard=false",
]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    return result.exit_code, result.stdout, result.stderr


def test_json_mode_sends_what_else_prints_to_stderr_even_from_native_code(tmp_path: Path) -> None:
    script = tmp_path / "noisy.py"
    script.write_text(
        "import os\n"
        "from yolox_sdk.cli.output import command_output\n"
        "with command_output(as_json=True) as out:\n"
        "    print('python noise')\n"
        "    os.write(1, b'native noise\\n')  # what a C extension writing to stdout does\n"
        "    out.json({'mAP': float('nan'), 'epochs': 2})\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"mAP": None, "epochs": 2}  # NaN is null: strict JSON
    assert done.stderr.splitlines() == ["python noise", "native noise"]


# ----- eval on the COCO nano weights -------------------------------------------------------------------


@pytest.fixture(scope="module")
def coco_nano(tmp_path_factory: pytest.TempPathFactory) -> Path:
    names = load_dataset("coco8", split="val", format="yolo").class_names
    model, spec, _ = create_model("yolox-nano", 80, pretrained=True, input_size=(256, 256))
    path = tmp_path_factory.mktemp("nano") / "nano.pt"
    return save_checkpoint(path, Checkpoint(model.state_dict(), spec, names, config={}))


def eval_args(checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", str(checkpoint), "--data", "coco8", "--format", "yolo", "--split", "val"] + [
        "--device",
        "cpu",
        "--out",
        str(out),
        *extra,
    ]


def test_eval_json_is_one_document_with_the_metrics_written(
    coco_nano: Path, coco8_dir: Path, tmp_path
) -> None:
    code, stdout, stderr = invoke(*eval_args(coco_nano, tmp_path / "e", "--json"))
    assert code == 0, stderr

    document = json.loads(stdout)  # the whole of stdout: one document, nothing around it
    assert set(document) >= {"metrics", "per_class", "settings", "recommended_conf", "files"}
    assert document == json.loads((tmp_path / "e" / "eval.json").read_text())
    assert 0.0 < document["metrics"]["mAP"] <= document["metrics"]["mAP50"] <= 1.0
    # Ground-truth boxes per class, counted from coco8's label files, not by the code under test.
    counts = Counter(
        int(line.split()[0])
        for label in (coco8_dir / "labels" / "val").glob("*.txt")
        for line in label.read_text().splitlines()
        if line.strip()
    )
    per_class = document["per_class"]
    assert len(per_class) == 80
    assert {index: row["num_gt"] for index, row in enumerate(per_class) if row["num_gt"]} == dict(counts)
    assert per_class[0]["class_name"] == "person" and per_class[0]["AP"] is not None
    assert per_class[1]["AP"] is None  # no bicycle in coco8's val: n/a, null in JSON
    assert 0.0 < document["recommended_conf"] < 1.0
    assert Path(document["files"]["pr_curve"]).is_file()
    assert "Dataset coco8" in stderr  # the logs went to stderr


def test_eval_quiet_prints_the_map_line_only(coco_nano: Path, tmp_path: Path) -> None:
    code, stdout, stderr = invoke(*eval_args(coco_nano, tmp_path / "e", "--quiet"))
    assert code == 0, stderr

    metrics = json.loads((tmp_path / "e" / "eval.json").read_text())["metrics"]
    assert (
        stdout == f"mAP {metrics['mAP']:.4f}, mAP50 {metrics['mAP50']:.4f} ({tmp_path / 'e' / 'eval.json'})\n"
    )
    assert stderr == ""  # logs below WARNING are hidden


def test_eval_table_reads_as_rows(coco_nano: Path, tmp_path: Path) -> None:
    code, stdout, stderr = invoke(*eval_args(coco_nano, tmp_path / "e"))
    assert code == 0, stderr

    metrics = json.loads((tmp_path / "e" / "eval.json").read_text())["metrics"]
    rows = {line.split()[0]: line.split() for line in stdout.splitlines() if line.split()}
    assert rows["person"][1] == "10"  # class, gt boxes, AP, AP50
    assert rows["bicycle"][1:] == ["0", "n/a", "n/a"]
    assert rows["mAP"][1:] == [
        f"{metrics[name]:.3f}" for name in ("mAP", "mAP_small", "mAP_medium", "mAP_large")
    ]
    assert rows["mAP50"][1:] == [f"{metrics['mAP50']:.3f}"]
    assert "\r" not in stdout and "\x1b" not in stdout  # no redraws or colours off a terminal
    assert all(line == line.rstrip() for line in stdout.splitlines())


def test_benchmark_json_and_quiet(tmp_path: Path) -> None:
    names = load_dataset("coco8", split="val", format="yolo").class_names
    model, spec, _ = create_model("yolox-nano", 80, pretrained=False, input_size=(160, 160))
    checkpoint = save_checkpoint(tmp_path / "nano.pt", Checkpoint(model.state_dict(), spec, names, config={}))
    args = ["benchmark", checkpoint, "--data", "coco8", "--format", "yolo", "--formats", "pytorch,tensorrt"]
    args += ["--runs", "1", "--warmup", "0", "--batch", "1", "--threads", "1", "--out", tmp_path / "b"]

    code, stdout, stderr = invoke(*args, "--json")
    assert code == 0, stderr
    document = json.loads(stdout)
    assert document["files"] == {
        "json": str(tmp_path / "b" / "benchmark.json"),
        "markdown": str(tmp_path / "b" / "benchmark.md"),
    }
    written = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    assert {key: document[key] for key in ("settings", "rows")} == {
        key: written[key] for key in ("settings", "rows")
    }
    rows = {row["format"]: row for row in document["rows"]}
    assert rows["pytorch"]["status"] == "ok" and rows["pytorch"]["latency_ms_median"] > 0
    assert rows["tensorrt"]["status"] == "not run" and rows["tensorrt"]["reason"]

    code, stdout, stderr = invoke(*args, "--quiet")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].split()[:3] == ["format", "status", "size"] and len(lines) == 4  # header, rule, 2 rows
    assert lines[2].startswith("pytorch ") and lines[3].startswith("tensorrt ")


# ----- plugins, runs list ------------------------------------------------------------------------------


def test_plugins_json_and_quiet() -> None:
    code, stdout, stderr = invoke("plugins", "--json")
    assert code == 0, stderr
    document = json.loads(stdout)
    assert set(document) == {"kinds", "conflicts", "broken"}
    sgd = {entry["name"]: entry for entry in document["kinds"]["optimizer"]}["sgd"]
    assert sgd["distribution"] == "yolox-sdk" and sgd["version"] == "0.1.0" and sgd["description"]
    voc = {entry["name"]: entry for entry in document["kinds"]["dataset_format"]}["voc"]
    assert voc["options_key"] == "data.format_options"
    assert "class_names" in [option["name"] for option in voc["options"]]

    code, stdout, _ = invoke("plugins", "--quiet")
    assert code == 0
    lines = stdout.splitlines()
    assert "optimizer sgd" in lines and "logger tensorboard" in lines
    assert len(lines) == sum(len(entries) for entries in document["kinds"].values())


def write_run(run_dir: Path, rows: list[dict]) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(load_config(None, ["model.name=yolox-nano"])))
    with open(run_dir / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "train/total_loss", "val/mAP"])
        writer.writeheader()
        writer.writerows(rows)
    return run_dir


def test_runs_list_table_json_and_quiet(tmp_path: Path) -> None:
    first = write_run(
        tmp_path / "runs" / "first", [{"epoch": 1, "val/mAP": 0.25}, {"epoch": 2, "val/mAP": 0.5}]
    )
    second = write_run(tmp_path / "runs" / "second", [{"epoch": 1, "train/total_loss": 3.0}])

    code, stdout, _ = invoke("runs", "list", tmp_path / "runs")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in stdout.splitlines() if line.split()}
    assert rows["run"] == ["run", "epochs", "best", "mAP", "config"]
    assert rows["first"][1:3] == ["2", "0.5000"] and rows["second"][1:3] == ["1", "n/a"]

    code, stdout, _ = invoke("runs", "list", tmp_path / "runs", "--json")
    listed = json.loads(stdout)
    assert [(r["name"], r["path"], r["epochs"], r["best_mAP"]) for r in listed] == [
        ("first", str(first), 2, 0.5),
        ("second", str(second), 1, None),
    ]

    code, stdout, _ = invoke("runs", "list", tmp_path / "runs", "--quiet")
    assert stdout.splitlines() == [str(first), str(second)]
    (tmp_path / "empty").mkdir()
    code, stdout, _ = invoke("runs", "list", tmp_path / "empty", "--json")
    assert code == 0 and json.loads(stdout) == []


# ----- progress ------------------------------------------------------------------------------------------


def epoch_config(epochs: int) -> SimpleNamespace:
    return SimpleNamespace(
        monitoring=SimpleNamespace(log_interval=1000, progress_bar=True),
        training=SimpleNamespace(epochs=epochs),
    )


def train_epochs(epochs: int, batches: int, clock: RunClock) -> list[EpochProgress]:
    """Epochs of fake batches; each ``EpochProgress`` gets ``drawn``: whether its bar was on (tqdm turns a
    closed bar's ``disable`` on)."""
    shown = []
    for epoch in range(epochs):
        bar = EpochProgress(epoch_config(epochs), range(batches), epoch, batches, 0, True, clock)
        bar.drawn = not bar.bar.disable
        for batch in bar:
            losses = {
                "total_loss": 4.0 + batch,
                "iou_loss": 1.0,
                "conf_loss": 2.0,
                "cls_loss": 1.0,
                "lr": 0.01,
            }
            bar.batch_done(losses, (160, 160), epoch * batches + batch + 1, [])
        shown.append(bar)
    return shown


def test_progress_off_a_terminal_is_one_line_per_epoch_without_redraws(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=progress.__name__):
        shown = train_epochs(3, 5, RunClock())

    assert not any(bar.drawn for bar in shown)  # captured stderr is not a terminal: no bar
    captured = capsys.readouterr()
    assert "\r" not in captured.err + captured.out + caplog.text
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    for epoch, line in enumerate(lines, start=1):
        assert line.startswith(f"epoch {epoch}/3: loss 6.000, iou 1.000, obj 2.000, cls 1.000, lr 1.00e-02, ")
        assert ("run ETA " in line) == (epoch < 3)  # the whole run's, while epochs remain
        assert re.search(r", \d+\.\d s", line)


def test_progress_on_a_terminal_shows_the_bar_with_the_run_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "is_interactive", lambda stream: True)
    clock = RunClock()
    (bar,) = train_epochs(1, 3, clock)
    assert bar.drawn
    assert bar.bar.desc == "epoch 1/1, run ETA 0:00:00"  # the last batch of the run: nothing left
    assert bar.bar.postfix == "loss=6.000, lr=1.00e-02, size=160"

    clock.start(0)
    clock._start -= 10.0  # 10 s for 2 of 10 batches: 40 s to go
    assert clock.remaining_seconds(2, 10) == pytest.approx(40.0, rel=0.05)
    assert progress.duration(3725) == "1:02:05"


def test_progress_is_hidden_when_its_logger_is_quieted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(progress, "is_interactive", lambda stream: True)
    monkeypatch.setattr(progress.log, "level", logging.WARNING)  # what --quiet does
    with caplog.at_level(logging.INFO):
        (bar,) = train_epochs(1, 2, RunClock())
    assert not bar.drawn and not caplog.records


# ----- run and train ------------------------------------------------------------------------------------


def panel_files(stdout: str) -> dict[str, Path]:
    """The 'Label: /path' lines of the summary panel, by label."""
    files = {}
    for line in stdout.splitlines():
        text = line.strip().strip("│").strip()
        match = re.match(
            r"(Run directory|Best checkpoint|Last checkpoint|Metrics|Evaluation|Report|Exported \w+): "
            r"(\S+)",
            text,
        )
        if match:
            files[match.group(1)] = Path(match.group(2))
    return files


@pytest.mark.slow
def test_train_ends_with_a_panel_of_files_that_exist_and_json_and_quiet(tmp_path: Path) -> None:
    code, stdout, stderr = invoke(
        "train", "/dev/null", *TINY_RUN, f"monitoring.output_dir={tmp_path / 'runs'}"
    )
    assert code == 0, stderr

    (run_dir,) = (tmp_path / "runs").iterdir()
    files = panel_files(stdout)
    assert files["Run directory"] == run_dir and files["Best checkpoint"] == run_dir / "best.pt"
    assert set(files) == {"Run directory", "Best checkpoint", "Last checkpoint", "Metrics"}
    assert all(path.exists() for path in files.values())
    assert "Training finished: 2 epochs in" in stdout and "Epoch 1 of 2 (best by val/mAP)" in stdout
    assert f"yolox-sdk eval {run_dir / 'best.pt'} --data coco8 --split val --format yolo" in stdout
    assert f"yolox-sdk report {run_dir}" in stdout
    epoch_lines = [line for line in stderr.splitlines() if re.match(r"epoch \d/2: loss ", line)]
    assert len(epoch_lines) == 2 and "\r" not in stderr

    # Resuming the finished run trains nothing and reports the same run.
    config = run_dir / "config.yaml"
    code, stdout, stderr = invoke("train", config, "--resume", run_dir, "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["run_dir"] == str(run_dir) and summary["epochs"] == 2
    assert summary["best_epoch"]["epoch"] == 1 and summary["best_epoch"]["metric"] == "val/mAP"
    with open(run_dir / "metrics.csv", newline="") as handle:
        first_row = next(csv.DictReader(handle))
    assert summary["best_epoch"]["metrics"]["val/mAP"] == pytest.approx(float(first_row["val/mAP"]))
    assert all(Path(path).exists() for path in summary["files"].values())
    assert summary["next"][0].startswith(f"yolox-sdk eval {run_dir / 'best.pt'}")

    code, stdout, stderr = invoke("train", config, "--resume", run_dir, "--quiet")
    assert code == 0, stderr
    assert stdout.splitlines() == [f"Best checkpoint: {run_dir / 'best.pt'}", f"Run directory: {run_dir}"]
    assert stderr == ""


@pytest.mark.slow
def test_run_panel_names_the_evaluation_report_and_exports(tmp_path: Path) -> None:
    code, stdout, stderr = invoke("run", "/dev/null", *TINY_RUN, f"monitoring.output_dir={tmp_path / 'runs'}")
    assert code == 0, stderr

    (run_dir,) = (tmp_path / "runs").iterdir()
    files = panel_files(stdout)
    assert files["Evaluation"] == run_dir / "eval_val.json" and files["Report"] == run_dir / "report.html"
    assert files["Exported onnx"] == run_dir / "export" / "best.onnx"
    assert all(path.exists() for path in files.values())
    assert stdout.count("Run directory:") == 1 and stdout.count("Report:") == 1
    assert "Recommended confidence threshold: " in stdout
    assert "--conf auto" in stdout and f"yolox-sdk benchmark {run_dir / 'best.pt'}" in stdout
    assert re.search(r"^mAP50\s+\d\.\d{3}$", stdout, re.MULTILINE)  # the evaluation table
