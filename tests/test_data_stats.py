"""``data stats``: the numbers on BCCD match counts taken straight from the XML; the plots are real PNGs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
from click.testing import CliRunner
from test_data_validate import tree_hashes

from yolox_sdk.cli.main import cli


def raw_bccd_boxes(bccd_dir: Path) -> dict[str, list[tuple[str, float, float]]]:
    """Per annotation file: (class, width, height) of every box with area, read with ElementTree only."""
    out = {}
    for path in sorted((bccd_dir / "Annotations").glob("*.xml")):
        boxes = []
        for obj in ET.parse(path).getroot().iter("object"):
            box = obj.find("bndbox")
            x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            if x2 > x1 and y2 > y1:
                boxes.append((obj.findtext("name").strip(), x2 - x1, y2 - y1))
        out[path.stem] = boxes
    return out


def test_bccd_stats_match_the_xml(bccd_dir: Path, tmp_path: Path) -> None:
    before = tree_hashes(bccd_dir)
    raw = raw_bccd_boxes(bccd_dir)
    result = CliRunner().invoke(cli, ["data", "stats", str(bccd_dir), "--out", str(tmp_path / "stats")])
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "stats" / "stats.json").read_text())
    boxes = [box for image in raw.values() for box in image]
    assert stats["images"] == len(raw) == 364 and stats["boxes"] == len(boxes) == 4886
    by_class = {c["name"]: c for c in stats["classes"]}
    # 4,155 RBC in the XML; the two zero-area boxes (BloodImage_00338, _00343) are both RBC.
    assert {name: c["boxes"] for name, c in by_class.items()} == {"RBC": 4153, "WBC": 372, "Platelets": 361}
    for name, entry in by_class.items():
        assert entry["images"] == sum(any(b[0] == name for b in image) for image in raw.values())
    counts = [len(image) for image in raw.values()]
    assert stats["boxes_per_image"] == {
        "min": min(counts),
        "mean": round(sum(counts) / len(counts), 3),
        "max": max(counts),
    }
    areas = [w * h for _, w, h in boxes]
    assert stats["box_size"]["small"] == sum(a < 32**2 for a in areas)
    assert stats["box_size"]["medium"] == sum(32**2 <= a < 96**2 for a in areas)
    assert stats["box_size"]["large"] == sum(a >= 96**2 for a in areas)
    assert stats["image_sizes"] == {"640x480": 364}
    assert "4153" in result.output and "boxes per image: min" in result.output
    for name in ("class_histogram.png", "box_sizes.png", "samples.png"):
        image = cv2.imread(str(tmp_path / "stats" / name))
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 5, name
    assert tree_hashes(bccd_dir) == before


def test_stats_without_out_prints_only(coco8_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["data", "stats", str(coco8_dir), "--split", "val"])
    assert result.exit_code == 0, result.output
    assert "4 images" in result.output and "person" in result.output
