"""Training plots (``<run>/plots/``): the numbers in training_curves.json are metrics.csv's, read here
with the csv module; blank val cells, a one-epoch run, re-logged epochs of a resumed run and a missing
metrics.csv; the label statistics of the training set against counts parsed from BCCD's XML."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import BCCD_CLASSES, read_bccd_boxes
from test_eval_plots import bccd_subset

from yolox_sdk.config.loader import load_config
from yolox_sdk.errors import RunDirectoryError
from yolox_sdk.reporting.label_plots import write_label_statistics
from yolox_sdk.reporting.metrics_table import read_metrics_table
from yolox_sdk.reporting.training_plots import best_epoch, write_training_plots

HEADER = [
    "epoch",
    "train/total_loss",
    "train/iou_loss",
    "lr",
    "resources/images_per_s",
    "val/mAP",
    "val/mAP50",
]


def write_metrics(folder: Path, rows: list[list[object]], header: list[str] = HEADER) -> Path:
    """A hand-made metrics.csv: ``None`` becomes a blank cell, as the csv logger leaves unevaluated epochs."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metrics.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([["" if cell is None else cell for cell in row] for row in rows])
    return folder


def assert_drawn(path: Path) -> None:
    """A PNG that decodes and is not one flat colour."""
    image = cv2.imread(str(path))
    assert image is not None, path
    assert image.std() > 5, f"{path} looks blank"


def csv_columns(path: Path) -> dict[str, dict[int, float | None]]:
    """metrics.csv read independently: per column, epoch -> value (None for blank or nan), last row wins."""
    columns: dict[str, dict[int, float | None]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            epoch = int(float(row["epoch"]))
            for name, cell in row.items():
                if name == "epoch":
                    continue
                value = float(cell) if cell else None
                columns.setdefault(name, {})[epoch] = None if value is None or math.isnan(value) else value
    return columns


def curves_json(folder: Path) -> dict:
    return json.loads((folder / "plots" / "training_curves.json").read_text())


def assert_json_matches_csv(run_dir: Path) -> dict:
    content = curves_json(run_dir)
    expected = csv_columns(run_dir / "metrics.csv")
    epochs = sorted(next(iter(expected.values())))
    assert content["epochs"] == epochs
    assert set(content["metrics"]) == set(expected)
    for name, by_epoch in expected.items():
        assert content["metrics"][name] == [by_epoch[epoch] for epoch in epochs], name
    return content


def test_epochs_without_val_are_null_and_the_best_epoch_is_the_highest_map(tmp_path: Path) -> None:
    rows = [
        [1, 9.0, 3.0, 0.001, 12.5, None, None],
        [2, 8.0, 2.5, 0.002, 13.0, 0.10, 0.20],
        [3, 7.5, 2.4, 0.003, 12.0, None, None],
        [4, 7.0, 2.2, 0.002, 12.8, 0.30, 0.45],
        [5, 6.8, 2.1, 0.001, 12.9, 0.25, 0.50],
    ]
    run_dir = write_metrics(tmp_path / "run", rows)
    files = write_training_plots(read_metrics_table(run_dir), run_dir / "plots")
    content = assert_json_matches_csv(run_dir)
    assert content["metrics"]["val/mAP"] == [None, 0.10, None, 0.30, 0.25]
    assert content["best"] == {"metric": "val/mAP", "epoch": 4, "value": 0.30}
    for name in ("losses", "learning_rate", "val_metrics", "resources"):
        assert_drawn(files[name])
    assert content["files"]["val_metrics"] == "val_metrics.png"


def test_one_epoch_run(tmp_path: Path) -> None:
    run_dir = write_metrics(tmp_path / "run", [[1, 9.0, 3.0, 0.001, 12.5, 0.05, 0.12]])
    files = write_training_plots(read_metrics_table(run_dir), run_dir / "plots")
    content = assert_json_matches_csv(run_dir)
    assert content["epochs"] == [1]
    assert content["best"]["epoch"] == 1
    assert_drawn(files["val_metrics"])


def test_resumed_run_keeps_the_row_written_last_for_each_epoch(tmp_path: Path) -> None:
    rows = [
        [1, 9.0, 3.0, 0.001, 12.5, 0.1, 0.2],
        [2, 8.0, 2.5, 0.002, 13.0, 0.2, 0.3],
        [3, 7.9, 2.5, 0.002, 13.0, 0.9, 0.9],
        [2, 8.5, 2.6, 0.002, 11.0, 0.15, 0.25],
        [3, 7.0, 2.2, 0.001, 11.5, 0.3, 0.4],
    ]
    run_dir = write_metrics(tmp_path / "run", rows)
    write_training_plots(read_metrics_table(run_dir), run_dir / "plots")
    content = assert_json_matches_csv(run_dir)
    assert content["metrics"]["train/total_loss"] == [9.0, 8.5, 7.0]
    assert content["best"] == {"metric": "val/mAP", "epoch": 3, "value": 0.3}


def test_a_run_never_evaluated_has_no_val_figure_and_loss_picks_the_best_epoch(tmp_path: Path) -> None:
    header = ["epoch", "train/total_loss", "lr"]
    run_dir = write_metrics(tmp_path / "run", [[1, 5.0, 0.01], [2, 4.0, 0.01], [3, 4.5, 0.01]], header)
    table = read_metrics_table(run_dir)
    files = write_training_plots(table, run_dir / "plots")
    assert "val_metrics" not in files and "resources" not in files
    assert not (run_dir / "plots" / "val_metrics.png").exists()
    assert curves_json(run_dir)["best"] is None
    best = best_epoch(table, "loss")
    assert (best.epoch, best.value) == (2, 4.0)


def test_a_lower_is_better_metric_picks_the_lowest_epoch(tmp_path: Path) -> None:
    header = ["epoch", "train/total_loss", "val/count_mae"]
    run_dir = write_metrics(tmp_path / "run", [[1, 5.0, 3.5], [2, 4.0, 1.25], [3, 4.5, 2.0]], header)
    table = read_metrics_table(run_dir)
    assert best_epoch(table, "count_mae", lower_is_better=True).epoch == 2
    assert best_epoch(table, "count_mae").epoch == 1


def test_no_metrics_csv_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RunDirectoryError, match=r"has no metrics.csv.*first epoch"):
        read_metrics_table(tmp_path)


