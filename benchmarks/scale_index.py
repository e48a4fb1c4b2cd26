"""How the data path scales: indexing a 100,000-image COCO file, streaming from it, and reusing a disk cache.

A synthetic COCO JSON is written to a temporary folder: ``--images`` image records (default 100,000), each with
``--boxes`` random boxes (default 20) of categories 1, 3 and 7, all pointing at the first ``--files`` real BCCD
images (default 8), so files are shared as in a dataset that lists frames of a few videos. In one process it
then measures:

* the JSON's size and the time to write it;
* our COCO reader (``load_dataset(path, format="coco")``): wall time and peak memory (the process's peak
  resident size gained, and tracemalloc's peak in a second, traced run);
* pycocotools' ``COCO(path)`` on the same file (the baseline; the ratio is ours / pycocotools);
* building a ``TrainDataset`` on all records with ``cache_mode: none`` and drawing the first 100 samples
  through the training loader (images are decoded on access, never all held in memory);
* the disk image cache on ``--cache-images`` real BCCD images (default 50): a cold build, a second build
  that reuses the cache, and a build after touching one image file (the cache must be rebuilt).

    .venv/bin/python benchmarks/scale_index.py                      # the full run (about a minute of CPU)
    .venv/bin/python benchmarks/scale_index.py --images 2000 --no-tracemalloc
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
CATEGORY_IDS = (1, 3, 7)
CATEGORY_NAMES = ("cell", "blob", "speck")
IMAGE_WIDTH, IMAGE_HEIGHT = 640, 480  # every BCCD image
INPUT_SIZE = (416, 416)


def assets_dir() -> Path:
    """The read-only offline mirror (``$YOLOX_SDK_ASSETS`` or ``../shared/assets``)."""
    return Path(os.environ.get("YOLOX_SDK_ASSETS") or REPO_ROOT.parent / "shared" / "assets").resolve()


def bccd_images(count: int) -> list[Path]:
    """The first ``count`` BCCD JPEGs, sorted by name."""
    images = sorted((assets_dir() / "datasets" / "bccd" / "BCCD" / "JPEGImages").glob("*.jpg"))[:count]
    if len(images) < count:
        raise SystemExit(f"Need {count} BCCD images, found {len(images)} under {assets_dir()}")
    return images


def write_synthetic_coco(
    folder: Path, num_images: int, boxes_per_image: int, image_files: Sequence[Path], seed: int = 0
) -> Path:
    """Write ``folder/annotations.json`` (and ``folder/images/`` linking ``image_files``); return the JSON path.

    The JSON is written image by image rather than built as one object, so writing it does not inflate
    the process's peak memory before the reader is measured.
    """
    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for source in image_files:
        target = images_dir / source.name
        if not target.exists():
            os.symlink(source, target)
        names.append(source.name)
    rng = np.random.default_rng(seed)
    json_path = folder / "annotations.json"
    with open(json_path, "w", encoding="utf-8") as handle:
        handle.write('{"images": [')
        for image_id in range(1, num_images + 1):
            entry = {
                "id": image_id,
                "file_name": names[(image_id - 1) % len(names)],
                "width": IMAGE_WIDTH,
                "height": IMAGE_HEIGHT,
            }
            handle.write(("," if image_id > 1 else "") + json.dumps(entry))
        handle.write('], "annotations": [')
        annotation_id = 0
        for image_id in range(1, num_images + 1):
            corners = rng.uniform(0, [IMAGE_WIDTH - 40, IMAGE_HEIGHT - 40], size=(boxes_per_image, 2))
            sizes = rng.uniform(4, 40, size=(boxes_per_image, 2))
            categories = rng.choice(CATEGORY_IDS, size=boxes_per_image)
            parts = []
            for (x, y), (width, height), category in zip(corners, sizes, categories, strict=True):
                annotation_id += 1
                parts.append(
                    f'{{"id": {annotation_id}, "image_id": {image_id}, "category_id": {category}, '
                    f'"bbox": [{x:.2f}, {y:.2f}, {width:.2f}, {height:.2f}], '
                    f'"area": {width * height:.2f}, "iscrowd": 0}}'
                )
            handle.write(("," if annotation_id > boxes_per_image else "") + ",".join(parts))
        categories_text = ", ".join(
            json.dumps({"id": i, "name": n}) for i, n in zip(CATEGORY_IDS, CATEGORY_NAMES, strict=True)
        )
        handle.write(f'], "categories": [{categories_text}]}}')
    return json_path


def _max_rss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # Linux reports kilobytes, macOS bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def measure(function: Any, traced: bool) -> dict[str, Any]:
    """Run ``function()`` and return its result, wall seconds and peak memory gained.

    ``rss_peak_gain_mb`` is the rise of the process's peak resident size: exact for the first large
    allocation in the process, zero for any later one that stays below an earlier peak. ``traced`` repeats
    the call under tracemalloc (slower; the time is not reported) to get ``traced_peak_mb``, the peak of
    Python allocations during the call, which does not depend on what ran before.
    """
    gc.collect()
    rss_before = _max_rss_bytes()
    start = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - start
    figures: dict[str, Any] = {
        "seconds": seconds,
        "rss_peak_gain_mb": (_max_rss_bytes() - rss_before) / 1e6,
    }
    if traced:
        del result
        gc.collect()
        tracemalloc.start()
        result = function()
        figures["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    figures["result"] = result
    return figures


def index_with_sdk(json_path: Path, traced: bool = False) -> dict[str, Any]:
    """Index ``json_path`` with our COCO reader; ``result`` is the ``DetectionDataset``."""
    from yolox_sdk.data.formats import load_dataset

    return measure(lambda: load_dataset(json_path, format="coco"), traced)


def index_with_pycocotools(json_path: Path, traced: bool = False) -> dict[str, Any]:
    """Index ``json_path`` with pycocotools' ``COCO``; ``result`` is the ``COCO`` object."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    def build() -> Any:
        with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints its progress
            return COCO(str(json_path))

    return measure(build, traced)


