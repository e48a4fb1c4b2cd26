"""Shared fixtures: the real datasets and weights in ``../shared/assets`` (read-only)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("YOLOX_SDK_ASSETS") or REPO_ROOT.parent / "shared" / "assets").resolve()


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees the offline mirror and a private, empty cache."""
    monkeypatch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
    monkeypatch.setenv("YOLOX_SDK_HOME", str(tmp_path_factory.mktemp("yolox_sdk_home")))


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    """The read-only offline mirror (``../shared/assets``)."""
    if not (ASSETS / "catalog.json").is_file():
        pytest.fail(f"Shared assets not found at {ASSETS}; set YOLOX_SDK_ASSETS to the shared/assets folder.")
    return ASSETS


@pytest.fixture(scope="session")
def bccd_dir(assets_dir: Path) -> Path:
    """BCCD in Pascal VOC layout (Annotations/, JPEGImages/, ImageSets/Main/)."""
    return assets_dir / "datasets" / "bccd" / "BCCD"


@pytest.fixture(scope="session")
def coco8_dir(assets_dir: Path) -> Path:
    """coco8 in YOLO layout (images/, labels/, data.yaml)."""
    return assets_dir / "datasets" / "coco8"


@pytest.fixture(scope="session")
def nano_weights(assets_dir: Path) -> Path:
    """COCO-pretrained YOLOX-Nano in the official checkpoint format."""
    return assets_dir / "weights" / "yolox_nano_coco_from_onnx.pth"


BCCD_CLASSES = ("RBC", "WBC", "Platelets")


def read_bccd_boxes(bccd_dir: Path, image_id: str) -> tuple[list[list[float]], list[int]]:
    """Boxes (raw VOC xyxy) and class indices of one BCCD image, parsed without the SDK's format plugins."""
    import xml.etree.ElementTree as ET

    root = ET.parse(bccd_dir / "Annotations" / f"{image_id}.xml").getroot()
    boxes, labels = [], []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        boxes.append([float(box.find(key).text) for key in ("xmin", "ymin", "xmax", "ymax")])
        labels.append(BCCD_CLASSES.index(obj.find("name").text.strip()))
    return boxes, labels