def test_an_epoch_that_is_no_number_names_its_line(tmp_path: Path) -> None:
    run_dir = write_metrics(
        tmp_path / "run", [[1, 9.0, 3.0, 0.001, 1, 0.1, 0.2], ["two", 8.0, 2.5, 0.002, 1, "", ""]]
    )
    with pytest.raises(RunDirectoryError, match=r"line 3: epoch 'two' is not a whole number"):
        read_metrics_table(run_dir)


def test_label_statistics_of_the_bccd_training_split(bccd_dir: Path, tmp_path: Path) -> None:
    config = {"data": {"train_path": str(bccd_dir), "train_split": "train", "format": "voc"}}
    labels = write_label_statistics(config, tmp_path / "plots")
    assert labels.problem is None
    ids = (bccd_dir / "ImageSets" / "Main" / "train.txt").read_text().split()
    counts = np.zeros(len(BCCD_CLASSES), dtype=int)
    for image_id in ids:  # zero-area boxes are dropped on loading (BCCD has one, BloodImage_00343 object 4)
        boxes, classes = read_bccd_boxes(bccd_dir, image_id)
        kept = [c for (x1, y1, x2, y2), c in zip(boxes, classes, strict=True) if x2 > x1 and y2 > y1]
        counts += np.bincount(kept, minlength=len(BCCD_CLASSES)).astype(int)
    written = json.loads((tmp_path / "plots" / "label_statistics.json").read_text())
    assert written["images"] == len(ids)
    by_name = {entry["name"]: entry["boxes"] for entry in written["classes"]}
    assert by_name == {name: int(count) for name, count in zip(BCCD_CLASSES, counts, strict=True)}
    for name in ("class_histogram", "box_sizes", "samples"):
        assert_drawn(labels.files[name])


def test_unreadable_training_data_is_reported_not_raised(tmp_path: Path) -> None:
    labels = write_label_statistics({"data": {"train_path": str(tmp_path / "moved")}}, tmp_path / "plots")
    assert labels.files == {}
    assert "could not be read" in labels.problem and "moved" in labels.problem


def trained_run(tmp_path_factory: pytest.TempPathFactory, bccd_dir: Path) -> Path:
    """A real 2-epoch yolox-nano run at 160 px on 16 BCCD images (8 val), made once per session:
    ``run`` trains, evaluates with the error analysis, exports ONNX and writes plots and report."""
    from yolox_sdk.engine.jobs import run_pipeline

    base = tmp_path_factory.getbasetemp() / "report_run"
    run_dir = base / "runs" / "bccd"
    if (run_dir / "report.html").is_file():
        return run_dir
    data = bccd_subset(bccd_dir, base / "bccd")
    config = load_config(
        None,
        [
            "model.name=yolox-nano",
            "model.input_size=[160,160]",
            f"data.train_path={data}",
            "data.train_split=train",
            f"data.val_path={data}",
            "data.val_split=val",
            "data.format=voc",
            "data.batch_size=8",
            "training.epochs=2",
            "training.warmup_epochs=1",
            "training.no_aug_epochs=0",  # no-aug epochs are all evaluated: epoch 1 is not, epoch 2 (the last) is
            "training.multiscale_range=0",
            "export.formats=[onnx]",
            "device.type=cpu",
            f"monitoring.output_dir={base / 'runs'}",
            "monitoring.run_name=bccd",
        ],
    )
    assert run_pipeline(config).train.run_dir == run_dir
    return run_dir


@pytest.fixture()
def real_run(tmp_path_factory: pytest.TempPathFactory, bccd_dir: Path) -> Path:
    return trained_run(tmp_path_factory, bccd_dir)


@pytest.mark.slow
def test_plots_of_a_real_run_hold_its_metrics_csv(real_run: Path) -> None:
    content = assert_json_matches_csv(real_run)
    metrics = content["metrics"]
    assert content["epochs"] == [1, 2]
    assert metrics["val/mAP"][0] is None and metrics["val/mAP"][1] is not None  # evaluated at epoch 2 only
    assert content["best"]["epoch"] == 2
    for name in ("losses", "learning_rate", "val_metrics", "resources", "class_histogram", "box_sizes"):
        assert_drawn(real_run / "plots" / f"{name}.png")
    labels = json.loads((real_run / "plots" / "label_statistics.json").read_text())
    assert labels["images"] == 16
