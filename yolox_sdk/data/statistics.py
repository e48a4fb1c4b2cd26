"""Dataset statistics and plots: what is in a dataset before training on it.

``dataset_statistics`` computes plain numbers (JSON-ready): counts per class, boxes per image, box sizes
with COCO's small/medium/large buckets, aspect ratios and image sizes. ``write_plots`` draws a class
histogram, a box width-vs-height scatter and a grid of sample images with their boxes as PNG files.
The plots are drawn with OpenCV, already a dependency, so the SDK does not need matplotlib for them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolox_sdk.data.records import DetectionDataset

SMALL_AREA = 32**2
MEDIUM_AREA = 96**2
PERCENTILES = (0, 5, 25, 50, 75, 95, 100)
BACKGROUND = (255, 255, 255)
INK = (40, 40, 40)
BAR = (180, 119, 31)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _distribution(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    points = np.percentile(values, PERCENTILES)
    summary = {f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, points, strict=True)}
    summary["mean"] = round(float(values.mean()), 3)
    return summary


def dataset_statistics(dataset: DetectionDataset) -> dict[str, Any]:
    """Numbers describing ``dataset`` (see the module docstring); every value is JSON-serialisable."""
    boxes = np.concatenate([r.boxes for r in dataset.records]) if dataset.records else np.zeros((0, 4))
    labels = np.concatenate([r.labels for r in dataset.records]) if dataset.records else np.zeros(0, np.int64)
    widths = (boxes[:, 2] - boxes[:, 0]).astype(np.float64)
    heights = (boxes[:, 3] - boxes[:, 1]).astype(np.float64)
    areas = widths * heights
    per_image = np.array([len(r.boxes) for r in dataset.records], dtype=np.int64)
    box_counts = np.bincount(labels, minlength=dataset.num_classes)
    image_counts = np.zeros(dataset.num_classes, dtype=np.int64)
    for record in dataset.records:
        image_counts[np.unique(record.labels)] += 1
    sizes = Counter(f"{r.width}x{r.height}" for r in dataset.records)
    return {
        "source": str(dataset.source or ""),
        "format": dataset.format,
        "images": len(dataset),
        "boxes": int(len(boxes)),
        "background_images": int((per_image == 0).sum()),
        "classes": [
            {"index": i, "name": name, "boxes": int(box_counts[i]), "images": int(image_counts[i])}
            for i, name in enumerate(dataset.class_names)
        ],
        "boxes_per_image": {
            "min": int(per_image.min()) if per_image.size else 0,
            "mean": round(float(per_image.mean()), 3) if per_image.size else 0.0,
            "max": int(per_image.max()) if per_image.size else 0,
        },
        "box_size": {
            "small": int((areas < SMALL_AREA).sum()),
            "medium": int(((areas >= SMALL_AREA) & (areas < MEDIUM_AREA)).sum()),
            "large": int((areas >= MEDIUM_AREA).sum()),
            "width": _distribution(widths),
            "height": _distribution(heights),
            "sqrt_area": _distribution(np.sqrt(areas)),
        },
        "aspect_ratio": _distribution(widths / np.maximum(heights, 1e-9)),
        "image_sizes": dict(sizes.most_common()),
    }


def summary_lines(stats: dict[str, Any]) -> list[str]:
    """A readable summary of ``dataset_statistics``' output."""
    per_image, size = stats["boxes_per_image"], stats["box_size"]
    lines = [
        f"{stats['source']} ({stats['format']}): {stats['images']} images, {stats['boxes']} boxes, "
        f"{stats['background_images']} without boxes",
        f"boxes per image: min {per_image['min']}, mean {per_image['mean']}, max {per_image['max']}",
        f"box sizes (COCO): small {size['small']}, medium {size['medium']}, large {size['large']}",
    ]
    if size["width"]:
        lines.append(
            f"box width  median {size['width']['p50']} (p5 {size['width']['p5']}, p95 {size['width']['p95']}); "
            f"height median {size['height']['p50']} (p5 {size['height']['p5']}, p95 {size['height']['p95']})"
        )
        ratio = stats["aspect_ratio"]
        lines.append(f"aspect ratio w/h median {ratio['p50']} (p5 {ratio['p5']}, p95 {ratio['p95']})")
    image_sizes = list(stats["image_sizes"].items())
    shown = ", ".join(f"{size} x{count}" for size, count in image_sizes[:5])
    more = f" and {len(image_sizes) - 5} more" if len(image_sizes) > 5 else ""
    lines.append(f"image sizes: {shown}{more}")
    lines.append("class                      boxes   images")
    lines += [f"{c['name'][:24]:<24} {c['boxes']:>8} {c['images']:>8}" for c in stats["classes"]]
    return lines


