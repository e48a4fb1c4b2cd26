"""``data split``: reproducible, exact sizes, stratified so every BCCD class is in every split."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from test_data_validate import tree_hashes

from yolox_sdk.cli.main import cli
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.data.splitting import class_box_counts, split_dataset
from yolox_sdk.errors import DatasetError


@pytest.fixture(scope="module")
def bccd(bccd_dir: Path) -> DetectionDataset:
    return load_dataset(bccd_dir)


def test_split_is_reproducible_exact_disjoint_and_stratified(bccd: DetectionDataset) -> None:
    first = split_dataset(bccd, val=0.2, test=0.1, seed=7)
    assert first == split_dataset(bccd, val=0.2, test=0.1, seed=7)
    assert first != split_dataset(bccd, val=0.2, test=0.1, seed=8)
    total = len(bccd)
    for name, fraction in (("train", 0.7), ("val", 0.2), ("test", 0.1)):
        assert abs(len(first.indices[name]) - total * fraction) <= 1, name
    every = [index for indices in first.indices.values() for index in indices]
    assert sorted(every) == list(range(total)), "disjoint and complete"
    for name in first.indices:
        present = {label for record in first.records(bccd, name) for label in record.labels.tolist()}
        assert present == set(range(bccd.num_classes)), name
        # Images holding the rarer classes are spread close to the split fractions.
        for label in range(bccd.num_classes):
            holding = sum(label in r.labels for r in bccd.records)
            share = sum(label in r.labels for r in first.records(bccd, name)) / holding
            assert abs(share - {"train": 0.7, "val": 0.2, "test": 0.1}[name]) < 0.05, (name, label)


def test_ungrouped_split_is_the_one_before_grouping(bccd: DetectionDataset) -> None:
    # Golden values: README's seed-0 BCCD split, printed by data split before duplicate grouping existed.
    split = split_dataset(bccd, val=0.2, test=0.1, seed=0)
    counts = {name: class_box_counts(split.records(bccd, name), bccd.num_classes) for name in split.indices}
    assert bccd.class_names == ("Platelets", "RBC", "WBC")
    assert counts == {"train": [263, 2922, 259], "val": [63, 850, 76], "test": [35, 381, 37]}
    grouped = split_dataset(bccd, val=0.2, test=0.1, seed=0, groups=[(37, 38), (100, 200, 300)])
    for group in ((37, 38), (100, 200, 300)):
        assert len({name for name, indices in grouped.indices.items() if set(group) & set(indices)}) == 1


def test_split_without_test_and_bad_fractions(bccd: DetectionDataset) -> None:
    split = split_dataset(bccd, val=0.25, seed=0)
    assert set(split.indices) == {"train", "val"} and len(split.indices["val"]) == 91
    with pytest.raises(DatasetError, match="leave some images for train"):
        split_dataset(bccd, val=0.6, test=0.4)


def test_split_cli_writes_lists_and_copies(coco8_dir: Path, tmp_path: Path) -> None:
    before = tree_hashes(coco8_dir)
    out = tmp_path / "out"
    args = [
        "data",
        "split",
        str(coco8_dir),
        "--val",
        "0.25",
        "--test",
        "0.25",
        "--seed",
        "3",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(cli, [*args, "--copy"])
    assert result.exit_code == 0, result.output
    assert "images" in result.output and "person" in result.output
    lists = {name: (out / f"{name}.txt").read_text().split() for name in ("train", "val", "test")}
    assert [len(lines) for lines in lists.values()] == [4, 2, 2]
    assert all((coco8_dir / line).is_file() for lines in lists.values() for line in lines)
    for name, lines in lists.items():
        copy = load_dataset(out / name)
        assert sorted(r.image_path.name for r in copy.records) == sorted(Path(line).name for line in lines)
        as_split = load_dataset(out / name, split=name)  # the copy is written as that split
        assert sorted(r.image_path.name for r in as_split.records) == sorted(
            Path(line).name for line in lines
        )
        listed = load_dataset(coco8_dir, split=str(out / f"{name}.txt"))
        assert sorted(r.image_path.name for r in listed.records) == sorted(Path(line).name for line in lines)
    for which in ("train", "val", "test"):
        assert f"{which}_path: {coco8_dir.resolve()}" in result.output
        assert f"{which}_split: {(out / f'{which}.txt').resolve()}" in result.output
    assert f"--split {(out / 'val.txt').resolve()}" in result.output
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "not empty" in again.output
    again = CliRunner().invoke(cli, [*args, "--force"])
    assert again.exit_code == 0 and (out / "val.txt").read_text().split() == lists["val"]
    inside = CliRunner().invoke(cli, ["data", "split", str(coco8_dir), "--out", str(coco8_dir / "splits")])
    assert inside.exit_code == 2 and "overlaps the source" in inside.output
    assert tree_hashes(coco8_dir) == before
