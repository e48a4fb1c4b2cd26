"""A format plugin's own label checks (``check_labels``) drive ``data validate`` and ``--fix``.

Validation used to special-case the built-in YOLO format; now any format may check its label files line by
line and hand back a cleaned copy. The plugin here is a one-file format (``boxes.txt``: ``image x1 y1 x2 y2
label`` per line) whose reader stops at the first malformed line, as readers should.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from yolox_sdk.data import validation
from yolox_sdk.data.format_support import (
    LABEL_MALFORMED,
    LabelCheck,
    LabelProblem,
    RawImage,
    assemble_dataset,
    export_image,
    read_text,
)
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.errors import DatasetError
from yolox_sdk.plugins import hookimpl
from yolox_sdk.plugins.registry import Registry
from yolox_sdk.testing import plugin_registry

LOWER_CASE = "label written in lower case"


def _fields(line: str) -> list[str] | None:
    fields = line.split()
    if len(fields) != 6:
        return None
    try:
        [float(value) for value in fields[1:5]]
    except ValueError:
        return None
    return fields


class BoxLinesFormat:
    def __init__(self, options: Any = None) -> None:
        pass

    def detect(self, path: Path) -> bool:
        return (Path(path) / "boxes.txt").is_file()

    def load(self, path: Path, split: str | None = None) -> DetectionDataset:
        text_file = Path(path) / "boxes.txt"
        rows = []
        for number, line in enumerate(read_text(text_file).splitlines(), start=1):
            fields = _fields(line)
            if fields is None:
                raise DatasetError(f"{text_file}:{number}: expected 'image x1 y1 x2 y2 label', got {line!r}.")
            rows.append(fields)
        classes = sorted({fields[5] for fields in rows})
        images: dict[str, RawImage] = {}
        for fields in rows:
            raw = images.setdefault(fields[0], RawImage(Path(path) / fields[0], str(text_file)))
            raw.boxes = [*raw.boxes.tolist(), [float(v) for v in fields[1:5]]]
            raw.labels = [*raw.labels.tolist(), classes.index(fields[5])]
        return assemble_dataset(
            list(images.values()), classes, source=Path(path), format="boxlines", layout="boxes.txt"
        )

    def save(self, dataset: DetectionDataset, out_dir: Path) -> list[str]:
        lines, taken = [], set()
        for record in dataset.records:
            name = export_image(record.image_path, out_dir, taken)
            for box, label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True):
                lines.append(" ".join([name, *(f"{v:g}" for v in box), dataset.class_names[label]]))
        (out_dir / "boxes.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return []

    def check_labels(self, root: Path, scratch: Path) -> LabelCheck:
        text_file = root / "boxes.txt"
        problems, kept = [], []
        for number, line in enumerate(read_text(text_file).splitlines(), start=1):
            fields = _fields(line)
            if fields is None:
                problems.append(LabelProblem(LABEL_MALFORMED, f"{text_file}:{number}", dropped=True))
                continue
            if fields[5].islower():
                problems.append(LabelProblem(LOWER_CASE, f"{text_file}:{number}", severity="warning"))
            kept.append(line)
        if not any(problem.dropped for problem in problems):
            return LabelCheck(tuple(problems))
        shutil.copytree(root, scratch, dirs_exist_ok=True)
        (scratch / "boxes.txt").write_text("\n".join(kept) + "\n", encoding="utf-8")
        return LabelCheck(tuple(problems), scratch)


@hookimpl
def _register(register: Any) -> None:
    register("boxlines", BoxLinesFormat, description="boxes.txt: image x1 y1 x2 y2 label")


@pytest.fixture
def registry() -> Registry:
    return plugin_registry(("boxlines", SimpleNamespace(register_dataset_formats=_register)))


@pytest.fixture
def dataset_dir(bccd_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "boxlines"
    root.mkdir()
    for number in (0, 1):
        shutil.copy(bccd_dir / "JPEGImages" / f"BloodImage_0000{number}.jpg", root)
    (root / "boxes.txt").write_text(
        "BloodImage_00000.jpg 10 10 50 50 RBC\n"
        "BloodImage_00000.jpg 10 10 fifty 50 RBC\n"
        "BloodImage_00001.jpg 20 20 80 90 wbc\n"
        "BloodImage_00001.jpg 20 20 80\n"
    )
    return root


def test_format_label_checks_are_reported(registry: Registry, dataset_dir: Path) -> None:
    with pytest.raises(DatasetError, match=r"boxes\.txt:2: expected"):
        load_dataset(dataset_dir, registry=registry)
    report = validation.validate_dataset(dataset_dir, registry=registry)
    assert report.format == "boxlines"
    malformed = report.issues[validation.MALFORMED_LABEL]
    assert (malformed.count, malformed.severity) == (2, "error")
    assert malformed.locations == [f"{dataset_dir / 'boxes.txt'}:2", f"{dataset_dir / 'boxes.txt'}:4"]
    assert (report.issues[LOWER_CASE].count, report.issues[LOWER_CASE].severity) == (1, "warning")
    # The rest of the dataset was read from the cleaned copy, with the original paths in the report.
    assert report.images_checked == 2 and validation.UNREADABLE_ANNOTATIONS not in report.issues
    assert validation.UNREFERENCED_IMAGE not in report.issues


def test_fix_drops_the_lines_the_format_flagged(
    registry: Registry, dataset_dir: Path, tmp_path: Path
) -> None:
    before = (dataset_dir / "boxes.txt").read_text()
    report, changes = validation.fix_dataset(dataset_dir, tmp_path / "fixed", registry=registry)
    assert "dropped 2 label line(s): malformed label line" in changes
    assert (dataset_dir / "boxes.txt").read_text() == before
    fixed = load_dataset(tmp_path / "fixed", registry=registry)
    assert fixed.format == "boxlines" and fixed.num_boxes() == 2
    assert (
        validation.validate_dataset(tmp_path / "fixed", registry=registry).count(validation.MALFORMED_LABEL)
        == 0
    )


def test_reader_severities_reach_the_report(bccd_dir: Path, tmp_path: Path) -> None:
    """VOC marks a split list naming a missing file as an error itself; validation no longer imports VOC."""
    import yolox_sdk.data.validation as module

    assert "yolox_sdk.builtin.formats" not in Path(module.__file__).read_text()
    root = tmp_path / "voc"
    shutil.copytree(bccd_dir, root)
    with (root / "ImageSets" / "Main" / "val.txt").open("a") as handle:
        handle.write("BloodImage_99999\n")
    report = validation.validate_dataset(root)
    issue = report.issues["split list names an image without annotation file"]
    assert issue.severity == "error" and not report.ok
