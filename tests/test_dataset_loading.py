"""``load_dataset``: names through the catalog and downloads, format detection, options, round trips."""

from __future__ import annotations

import functools
import json
import shutil
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolox_sdk.assets.catalog import cache_home
from yolox_sdk.assets.datasets import DATASET_SOURCES, locate_dataset, resolve_dataset
from yolox_sdk.builtin.formats.coco import CocoOptions
from yolox_sdk.builtin.formats.voc import VocOptions
from yolox_sdk.data.formats import detect_format, load_dataset
from yolox_sdk.data.image_check import ImageProbe, probe_image
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.errors import ConfigError, DatasetError
from yolox_sdk.plugins import get_registry
from yolox_sdk.plugins.interfaces import DatasetFormat

ARCHIVE_TOP = "BCCD_Dataset-d272fb14cdff6e473fafeeeba32aba5f560e9e43"


def test_builtin_formats_are_registered_plugins() -> None:
    registry = get_registry()
    assert {"coco", "voc", "yolo"} <= set(registry.names("dataset_format"))
    assert registry.get("dataset_format", "coco").options is CocoOptions
    assert registry.get("dataset_format", "voc").options is VocOptions
    assert registry.get("dataset_format", "yolo").options is None
    for name in ("coco", "voc", "yolo"):
        entry = registry.get("dataset_format", name)
        instance = entry.factory(entry.options() if entry.options else None)
        assert isinstance(instance, DatasetFormat)
        assert entry.origin.distribution == "yolox-sdk"


@pytest.fixture(scope="module")
def bccd(bccd_dir: Path) -> DetectionDataset:
    """All of BCCD, read once for the round trips."""
    return load_dataset(bccd_dir, format="voc")


@pytest.mark.parametrize(("name", "tolerance"), [("coco", 0.0), ("yolo", 1e-3), ("voc", 0.0)])
def test_round_trip_keeps_boxes_labels_and_classes(
    bccd: DetectionDataset, tmp_path: Path, name: str, tolerance: float
) -> None:
    writer = get_registry().get("dataset_format", name).factory(None)
    assert writer.save(bccd, tmp_path / name) == []
    again = load_dataset(tmp_path / name)
    assert again.format == name
    assert again.class_names == bccd.class_names == ("Platelets", "RBC", "WBC")
    assert len(again) == len(bccd) == 364
    assert again.num_boxes() == bccd.num_boxes() == 4886
    assert not again.report.counts
    for before, after in zip(bccd.records, again.records, strict=True):
        assert after.image_path.name == before.image_path.name
        assert (after.width, after.height) == (before.width, before.height)
        np.testing.assert_allclose(after.boxes, before.boxes, rtol=0, atol=tolerance)
        np.testing.assert_array_equal(after.labels, before.labels)


def test_detect_each_layout(bccd_dir: Path, coco8_dir: Path, tmp_path: Path) -> None:
    registry = get_registry()
    coco_file = tmp_path / "coco" / "instances.json"
    coco_file.parent.mkdir()
    coco_file.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    assert detect_format(bccd_dir, registry) == "voc"
    assert detect_format(coco8_dir, registry) == "yolo"
    assert detect_format(coco8_dir / "data.yaml", registry) == "yolo"
    assert detect_format(coco_file, registry) == "coco"
    assert detect_format(coco_file.parent, registry) == "coco"


def test_folder_matching_no_format(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a dataset")
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    message = str(error.value)
    assert "does not look like any dataset format" in message
    assert "- coco: COCO JSON" in message and "- voc: Pascal VOC" in message and "- yolo: YOLO txt" in message
    assert "data.format" in message


def test_folder_matching_two_formats(tmp_path: Path) -> None:
    for folder in ("Annotations", "JPEGImages"):
        (tmp_path / folder).mkdir()
    (tmp_path / "classes.txt").write_text("cell\n")
    with pytest.raises(DatasetError, match=r"more than one dataset format: voc, yolo\. Set data\.format"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match=r"No images were found at .*Expected a Pascal VOC folder"):
        load_dataset(tmp_path, format="voc")


def test_empty_training_set(tmp_path: Path) -> None:
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [cell]\n")
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path, split="train")
    assert f"No images were found at {tmp_path} (split 'train')" in str(error.value)
    assert "Expected a YOLO folder: data.yaml" in str(error.value)


def test_format_options_are_structured(bccd_dir: Path) -> None:
    order = ["WBC", "RBC", "Platelets"]
    dataset = load_dataset(bccd_dir, split="test", format="voc", options={"class_names": order})
    assert dataset.class_names == tuple(order)
    assert load_dataset(bccd_dir, split="test", options=VocOptions(class_names=order)).class_names == tuple(
        order
    )
    with pytest.raises(ConfigError, match=r"data\.format_options\.class_nmes.*Did you mean 'class_names'"):
        load_dataset(bccd_dir, split="test", options={"class_nmes": order})


