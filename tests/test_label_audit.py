"""``yolox-sdk data audit``: ranking the labels a model disagrees with.

Fast tests check the matching and scoring on hand-built boxes (expected values worked out from the rules in
``yolox_sdk.data.audit.scoring``), cleanlab's per-box scores mapped back to our box order, applying fixes, and
the errors (class mismatch, empty split, missing images, a model that predicts nothing) on real BCCD files.

The slow tests train a tiny yolox-nano on 16 real BCCD images, lets it predict on them, and then plants one
error of each kind where that model clearly sees the labelled object (a deleted box, a swapped class, a box
shifted by half its size) or sees nothing (an invented box); the audit of the corrupted copy must find each
one, the dataset files stay byte-identical, ``--fix-copy`` reads back with the fixes applied and the JSON
and CSV agree.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import attrs
import numpy as np
import pytest
from click.testing import CliRunner

from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
from yolox_sdk.cli.main import cli
from yolox_sdk.data.audit import audit_labels
from yolox_sdk.data.audit.cleanlab_scores import cleanlab_scores
from yolox_sdk.data.audit.scoring import (
    BADLY_PLACED,
    MISSING,
    SPURIOUS,
    WRONG_CLASS,
    Boxes,
    class_recall,
    image_issues,
)
from yolox_sdk.data.audit.suggestions import Suggestion, apply_suggestions
from yolox_sdk.data.conversion import save_dataset
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.data.records import DetectionDataset, ImageRecord
from yolox_sdk.evaluation.matches import box_iou
from yolox_sdk.models import create_model

BCCD_NAMES = ("Platelets", "RBC", "WBC")  # the VOC reader's (sorted) class order
RECALL = np.array([0.8, 0.8, 0.8])


def only(issues: list, kind: str) -> list:
    return [issue for issue in issues if issue.kind == kind]


# --- scoring on hand-built boxes -------------------------------------------------------------------------


def test_a_prediction_no_label_explains_is_a_missing_box_scored_by_its_confidence() -> None:
    truth = Boxes([[0, 0, 10, 10]], [0])
    predicted = Boxes([[0, 0, 10, 10], [50, 50, 70, 70]], [0, 1], [0.9, 0.8])
    issues = image_issues(truth, predicted, RECALL)
    assert len(issues) == 1
    (missing,) = issues
    assert (missing.kind, missing.prediction_index, missing.suggested_label) == (MISSING, 1, 1)
    assert missing.score == pytest.approx(0.8)  # no overlap with a label: the confidence itself


def test_a_missing_box_touching_a_label_is_discounted_by_the_overlap() -> None:
    truth = Boxes([[0, 0, 20, 20]], [0])
    predicted = Boxes([[0, 0, 20, 20], [10, 0, 30, 20]], [0, 0], [0.9, 0.6])  # IoU 1/3 with the label
    missing = only(image_issues(truth, predicted, RECALL), MISSING)
    assert [m.prediction_index for m in missing] == [1]
    assert missing[0].score == pytest.approx(0.6 * (1 - 1 / 3))


def test_overlapping_predictions_of_two_classes_make_one_missing_box() -> None:
    truth = Boxes(np.zeros((0, 4)), [])
    predicted = Boxes([[0, 0, 10, 10], [0, 0, 10, 11]], [0, 1], [0.5, 0.7])
    missing = image_issues(truth, predicted, RECALL)
    assert [(m.kind, m.suggested_label) for m in missing] == [(MISSING, 1)]


def test_a_label_under_a_confident_prediction_of_another_class_is_a_wrong_class() -> None:
    truth = Boxes([[0, 0, 10, 10]], [0])
    predicted = Boxes([[0, 0, 10, 10], [0, 0, 10, 10]], [1, 0], [0.8, 0.1])
    (issue,) = image_issues(truth, predicted, RECALL)
    assert (issue.kind, issue.label_index, issue.suggested_label) == (WRONG_CLASS, 0, 1)
    assert issue.score == pytest.approx(0.8 * (1 - 0.1))


def test_a_well_supported_label_is_not_a_wrong_class_even_with_a_rival_prediction() -> None:
    truth = Boxes([[0, 0, 10, 10]], [0])
    predicted = Boxes([[0, 0, 10, 10], [0, 0, 10, 10]], [1, 0], [0.3, 0.95])
    issues = image_issues(truth, predicted, RECALL)
    assert not issues or issues[0].score < 0.1


def test_a_label_half_off_its_object_is_badly_placed_with_the_prediction_as_the_fix() -> None:
    truth = Boxes([[5, 5, 15, 15]], [0])  # the object is at 0..10: IoU 25 / 175
    predicted = Boxes([[0, 0, 10, 10]], [0], [0.9])
    issues = image_issues(truth, predicted, RECALL)
    assert [(i.kind, i.prediction_index) for i in issues] == [(BADLY_PLACED, 0)]  # not also missing/spurious
    assert issues[0].iou == pytest.approx(25 / 175)
    assert issues[0].score == pytest.approx(0.9 * (1 - 25 / 175))


def test_a_prediction_that_belongs_to_a_neighbouring_label_does_not_move_a_label() -> None:
    truth = Boxes([[0, 0, 10, 10], [7, 0, 17, 10]], [0, 0])
    predicted = Boxes([[7, 0, 17, 10]], [0], [0.9])  # the second label's own box; overlaps the first
    issues = image_issues(truth, predicted, np.array([0.5, 0.5, 0.5]))
    assert [i.kind for i in issues] == [SPURIOUS]
    assert issues[0].label_index == 0
    # evidence is min(1, 0.9 / 0.3) * min(1, IoU / 0.5) with IoU 30 / 170 with the neighbour's prediction
    assert issues[0].score == pytest.approx(0.5 * (1 - (30 / 170) / 0.5))


def test_a_label_no_prediction_supports_is_spurious_as_far_as_the_model_finds_its_class() -> None:
    truth = Boxes([[0, 0, 10, 10], [40, 40, 50, 50]], [0, 2])
    predicted = Boxes([[0, 0, 10, 10]], [0], [0.9])
    (issue,) = image_issues(truth, predicted, np.array([0.9, 0.9, 0.6]))
    assert (issue.kind, issue.label_index) == (SPURIOUS, 1)
    assert issue.score == pytest.approx(0.6)


def test_a_weak_prediction_on_a_label_is_partial_evidence_against_spurious() -> None:
    truth = Boxes([[0, 0, 10, 10]], [0])
    predicted = Boxes([[0, 0, 10, 10]], [1], [0.15])  # half of DETECTED_SCORE, another class
    issues = image_issues(truth, predicted, np.array([0.8, 0.8, 0.8]))
    spurious = only(issues, SPURIOUS)
    assert spurious and spurious[0].score == pytest.approx(0.8 * (1 - 0.5))


def test_a_model_that_finds_nothing_makes_no_label_suspicious() -> None:
    truth = Boxes([[0, 0, 10, 10]], [0])
    nothing = Boxes(np.zeros((0, 4)), [], [])
    recall = class_recall([truth], [nothing], 3)
    assert recall.tolist() == [0.0, 0.0, 0.0]
    assert image_issues(truth, nothing, recall) == []


def test_class_recall_counts_labels_found_by_a_confident_same_class_prediction() -> None:
    truth = [Boxes([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], [0, 0, 1])]
    predicted = [Boxes([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], [0, 0, 0], [0.9, 0.2, 0.9])]
    # class 0: one of two found (0.2 is below DETECTED_SCORE); class 1: its prediction has another class
    assert class_recall(truth, predicted, 3).tolist() == [0.5, 0.0, 0.0]


def test_cleanlab_box_scores_follow_our_box_order() -> None:
    """cleanlab scores an overlooked box only when no label overlaps it at all (NaN otherwise) and orders
    predictions class by class; ours are in score order across classes."""
    truth = [Boxes([[0, 0, 10, 10]], [1])]
    predicted = [
        Boxes([[100, 100, 120, 120], [0, 0, 10, 10], [200, 200, 220, 220]], [1, 1, 0], [0.9, 0.9, 0.8])
    ]
    scores = cleanlab_scores(truth, predicted, 3)
    overlooked = scores.overlooked[0]
    assert np.isnan(overlooked[1]) and not np.isnan(overlooked[0]) and not np.isnan(overlooked[2])
    assert scores.swap[0].shape == (1,) and scores.badloc[0].shape == (1,)
    assert 0.0 <= scores.image_quality[0] <= 1.0


def _suggestion(kind: str, **fields: object) -> Suggestion:
    base = dict(
        kind=kind,
        score=0.9,
        image=0,
        image_id="a",
        image_path="a.jpg",
        label_index=None,
        label_box=None,
        label_class=None,
        suggested_box=None,
        suggested_class=None,
        prediction_score=0.9,
        iou=None,
    )
    return Suggestion(**{**base, **fields})


def test_applying_suggestions_adds_changes_moves_and_deletes_in_the_datasets_own_class_order() -> None:
    record = ImageRecord(
        Path("a.jpg"), 100, 100, [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], [0, 1, 1]
    )
    dataset = DetectionDataset([record], ("WBC", "RBC"))
    suggestions = [
        _suggestion(MISSING, suggested_box=(60.0, 60.0, 70.0, 70.0), suggested_class="WBC"),
        _suggestion(WRONG_CLASS, label_index=0, label_class="WBC", suggested_class="RBC"),
        _suggestion(BADLY_PLACED, label_index=1, suggested_box=(21.0, 21.0, 31.0, 31.0)),
        _suggestion(SPURIOUS, label_index=2),
        _suggestion(SPURIOUS, label_index=0, score=0.2),  # below the threshold: not applied
        _suggestion(MISSING, suggested_box=(80.0, 80.0, 90.0, 90.0), suggested_class="Platelets"),
    ]
    result = apply_suggestions(dataset, suggestions, threshold=0.5)
    fixed = result.dataset.records[0]
    assert fixed.boxes.tolist() == [[0, 0, 10, 10], [21, 21, 31, 31], [60, 60, 70, 70]]
    assert fixed.labels.tolist() == [1, 1, 0]
    assert len(result.applied) == 4
    assert len(result.skipped) == 1 and "Platelets" in result.skipped[0]
    assert dataset.records[0].labels.tolist() == [0, 1, 1]  # the input is not touched


# --- errors on real files ---------------------------------------------------------------------------------


def write_untrained_checkpoint(path: Path, names: tuple[str, ...], silent: bool = False) -> Path:
    """yolox-nano at 160 px with ``names``; ``silent`` pushes every objectness logit to -50, so the model
    predicts nothing at any threshold above 1e-21."""
    model, spec, _ = create_model("yolox-nano", len(names), pretrained=True, input_size=(160, 160))
    state = model.state_dict()
    if silent:
        for key in [k for k in state if k.startswith("head.obj_preds.") and k.endswith(".bias")]:
            state[key] = state[key].clone().fill_(-50.0)
    return save_checkpoint(path, Checkpoint(state, spec, names))


def bccd_subset(bccd_dir: Path, out_dir: Path, count: int, split: str = "train") -> Path:
    """The first ``count`` images of a BCCD split, written as VOC with that split name."""
    dataset = load_dataset(bccd_dir, split=split, format="voc")
    save_dataset(attrs.evolve(dataset, records=dataset.records[:count]), "voc", out_dir, split=split)
    return out_dir


def test_a_checkpoint_with_other_classes_is_a_clear_error(
    bccd_dir: Path, coco8_dir: Path, tmp_path: Path
) -> None:
    coco_names = load_dataset(coco8_dir, split="val").class_names
    checkpoint = write_untrained_checkpoint(tmp_path / "coco.pt", coco_names)
    data = bccd_subset(bccd_dir, tmp_path / "bccd", 2)
    outcome = CliRunner().invoke(
        cli,
        [
            "data",
            "audit",
            str(data),
            "--split",
            "train",
            "--model",
            str(checkpoint),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert outcome.exit_code == 2, outcome.output
    assert (
        "not trained on" in outcome.output and "RBC" in outcome.output and "Traceback" not in outcome.output
    )


def test_classes_in_another_order_are_mapped_by_name_and_said(bccd_dir: Path, tmp_path: Path) -> None:
    checkpoint = write_untrained_checkpoint(tmp_path / "m.pt", ("WBC", "RBC", "Platelets"), silent=True)
    result = audit_labels(
        bccd_subset(bccd_dir, tmp_path / "bccd", 2), checkpoint, split="train", device="cpu"
    )
    assert any("mapped by name" in note and "RBC -> 1" in note for note in result.notes)
    assert [box.labels.tolist() for box in result.labels][0] == [
        ("WBC", "RBC", "Platelets").index(BCCD_NAMES[label]) for label in result.dataset.records[0].labels
    ]


def test_a_model_that_predicts_nothing_says_the_audit_is_not_informative(
    bccd_dir: Path, tmp_path: Path
) -> None:
    checkpoint = write_untrained_checkpoint(tmp_path / "silent.pt", BCCD_NAMES, silent=True)
    data = bccd_subset(bccd_dir, tmp_path / "bccd", 3)
    out = tmp_path / "audit"
    outcome = CliRunner().invoke(
        cli,
        [
            "data",
            "audit",
            str(data),
            "--split",
            "train",
            "--model",
            str(checkpoint),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    assert "predicts nothing" in outcome.output and "not informative" in outcome.output
    report = json.loads((out / "audit.json").read_text())
    assert report["informative"] is False and report["num_detections"] == 0
    assert report["num_labels"] > 0 and report["suggestions"] == []  # no label is suspicious on no evidence
    assert all(image["cleanlab_label_quality"] == 1.0 for image in report["images"])


def test_an_empty_split_is_a_clear_error(bccd_dir: Path, tmp_path: Path) -> None:
    data = bccd_subset(bccd_dir, tmp_path / "bccd", 2)
    (data / "ImageSets" / "Main" / "empty.txt").write_text("")
    checkpoint = write_untrained_checkpoint(tmp_path / "m.pt", BCCD_NAMES)
    outcome = CliRunner().invoke(
        cli,
        [
            "data",
            "audit",
            str(data),
            "--split",
            "empty",
            "--model",
            str(checkpoint),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert outcome.exit_code == 2, outcome.output
    assert "Error:" in outcome.output and "Traceback" not in outcome.output
    assert "empty" in outcome.output


def test_labels_whose_images_are_missing_are_a_clear_error_naming_them(
    bccd_dir: Path, tmp_path: Path
) -> None:
    data = bccd_subset(bccd_dir, tmp_path / "bccd", 3)
    missing = sorted((data / "JPEGImages").iterdir())[1]
    missing.unlink()
    checkpoint = write_untrained_checkpoint(tmp_path / "m.pt", BCCD_NAMES)
    outcome = CliRunner().invoke(
        cli,
        [
            "data",
            "audit",
            str(data),
            "--split",
            "train",
            "--model",
            str(checkpoint),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert outcome.exit_code == 2, outcome.output
    assert missing.name in outcome.output and "does not exist" in outcome.output


# --- a real model, planted errors -------------------------------------------------------------------------


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, bccd_dir: Path) -> tuple[Path, Path]:
    """yolox-nano finetuned at 256 px for 30 epochs on 16 BCCD train images (a VOC copy of them; about a minute
    on 2 cores), and that copy."""
    from yolox_sdk.config.loader import load_config
    from yolox_sdk.engine.trainer import train

    root = tmp_path_factory.mktemp("audit_model")
    data = bccd_subset(bccd_dir, root / "bccd16", 16)
    overrides = [
        "model.name=yolox-nano",
        "model.input_size=[256,256]",
        f"data.train_path={data}",
        "data.train_split=train",
        f"data.val_path={data}",
        "data.val_split=train",
        "data.format=voc",
        "data.batch_size=8",
        "augmentation.mosaic_prob=0.5",
        "augmentation.mixup=false",
        "training.epochs=30",
        "training.warmup_epochs=1",
        "training.no_aug_epochs=7",
        "training.multiscale_range=0",
        "evaluation.eval_interval=30",
        "monitoring.progress_bar=false",
        "monitoring.tensorboard=false",
        f"monitoring.output_dir={root / 'runs'}",
        "device.type=cpu",
    ]
    return Path(train(load_config(None, overrides)).best_checkpoint), data


def _well_seen(result, used: set[int]) -> list[tuple[float, int, int, int]]:
    """(score, image, label, prediction) of labels a same-class prediction covers at IoU >= 0.8 and no
    other label overlaps, best first, on images not in ``used``."""
    found = []
    for image, (truth, predicted) in enumerate(zip(result.labels, result.predictions, strict=True)):
        if image in used or not len(truth) or not len(predicted):
            continue
        iou = box_iou(truth.boxes, predicted.boxes)
        neighbours = box_iou(truth.boxes, truth.boxes) - np.eye(len(truth))
        for label in range(len(truth)):
            same = (predicted.labels == truth.labels[label]) & (iou[label] >= 0.8)
            if same.any() and neighbours[label].max(initial=0) < 0.05:
                best = int(np.argmax(np.where(same, predicted.scores, -1)))
                found.append((float(predicted.scores[best]), image, label, best))
    return sorted(found, reverse=True)


def _empty_spot(record: ImageRecord, predicted: Boxes, size: np.ndarray) -> np.ndarray | None:
    """A box of ``size`` overlapping no label and no prediction of the image."""
    for y in np.arange(0, record.height - size[1], 8.0):
        for x in np.arange(0, record.width - size[0], 8.0):
            box = np.array([[x, y, x + size[0], y + size[1]]])
            others = np.concatenate([record.boxes, predicted.boxes])
            if box_iou(box, others).max(initial=0) == 0:
                return box[0]
    return None


@pytest.fixture(scope="module")
def planted(trained: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A corrupted copy of the 24 images with one error of each kind, chosen from the model's predictions."""
    checkpoint, data = trained
    clean = audit_labels(data, checkpoint, split="train", device="cpu")
    records = list(clean.dataset.records)
    used: set[int] = set()
    errors = {}
    for kind in ("deleted", "swapped", "shifted"):
        score, image, label, _ = _well_seen(clean, used)[0]
        assert score >= 0.4, (
            f"the tiny model sees no label clearly enough to plant a {kind} error ({score:.2f})"
        )
        used.add(image)
        record = records[image]
        box = record.boxes[label].astype(np.float64)
        original = int(record.labels[label])
        boxes, labels = record.boxes.copy(), record.labels.copy()
        if kind == "deleted":
            keep = np.arange(len(labels)) != label
            boxes, labels = boxes[keep], labels[keep]
        elif kind == "swapped":
            labels[label] = (
                BCCD_NAMES.index("WBC") if BCCD_NAMES[original] != "WBC" else BCCD_NAMES.index("RBC")
            )
        else:
            size = box[2:] - box[:2]
            step = np.where(box[:2] - size / 2 >= 0, -size / 2, size / 2)
            boxes[label] = box + np.concatenate([step, step])
        records[image] = attrs.evolve(record, boxes=boxes, labels=labels)
        errors[kind] = {"image": record.image_id, "box": box, "class": BCCD_NAMES[original]}
    rbc = BCCD_NAMES.index("RBC")
    sizes = np.concatenate([r.boxes[r.labels == rbc] for r in records])
    median = np.median(sizes[:, 2:] - sizes[:, :2], axis=0)
    for image, record in enumerate(records):
        spot = None if image in used else _empty_spot(record, clean.predictions[image], median)
        if spot is not None:
            records[image] = attrs.evolve(
                record,
                boxes=np.concatenate([record.boxes, spot.reshape(1, 4)]),
                labels=np.concatenate([record.labels, [rbc]]),
            )
            errors["invented"] = {"image": record.image_id, "box": spot, "class": "RBC"}
            break
    assert "invented" in errors, "no image has room for an invented box"
    corrupted = tmp_path_factory.mktemp("audit_planted") / "bccd"
    save_dataset(attrs.evolve(clean.dataset, records=records), "voc", corrupted, split="train")
    return {"checkpoint": checkpoint, "data": corrupted, "errors": errors}


