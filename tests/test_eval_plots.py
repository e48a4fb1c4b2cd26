"""``yolox-sdk eval`` and ``yolox-sdk run`` write the analysis: figures, their numbers, the recommended
threshold (into best.pt, exports and ``predict --conf auto``), and clear errors on bad input.

The checkpoint is YOLOX-Nano's COCO weights at 160 px evaluated on coco8's 4 val images, where it finds
real objects; training is replaced by that checkpoint where only what follows it is tested.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from yolox_sdk.checkpoints.format import Checkpoint, load_checkpoint, save_checkpoint
from yolox_sdk.cli.main import cli
from yolox_sdk.config.loader import config_to_dict, load_config
from yolox_sdk.data.records import DetectionDataset, ImageRecord
from yolox_sdk.engine import jobs, setup
from yolox_sdk.errors import DatasetError
from yolox_sdk.evaluation.runner import dataset_for_checkpoint
from yolox_sdk.models import create_model

FIGURES = (
    "pr_curve.png",
    "f1_curve.png",
    "precision_curve.png",
    "recall_curve.png",
    "confusion_matrix.png",
    "confusion_matrix_normalized.png",
    "errors.png",
)
NUMBERS = ("pr_curves.json", "confidence_curves.json", "confusion_matrix.json", "errors.json")
EVAL_ARGS = ("--data", "coco8", "--split", "val", "--format", "yolo", "--device", "cpu")


def coco8_config(output_dir: Path, formats: str = "[]"):
    return load_config(
        None,
        [
            "model.name=yolox-nano",
            "model.input_size=[160,160]",
            "data.train_path=coco8",
            "data.train_split=train",
            "data.val_path=coco8",
            "data.val_split=val",
            "data.format=yolo",
            "data.batch_size=2",
            f"export.formats={formats}",
            "device.type=cpu",
            f"monitoring.output_dir={output_dir}",
        ],
    )


def write_checkpoint(path: Path, recommended_conf: float | None = None) -> Path:
    config = coco8_config(path.parent / "runs")
    model, spec, _ = create_model("yolox-nano", 80, pretrained=True, input_size=(160, 160))
    names = setup.load_split(config, "train").class_names
    checkpoint = Checkpoint(
        model.state_dict(), spec, names, config=config_to_dict(config), recommended_conf=recommended_conf
    )
    return save_checkpoint(path, checkpoint)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("eval") / "best.pt")


def assert_drawn(path: Path) -> None:
    image = cv2.imread(str(path))
    assert image is not None, f"{path} does not decode"
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 5, f"{path} is blank"


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_eval_writes_every_figure_and_its_numbers(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "analysis"
    result = invoke("eval", str(checkpoint), *EVAL_ARGS, "--out", str(out), "--errors")
    for name in FIGURES:
        assert_drawn(out / name)
    report = json.loads((out / "eval.json").read_text())
    for name in NUMBERS:
        assert json.loads((out / name).read_text())
    gallery = sorted((out / "worst_images").glob("*.png"))
    assert gallery and gallery[0].name.startswith("01_")
    for path in gallery:
        assert_drawn(path)
    conf = report["recommended_conf"]
    assert 0.01 <= conf <= 1
    assert f"Recommended confidence threshold: {conf:.3f}" in result.output
    assert str(out / "eval.json") in result.output and "Worst images written to" in result.output
    # eval.json's numbers agree with the per-figure files and with the table
    curves = json.loads((out / "confidence_curves.json").read_text())
    assert curves["recommended"]["conf"] == pytest.approx(conf, abs=1e-6)
    pr = json.loads((out / "pr_curves.json").read_text())
    assert np.mean(pr["all"]["iou50"]) == pytest.approx(report["metrics"]["mAP50"], abs=1e-5)
    matrix = json.loads((out / "confusion_matrix.json").read_text())
    assert matrix["conf"] == pytest.approx(conf, abs=1e-6) and matrix["labels"][-1] == "background"
    assert np.sum(matrix["counts"], axis=1)[:-1].sum() == report["settings"]["num_gt_boxes"]
    errors = json.loads((out / "errors.json").read_text())["all"]
    assert errors["AP50"] == pytest.approx(report["metrics"]["mAP50"], abs=1e-6)
    assert set(errors["counts"]) == {
        "classification",
        "localisation",
        "both",
        "duplicate",
        "background",
        "missed",
    }


def test_default_out_is_a_folder_beside_the_checkpoint_and_a_json_out_still_works(
    checkpoint: Path, tmp_path: Path
) -> None:
    invoke("eval", str(checkpoint), *EVAL_ARGS)
    assert (checkpoint.parent / "best_eval" / "eval.json").is_file()
    assert not (checkpoint.parent / "best_eval" / "errors.png").exists()  # only with --errors
    out = tmp_path / "metrics.json"
    invoke("eval", str(checkpoint), *EVAL_ARGS, "--out", str(out), "--deploy-conf", "0.5")
    assert json.loads(out.read_text())["deploy_conf"] == 0.5
    assert_drawn(tmp_path / "confusion_matrix.png")
    assert json.loads((tmp_path / "confusion_matrix.json").read_text())["conf"] == 0.5


def test_a_model_that_predicts_nothing_still_renders_every_figure(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "nothing"
    result = invoke("eval", str(checkpoint), *EVAL_ARGS, "--conf", "1", "--out", str(out), "--errors")
    report = json.loads((out / "eval.json").read_text())
    assert report["settings"]["num_detections"] == 0 and report["recommended_conf"] is None
    assert "none (no predictions)" in result.output
    for name in FIGURES:
        assert_drawn(out / name)
    assert (
        json.loads((out / "errors.json").read_text())["all"]["counts"]["missed"]
        == report["settings"]["num_gt_boxes"]
    )


def test_class_lists_that_differ_are_mapped_by_name_or_refused() -> None:
    record = ImageRecord("a.jpg", 10, 10, [[1, 1, 5, 5]], [1])
    reordered = dataset_for_checkpoint(DetectionDataset([record], ("dog", "cat")), ("cat", "dog"))
    assert reordered.class_names == ("cat", "dog") and reordered.records[0].labels.tolist() == [0]
    with pytest.raises(DatasetError, match=r"horse.*\[dog, horse\].*\[cat, dog\]"):
        dataset_for_checkpoint(DetectionDataset([record], ("dog", "horse")), ("cat", "dog"), "best.pt")
    with pytest.raises(DatasetError, match="no images"):
        dataset_for_checkpoint(DetectionDataset([], ("cat", "dog")), ("cat", "dog"))


def test_eval_on_data_of_other_classes_is_a_clear_error(checkpoint: Path, bccd_dir: Path) -> None:
    result = CliRunner().invoke(
        cli, ["eval", str(checkpoint), "--data", str(bccd_dir), "--split", "val", "--device", "cpu"]
    )
    assert result.exit_code != 0
    assert "RBC" in result.output and "person" in result.output and "Traceback" not in result.output


def test_predict_conf_auto_uses_the_checkpoints_threshold_or_falls_back(
    checkpoint: Path, coco8_dir: Path, tmp_path: Path
) -> None:
    image = str(coco8_dir / "images" / "val" / "000000000036.jpg")
    with_threshold = write_checkpoint(tmp_path / "tuned.pt", recommended_conf=0.42)
    result = invoke(
        "predict",
        str(with_threshold),
        image,
        "--conf",
        "auto",
        "--out",
        str(tmp_path / "a"),
        "--device",
        "cpu",
    )
    assert "0.420" in result.output
    detections = json.loads((tmp_path / "a" / "detections.json").read_text())
    assert detections["settings"]["conf"] == 0.42
    assert all(box["score"] >= 0.42 for box in detections["images"][0]["detections"])

    result = CliRunner().invoke(
        cli,
        [
            "predict",
            str(checkpoint),
            image,
            "--conf",
            "auto",
            "--out",
            str(tmp_path / "b"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "no recommended confidence threshold" in result.output
    assert json.loads((tmp_path / "b" / "detections.json").read_text())["settings"]["conf"] == 0.3


def test_old_checkpoints_without_a_threshold_still_load(checkpoint: Path) -> None:
    assert load_checkpoint(checkpoint).recommended_conf is None


def test_run_records_the_threshold_in_best_pt_and_the_onnx_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = coco8_config(tmp_path / "runs", formats="[onnx]")
    best = write_checkpoint(tmp_path / "run" / "best.pt")
    trained = types.SimpleNamespace(best_checkpoint=best, run_dir=best.parent)
    monkeypatch.setattr(jobs, "train", lambda config, resume_dir=None: trained)
    result = jobs.run_pipeline(config)

    report = json.loads((best.parent / "eval_val.json").read_text())
    conf = report["recommended_conf"]
    assert conf is not None and conf == pytest.approx(result.report.recommended_conf, abs=1e-6)
    for name in FIGURES:
        assert_drawn(best.parent / "eval_val" / name)
    assert list((best.parent / "eval_val" / "worst_images").glob("*.png"))
    assert load_checkpoint(best).recommended_conf == pytest.approx(result.report.recommended_conf)
    props = {prop.key: prop.value for prop in onnx.load(str(result.exports[0].path)).metadata_props}
    assert float(props["recommended_conf"]) == pytest.approx(result.report.recommended_conf)


def bccd_subset(bccd_dir: Path, folder: Path, train: int = 16, val: int = 8) -> Path:
    """A VOC folder of the first BCCD train and val images (links to the read-only originals)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("val", val)):
        ids = (bccd_dir / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:count]
        (folder / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for image_id in ids:
            (folder / "Annotations" / f"{image_id}.xml").symlink_to(
                bccd_dir / "Annotations" / f"{image_id}.xml"
            )
            (folder / "JPEGImages" / f"{image_id}.jpg").symlink_to(
                bccd_dir / "JPEGImages" / f"{image_id}.jpg"
            )
    return folder


@pytest.mark.slow
def test_a_real_bccd_run_writes_the_analysis_and_carries_its_threshold(
    bccd_dir: Path, tmp_path: Path
) -> None:
    """Train yolox-nano for 2 epochs at 160 px on 16 BCCD images; the run's eval of 8 val images writes
    every figure, and whatever threshold it measured is the one in best.pt and in the ONNX file."""
    data = bccd_subset(bccd_dir, tmp_path / "bccd")
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
            "training.no_aug_epochs=1",
            "training.multiscale_range=0",
            "export.formats=[onnx]",
            "device.type=cpu",
            f"monitoring.output_dir={tmp_path / 'runs'}",
            "monitoring.run_name=bccd",
        ],
    )
    result = jobs.run_pipeline(config)
    run_dir = result.train.run_dir
    for name in FIGURES:
        assert_drawn(run_dir / "eval_val" / name)
    report = json.loads((run_dir / "eval_val.json").read_text())
    assert report["settings"]["num_images"] == 8
    errors = json.loads((run_dir / "eval_val" / "errors.json").read_text())
    assert errors["all"]["counts"]["missed"] <= report["settings"]["num_gt_boxes"]
    assert load_checkpoint(run_dir / "best.pt").recommended_conf == report["recommended_conf"]
    props = {prop.key: prop.value for prop in onnx.load(str(result.exports[0].path)).metadata_props}
    exported = props.get("recommended_conf")
    assert (None if exported is None else float(exported)) == report["recommended_conf"]