def test_bccd_name_resolves_through_the_mirror(bccd_dir: Path, coco8_dir: Path) -> None:
    assert resolve_dataset("bccd") == bccd_dir
    assert locate_dataset("coco8").format == "yolo"
    dataset = load_dataset("bccd", split="val")
    assert (len(dataset), dataset.format, dataset.source) == (87, "voc", bccd_dir)


def test_unknown_name_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError,
        match=r"No datasets named 'bccdd'.*Did you mean 'bccd'\? Known dataset names: bccd, coco8\.",
    ):
        load_dataset("bccdd")
    with pytest.raises(DatasetError, match=r"Dataset path .*nowhere does not exist"):
        load_dataset(tmp_path / "nowhere")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A local HTTP server over a temporary folder; the offline mirror is switched off."""
    monkeypatch.delenv("YOLOX_SDK_ASSETS", raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/mirror"
    server.shutdown()
    server.server_close()


def _build_archive(bccd_dir: Path, dest: Path, annotations: int | None = None) -> None:
    """A zip laid out like GitHub's archive: every annotation, the split lists, the test split's images."""
    test_ids = (bccd_dir / "ImageSets" / "Main" / "test.txt").read_text().split()
    xml_files = sorted((bccd_dir / "Annotations").glob("*.xml"))[:annotations]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w") as archive:
        archive.writestr(f"{ARCHIVE_TOP}/README.md", "decoy outside BCCD/")
        archive.writestr(f"{ARCHIVE_TOP}/scripts/BCCD/Annotations/x.xml", "<decoy/>")
        for path in [*xml_files, *(bccd_dir / "ImageSets" / "Main").glob("*.txt")]:
            archive.write(path, f"{ARCHIVE_TOP}/BCCD/{path.relative_to(bccd_dir).as_posix()}")
        for image_id in test_ids:
            archive.write(
                bccd_dir / "JPEGImages" / f"{image_id}.jpg", f"{ARCHIVE_TOP}/BCCD/JPEGImages/{image_id}.jpg"
            )


def test_bccd_downloads_into_the_cache(bccd_dir: Path, http_server: tuple[Path, str]) -> None:
    www, base_url = http_server
    _build_archive(bccd_dir, www / "mirror" / DATASET_SOURCES["bccd"].archive_name)
    downloaded = locate_dataset("bccd", base_url=base_url)
    assert downloaded.origin == "download" and downloaded.format == "voc"
    assert downloaded.path.parent.name == "datasets" and downloaded.path.name == "bccd"
    assert len(list((downloaded.path / "Annotations").glob("*.xml"))) == 364
    assert sorted(p.name for p in downloaded.path.iterdir()) == ["Annotations", "ImageSets", "JPEGImages"]
    assert [p.name for p in downloaded.path.parent.iterdir() if p.name != ".downloads"] == ["bccd"]

    shutil.rmtree(www / "mirror")
    cached = locate_dataset("bccd", base_url=base_url)
    assert (cached.origin, cached.path) == ("cache", downloaded.path)
    dataset = load_dataset("bccd", split="test")
    assert (len(dataset), dataset.format, dataset.source) == (72, "voc", downloaded.path)


def test_incomplete_download_leaves_no_cache(bccd_dir: Path, http_server: tuple[Path, str]) -> None:
    www, base_url = http_server
    _build_archive(bccd_dir, www / "mirror" / DATASET_SOURCES["bccd"].archive_name, annotations=10)
    with pytest.raises(DatasetError, match=r"holds 10 \.xml files in Annotations/, expected 364"):
        resolve_dataset("bccd", base_url=base_url)
    datasets = cache_home() / "datasets"
    assert [p.name for p in datasets.iterdir() if p.name != ".downloads"] == []


def test_failed_download_is_a_dataset_error(http_server: tuple[Path, str]) -> None:
    _, base_url = http_server
    with pytest.raises(DatasetError, match=r"No datasets named 'bccd' in the offline mirrors.*404"):
        resolve_dataset("bccd", base_url=base_url)


def test_image_probe_catches_truncation_but_not_padding(bccd_dir: Path, tmp_path: Path) -> None:
    jpeg = (bccd_dir / "JPEGImages" / "BloodImage_00000.jpg").read_bytes()
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(jpeg + b"\x00" * 100)
    assert probe_image(padded) == ImageProbe(padded, 640, 480)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg[: len(jpeg) // 2])
    assert probe_image(cut).problem == "truncated JPEG: no end-of-image marker (FF D9)"
    png = tmp_path / "image.png"
    cv2.imwrite(str(png), cv2.imread(str(bccd_dir / "JPEGImages" / "BloodImage_00000.jpg")))
    assert probe_image(png).ok and (probe_image(png).width, probe_image(png).height) == (640, 480)
    png.write_bytes(png.read_bytes()[:-200])
    assert probe_image(png).problem == "truncated PNG: no IEND chunk"
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    assert probe_image(text).problem.startswith("not a readable image")
