"""``data validate``: every image decoded, every label checked, a JSON report, ``--fix`` and the cached fast path."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from yolox_sdk.cli.main import cli
from yolox_sdk.data import validation
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.data.validation import quick_validate, validate_dataset


def tree_hashes(folder: Path) -> dict[str, str]:
    """Content hash of every file under ``folder``, to prove a command left it untouched."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha1(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_bccd_has_only_the_two_zero_area_boxes_and_one_near_duplicate_across_splits(
    bccd_dir: Path, tmp_path: Path
) -> None:
    before = tree_hashes(bccd_dir)
    report_path = tmp_path / "report.json"
    code, output = invoke("data", "validate", str(bccd_dir), "--json", str(report_path))
    assert code == 0, output
    assert "box with zero or negative area" in output and "0 error(s), 3 warning(s)" in output
    report = json.loads(report_path.read_text())
    assert report["errors"] == 0 and report["ok"] and report["images_checked"] == 364
    issues = {issue["problem"]: issue for issue in report["issues"]}
    assert set(issues) == {validation.BOX_ZERO_AREA, "near-duplicate images in different splits"}
    # BCCD's own lists put the same blood smear field, refocused, in train (00038) and val (00037).
    [near] = issues["near-duplicate images in different splits"]["locations"]
    assert "BloodImage_00037" in near and "BloodImage_00038" in near
    issue = issues[validation.BOX_ZERO_AREA]
    assert issue["severity"] == "warning"
    assert issue["count"] == 2
    assert "BloodImage_00338.xml" in issue["locations"][0] and "BloodImage_00343.xml" in issue["locations"][1]
    assert tree_hashes(bccd_dir) == before


