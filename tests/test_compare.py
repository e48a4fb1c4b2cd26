"""``yolox-sdk compare`` and ``yolox_sdk.evaluation.compare``: AP recomputed under image weights, the paired
bootstrap, class-list handling, and the command end to end.

Real detections come from YOLOX-Nano's COCO weights on coco8's val images (320 px), where they score a real
AP; the "visibly worse" model is the same network with its box-regression weights perturbed. The reference
values are pycocotools' own, through ``evaluate_detections`` and ``yolox-sdk eval`` (the code under test
computes AP from pycocotools' match records, never through ``accumulate``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
from yolox_sdk.cli.main import cli
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.errors import CheckpointError, ConfigError
from yolox_sdk.evaluation import bootstrap
from yolox_sdk.evaluation.coco_eval import detect_dataset, evaluate_detections
from yolox_sdk.evaluation.compare import compare, compare_detections, match_records_of
from yolox_sdk.models import create_model

INPUT_SIZE = (320, 320)


@pytest.fixture(scope="module")
def coco8_val(coco8_dir: Path) -> DetectionDataset:
    return load_dataset(coco8_dir, split="val", format="yolo")


def _pretrained(nano_weights: Path) -> tuple[torch.nn.Module, object]:
    model, spec, _ = create_model("yolox-nano", 80, pretrained=str(nano_weights), input_size=INPUT_SIZE)
    return model.eval(), spec


def _perturb_box_regression(model: torch.nn.Module) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for conv in model.head.reg_preds:
            noise = torch.randn(conv.weight.shape, generator=generator) * conv.weight.std() * 0.3
            conv.weight.add_(noise)
    return model


@pytest.fixture(scope="module")
def checkpoints(
    nano_weights: Path, coco8_val: DetectionDataset, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """``good`` (COCO weights), ``worse`` (box regression perturbed), ``permuted`` (``good`` with its classes
    listed in another order and its class outputs reordered to match) and ``other_classes``."""
    folder = tmp_path_factory.mktemp("compare_checkpoints")
    names = tuple(coco8_val.class_names)
    good, spec = _pretrained(nano_weights)
    worse = _perturb_box_regression(_pretrained(nano_weights)[0])
    order = np.random.default_rng(3).permutation(len(names))
    permuted = {key: value.clone() for key, value in good.state_dict().items()}
    for key in [key for key in permuted if key.startswith("head.cls_preds.")]:
        permuted[key] = permuted[key][torch.from_numpy(order)]
    other_names = (*names[:-1], "toothbrush_holder")
    written = {
        "good": (good.state_dict(), names),
        "worse": (worse.state_dict(), names),
        "permuted": (permuted, tuple(names[i] for i in order)),
        "other_classes": (good.state_dict(), other_names),
    }
    return {
        key: save_checkpoint(folder / f"{key}.pt", Checkpoint(state, spec, class_names))
        for key, (state, class_names) in written.items()
    }


@pytest.fixture(scope="module")
def detections(nano_weights: Path, coco8_val: DetectionDataset) -> dict:
    good = _pretrained(nano_weights)[0]
    worse = _perturb_box_regression(_pretrained(nano_weights)[0])
    return {
        "good": detect_dataset(good, coco8_val, INPUT_SIZE),
        "worse": detect_dataset(worse, coco8_val, INPUT_SIZE),
    }


def _assert_same_ap(recomputed: dict, reference, row: int = 0) -> None:
    assert recomputed["mAP"][row] == pytest.approx(reference.metrics["mAP"], abs=1e-9)
    assert recomputed["mAP50"][row] == pytest.approx(reference.metrics["mAP50"], abs=1e-9)
    expected_ap = np.array([entry.AP for entry in reference.per_class])
    expected_ap50 = np.array([entry.AP50 for entry in reference.per_class])
    np.testing.assert_allclose(recomputed["AP"][row], expected_ap, atol=1e-9, rtol=0, equal_nan=True)
    np.testing.assert_allclose(recomputed["AP50"][row], expected_ap50, atol=1e-9, rtol=0, equal_nan=True)


@pytest.mark.parametrize("which", ["good", "worse"])
def test_ap_from_match_records_equals_pycocotools(
    coco8_val: DetectionDataset, detections: dict, which: str
) -> None:
    reference = evaluate_detections(coco8_val, detections[which])
    records = match_records_of(coco8_val, detections[which])

    recomputed = bootstrap.average_precision(records, np.ones((1, len(coco8_val)), dtype=np.int64))

    assert reference.metrics["mAP"] > 0.1  # real detections, not an empty case
    assert np.isnan(recomputed["AP"][0]).sum() > 50  # coco8's val images hold few of the 80 classes
    _assert_same_ap(recomputed, reference)


def test_an_image_weight_counts_as_that_many_copies_of_the_image(
    coco8_val: DetectionDataset, detections: dict
) -> None:
    weights = [2, 0, 3, 1]
    copies = [index for index, weight in enumerate(weights) for _ in range(weight)]
    repeated = DetectionDataset(
        [coco8_val.records[index] for index in copies], coco8_val.class_names, coco8_val.category_ids
    )
    reference = evaluate_detections(repeated, [detections["good"][index] for index in copies])

    records = match_records_of(coco8_val, detections["good"])
    recomputed = bootstrap.average_precision(records, np.array([[1, 1, 1, 1], weights]))

    _assert_same_ap(recomputed, reference, row=1)
    assert recomputed["mAP"][1] != recomputed["mAP"][0]


def test_large_datasets_take_the_bounded_memory_path_to_the_same_numbers(
    coco8_val: DetectionDataset, detections: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = match_records_of(coco8_val, detections["good"])
    weights = bootstrap.resample_weights(len(coco8_val), 100, seed=0)
    by_matrix = bootstrap.average_precision(records, weights)

    monkeypatch.setattr(bootstrap, "MATRIX_ELEMENTS", 0)  # as if images x detections were too many
    by_chunks = bootstrap.average_precision(records, weights)

    for key, values in by_matrix.items():
        np.testing.assert_array_equal(by_chunks[key], values)


def test_a_model_against_itself_gives_exactly_zero(coco8_val: DetectionDataset, detections: dict) -> None:
    overall, per_class = compare_detections(coco8_val, detections["good"], detections["good"], 300, seed=0)

    for delta in (*overall, *per_class):
        if delta.resamples:
            assert (delta.ci_low, delta.ci_high, delta.delta) == (0.0, 0.0, 0.0)
            assert not delta.significant
    assert overall[0].verdict() == "no significant difference on AP50:95 (95 % CI [0.0, 0.0] contains 0)"
    assert overall[0].resamples == 300


def test_a_visibly_worse_model_loses_with_an_interval_excluding_zero(
    checkpoints: dict, coco8_dir: Path
) -> None:
    result = compare(
        checkpoints["good"],
        checkpoints["worse"],
        coco8_dir,
        "val",
        "yolo",
        500,
        0,
        "cpu",
        2,
        latency_warmup=1,
    )

    headline = result.overall[0]
    assert headline.metric == "AP50:95" and headline.delta < 0 and headline.ci_high < 0
    assert result.verdict.startswith(f"A is better by {-headline.delta * 100:.1f} AP50:95, 95 % CI [")
    for report in (result.a, result.b):
        assert report.latency.median_ms > 0 and (report.latency.runs, report.latency.warmup) == (2, 1)
        assert report.latency.input_size == INPUT_SIZE and report.latency.device == "cpu"


def test_swapping_the_models_swaps_the_sign(coco8_val: DetectionDataset, detections: dict) -> None:
    worse_second = compare_detections(coco8_val, detections["good"], detections["worse"], 500, seed=0)[0][0]
    better_second = compare_detections(coco8_val, detections["worse"], detections["good"], 500, seed=0)[0][0]

    assert better_second.ci_low > 0 and better_second.delta == pytest.approx(-worse_second.delta)
    assert better_second.ci_low == pytest.approx(-worse_second.ci_high)  # the same draws, sides swapped
    assert better_second.verdict().startswith(f"B is better by {better_second.delta * 100:.1f} AP50:95")


def test_seeded_runs_repeat_exactly_and_seeds_differ(coco8_val: DetectionDataset, detections: dict) -> None:
    first = compare_detections(coco8_val, detections["good"], detections["worse"], 200, seed=7)
    again = compare_detections(coco8_val, detections["good"], detections["worse"], 200, seed=7)
    other = compare_detections(coco8_val, detections["good"], detections["worse"], 200, seed=8)

    def as_data(result: tuple) -> list[dict]:  # NaN (classes absent from coco8's val) != NaN; None == None
        return [delta.to_dict() for part in result for delta in part]

    assert as_data(first) == as_data(again)
    assert first[0][0].delta == other[0][0].delta
    assert (first[0][0].ci_low, first[0][0].ci_high) != (other[0][0].ci_low, other[0][0].ci_high)


def test_different_class_lists_are_an_error_naming_both(checkpoints: dict, coco8_dir: Path) -> None:
    with pytest.raises(CheckpointError) as error:
        compare(checkpoints["good"], checkpoints["other_classes"], coco8_dir, "val", "yolo")

    message = str(error.value)
    assert "trained on different classes" in message
    assert str(checkpoints["good"]) in message and str(checkpoints["other_classes"]) in message
    assert "'toothbrush_holder']" in message and "'toothbrush']" in message
    assert "(only in A: ['toothbrush']; only in B: ['toothbrush_holder'])" in message


def test_the_same_classes_in_another_order_are_mapped_by_name(checkpoints: dict, coco8_dir: Path) -> None:
    result = compare(
        checkpoints["good"],
        checkpoints["permuted"],
        coco8_dir,
        "val",
        "yolo",
        100,
        latency_runs=1,
        latency_warmup=0,
    )

    assert result.class_note is not None and "mapped to A's classes by name" in result.class_note
    assert result.a.evaluation.metrics["mAP"] == result.b.evaluation.metrics["mAP"] > 0.1
    assert all(delta.delta == 0 for delta in result.per_class if delta.resamples)
    assert result.overall[0].verdict().startswith("no significant difference")


def test_bad_arguments_are_clear_errors(
    checkpoints: dict, coco8_val: DetectionDataset, detections: dict
) -> None:
    with pytest.raises(ConfigError, match="resamples must be a whole number of at least 1, got 0"):
        compare_detections(coco8_val, detections["good"], detections["good"], resamples=0)
    result = CliRunner().invoke(
        cli, ["compare", str(checkpoints["good"]), str(checkpoints["other_classes"]), "--data", "coco8"]
    )
    assert result.exit_code == 1
    assert "Error: The checkpoints were trained on different classes" in result.output
    assert "Traceback" not in result.output


def _eval_command_metrics(checkpoint: Path, data: str, split: str, format_name: str) -> dict:
    out = checkpoint.with_name(f"{checkpoint.stem}_eval.json")
    args = ["eval", str(checkpoint), "--data", data, "--split", split, "--format", format_name]
    result = CliRunner().invoke(cli, [*args, "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())["metrics"]


def _compare_command(a: Path, b: Path, data: str, format_name: str, out: Path) -> tuple[str, dict]:
    args = ["compare", str(a), str(b), "--data", data, "--split", "val", "--format", format_name]
    options = ["--resamples", "300", "--latency-runs", "2", "--latency-warmup", "1", "--device", "cpu"]
    result = CliRunner().invoke(cli, [*args, *options, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return result.output, json.loads((out / "compare.json").read_text())


def test_cli_prints_the_table_and_writes_compare_json(
    checkpoints: dict, coco8_dir: Path, tmp_path: Path
) -> None:
    output, written = _compare_command(
        checkpoints["good"], checkpoints["worse"], str(coco8_dir), "yolo", tmp_path / "out"
    )

    for side, key in (("a", "good"), ("b", "worse")):
        assert written[side]["evaluation"]["metrics"] == _eval_command_metrics(
            checkpoints[key], str(coco8_dir), "val", "yolo"
        )
        assert written[side]["latency"]["input_size"] == list(INPUT_SIZE)
    headline = written["overall"][0]
    assert headline["delta"] == pytest.approx(
        written["b"]["evaluation"]["metrics"]["mAP"] - written["a"]["evaluation"]["metrics"]["mAP"]
    )
    assert headline["ci_high"] < 0 and headline["significant"]
    assert written["verdict"] == headline["verdict"] and written["verdict"].startswith("A is better by")
    assert f"AP50:95: {written['verdict']}" in output
    assert "Latency on cpu (batch 1" in output and "ms/image at 320x320" in output
    assert written["bootstrap"]["resamples"] == 300 and written["num_images"] == 4
    assert len(written["per_class"]) == 2 * 80


# --- the command on BCCD, with a checkpoint trained here -------------------------------------------------


def _bccd_subset(bccd_dir: Path, target: Path, counts: dict[str, int]) -> Path:
    """A VOC folder holding the first images of BCCD's train and val lists (copies, the source is read-only)."""
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (target / folder).mkdir(parents=True, exist_ok=True)
    for split, count in counts.items():
        ids = (bccd_dir / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:count]
        for image_id in ids:
            shutil.copy(bccd_dir / "Annotations" / f"{image_id}.xml", target / "Annotations")
            shutil.copy(bccd_dir / "JPEGImages" / f"{image_id}.jpg", target / "JPEGImages")
        (target / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return target


@pytest.mark.slow  # trains yolox-nano for one epoch on 16 BCCD images at 160 px
def test_cli_compares_a_trained_checkpoint_with_its_initialisation_on_bccd(
    bccd_dir: Path, nano_weights: Path, tmp_path: Path
) -> None:
    from yolox_sdk.config.loader import load_config
    from yolox_sdk.engine.trainer import train

    data = _bccd_subset(bccd_dir, tmp_path / "bccd", {"train": 16, "val": 8})
    overrides = [
        "model.name=yolox-nano",
        "model.input_size=[160,160]",
        f"model.pretrained={nano_weights}",
        f"data.train_path={data}",
        "data.train_split=train",
        f"data.val_path={data}",
        "data.val_split=val",
        "data.format=voc",
        "data.batch_size=8",
        "training.epochs=1",
        "export.formats=[]",
        "device.type=cpu",
        "monitoring.progress_bar=false",
        f"monitoring.output_dir={tmp_path / 'runs'}",
    ]
    trained = train(load_config(None, overrides)).best_checkpoint
    model, spec, _ = create_model("yolox-nano", 3, pretrained=str(nano_weights), input_size=(160, 160))
    names = load_dataset(data, split="train", format="voc").class_names
    initial = save_checkpoint(tmp_path / "initial.pt", Checkpoint(model.state_dict(), spec, names))

    output, written = _compare_command(initial, trained, str(data), "voc", tmp_path / "out")

    assert written["a"]["evaluation"]["metrics"] == _eval_command_metrics(initial, str(data), "val", "voc")
    assert written["b"]["evaluation"]["metrics"] == _eval_command_metrics(trained, str(data), "val", "voc")
    assert written["num_images"] == 8 and [row["class_name"] for row in written["per_class"][::2]] == list(
        names
    )
    headline = written["overall"][0]
    if headline["ci_low"] > 0:
        assert headline["verdict"].startswith("B is better by")
    elif headline["ci_high"] < 0:
        assert headline["verdict"].startswith("A is better by")
    else:
        assert headline["verdict"].startswith("no significant difference")
    assert f"AP50:95: {headline['verdict']}" in output and "ms/image at 160x160" in output
