"""Split list files as splits: what ``data split`` writes is read back by ``--split`` and
``data.<which>_split`` for every format, and a list naming an unknown image is a clear error."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import yaml
from click.testing import CliRunner

from yolox_sdk.cli.main import cli
from yolox_sdk.config.loader import load_config
from yolox_sdk.data.conversion import save_dataset
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.data.split_lists import is_split_list
from yolox_sdk.data.training_data import load_split
from yolox_sdk.errors import DatasetError

FORMATS = ("coco", "yolo", "voc", "csv")


@pytest.fixture(scope="module")
def bccd(bccd_dir: Path) -> DetectionDataset:
    return load_dataset(bccd_dir)


@pytest.fixture(scope="module")
def bccd_lists(bccd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("bccd_split") / "split"
    args = ["data", "split", str(bccd_dir), "--val", "0.2", "--test", "0.1", "--seed", "5", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return {name: out / f"{name}.txt" for name in ("train", "val", "test")}


def list_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_split_lists_read_back_as_split(
    bccd_dir: Path, bccd: DetectionDataset, bccd_lists: dict[str, Path]
) -> None:
    union: set[str] = set()
    for name, list_file in bccd_lists.items():
        lines = list_lines(list_file)
        subset = load_dataset(bccd_dir, split=str(list_file))
        assert len(subset) == len(lines), name
        names = [record.image_path.name for record in subset.records]
        assert names == [Path(line).name for line in lines], "the list's order is kept"
        assert subset.class_names == bccd.class_names
        assert union.isdisjoint(names)
        union.update(names)
        result = CliRunner().invoke(cli, ["data", "info", str(bccd_dir), "--split", str(list_file)])
        assert result.exit_code == 0, result.output
        assert f"{len(lines)} images" in result.output
    assert union == {record.image_path.name for record in bccd.records}


def test_split_lists_in_a_config(
    bccd_dir: Path, bccd_lists: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(bccd_lists["train"].parent.parent)
    config_file = tmp_path / "config.yaml"
    data = {
        "train_path": str(bccd_dir),
        "train_split": "split/train.txt",  # relative to the current directory
        "val_path": str(bccd_dir),
        "val_split": "ImageSets/Main/val.txt",  # relative to the dataset folder: VOC ids, not paths
    }
    config_file.write_text(yaml.safe_dump({"data": data}), encoding="utf-8")
    config = load_config(config_file)
    train = load_split(config, "train")
    expected = [Path(line).name for line in list_lines(bccd_lists["train"])]
    assert [record.image_path.name for record in train.records] == expected
    val = load_split(config, "val")
    ids = [line.split()[0] for line in list_lines(bccd_dir / "ImageSets" / "Main" / "val.txt")]
    assert [record.image_id for record in val.records] == ids
    assert [r.image_id for r in val.records] == [
        r.image_id for r in load_dataset(bccd_dir, split="val").records
    ]


def test_unknown_image_is_an_error_naming_file_and_line(bccd_dir: Path, tmp_path: Path) -> None:
    list_file = tmp_path / "val.txt"
    list_file.write_text(
        "# my val images\n\nJPEGImages/BloodImage_00001.jpg\nBloodImage_00002.jpg\nJPEGImages/nope.jpg\n"
        "missing_too.jpg\n",
        encoding="utf-8",
    )
    with pytest.raises(DatasetError, match=r"val\.txt, line 5: 'JPEGImages/nope\.jpg'.*2 of 4 lines"):
        load_dataset(bccd_dir, split=str(list_file))
    result = CliRunner().invoke(cli, ["data", "info", str(bccd_dir), "--split", str(list_file)])
    assert result.exit_code == 2, result.output
    assert str(list_file) in result.output and "line 5" in result.output and "Traceback" not in result.output
    missing = CliRunner().invoke(cli, ["data", "stats", str(bccd_dir), "--split", "nowhere/val.txt"])
    assert missing.exit_code == 2 and "Split list nowhere/val.txt not found" in missing.output


def test_comments_duplicates_backslashes_and_absolute_paths(bccd_dir: Path, tmp_path: Path) -> None:
    image = bccd_dir / "JPEGImages" / "BloodImage_00003.jpg"
    list_file = tmp_path / "list.txt"
    list_file.write_text(
        f"  # comment\nJPEGImages\\BloodImage_00001.jpg\n{image}\nBloodImage_00001.jpg\n\nBloodImage_00005\n",
        encoding="utf-8",
    )
    subset = load_dataset(bccd_dir, split=str(list_file))
    assert [r.image_id for r in subset.records] == [
        "BloodImage_00001",
        "BloodImage_00003",
        "BloodImage_00005",
    ]
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="names no image"):
        load_dataset(bccd_dir, split=str(empty))


def test_split_name_rule() -> None:
    assert is_split_list("val.txt") and is_split_list("splits/val") and is_split_list("C:\\lists\\val.TXT")
    assert not is_split_list("val") and not is_split_list("train2017") and not is_split_list(None)


@pytest.mark.parametrize("format_name", FORMATS)
def test_lists_and_copies_in_every_format(
    format_name: str, bccd: DetectionDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    save_dataset(attrs.evolve(bccd, records=bccd.records[:24]), format_name, source)
    out = tmp_path / "out"
    args = ["data", "split", str(source), "--val", "0.25", "--seed", "1", "--out", str(out), "--copy"]
    result = CliRunner().invoke(cli, [*args, "--format", format_name])
    assert result.exit_code == 0, result.output
    assert f"    format: {format_name}\n" in result.output
    assert f"data info {out / 'val'} --split val" in result.output
    assert f"val_split: {(out / 'val.txt').resolve()}" in result.output
    whole = load_dataset(source)
    for name in ("train", "val"):
        lines = list_lines(out / f"{name}.txt")
        expected = sorted(Path(line).name for line in lines)
        listed = load_dataset(source, split=str(out / f"{name}.txt"))
        assert sorted(r.image_path.name for r in listed.records) == expected
        assert listed.class_names == whole.class_names
        copy = load_dataset(out / name, split=name)
        assert sorted(r.image_path.name for r in copy.records) == expected, (format_name, name)
        read = CliRunner().invoke(cli, ["data", "info", str(out / name), "--split", name])
        assert read.exit_code == 0 and f"{len(lines)} images" in read.output, read.output
    monkeypatch.chdir(out)
    relative = load_dataset(source, split="val.txt")  # found in the current directory first
    assert len(relative) == len(list_lines(out / "val.txt"))


def test_convert_and_fix_write_a_list_as_its_stem(
    bccd_dir: Path, bccd_lists: dict[str, Path], tmp_path: Path
) -> None:
    expected = sorted(Path(line).name for line in list_lines(bccd_lists["val"]))
    converted = tmp_path / "coco"
    args = [
        "data",
        "convert",
        str(bccd_dir),
        "--to",
        "coco",
        str(converted),
        "--split",
        str(bccd_lists["val"]),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert (converted / "val.json").is_file()
    assert sorted(r.image_path.name for r in load_dataset(converted, split="val").records) == expected
    fixed = tmp_path / "fixed"
    args = ["data", "validate", str(bccd_dir), "--split", str(bccd_lists["val"]), "--fix", str(fixed)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert sorted(r.image_path.name for r in load_dataset(fixed, split="val").records) == expected


def test_the_load_report_is_the_listed_images_part(
    bccd_dir: Path, bccd: DetectionDataset, tmp_path: Path
) -> None:
    # BCCD has one zero-area box in BloodImage_00338.xml and one in BloodImage_00343.xml (see test_data_validate).
    [problem] = bccd.report.counts
    assert bccd.report.counts[problem] == 2
    one, none = tmp_path / "one.txt", tmp_path / "none.txt"
    one.write_text("BloodImage_00338\nBloodImage_00001\n", encoding="utf-8")
    none.write_text("BloodImage_00001\n", encoding="utf-8")
    subset = load_dataset(bccd_dir, split=str(one))
    assert dict(subset.report.counts) == {problem: 1}
    assert "BloodImage_00338.xml" in subset.report.examples[problem][0]
    assert not load_dataset(bccd_dir, split=str(none)).report.counts
