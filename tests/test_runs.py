"""Experiment management: lineage records, hyperparameters in every logger, `yolox-sdk runs`."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
from pathlib import Path

import attrs
import numpy as np
import pytest
from click.testing import CliRunner

from yolox_sdk.builtin.loggers.csv import CsvLogger, CsvOptions
from yolox_sdk.builtin.loggers.tensorboard import TensorboardLogger, TensorboardOptions
from yolox_sdk.checkpoints.format import load_checkpoint
from yolox_sdk.cli.main import cli
from yolox_sdk.config.loader import config_to_dict, dump_config, flatten_dict, load_config
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.engine.lineage import LINEAGE_FILENAME, dataset_fingerprint, git_state
from yolox_sdk.engine.run_dir import config_hash
from yolox_sdk.engine.trainer import train

BASE = ["data.train_path=bccd", "data.val_path=bccd", "model.name=yolox-nano", "model.input_size=[320,320]"]


# ----- lineage --------------------------------------------------------------------------------------------


def _with_records(dataset, records):
    return attrs.evolve(dataset, records=records)


def _shifted_box(record, dx: float):
    boxes = record.boxes.copy()
    boxes[0, 0] += dx
    return attrs.evolve(record, boxes=boxes)


def test_dataset_fingerprint_changes_with_one_box_and_nothing_else(bccd_dir: Path, tmp_path: Path) -> None:
    dataset = load_dataset("bccd", split="val")
    fingerprint = dataset_fingerprint(dataset)
    expected_images = len((bccd_dir / "ImageSets" / "Main" / "val.txt").read_text().split())

    # The same labels read again, listed in another order, or from a copy elsewhere: same fingerprint.
    copy = tmp_path / "BCCD"
    copy.mkdir()
    for name in ("Annotations", "JPEGImages", "ImageSets"):
        (copy / name).symlink_to(bccd_dir / name)
    relocated = load_dataset(copy, split="val", format="voc")
    assert relocated.records[0].image_path.parent == copy / "JPEGImages"
    assert dataset_fingerprint(relocated)["sha256"] == fingerprint["sha256"]
    assert dataset_fingerprint(load_dataset("bccd", split="val"))["sha256"] == fingerprint["sha256"]
    reversed_records = _with_records(dataset, dataset.records[::-1])
    assert dataset_fingerprint(reversed_records)["sha256"] == fingerprint["sha256"]
    assert fingerprint["images"] == expected_images
    assert fingerprint["boxes"] == sum(len(r.boxes) for r in dataset.records)

    # One box moved by half a pixel, one label changed, one image dropped, one class renamed: all differ.
    records = list(dataset.records)
    moved = _with_records(dataset, [_shifted_box(records[5], 0.5), *records[:5], *records[6:]])
    relabelled_record = attrs.evolve(records[0], labels=np.roll(records[0].labels, 1))
    assert not np.array_equal(relabelled_record.labels, records[0].labels)
    relabelled = _with_records(dataset, [relabelled_record, *records[1:]])
    dropped = _with_records(dataset, records[1:])
    renamed = attrs.evolve(dataset, class_names=("RBC", "WBC", "platelet"))
    digests = {
        dataset_fingerprint(variant)["sha256"] for variant in (dataset, moved, relabelled, dropped, renamed)
    }
    assert len(digests) == 5


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
    )


def test_git_state_names_the_commit_and_the_dirty_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.chdir(repo)
    assert git_state() is None  # not a repository
    _git(repo, "init", "-q")
    assert git_state() is None  # a repository without any commit
    (repo / "train.yaml").write_text("training: {epochs: 1}\n")
    _git(repo, "add", "train.yaml")
    _git(repo, "commit", "-q", "-m", "first")
    # The commit, read from git's own files rather than through git.
    ref = (repo / ".git" / "HEAD").read_text().split(":", 1)[1].strip()
    commit = (repo / ".git" / ref).read_text().strip()

    state = git_state()
    assert state == {"commit": commit, "dirty": False, "root": str(repo)}
    (repo / "untracked.txt").write_text("x")
    assert git_state()["dirty"] is False  # untracked files do not count, as with `git describe --dirty`
    (repo / "train.yaml").write_text("training: {epochs: 2}\n")
    assert git_state()["dirty"] is True


# ----- hyperparameters in every logger --------------------------------------------------------------------


def _nested_params() -> dict:
    config = load_config(
        None, [*BASE, "training.optimizer=adamw", "training.optimizer_options={beta2: 0.99}"]
    )
    return flatten_dict(config_to_dict(config))


def test_csv_and_tensorboard_loggers_record_every_flattened_hyperparameter(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    params = _nested_params()
    assert params["training.optimizer_options.beta2"] == 0.99
    assert params["monitoring.wandb.project"] == "yolox-sdk"
    assert params["model.input_size"] == (320, 320)
    assert not any(isinstance(value, dict) and value for value in params.values())

    CsvLogger(CsvOptions(), tmp_path).log_hyperparameters(params)
    with open(tmp_path / "hparams.csv", newline="") as handle:
        rows = {row["key"]: row["value"] for row in csv.DictReader(handle)}
    assert set(rows) == set(params)
    assert rows["training.optimizer_options.beta2"] == "0.99"
    assert rows["model.input_size"] == "[320, 320]"
    assert rows["data.format"] == "auto"
    assert rows["monitoring.run_name"] == "null"

    logger = TensorboardLogger(TensorboardOptions(), tmp_path)
    logger.log_hyperparameters(params)
    logger.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    logged = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert set(logged) == set(params)
    assert logged["training.optimizer_options.beta2"].number_value == pytest.approx(0.99)
    assert logged["model.input_size"].string_value == "[320, 320]"


# ----- yolox-sdk runs -------------------------------------------------------------------------------------


def _write_run(run_dir: Path, overrides: list[str], rows: list[dict], lineage: dict | None) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(load_config(None, [*BASE, *overrides])))
    columns = sorted({key for row in rows for key in row}, key=lambda key: (key != "epoch", key))
    with open(run_dir / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    if lineage is not None:
        (run_dir / LINEAGE_FILENAME).write_text(json.dumps(lineage))
    return run_dir


def _lineage(dataset: str, parent: str) -> dict:
    return {"dataset": {"sha256": dataset * 64}, "parent": {"sha256": parent * 64}, "git": None}


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    a = _write_run(
        tmp_path / "runs" / "a",
        ["training.epochs=3", "training.lr=0.01", "training.recipe=yolox"],  # differences: only these
        [
            {"epoch": 1, "train/total_loss": 5.0, "val/mAP": 0.10},
            {"epoch": 2, "train/total_loss": 4.0, "val/mAP": 0.30},
            {"epoch": 3, "train/total_loss": 4.5, "val/mAP": 0.25},
        ],
        _lineage("a", "b"),
    )
    b = _write_run(
        tmp_path / "runs" / "b",
        [
            "training.epochs=4",
            "training.recipe=yolox",
            "training.lr=0.02",
            "training.optimizer=adamw",
            "training.optimizer_options={beta2: 0.99}",
        ],
        [
            {"epoch": 1, "train/total_loss": 6.0, "val/mAP": 0.20, "val/mAP50": 0.5},
            {"epoch": 2, "train/total_loss": 3.0},
            {"epoch": 3, "train/total_loss": 3.5},
            {"epoch": 4, "train/total_loss": 3.25, "val/mAP": 0.40, "val/mAP50": 0.7},
        ],
        _lineage("a", "c"),
    )
    return a, b


def _row(output: str, first: str) -> list[str]:
    (line,) = [line for line in output.splitlines() if line.split() and line.split()[0] == first]
    return line.split()


def test_runs_compare_prints_config_diff_metric_deltas_and_lineage(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    result = CliRunner().invoke(cli, ["runs", "compare", str(a), str(b)])

    assert result.exit_code == 0, result.output
    out = result.output
    assert "Config differences (5):" in out
    assert _row(out, "training.epochs") == ["training.epochs", "3", "4"]
    assert _row(out, "training.lr") == ["training.lr", "0.01", "0.02"]
    assert _row(out, "training.optimizer") == ["training.optimizer", "sgd", "adamw"]
    # Nested options are compared key by key: A has none, B sets beta2.
    assert _row(out, "training.optimizer_options") == ["training.optimizer_options", "{}", "(absent)"]
    assert _row(out, "training.optimizer_options.beta2") == [
        "training.optimizer_options.beta2",
        "(absent)",
        "0.99",
    ]
    #                                       A final B final  delta   A best  B best  delta
    assert _row(out, "val/mAP") == ["val/mAP", "0.2500", "0.4000", "+0.1500", "0.3000", "0.4000", "+0.1000"]
    assert _row(out, "val/mAP50") == ["val/mAP50", "n/a", "0.7000", "n/a", "n/a", "0.7000", "n/a"]
    assert _row(out, "train/total_loss")[1:] == ["4.5000", "3.2500", "-1.2500", "4.0000", "3.0000", "-1.0000"]
    assert _row(out, "epochs") == ["epochs", "3", "4", "+1"]
    assert _row(out, "dataset")[-1] == "yes"
    assert _row(out, "parent")[-1] == "NO"


def test_runs_compare_json_and_list(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    (b / LINEAGE_FILENAME).unlink()
    result = CliRunner().invoke(cli, ["runs", "compare", str(a), str(b), "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    diff = {entry["key"]: entry for entry in data["config_diff"]}
    assert diff["training.lr"] == {"key": "training.lr", "a": 0.01, "b": 0.02}
    assert diff["training.optimizer_options.beta2"] == {"key": "training.optimizer_options.beta2", "b": 0.99}
    assert data["metrics"]["val/mAP"]["final_delta"] == pytest.approx(0.15)
    assert data["metrics"]["train/total_loss"]["best_delta"] == pytest.approx(-1.0)
    assert data["epochs"] == {"a": 3, "b": 4, "delta": 1}
    assert data["lineage"]["dataset fingerprint"] == {"a": "a" * 64, "b": None, "same": None}

    listed = CliRunner().invoke(cli, ["runs", "list", str(a.parent), "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [(r["name"], r["epochs"], r["best_mAP"]) for r in rows] == [("a", 3, 0.3), ("b", 4, 0.4)]
    assert rows[0]["config_hash"] == config_hash(load_config(a / "config.yaml"))


def test_runs_compare_refuses_a_folder_that_is_not_a_run(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_runs
    for not_a_run in (tmp_path / "missing", tmp_path):
        result = CliRunner().invoke(cli, ["runs", "compare", str(a), str(not_a_run)])
        assert result.exit_code == 2, result.output
        assert f"{not_a_run} is not a run directory" in result.output
        assert "Traceback" not in result.output


# ----- a real run -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_training_writes_lineage_into_checkpoints_and_hparams(
    tmp_path: Path, assets_dir: Path, bccd_dir: Path
) -> None:
    config = load_config(
        None,
        [
            *BASE,
            "model.input_size=[160,160]",  # after BASE: the last override wins
            "data.train_split=test",  # BCCD's smallest split (72 images)
            "data.val_path=null",  # evaluation is not what this test is about: no val, best follows last
            "training.multiscale_range=0",
            "data.batch_size=8",
            "training.epochs=1",
            "training.warmup_epochs=0",
            "training.optimizer=adamw",
            "training.lr=0.0005",
            "training.optimizer_options={beta2: 0.99}",
            "monitoring.progress_bar=false",
            "monitoring.tensorboard=false",
            f"monitoring.output_dir={tmp_path / 'runs'}",
        ],
    )
    result = train(config)
    run_dir = result.run_dir

    assert run_dir.name == f"yolox-nano-{config_hash(config)}"
    lineage = json.loads((run_dir / LINEAGE_FILENAME).read_text())
    assert load_checkpoint(run_dir / "last.pt").lineage == lineage
    assert load_checkpoint(run_dir / "best.pt").lineage == lineage
    parent = Path(lineage["parent"]["path"])
    assert parent.is_relative_to(assets_dir)
    assert lineage["parent"]["sha256"] == hashlib.sha256(parent.read_bytes()).hexdigest()
    test_images = len((bccd_dir / "ImageSets" / "Main" / "test.txt").read_text().split())
    assert lineage["dataset"]["train"]["images"] == test_images
    assert lineage["dataset"]["val"] is None
    assert lineage["dataset"]["train"]["class_names"] == ["Platelets", "RBC", "WBC"]
    assert lineage["config_hash"] == config_hash(config)
    assert lineage["versions"]["sdk"] == __import__("yolox_sdk").__version__
    assert lineage["resumed_from"] is None
    hparams = (run_dir / "hparams.csv").read_text()
    assert "training.optimizer_options.beta2,0.99\n" in hparams

    # Resuming the finished run trains nothing but records what it continued from.
    last_sha = hashlib.sha256((run_dir / "last.pt").read_bytes()).hexdigest()
    train(config, resume_dir=run_dir)
    resumed = json.loads((run_dir / LINEAGE_FILENAME).read_text())
    assert resumed["resumed_from"]["sha256"] == last_sha
    assert resumed["previous"] == lineage

    compared = CliRunner().invoke(cli, ["runs", "compare", str(run_dir), str(run_dir), "--json"])
    data = json.loads(compared.output)
    assert data["config_diff"] == []
    assert data["metrics"]["train/total_loss"]["final_delta"] == 0.0
    assert data["epochs"] == {"a": 1, "b": 1, "delta": 0}
    assert all(item["same"] for item in data["lineage"].values())


def test_config_hash_takes_plugin_options_with_mixed_key_types() -> None:
    """Free-form plugin options such as ``{1: x, b: y}`` crashed the run-name hash (json cannot sort them)."""
    import hashlib
    import json

    from yolox_sdk.engine.run_dir import config_dict_hash

    mixed = {"monitoring": {"logger_options": {"custom": {1: "x", "b": "y"}}}}
    assert config_dict_hash(mixed) != config_dict_hash(
        {"monitoring": {"logger_options": {"custom": {"b": "y"}}}}
    )
    plain = {"training": {"lr": 0.01}, "model": {"name": "yolox-nano"}}
    expected = hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:8]
    assert config_dict_hash(plain) == expected, "the hash of ordinary configs (auto_resume matching) changed"