@pytest.fixture(scope="module")
def audited(planted: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``yolox-sdk data audit`` of the corrupted copy with --fix-copy, the tree hashed before and after."""
    root = tmp_path_factory.mktemp("audit_out")
    before = tree_hash(planted["data"])
    outcome = CliRunner().invoke(
        cli,
        [
            "data",
            "audit",
            str(planted["data"]),
            "--split",
            "train",
            "--model",
            str(planted["checkpoint"]),
            "--out",
            str(root / "audit"),
            "--top",
            "8",
            "--fix-copy",
            str(root / "fixed"),
            "--fix-threshold",
            "0.3",
            "--device",
            "cpu",
        ],
    )
    return {
        **planted,
        "outcome": outcome,
        "before": before,
        "after": tree_hash(planted["data"]),
        "root": root,
    }


def _found(report: dict, kind: str, error: dict, box_key: str) -> dict | None:
    for suggestion in report["suggestions"]:
        box = suggestion[box_key]
        if suggestion["kind"] != kind or suggestion["image_id"] != error["image"] or box is None:
            continue
        if box_iou(np.array([box]), error["box"].reshape(1, 4))[0, 0] >= 0.5:
            return suggestion
    return None


@pytest.mark.slow
def test_every_planted_error_is_found_as_its_kind(audited: dict) -> None:
    assert audited["outcome"].exit_code == 0, audited["outcome"].output
    report = json.loads((audited["root"] / "audit" / "audit.json").read_text())
    errors = audited["errors"]
    missing = _found(report, MISSING, errors["deleted"], "suggested_box")
    swapped = _found(report, WRONG_CLASS, errors["swapped"], "label_box")
    shifted = _found(report, BADLY_PLACED, errors["shifted"], "suggested_box")
    invented = _found(report, SPURIOUS, errors["invented"], "label_box")
    assert missing and missing["suggested_class"] == errors["deleted"]["class"], report["suggestions"][:10]
    assert swapped and swapped["suggested_class"] == errors["swapped"]["class"]
    assert shifted and shifted["label_class"] == errors["shifted"]["class"]
    assert invented
    # each is a clear finding, not one among many: among the three strongest suggestions of its kind
    for found in (missing, swapped, shifted, invented):
        same_kind = sorted(
            (s["score"] for s in report["suggestions"] if s["kind"] == found["kind"]), reverse=True
        )
        assert found["score"] >= same_kind[min(2, len(same_kind) - 1)] and found["score"] >= 0.2, (
            found,
            same_kind,
        )


@pytest.mark.slow
def test_the_dataset_is_untouched_and_the_fix_copy_holds_the_fixes(audited: dict) -> None:
    assert audited["before"] == audited["after"]
    fixed = load_dataset(audited["root"] / "fixed", split="train", format="voc")
    by_id = {record.image_id: record for record in fixed.records}
    swapped = audited["errors"]["swapped"]
    record = by_id[swapped["image"]]
    at_box = box_iou(swapped["box"].reshape(1, 4), record.boxes)[0] >= 0.9
    assert [fixed.class_names[label] for label in record.labels[at_box]] == [swapped["class"]]
    deleted = audited["errors"]["deleted"]
    assert box_iou(deleted["box"].reshape(1, 4), by_id[deleted["image"]].boxes).max() >= 0.5
    invented = audited["errors"]["invented"]
    assert box_iou(invented["box"].reshape(1, 4), by_id[invented["image"]].boxes).max(initial=0) < 0.5
    assert "Wrote a copy with" in audited["outcome"].output


@pytest.mark.slow
def test_json_csv_and_gallery_agree(audited: dict) -> None:
    out = audited["root"] / "audit"
    report = json.loads((out / "audit.json").read_text())
    with (out / "audit.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(report["suggestions"]) > 0
    for row, suggestion in zip(rows, report["suggestions"], strict=True):
        assert (row["kind"], row["image_id"], row["fix"]) == (
            suggestion["kind"],
            suggestion["image_id"],
            suggestion["fix"],
        )
        assert float(row["score"]) == suggestion["score"]
        if suggestion["label_box"] is not None:
            assert [float(row[f"label_{c}"]) for c in ("x1", "y1", "x2", "y2")] == suggestion["label_box"]
    scores = [s["score"] for s in report["suggestions"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    gallery = sorted((out / "gallery").glob("*.png"))
    assert len(gallery) == min(8, len(scores))
    assert gallery[0].name.startswith(f"001_{report['suggestions'][0]['kind']}_")