@pytest.fixture
def planted(coco8_dir: Path, tmp_path: Path) -> Path:
    """coco8 (YOLO) with one of each planted problem."""
    root = tmp_path / "planted"
    shutil.copytree(coco8_dir, root)
    images, labels = root / "images", root / "labels"
    original = images / "train" / "000000000009.jpg"
    data = original.read_bytes()
    (images / "train" / "cut.jpg").write_bytes(data[: len(data) // 2])
    shutil.copy(labels / "train" / "000000000009.txt", labels / "train" / "cut.txt")
    (images / "train" / "empty.jpg").write_bytes(b"")
    with Image.open(images / "val" / "000000000036.jpg") as image:
        image.reduce(2).save(images / "val" / "liar.png", format="JPEG")
    with Image.open(images / "val" / "000000000042.jpg") as image:
        image.convert("L").save(images / "val" / "gray.png")
    shutil.copy(labels / "val" / "000000000042.txt", labels / "val" / "gray.txt")
    with open(labels / "train" / "000000000025.txt", "a") as handle:
        handle.write("99 0.5 0.5 0.1 0.1\n")
    (labels / "val" / "orphan.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    shutil.copy(images / "val" / "000000000049.jpg", images / "val" / "copy_of_49.jpg")
    shutil.copy(labels / "val" / "000000000049.txt", labels / "val" / "copy_of_49.txt")
    return root


EXPECTED = {
    validation.TRUNCATED: ("error", "cut.jpg"),
    validation.EMPTY_FILE: ("error", "empty.jpg"),
    validation.CLASS_OUT_OF_RANGE: ("error", "000000000025.txt:"),
    validation.EXTENSION_MISMATCH: ("warning", "liar.png"),
    validation.GRAYSCALE: ("warning", "gray.png"),
    validation.ORPHAN_LABEL: ("warning", "orphan.txt"),
    validation.DUPLICATE_IMAGE: ("warning", "copy_of_49.jpg"),
}


def test_planted_problems_found_with_severity_and_fixed(planted: Path, tmp_path: Path) -> None:
    before = tree_hashes(planted)
    report_path, fixed = tmp_path / "report.json", tmp_path / "fixed"
    code, output = invoke(
        "data", "validate", str(planted), "--json", str(report_path), "--fix", str(fixed), "--workers", "2"
    )
    assert code == 1, output
    issues = {issue["problem"]: issue for issue in json.loads(report_path.read_text())["issues"]}
    for problem, (severity, where) in EXPECTED.items():
        assert issues[problem]["severity"] == severity, problem
        assert issues[problem]["count"] == 1, problem
        assert where in issues[problem]["locations"][0], problem
    # liar.png has no label file: the only other finding allowed.
    assert set(issues) == {*EXPECTED, validation.NO_LABELS}
    assert "liar.png" in issues[validation.NO_LABELS]["locations"][0]
    assert "dropped 1 label line(s): class id out of range" in output
    assert "left out images that cannot be decoded" in output and "left out duplicate images" in output
    assert tree_hashes(planted) == before

    clean = validate_dataset(fixed)
    assert clean.ok and set(clean.issues) == {validation.NO_LABELS}
    dataset = load_dataset(fixed)
    assert len(dataset) == 10  # 8 originals + gray + liar; cut, empty and the duplicate left out
    assert {p.name for p in (fixed / "images").iterdir()} >= {"gray.png", "liar.jpg"}
    with Image.open(fixed / "images" / "gray.png") as image:
        assert image.mode == "RGB"


def test_fix_refuses_a_non_empty_folder(bccd_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "taken.txt").write_text("x")
    code, output = invoke("data", "validate", str(bccd_dir), "--fix", str(tmp_path))
    assert code == 2 and "not empty" in output


def test_quick_validate_uses_its_cache(
    coco8_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "coco8"
    shutil.copytree(coco8_dir, root)
    with Image.open(root / "images" / "val" / "000000000042.jpg") as image:
        image.convert("L").save(root / "images" / "val" / "000000000042.jpg")
    dataset = load_dataset(root)
    probed: list[Path] = []
    real = validation.inspect_image_header

    def counting(path: Path) -> tuple[tuple[str, str], ...]:
        probed.append(Path(path))
        return real(path)

    monkeypatch.setattr(validation, "inspect_image_header", counting)
    first = quick_validate(dataset, tmp_path / "cache")
    assert len(probed) == 8 and (tmp_path / "cache" / validation.QUICK_CACHE_FILE).is_file()
    assert first.ok and first.count(validation.GRAYSCALE) == 1
    second = quick_validate(dataset, tmp_path / "cache")
    assert len(probed) == 8, "unchanged files must come from the cache"
    assert second.to_dict() == first.to_dict()
    touched = root / "images" / "train" / "000000000009.jpg"
    os.utime(touched, ns=(1_000_000_000, 1_000_000_000))
    quick_validate(dataset, tmp_path / "cache")
    assert probed[8:] == [touched.resolve()]


def test_quick_validate_reports_truncation(coco8_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "coco8"
    shutil.copytree(coco8_dir, root)
    dataset = load_dataset(root)
    target = root / "images" / "train" / "000000000030.jpg"
    target.write_bytes(target.read_bytes()[:-5000])
    report = quick_validate(dataset, tmp_path / "cache")
    assert not report.ok and report.issues[validation.TRUNCATED].locations[0].startswith(
        str(target.resolve())
    )


def test_image_kinds_found_by_decoding(coco8_dir: Path, tmp_path: Path) -> None:
    source = coco8_dir / "images" / "train" / "000000000030.jpg"
    with Image.open(source) as image:
        image.convert("CMYK").save(tmp_path / "cmyk.jpg")
        sixteen = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)
        sixteen.save(tmp_path / "deep.png")
        exif = image.getexif()
        exif[validation.EXIF_ORIENTATION] = 6
        image.save(tmp_path / "rotated.jpg", exif=exif)
    found = {
        name: {problem for problem, _ in validation.inspect_image(tmp_path / name).problems}
        for name in ("cmyk.jpg", "deep.png", "rotated.jpg")
    }
    assert found == {
        "cmyk.jpg": {validation.CMYK},
        "deep.png": {validation.SIXTEEN_BIT, validation.GRAYSCALE},
        "rotated.jpg": {validation.EXIF_ROTATED},
    }
    assert validation.inspect_image(source).problems == ()