def stream_first_samples(dataset: Any, count: int = 100, batch_size: int = 10) -> dict[str, Any]:
    """Build a ``TrainDataset`` (cache ``none``, YOLOX's default augmentations) and its loader, then draw
    the first ``count`` samples; returns the build and draw times."""
    from yolox_sdk.config.schema import AugmentationConfig
    from yolox_sdk.data.loader import build_train_loader, set_loader_epoch
    from yolox_sdk.data.pipeline import build_augmentations
    from yolox_sdk.data.train_dataset import TrainDataset
    from yolox_sdk.plugins import get_registry

    start = time.perf_counter()
    train = TrainDataset(
        dataset,
        INPUT_SIZE,
        build_augmentations(AugmentationConfig(), get_registry()),
        seed=0,
        cache_mode="none",
    )
    loader = build_train_loader(train, batch_size, num_workers=0, seed=0)
    set_loader_epoch(loader, 0)
    build_seconds = time.perf_counter() - start
    start = time.perf_counter()
    drawn = 0
    for images, _targets in loader:
        drawn += len(images)
        if drawn >= count:
            break
    return {
        "build_seconds": build_seconds,
        "draw_seconds": time.perf_counter() - start,
        "samples": drawn,
        "batches_per_epoch": len(loader),
    }


def disk_cache_reuse(folder: Path, count: int) -> dict[str, Any]:
    """Cold build, reuse, and rebuild-after-touch of the disk cache on ``count`` copied BCCD images."""
    from yolox_sdk.data.records import DetectionDataset, ImageRecord
    from yolox_sdk.data.train_dataset import TrainDataset

    images_dir = folder / "cache_images"
    images_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for source in bccd_images(count):
        target = images_dir / source.name
        shutil.copyfile(source, target)
        records.append(ImageRecord(target, IMAGE_WIDTH, IMAGE_HEIGHT))
    dataset = DetectionDataset(records, ("cell",))
    cache_dir = folder / "image_cache"
    figures: dict[str, Any] = {"images": count}
    for step in ("cold", "reused", "after_touch"):
        if step == "after_touch":
            stamp = time.time() + 5
            os.utime(records[0].image_path, (stamp, stamp))
        start = time.perf_counter()
        train = TrainDataset(dataset, INPUT_SIZE, [], seed=0, cache_mode="disk", cache_dir=cache_dir)
        figures[f"{step}_seconds"] = time.perf_counter() - start
        figures[f"{step}_reused"] = bool(train.source.reused)
    return figures