def _class_color(index: int) -> tuple[int, int, int]:
    hue = (index * 47) % 180
    pixel = cv2.cvtColor(np.uint8([[[hue, 200, 220]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(pixel[0]), int(pixel[1]), int(pixel[2])


def draw_class_histogram(stats: dict[str, Any]) -> np.ndarray:
    """Horizontal bars of box counts per class, as a BGR image."""
    classes = stats["classes"]
    row, left, width = 22, 180, 560
    canvas = np.full((50 + row * max(1, len(classes)), left + width + 80, 3), BACKGROUND, np.uint8)
    cv2.putText(canvas, "boxes per class", (10, 25), FONT, 0.6, INK, 1, cv2.LINE_AA)
    peak = max([c["boxes"] for c in classes] + [1])
    for position, entry in enumerate(classes):
        y = 40 + position * row
        length = int(width * entry["boxes"] / peak)
        cv2.rectangle(canvas, (left, y), (left + max(length, 1), y + row - 6), BAR, -1)
        cv2.putText(canvas, entry["name"][:22], (10, y + row - 9), FONT, 0.45, INK, 1, cv2.LINE_AA)
        cv2.putText(
            canvas, str(entry["boxes"]), (left + length + 5, y + row - 9), FONT, 0.45, INK, 1, cv2.LINE_AA
        )
    return canvas


def draw_box_sizes(dataset: DetectionDataset, size: int = 600) -> np.ndarray:
    """Scatter of box width (x) against height (y) in pixels, coloured by class, as a BGR image."""
    margin = 50
    canvas = np.full((size + 2 * margin, size + 2 * margin, 3), BACKGROUND, np.uint8)
    boxes = [(r.boxes, r.labels) for r in dataset.records]
    extent = max(
        [float(np.max(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]))) for b, _ in boxes if len(b)] + [1.0]
    )
    origin = (margin, margin + size)
    cv2.line(canvas, origin, (margin + size, margin + size), INK, 1)
    cv2.line(canvas, origin, (margin, margin), INK, 1)
    for fraction in (0.0, 0.5, 1.0):
        value = f"{extent * fraction:.0f}"
        offset = int(size * fraction)
        cv2.putText(canvas, value, (margin + offset - 10, margin + size + 18), FONT, 0.4, INK, 1, cv2.LINE_AA)
        cv2.putText(canvas, value, (5, margin + size - offset + 4), FONT, 0.4, INK, 1, cv2.LINE_AA)
    cv2.putText(canvas, "box width (px)", (margin + size // 2 - 50, margin + size + 40), FONT, 0.5, INK, 1)
    cv2.putText(canvas, "box height (px)", (margin, margin - 15), FONT, 0.5, INK, 1)
    for record_boxes, record_labels in boxes:
        for (x1, y1, x2, y2), label in zip(record_boxes.tolist(), record_labels.tolist(), strict=True):
            x = margin + int(size * (x2 - x1) / extent)
            y = margin + size - int(size * (y2 - y1) / extent)
            cv2.circle(canvas, (x, y), 2, _class_color(label), -1)
    return canvas


def draw_sample_grid(
    dataset: DetectionDataset, count: int = 16, tile: int = 256, seed: int = 0
) -> np.ndarray:
    """Up to ``count`` images (a fixed random choice) with their boxes and class names, as a BGR grid."""
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(dataset), size=min(count, len(dataset)), replace=False).tolist())
    columns = max(1, int(np.ceil(np.sqrt(len(chosen)))))
    rows = max(1, int(np.ceil(len(chosen) / columns)))
    grid = np.full((rows * tile, columns * tile, 3), BACKGROUND, np.uint8)
    for position, index in enumerate(chosen):
        record = dataset.records[index]
        data = np.fromfile(str(record.image_path), dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
        if image is None:
            continue
        scale = tile / max(image.shape[:2])
        resized = cv2.resize(
            image, (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale)))
        )
        for (x1, y1, x2, y2), label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True):
            color = _class_color(label)
            top_left = (int(x1 * scale), int(y1 * scale))
            cv2.rectangle(resized, top_left, (int(x2 * scale), int(y2 * scale)), color, 1)
            name = dataset.class_names[label][:12]
            cv2.putText(
                resized, name, (top_left[0], max(10, top_left[1] - 2)), FONT, 0.35, color, 1, cv2.LINE_AA
            )
        y, x = (position // columns) * tile, (position % columns) * tile
        grid[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
    return grid


def write_plots(dataset: DetectionDataset, stats: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write ``class_histogram.png``, ``box_sizes.png`` and ``samples.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images = {
        "class_histogram.png": draw_class_histogram(stats),
        "box_sizes.png": draw_box_sizes(dataset),
        "samples.png": draw_sample_grid(dataset),
    }
    written = []
    for name, image in images.items():
        path = out_dir / name
        ok, encoded = cv2.imencode(".png", image)
        if ok:
            path.write_bytes(encoded.tobytes())
            written.append(path)
    return written
