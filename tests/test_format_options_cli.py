"""``--format-option KEY=VALUE`` on every ``data`` command and ``eval``: the same options as
``data.format_options``, checked against the format's options class.

The dataset is a CSV whose images sit in ``raw/photos/``, where no reader looks by itself: every command
fails (exit 2, naming the missing image) until ``--format-option image_dir=raw/photos`` says where they are.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_evaluation_paths import coco8_config, write_checkpoint

from yolox_sdk.cli.main import cli
from yolox_sdk.data.conversion import convert_dataset
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.engine.jobs import evaluate_checkpoint

OPTION = ["--format-option", "image_dir=raw/photos"]


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    return result.exit_code, result.output


def photos_dir(root: Path) -> Path:
    return root / "raw" / "photos"


@pytest.fixture
def csv_with_photos_apart(coco8_dir: Path, tmp_path: Path) -> Path:
    """coco8's val split as a CSV, every image moved under ``raw/photos/`` (keeping its relative path)."""
    root = tmp_path / "dataset"
    convert_dataset(coco8_dir, "csv", root, split="val")
    photos = photos_dir(root)
    for image in [p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}]:
        target = photos / image.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(image, target)
    return root


def test_every_data_command_takes_format_options(csv_with_photos_apart: Path, tmp_path: Path) -> None:
    root = csv_with_photos_apart
    expected = load_dataset(root, format="csv", options={"image_dir": "raw/photos"})
    assert len(expected) == 4 and all(photos_dir(root) in r.image_path.parents for r in expected.records)
    commands = {
        "info": ["data", "info", root],
        "validate": ["data", "validate", root],
        "stats": ["data", "stats", root],
        "split": ["data", "split", root, "--val", "0.25", "--out", tmp_path / "split"],
        "convert": ["data", "convert", root, "--to", "coco", tmp_path / "as_coco"],
    }
    for name, args in commands.items():
        code, output = invoke(*args)
        assert code == 2, (name, output)
        assert "image_dir" in output and "Traceback" not in output, (name, output)
        code, output = invoke(*args, *OPTION)
        assert code == 0, (name, output)
    assert f"{len(expected)} images" in invoke("data", "info", root, *OPTION)[1]
    converted = load_dataset(tmp_path / "as_coco")
    assert sorted(r.image_path.name for r in converted.records) == sorted(
        r.image_path.name for r in expected.records
    )
    assert sum(len(r.boxes) for r in converted.records) == expected.num_boxes()


def test_format_options_are_checked_against_the_formats_options(csv_with_photos_apart: Path) -> None:
    code, output = invoke("data", "info", csv_with_photos_apart, "--format-option", "image_dri=raw/photos")
    assert code == 2 and "image_dri" in output and "Did you mean 'image_dir'" in output
    code, output = invoke("data", "info", csv_with_photos_apart, "--format-option", "image_dir")
    assert code == 2 and "Bad --format-option 'image_dir'" in output
    code, output = invoke("data", "info", csv_with_photos_apart, *OPTION, "--format-option", "image_dir=x")
    assert code == 2 and "given twice" in output
    code, output = invoke("data", "info", "coco8", "--format-option", "image_dir=x")
    assert code == 2 and "takes no options" in output


def test_eval_reads_the_dataset_with_format_options(
    coco8_dir: Path, csv_with_photos_apart: Path, tmp_path: Path
) -> None:
    config = coco8_config(tmp_path / "runs", class_agnostic=False)
    checkpoint = write_checkpoint(tmp_path / "best.pt", config)
    reference = evaluate_checkpoint(checkpoint, str(coco8_dir), "val", "yolo", device="cpu")
    moved = evaluate_checkpoint(
        checkpoint, str(csv_with_photos_apart), device="cpu", format_options={"image_dir": "raw/photos"}
    )
    assert (
        moved.metrics["mAP"] == pytest.approx(reference.metrics["mAP"], abs=1e-9)
        and reference.metrics["mAP"] > 0
    )
    assert moved.metrics["mAP50"] == pytest.approx(reference.metrics["mAP50"], abs=1e-9)
    args = [
        "eval",
        checkpoint,
        "--data",
        csv_with_photos_apart,
        "--device",
        "cpu",
        "--out",
        tmp_path / "m.json",
    ]
    code, output = invoke(*args)
    assert code == 2 and "image_dir" in output, output
    code, output = invoke(*args, *OPTION)
    assert code == 0, output
