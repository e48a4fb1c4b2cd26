"""Leak-free splits: planted byte-identical, resized and re-encoded copies of real BCCD images always
land in one split, unrelated BCCD images are not grouped, and ``data validate`` reports duplicates across
existing splits."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import attrs
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from yolox_sdk.cli.main import cli
from yolox_sdk.data import near_duplicates, validation
from yolox_sdk.data.conversion import save_dataset
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.data.near_duplicates import NEAR_DUPLICATE_DISTANCE, hash_images
from yolox_sdk.data.records import DetectionDataset, ImageRecord
from yolox_sdk.data.splitting import duplicate_image_groups, split_dataset
from yolox_sdk.errors import DatasetError

ORIGINALS = 40
PLANTED_PER_KIND = 4
KINDS = ("copy", "half", "q60")
# BCCD's one real near-duplicate pair (the same blood smear field, refocused); seen by eye.
BCCD_NEAR_DUPLICATES = ("BloodImage_00037", "BloodImage_00038")


def planted_copy(record: ImageRecord, kind: str, folder: Path) -> ImageRecord:
    """A new image file under a new name that is the same picture as ``record``'s, with its boxes."""
    target = folder / f"{kind}_{record.image_path.stem}.jpg"
    boxes = record.boxes
    if kind == "copy":
        shutil.copyfile(record.image_path, target)
    else:
        with Image.open(record.image_path) as image:
            if kind == "half":
                image = image.resize((image.width // 2, image.height // 2), Image.Resampling.BILINEAR)
                boxes = boxes / 2
            image.convert("RGB").save(target, quality=60 if kind == "q60" else 90)
    width, height = Image.open(target).size
    return ImageRecord(target, width, height, boxes, record.labels, target.stem)


@pytest.fixture(scope="module")
def bccd(bccd_dir: Path) -> DetectionDataset:
    return load_dataset(bccd_dir)


@pytest.fixture(scope="module")
def planted(
    bccd: DetectionDataset, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, set[frozenset[str]]]:
    """A VOC dataset of 40 BCCD images plus 12 planted copies of 12 of them; the planted pairs by name."""
    scratch = tmp_path_factory.mktemp("planted_images")
    originals = [r for r in bccd.records if r.image_id not in BCCD_NEAR_DUPLICATES][:ORIGINALS]
    records, pairs = list(originals), set()
    for number, kind in enumerate(KINDS):
        for record in originals[number * 10 : number * 10 + PLANTED_PER_KIND]:
            copy = planted_copy(record, kind, scratch)
            records.append(copy)
            pairs.add(frozenset({record.image_path.name, copy.image_path.name}))
    folder = tmp_path_factory.mktemp("planted") / "voc"
    save_dataset(attrs.evolve(bccd, records=records), "voc", folder)
    return folder, pairs


def planted_pair(pairs: set[frozenset[str]], prefix: str) -> list[str]:
    """The first planted pair of one kind (by name: sets have no fixed order), original first."""
    return sorted(min(sorted(pair) for pair in pairs if any(name.startswith(prefix) for name in pair)))


def lists_of(out: Path) -> dict[str, set[str]]:
    return {
        name: {Path(line).name for line in (out / f"{name}.txt").read_text().split()}
        for name in ("train", "val", "test")
        if (out / f"{name}.txt").is_file()
    }


def split_of(lists: dict[str, set[str]], image: str) -> str:
    [name] = [name for name, images in lists.items() if image in images]
    return name


def test_planted_duplicates_are_grouped(planted: tuple[Path, set[frozenset[str]]]) -> None:
    folder, pairs = planted
    dataset = load_dataset(folder)
    groups = duplicate_image_groups(dataset, NEAR_DUPLICATE_DISTANCE)
    found = {frozenset(dataset.records[i].image_path.name for i in group) for group in groups}
    assert found == pairs
    with pytest.MonkeyPatch.context() as patch:  # pairs that span the comparison blocks are found too
        patch.setattr(near_duplicates, "BLOCK_ROWS", 5)
        assert duplicate_image_groups(dataset, NEAR_DUPLICATE_DISTANCE) == groups
    exact = duplicate_image_groups(dataset, 0)
    found = {frozenset(dataset.records[i].image_path.name for i in group) for group in exact}
    assert found == {pair for pair in pairs if any(name.startswith("copy_") for name in pair)}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_data_split_keeps_planted_pairs_together(
    seed: int, planted: tuple[Path, set[frozenset[str]]], tmp_path: Path
) -> None:
    folder, pairs = planted
    out = tmp_path / "split"
    args = [
        "data",
        "split",
        str(folder),
        "--val",
        "0.2",
        "--test",
        "0.1",
        "--seed",
        str(seed),
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"Kept {len(pairs)} group(s) of identical or near-duplicate" in result.output
    lists = lists_of(out)
    for pair in pairs:
        assert len({split_of(lists, image) for image in pair}) == 1, (seed, pair)
    total = ORIGINALS + len(pairs)
    assert sum(len(images) for images in lists.values()) == total
    assert (
        abs(len(lists["val"]) - round(total * 0.2)) <= 1 and abs(len(lists["test"]) - round(total * 0.1)) <= 1
    )


def test_old_behaviour_splits_some_pairs(planted: tuple[Path, set[frozenset[str]]], tmp_path: Path) -> None:
    folder, pairs = planted
    out = tmp_path / "split"
    result = CliRunner().invoke(
        cli, ["data", "split", str(folder), "--out", str(out), "--no-group-duplicates"]
    )
    assert result.exit_code == 0 and "not grouped" in result.output
    lists = lists_of(out)
    assert any(len({split_of(lists, image) for image in pair}) == 2 for pair in pairs)
    exact = CliRunner().invoke(
        cli, ["data", "split", str(folder), "--out", str(out), "--force", "--near-duplicate-distance", "0"]
    )
    assert exact.exit_code == 0 and "Kept 4 group(s) of byte-identical images" in exact.output


def test_unrelated_bccd_images_are_not_grouped(bccd: DetectionDataset) -> None:
    started = time.perf_counter()
    hashes = hash_images([record.image_path for record in bccd.records], workers=2)
    assert time.perf_counter() - started < 20, "hashing 364 images takes a few seconds on 2 cores"
    assert all(item.difference is not None for item in hashes)
    groups = duplicate_image_groups(bccd, NEAR_DUPLICATE_DISTANCE)
    assert [tuple(bccd.records[i].image_id for i in group) for group in groups] == [BCCD_NEAR_DUPLICATES]


def test_grouped_split_keeps_sizes_and_strata(bccd: DetectionDataset) -> None:
    rng = np.random.default_rng(0)
    pairs = rng.permutation(len(bccd))[:60].reshape(-1, 2).tolist()
    split = split_dataset(bccd, val=0.2, test=0.1, seed=3, groups=pairs)
    where = {index: name for name, indices in split.indices.items() for index in indices}
    assert sorted(where) == list(range(len(bccd)))
    assert all(where[a] == where[b] for a, b in pairs)
    for name, fraction in (("val", 0.2), ("test", 0.1)):
        assert abs(len(split.indices[name]) - round(len(bccd) * fraction)) <= 1
        present = {label for record in split.records(bccd, name) for label in record.labels.tolist()}
        assert present == set(range(bccd.num_classes))
    assert split_dataset(bccd, seed=3) == split_dataset(bccd, seed=3, groups=())
    with pytest.raises(DatasetError, match="two duplicate groups"):
        split_dataset(bccd, groups=[(1, 2), (2, 3)])


def test_validate_reports_duplicates_across_split_lists(
    planted: tuple[Path, set[frozenset[str]]], tmp_path: Path
) -> None:
    folder, pairs = planted
    copy_pair = planted_pair(pairs, "copy_")
    half_pair = planted_pair(pairs, "half_")
    planted_names = {name for pair in pairs for name in pair}
    shared = min(
        r.image_path.name for r in load_dataset(folder).records if r.image_path.name not in planted_names
    )
    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text(f"{copy_pair[0]}\n{half_pair[0]}\n{shared}\n", encoding="utf-8")
    val.write_text(f"{copy_pair[1]}\n{half_pair[1]}\n{shared}\n", encoding="utf-8")
    report_file = tmp_path / "report.json"
    args = ["data", "validate", str(folder), "--splits", f"{train},{val}", "--json", str(report_file)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "image in more than one split" in result.output
    report = json.loads(report_file.read_text())
    issues = {issue["problem"]: issue for issue in report["issues"]}
    overlap = issues[validation.SPLIT_OVERLAP]
    assert overlap["severity"] == "error" and overlap["count"] == 2
    assert any(f"{shared}: in {train} and {val}" in where for where in overlap["locations"])
    assert any(copy_pair[0] in where and copy_pair[1] in where for where in overlap["locations"])
    near = issues[validation.SPLIT_NEAR_DUPLICATE]
    assert near["severity"] == "warning" and near["count"] == 1 and half_pair[1] in near["locations"][0]
    assert report["splits_compared"] == [str(train), str(val)]


def test_validate_compares_the_format_splits(
    planted: tuple[Path, set[frozenset[str]]], tmp_path: Path
) -> None:
    source, pairs = planted
    folder = tmp_path / "voc"
    shutil.copytree(source, folder)
    q60_pair = planted_pair(pairs, "q60_")
    lists = folder / "ImageSets" / "Main"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "train.txt").write_text(f"{Path(q60_pair[0]).stem}\n", encoding="utf-8")
    (lists / "val.txt").write_text(f"{Path(q60_pair[1]).stem}\n", encoding="utf-8")
    report = validation.validate_dataset(folder)
    assert report.splits_compared == ["train", "val"]
    assert report.count(validation.SPLIT_NEAR_DUPLICATE) == 1 and report.count(validation.SPLIT_OVERLAP) == 0
    assert validation.validate_dataset(folder, splits=()).splits_compared == []
