"""``data convert``: any registered reader to any writer, lossless round trips, warnings, safe output folders."""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
from click.testing import CliRunner
from conftest import BCCD_CLASSES, read_bccd_boxes
from test_data_validate import tree_hashes

from yolox_sdk.builtin.formats.voc import save_voc
from yolox_sdk.cli.main import cli
from yolox_sdk.data.formats import load_dataset

SUBSET = 24


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def test_voc_coco_yolo_voc_round_trip_keeps_boxes(bccd_dir: Path, tmp_path: Path) -> None:
    bccd = load_dataset(bccd_dir, split="test")
    source = tmp_path / "voc"
    save_voc(attrs.evolve(bccd, records=bccd.records[:SUBSET]), source)
    before = tree_hashes(source)
    code, output = invoke("data", "convert", source, "--to", "coco", tmp_path / "coco")
    assert code == 0, output
    assert "Nothing was lost" in output
    assert (
        invoke("data", "convert", tmp_path / "coco", "--to", "yolo", tmp_path / "yolo", "--from", "coco")[0]
        == 0
    )
    assert invoke("data", "convert", tmp_path / "yolo", "--to", "voc", tmp_path / "back")[0] == 0
    back = load_dataset(tmp_path / "back")
    assert back.format == "voc" and len(back) == SUBSET
    # The reader sorts VOC class names; map through names to compare with the raw XML.
    for record in back.records:
        raw_boxes, raw_labels = read_bccd_boxes(bccd_dir, record.image_path.stem)
        keep = [i for i, (x1, y1, x2, y2) in enumerate(raw_boxes) if x2 > x1 and y2 > y1]
        expected = np.asarray([raw_boxes[i] for i in keep], dtype=np.float64) - 1  # VOC is 1-based
        names = [back.class_names[label] for label in record.labels.tolist()]
        assert names == [BCCD_CLASSES[raw_labels[i]] for i in keep]
        np.testing.assert_allclose(record.boxes, expected, atol=1e-3)
    assert tree_hashes(source) == before


def test_convert_prints_what_the_target_cannot_hold(coco8_dir: Path, tmp_path: Path) -> None:
    code, output = invoke("data", "convert", coco8_dir, "--to", "voc", tmp_path / "voc")
    assert code == 0, output
    assert "voc cannot hold everything" in output and "class_names" in output


def test_convert_refuses_unsafe_or_unknown_targets(coco8_dir: Path, tmp_path: Path) -> None:
    before = tree_hashes(coco8_dir)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, output = invoke("data", "convert", coco8_dir, "--to", "coco", out)
    assert code == 2 and "not empty" in output and "--force" in output
    code, output = invoke("data", "convert", coco8_dir, "--to", "coco", out, "--force")
    # --force empties an earlier dataset only: a folder that is not one is refused, untouched.
    assert code == 2 and "does not look like a dataset" in output and (out / "keep.txt").read_text() == "mine"
    assert not (out / "annotations.json").exists()
    code, output = invoke("data", "convert", coco8_dir, "--to", "coco", coco8_dir / "converted")
    assert code == 2 and "overlaps the source" in output
    code, output = invoke("data", "convert", coco8_dir, "--to", "cocoo", tmp_path / "other")
    assert code == 2 and "cocoo" in output
    assert tree_hashes(coco8_dir) == before and not (coco8_dir / "converted").exists()


class _RecordingWriter:
    """A format whose ``save`` takes the split (the current interface) and notes what it was given."""

    seen: list[str | None] = []

    def __init__(self, options: object = None) -> None:
        pass

    def detect(self, path: Path) -> bool:
        return False

    def save(self, dataset: object, out_dir: Path, *, split: str | None = None) -> list[str]:
        self.seen.append(split)
        return []


class _OldWriter(_RecordingWriter):
    """A format written before the split was passed: ``save(dataset, out_dir)`` only."""

    def save(self, dataset: object, out_dir: Path) -> list[str]:  # type: ignore[override]
        self.seen.append("old")
        return [f"wrote {len(dataset)} images"]  # type: ignore[arg-type]


def test_convert_tells_the_writer_the_split(coco8_dir: Path, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from yolox_sdk.data.conversion import convert_dataset
    from yolox_sdk.plugins import hookimpl
    from yolox_sdk.testing import plugin_registry

    @hookimpl
    def register_dataset_formats(register: object) -> None:
        register("recording", _RecordingWriter)  # type: ignore[operator]
        register("old", _OldWriter)  # type: ignore[operator]

    registry = plugin_registry(
        ("writers", SimpleNamespace(register_dataset_formats=register_dataset_formats))
    )
    _RecordingWriter.seen = []
    convert_dataset(coco8_dir, "recording", tmp_path / "val", split="val", registry=registry)
    convert_dataset(coco8_dir, "recording", tmp_path / "all", registry=registry)
    result = convert_dataset(coco8_dir, "old", tmp_path / "old", split="val", registry=registry)
    assert _RecordingWriter.seen == ["val", None, "old"]
    assert result.warnings == ["wrote 4 images"]