def run(
    num_images: int,
    boxes_per_image: int = 20,
    num_files: int = 8,
    cache_images: int = 50,
    traced: bool = True,
    folder: Path | None = None,
    stream_samples: int = 100,
) -> dict[str, Any]:
    """Every measurement of the module docstring; returns the figures (datasets dropped)."""
    with tempfile.TemporaryDirectory(dir=folder) as temporary:
        root = Path(temporary)
        start = time.perf_counter()
        json_path = write_synthetic_coco(root / "coco", num_images, boxes_per_image, bccd_images(num_files))
        results: dict[str, Any] = {
            "images": num_images,
            "boxes_per_image": boxes_per_image,
            "files": num_files,
            "json_mb": json_path.stat().st_size / 1e6,
            "write_seconds": time.perf_counter() - start,
        }
        ours = index_with_sdk(json_path, traced)
        dataset = ours.pop("result")
        ours["records"] = len(dataset)
        ours["boxes"] = dataset.num_boxes()
        ours["classes"] = list(dataset.class_names)
        ours["category_ids"] = list(dataset.category_ids)
        results["ours"] = ours
        results["stream"] = stream_first_samples(dataset, stream_samples)
        del dataset
        baseline = index_with_pycocotools(json_path, traced)
        coco = baseline.pop("result")
        baseline["images"] = len(coco.imgs)
        baseline["annotations"] = len(coco.anns)
        del coco
        results["pycocotools"] = baseline
        results["ratio_seconds"] = ours["seconds"] / baseline["seconds"]
        if traced:
            results["ratio_traced_peak"] = ours["traced_peak_mb"] / baseline["traced_peak_mb"]
        if cache_images:
            results["disk_cache"] = disk_cache_reuse(root, cache_images)
    return results


def format_report(results: dict[str, Any]) -> str:
    """The figures as printable lines."""
    ours, baseline, stream = results["ours"], results["pycocotools"], results["stream"]
    lines = [
        f"synthetic COCO: {results['images']:,} images x {results['boxes_per_image']} boxes on "
        f"{results['files']} shared files, {results['json_mb']:.1f} MB, written in {results['write_seconds']:.1f} s",
        "",
        "| reader | records | boxes | index s | peak RSS gain MB | tracemalloc peak MB |",
        "|---|---|---|---|---|---|",
    ]
    for name, figures, records, boxes in (
        ("yolox_sdk coco", ours, ours["records"], ours["boxes"]),
        ("pycocotools COCO()", baseline, baseline["images"], baseline["annotations"]),
    ):
        traced = f"{figures['traced_peak_mb']:.0f}" if "traced_peak_mb" in figures else "-"
        lines.append(
            f"| {name} | {records:,} | {boxes:,} | {figures['seconds']:.2f} | "
            f"{figures['rss_peak_gain_mb']:.0f} | {traced} |"
        )
    ratio = f"ours / pycocotools: {results['ratio_seconds']:.2f}x the time"
    if "ratio_traced_peak" in results:
        ratio += f", {results['ratio_traced_peak']:.2f}x the traced peak memory"
    lines += [
        "",
        ratio,
        f"TrainDataset + loader (cache none) on {ours['records']:,} records: built in "
        f"{stream['build_seconds']:.2f} s ({stream['batches_per_epoch']:,} batches per epoch), first "
        f"{stream['samples']} samples in {stream['draw_seconds']:.2f} s",
    ]
    if "disk_cache" in results:
        cache = results["disk_cache"]
        lines.append(
            f"disk cache on {cache['images']} BCCD images: cold build {cache['cold_seconds']:.2f} s, "
            f"second build {cache['reused_seconds']:.3f} s (reused: {cache['reused_reused']}), after touching "
            f"one file {cache['after_touch_seconds']:.2f} s (reused: {cache['after_touch_reused']})"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run, print the figures (and write them as JSON when asked)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000, help="image records in the synthetic JSON")
    parser.add_argument("--boxes", type=int, default=20, help="boxes per image")
    parser.add_argument("--files", type=int, default=8, help="real BCCD files the records share")
    parser.add_argument("--cache-images", type=int, default=50, help="BCCD images for the disk-cache check")
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the traced (slower) second runs")
    parser.add_argument("--temp-dir", type=Path, default=None, help="where the temporary folder goes")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = run(
        args.images,
        args.boxes,
        args.files,
        args.cache_images,
        traced=not args.no_tracemalloc,
        folder=args.temp_dir,
    )
    print(format_report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
