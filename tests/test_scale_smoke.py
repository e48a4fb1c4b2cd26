"""``benchmarks/scale_index.py`` at a small scale: the synthetic COCO file is indexed completely."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import scale_index  # noqa: E402

RECORDS = 2_000
BOXES = 5


def test_scale_benchmark_indexes_every_record(tmp_path: Path) -> None:
    results = scale_index.run(
        RECORDS, BOXES, num_files=8, cache_images=6, traced=False, folder=tmp_path, stream_samples=20
    )

    ours = results["ours"]
    assert ours["records"] == RECORDS
    assert ours["boxes"] == RECORDS * BOXES
    assert ours["category_ids"] == [1, 3, 7]
    assert results["pycocotools"]["images"] == RECORDS
    assert results["pycocotools"]["annotations"] == RECORDS * BOXES
    assert results["stream"]["samples"] == 20
    cache = results["disk_cache"]
    assert (cache["cold_reused"], cache["reused_reused"], cache["after_touch_reused"]) == (False, True, False)
    assert "yolox_sdk coco | 2,000 | 10,000" in scale_index.format_report(results)


def test_probe_images_probes_each_file_once(bccd_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from yolox_sdk.data import image_check

    calls: list[Path] = []
    real_probe = image_check.probe_image

    def counting_probe(path: Path) -> image_check.ImageProbe:
        calls.append(path)
        return real_probe(path)

    monkeypatch.setattr(image_check, "probe_image", counting_probe)
    first, second = sorted((bccd_dir / "JPEGImages").glob("*.jpg"))[:2]
    paths = [first, second, first, first, second] * 8  # above the threaded-probe size

    probes = image_check.probe_images(paths)

    assert sorted(calls) == [first, second]
    assert [probe.path for probe in probes] == paths
    assert all(probe.ok and (probe.width, probe.height) == (640, 480) for probe in probes)
