"""The one internal representation of a detection dataset.

Every dataset format plugin reads its files into ``DetectionDataset`` and writes from it, so the rest of
the SDK (augmentation, training, evaluation, conversion) never sees a format-specific structure.
Boxes are absolute ``xyxy`` float32 pixel coordinates; labels are contiguous class indices
``0..N-1`` into ``class_names``. A format whose ids are not contiguous (COCO's 1..90) keeps the original
ids in ``category_ids`` so they can be mapped back on output.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import attrs
import numpy as np


def _as_boxes(value: object) -> np.ndarray:
    boxes = np.asarray(value, dtype=np.float32)
    return boxes.reshape(-1, 4)


def _as_labels(value: object) -> np.ndarray:
    return np.asarray(value, dtype=np.int64).reshape(-1)


@attrs.frozen(eq=False)
class ImageRecord:
    """One image and its ground truth boxes.

    Attributes:
        image_path: path of the image file, as ``format_support.image_in_folder`` builds it: under the
            dataset path as given (relative when that is), never resolved further, so every format's
            records compare equal to the files validation lists there.
        width: image width in pixels (as stored on disk, before any EXIF rotation).
        height: image height in pixels.
        boxes: ``(N, 4)`` float32 absolute ``x1, y1, x2, y2``.
        labels: ``(N,)`` int64 class indices into the dataset's ``class_names``.
        image_id: a stable identifier unique inside the dataset (file stem or the source format's id).
    """

    image_path: Path = attrs.field(converter=Path)
    width: int = attrs.field(converter=int)
    height: int = attrs.field(converter=int)
    boxes: np.ndarray = attrs.field(converter=_as_boxes, factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = attrs.field(converter=_as_labels, factory=lambda: np.zeros((0,), np.int64))
    image_id: str = ""

    def __attrs_post_init__(self) -> None:
        if len(self.boxes) != len(self.labels):
            raise ValueError(
                f"{self.image_path}: {len(self.boxes)} boxes but {len(self.labels)} labels; "
                "every box needs exactly one class index"
            )
        if not self.image_id:
            object.__setattr__(self, "image_id", self.image_path.stem)


@attrs.define
class LoadReport:
    """What a format reader changed or skipped, so users see label problems before training.

    ``counts`` maps a problem (``"box clipped to image"``) to how often it happened; ``examples`` keeps the
    first few places (file and line) for each problem. ``severities`` holds the problems the reader marked
    ``"error"`` for ``data validate`` and the trainer's pre-flight check (a split list naming a missing
    file loads today but fails the day that split is used); the others count as warnings there unless
    validation knows them by name.
    """

    counts: Counter = attrs.field(factory=Counter)
    examples: dict[str, list[str]] = attrs.field(factory=dict)
    severities: dict[str, str] = attrs.field(factory=dict)

    def add(self, problem: str, where: str, max_examples: int = 5, *, severity: str | None = None) -> None:
        """Count one occurrence of ``problem`` found at ``where``; ``severity`` (``"error"`` or
        ``"warning"``) is how ``data validate`` should rate it, when it does not know the problem."""
        self.counts[problem] += 1
        if severity is not None:
            self.severities[problem] = severity
        places = self.examples.setdefault(problem, [])
        if len(places) < max_examples:
            places.append(where)

    def merge(self, other: LoadReport) -> None:
        """Add every count, example and severity of ``other`` to this report."""
        for problem, count in other.counts.items():
            self.counts[problem] += count
            places = self.examples.setdefault(problem, [])
            places.extend(other.examples.get(problem, [])[: max(0, 5 - len(places))])
        self.severities.update(other.severities)

    def lines(self) -> list[str]:
        """Human-readable lines, one per problem, with an example location."""
        out = []
        for problem, count in sorted(self.counts.items()):
            where = self.examples.get(problem, [])
            suffix = f" (e.g. {where[0]})" if where else ""
            out.append(f"{count} x {problem}{suffix}")
        return out


@attrs.define
class DetectionDataset:
    """An indexed dataset: records plus the ordered class names they refer to.

    Attributes:
        records: one ``ImageRecord`` per usable image, background images included.
        class_names: ordered class names; ``labels`` index into this tuple.
        category_ids: the source format's id for each class (``range(N)`` when the format has none).
        source: the path the dataset was read from.
        format: the name of the format plugin that read it.
        report: what the reader skipped, clipped or dropped.
    """

    records: list[ImageRecord]
    class_names: tuple[str, ...] = attrs.field(converter=tuple)
    category_ids: tuple[int, ...] = attrs.field(converter=tuple, default=())
    source: Path | None = None
    format: str = ""
    report: LoadReport = attrs.field(factory=LoadReport)

    def __attrs_post_init__(self) -> None:
        if not self.category_ids:
            self.category_ids = tuple(range(len(self.class_names)))
        if len(self.category_ids) != len(self.class_names):
            raise ValueError("category_ids and class_names must have the same length")

    @property
    def num_classes(self) -> int:
        """How many classes the dataset declares."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.records)

    def num_boxes(self) -> int:
        """Total number of ground-truth boxes."""
        return int(sum(len(r.boxes) for r in self.records))
