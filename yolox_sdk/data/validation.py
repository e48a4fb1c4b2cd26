"""Checking a dataset before training: every image decoded, every label checked, problems listed with a severity.

``validate_dataset`` is the thorough check behind ``yolox-sdk data validate``: it decodes every image, hashes
it to find duplicates, and turns what the format reader counted (clipped, dropped boxes) plus its own
checks into a ``ValidationReport``. An *error* is something that loses or corrupts training data (an image
that cannot be decoded, a class id the dataset does not declare); a *warning* is something to look at that
training survives (a grayscale image, a duplicate box, an image without labels).

When the dataset has named splits (train/val/test, or the splits or split list files asked for),
``check_split_overlap`` compares them: an image in two splits, or byte-identical images in two splits, is
an error (the val score would measure memory); near-duplicates across splits (``near_duplicates``: resized,
re-encoded copies, consecutive frames) are a warning.

``fix_dataset`` writes a cleaned copy in the same format through that format's ``save``; the input is only
ever read. ``quick_validate`` is the fast path the trainer runs before every run: image headers only,
cached by file path, modification time and size so a second run costs a few ``stat`` calls.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from PIL import Image

from yolox_sdk.data import format_support
from yolox_sdk.data.conversion import check_holds_no_source_image, empty_folder, mark_dataset_folder
from yolox_sdk.data.formats import (
    KIND,
    create_format,
    detect_format,
    load_dataset,
    resolve_dataset_path,
    save_with_format,
)
from yolox_sdk.data.image_check import list_images, probe_image
from yolox_sdk.data.near_duplicates import (
    NEAR_DUPLICATE_DISTANCE,
    content_hash,
    hash_images,
    near_duplicate_pairs,
)
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.data.split_lists import written_split_name
from yolox_sdk.errors import DatasetError
from yolox_sdk.files import write_text_atomically
from yolox_sdk.plugins.manager import get_registry
from yolox_sdk.plugins.registry import Registry

ERROR = "error"
WARNING = "warning"

EMPTY_FILE = "empty image file"
UNREADABLE = "unreadable image"
TRUNCATED = "truncated or corrupt image"
EXTENSION_MISMATCH = "file extension does not match the image type"
EXIF_ROTATED = "EXIF orientation is not 1 (boxes are in stored orientation)"
GRAYSCALE = "grayscale image"
CMYK = "CMYK image"
SIXTEEN_BIT = "16-bit image"
DUPLICATE_IMAGE = "duplicate image (same content)"
DUPLICATE_BOX = "duplicate box"
NO_LABELS = "image without labels"
UNREFERENCED_IMAGE = "image not in the annotations"
ORPHAN_LABEL = format_support.LABEL_FILE_ORPHAN
CLASS_OUT_OF_RANGE = format_support.LABEL_CLASS_OUT_OF_RANGE
MALFORMED_LABEL = format_support.LABEL_MALFORMED
UNKNOWN_CLASS = "class name not in the class list"
UNREADABLE_ANNOTATIONS = format_support.LABEL_FILE_UNREADABLE
CATEGORY_GAPS = "category ids have gaps"
BOX_OUTSIDE = "box entirely outside the image"
BOX_NOT_FINITE = "box with NaN or infinite coordinates"
BOX_ZERO_AREA = "box with zero or negative area"
BOX_CLIPPED = "box partly outside the image"
SIZE_MISMATCH = "annotated image size differs from the file"
SPLIT_OVERLAP = "image in more than one split"
SPLIT_NEAR_DUPLICATE = "near-duplicate images in different splits"
DEFAULT_SPLITS = ("train", "val", "test")

SEVERITY: dict[str, str] = {
    EMPTY_FILE: ERROR,
    UNREADABLE: ERROR,
    TRUNCATED: ERROR,
    EXTENSION_MISMATCH: WARNING,
    EXIF_ROTATED: WARNING,
    GRAYSCALE: WARNING,
    CMYK: WARNING,
    SIXTEEN_BIT: WARNING,
    DUPLICATE_IMAGE: WARNING,
    DUPLICATE_BOX: WARNING,
    NO_LABELS: WARNING,
    UNREFERENCED_IMAGE: WARNING,
    ORPHAN_LABEL: WARNING,
    CLASS_OUT_OF_RANGE: ERROR,
    MALFORMED_LABEL: ERROR,
    UNKNOWN_CLASS: ERROR,
    UNREADABLE_ANNOTATIONS: ERROR,
    CATEGORY_GAPS: WARNING,
    BOX_OUTSIDE: ERROR,
    BOX_NOT_FINITE: ERROR,
    BOX_ZERO_AREA: WARNING,
    BOX_CLIPPED: WARNING,
    SIZE_MISMATCH: WARNING,
    SPLIT_OVERLAP: ERROR,
    SPLIT_NEAR_DUPLICATE: WARNING,
}

# What the format readers count (format_support's names) mapped to this module's problems.
READER_PROBLEMS = {
    format_support.BOX_CLIPPED: BOX_CLIPPED,
    format_support.BOX_ZERO_AREA: BOX_ZERO_AREA,
    format_support.BOX_OUTSIDE: BOX_OUTSIDE,
    format_support.BOX_NOT_FINITE: BOX_NOT_FINITE,
    format_support.SIZE_MISMATCH: SIZE_MISMATCH,
    format_support.IMAGE_CORRUPT: TRUNCATED,
}

SUFFIXES_OF_KIND = {
    "JPEG": {".jpg", ".jpeg", ".jpe"},
    "MPO": {".jpg", ".jpeg", ".jpe"},
    "PNG": {".png"},
    "BMP": {".bmp", ".dib"},
    "DIB": {".bmp", ".dib"},
    "WEBP": {".webp"},
    "TIFF": {".tif", ".tiff"},
    "PPM": {".pbm", ".pgm", ".ppm"},
}
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L"})
EXIF_ORIENTATION = 0x0112
QUICK_CACHE_FILE = "quick_validate.json"
QUICK_CACHE_VERSION = 1
LOCATION_LIMIT = 1000


@attrs.define
class Issue:
    """One kind of problem and every place it was found.

    Attributes:
        problem: what is wrong (one of this module's problem names, or a reader's own wording).
        severity: ``"error"`` or ``"warning"``.
        count: how often it occurs (can exceed ``len(locations)`` when a reader kept only examples).
        locations: where (file, file:line, or file (object n)), at most ``LOCATION_LIMIT`` kept.
    """

    problem: str
    severity: str
    count: int = 0
    locations: list[str] = attrs.field(factory=list)


@attrs.define
class ValidationReport:
    """Everything ``validate_dataset`` or ``quick_validate`` found.

    Attributes:
        source: the dataset path checked.
        format: the format plugin that read it ("" when none could).
        images_checked: how many image files were inspected.
        issues: one ``Issue`` per problem, in the order first found.
        readable: whether the annotations could be read at all as given (format, split, options); when
            not, only the image files were checked and the issues say why (``data validate`` exits 2).
        splits_compared: the splits ``check_split_overlap`` compared (empty when fewer than two exist).
    """

    source: str
    format: str = ""
    images_checked: int = 0
    issues: dict[str, Issue] = attrs.field(factory=dict)
    readable: bool = True
    splits_compared: list[str] = attrs.field(factory=list)

    def add(self, problem: str, location: str, severity: str | None = None, count: int = 1) -> None:
        """Count ``count`` occurrences of ``problem`` at ``location``."""
        issue = self.issues.setdefault(problem, Issue(problem, severity or SEVERITY.get(problem, WARNING)))
        issue.count += count
        if len(issue.locations) < LOCATION_LIMIT:
            issue.locations.append(location)

    @property
    def errors(self) -> int:
        """Number of error occurrences."""
        return sum(issue.count for issue in self.issues.values() if issue.severity == ERROR)

    @property
    def warnings(self) -> int:
        """Number of warning occurrences."""
        return sum(issue.count for issue in self.issues.values() if issue.severity == WARNING)

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return self.errors == 0

    def count(self, problem: str) -> int:
        """How often ``problem`` was found (0 when never)."""
        issue = self.issues.get(problem)
        return issue.count if issue else 0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (what ``--json`` writes)."""
        return {
            "source": self.source,
            "format": self.format,
            "images_checked": self.images_checked,
            "readable": self.readable,
            "splits_compared": list(self.splits_compared),
            "errors": self.errors,
            "warnings": self.warnings,
            "ok": self.ok,
            "issues": [attrs.asdict(issue) for issue in self.sorted_issues()],
        }

    def sorted_issues(self) -> list[Issue]:
        """Errors first, then warnings, each by decreasing count."""
        return sorted(self.issues.values(), key=lambda i: (i.severity != ERROR, -i.count, i.problem))

    def table(self) -> str:
        """A plain-text table: problem, count, severity, an example location."""
        rows = [
            (i.problem, str(i.count), i.severity, i.locations[0] if i.locations else "")
            for i in self.sorted_issues()
        ]
        if not rows:
            return "No problems found."
        header = ("problem", "count", "severity", "example")
        widths = [max(len(row[column]) for row in [header, *rows]) for column in range(3)]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
            for row in [header, *rows]
        ]
        return "\n".join(lines)


@attrs.frozen
class ImageInspection:
    """What decoding one image file found."""

    path: Path
    problems: tuple[tuple[str, str], ...] = ()
    content_hash: str = ""
    decodable: bool = True
    kind: str = ""


def _png_bit_depth(data: bytes) -> int:
    # IHDR is always the first chunk: 8-byte signature, 4-byte length, "IHDR", width, height, bit depth.
    return data[24] if len(data) > 24 and data[12:16] == b"IHDR" else 8


def _header_problems(path: Path, image: Image.Image, head: bytes) -> list[tuple[str, str]]:
    problems = []
    kind = image.format or ""
    allowed = SUFFIXES_OF_KIND.get(kind)
    if allowed is not None and path.suffix.lower() not in allowed:
        problems.append((EXTENSION_MISMATCH, f"{path}: a {kind} file named {path.suffix}"))
    if image.mode == "CMYK":
        problems.append((CMYK, str(path)))
    if image.mode in SIXTEEN_BIT_MODES or (kind == "PNG" and _png_bit_depth(head) == 16):
        problems.append((SIXTEEN_BIT, str(path)))
    if image.mode in GRAY_MODES:
        problems.append((GRAYSCALE, str(path)))
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block is not worth more than the orientation check
        orientation = 1
    if orientation not in (1, None):
        problems.append((EXIF_ROTATED, f"{path}: orientation {orientation}"))
    return problems


def inspect_image(path: Path) -> ImageInspection:
    """Decode ``path`` fully and list its problems (see the module constants); hash its bytes."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        return ImageInspection(path, ((UNREADABLE, f"{path}: {error}"),), decodable=False)
    if not data:
        return ImageInspection(path, ((EMPTY_FILE, str(path)),), decodable=False)
    digest = content_hash(data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            problems = _header_problems(path, image, data[:32])
            kind = image.format or ""
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as error:
        problem = UNREADABLE if "cannot identify" in str(error) else TRUNCATED
        return ImageInspection(path, ((problem, f"{path}: {error}"),), digest, decodable=False)
    tail_problem = probe_image(path).problem
    if tail_problem is not None:
        return ImageInspection(path, ((TRUNCATED, f"{path}: {tail_problem}"),), digest, False, kind)
    return ImageInspection(path, tuple(problems), digest, True, kind)


def inspect_image_header(path: Path) -> tuple[tuple[str, str], ...]:
    """The problems visible from ``path``'s header and tail alone (no decode); what ``quick_validate`` uses."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return ((EMPTY_FILE, str(path)),)
        with open(path, "rb") as handle:
            head = handle.read(32)
        with Image.open(path) as image:
            problems = _header_problems(path, image, head)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as error:
        return ((UNREADABLE, f"{path}: {error}"),)
    tail_problem = probe_image(path).problem
    if tail_problem is not None:
        return ((TRUNCATED, f"{path}: {tail_problem}"),)
    return tuple(problems)


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _map(function: Callable[[Path], Any], paths: Sequence[Path], workers: int) -> list[Any]:
    if workers <= 1 or len(paths) < 4:
        return [function(path) for path in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, paths))


# --- Loading ---------------------------------------------------------------------------------------------

_ERROR_PATTERNS = (
    (re.compile(r"class id .* is out of range"), CLASS_OUT_OF_RANGE),
    (re.compile(r"is not in data\.format_options\.class_names"), UNKNOWN_CLASS),
    (re.compile(r"category_id .* is not in 'categories'"), UNKNOWN_CLASS),
)


def _problem_of_error(error: DatasetError) -> str:
    message = str(error)
    return next(
        (problem for pattern, problem in _ERROR_PATTERNS if pattern.search(message)), UNREADABLE_ANNOTATIONS
    )


@attrs.define
class _Loaded:
    dataset: DetectionDataset | None
    root: Path
    format: str
    stage: tempfile.TemporaryDirectory | None = None  # type: ignore[type-arg]
    check: format_support.LabelCheck = attrs.field(factory=format_support.LabelCheck)

    def original_path(self, path: Path) -> Path:
        """Map a path inside the staged copy back to the input dataset."""
        if self.stage is not None and Path(path).is_relative_to(self.stage.name):
            return self.root / Path(path).relative_to(self.stage.name)
        return Path(path)

    def original_text(self, text: str) -> str:
        return text.replace(self.stage.name, str(self.root)) if self.stage is not None else text

    def close(self) -> None:
        if self.stage is not None:
            self.stage.cleanup()


@contextlib.contextmanager
def _quiet_readers() -> Iterator[None]:
    """Silence the readers' own warnings: the validation report lists the same problems, with original paths."""
    loggers = [
        logging.getLogger(name) for name in ("yolox_sdk.data.format_support", "yolox_sdk.data.formats")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _check_labels(
    reader: Any, root: Path
) -> tuple[tempfile.TemporaryDirectory | None, format_support.LabelCheck]:  # type: ignore[type-arg]
    """Run the format's own label checks (its optional ``check_labels``), keeping the cleaned copy it wrote."""
    check_labels = getattr(reader, "check_labels", None)
    if check_labels is None:
        return None, format_support.LabelCheck()
    stage = tempfile.TemporaryDirectory(prefix="yolox_sdk_validate_")
    try:
        check = check_labels(root, Path(stage.name))
    except BaseException:
        stage.cleanup()
        raise
    if check.cleaned is None:
        stage.cleanup()
        return None, check
    if Path(check.cleaned).resolve() != Path(stage.name).resolve():
        stage.cleanup()
        raise DatasetError(
            f"The dataset format's check_labels returned the cleaned copy {check.cleaned}, which is not the "
            f"scratch folder it was given ({stage.name}). A format writes its cleaned copy into that folder."
        )
    return stage, check


def _load_for_validation(
    path: str | Path,
    split: str | None,
    format_name: str,
    registry: Registry,
    report: ValidationReport,
    options: Mapping[str, Any] | None = None,
) -> _Loaded:
    resolved, catalog_format = resolve_dataset_path(path)
    root = resolved if resolved.is_dir() else resolved.parent
    name = format_name
    if name == "auto":
        try:
            name = (
                catalog_format
                if catalog_format in registry.names(KIND)
                else detect_format(resolved, registry)
            )
        except DatasetError as error:
            report.add(UNREADABLE_ANNOTATIONS, str(error))
            return _Loaded(None, root, "")
    report.format = name
    stage, check = _check_labels(create_format(name, registry, options), root)
    for problem in check.problems:
        report.add(problem.problem, problem.where, problem.severity)
    target = resolved
    if stage is not None:
        target = Path(stage.name) / resolved.relative_to(root) if resolved != root else Path(stage.name)
    loaded = _Loaded(None, root, name, stage, check)
    try:
        with _quiet_readers():
            loaded.dataset = load_dataset(
                target, split=split, format=name, options=options, registry=registry
            )
    except DatasetError as error:
        report.add(_problem_of_error(error), loaded.original_text(str(error)))
    return loaded


# --- The checks ----------------------------------------------------------------------------------------


def _reader_severity(dataset: DetectionDataset, problem: str, mapped: str) -> str:
    """The severity the reader gave ``problem`` (a split that cannot be loaded is an error even though
    reading everything works), else the one this module knows, else a warning."""
    return dataset.report.severities.get(problem) or SEVERITY.get(mapped, WARNING)


def _add_reader_report(
    report: ValidationReport, dataset: DetectionDataset, loaded: _Loaded, decoded: set[Path]
) -> None:
    for problem, count in dataset.report.counts.items():
        mapped = READER_PROBLEMS.get(problem, problem)
        examples = [loaded.original_text(e) for e in dataset.report.examples.get(problem, [])]
        if mapped == TRUNCATED:
            # Skipped images under the dataset folder were decoded (and reported) here already.
            remaining = [e for e in examples if Path(e.split(": ", 1)[0]) not in decoded]
            count -= len(examples) - len(remaining)
            examples = remaining
        if count <= 0:
            continue
        issue = report.issues.setdefault(mapped, Issue(mapped, _reader_severity(dataset, problem, mapped)))
        issue.count += count
        issue.locations.extend(examples)


def _duplicate_boxes(dataset: DetectionDataset, loaded: _Loaded, report: ValidationReport) -> None:
    for record in dataset.records:
        seen: set[tuple[Any, ...]] = set()
        for index, (box, label) in enumerate(zip(record.boxes.tolist(), record.labels.tolist(), strict=True)):
            key = (label, *box)
            if key in seen:
                report.add(DUPLICATE_BOX, f"{loaded.original_path(record.image_path)} (box {index + 1})")
            seen.add(key)


def _category_gaps(dataset: DetectionDataset, report: ValidationReport) -> None:
    ids = sorted(int(i) for i in dataset.category_ids)
    missing = sorted(set(range(ids[0], ids[-1] + 1)) - set(ids)) if ids else []
    if missing:
        shown = ", ".join(str(i) for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
        report.add(
            CATEGORY_GAPS, f"{dataset.source}: ids {ids[0]}..{ids[-1]} lack {shown}", count=len(missing)
        )


def validate_dataset(
    path: str | Path,
    split: str | None = None,
    format: str = "auto",
    workers: int | None = None,
    registry: Registry | None = None,
    options: Mapping[str, Any] | None = None,
    splits: Sequence[str] | None = None,
    near_duplicate_distance: int = NEAR_DUPLICATE_DISTANCE,
) -> ValidationReport:
    """Check every image and label of the dataset at ``path`` (see the module docstring).

    Images are the dataset's records plus, when no split is chosen, every image file under the dataset
    folder (so an image a reader skipped or nobody references is still checked). ``options`` are the
    format's (``data.format_options``). ``splits`` (split names or list files) are compared for shared
    images; ``None`` compares whichever of train, val and test the dataset has when no ``split`` is
    chosen, ``()`` compares none. Never writes anything.

    Raises:
        DatasetError: one of the ``splits`` asked for cannot be read.
    """
    report, loaded = _validate(path, split, format, workers, registry, options)
    loaded.close()
    if report.readable and (splits or (splits is None and split is None)):
        check_split_overlap(path, report, splits, format, options, registry, workers, near_duplicate_distance)
    return report


def _load_splits(
    path: str | Path,
    splits: Sequence[str] | None,
    format: str,
    options: Mapping[str, Any] | None,
    registry: Registry | None,
) -> dict[str, DetectionDataset]:
    """The splits asked for (an error when one cannot be read), or those of ``DEFAULT_SPLITS`` that load."""
    loaded = {}
    for name in splits or DEFAULT_SPLITS:
        try:
            with _quiet_readers():
                loaded[name] = load_dataset(
                    path, split=name, format=format, options=options, registry=registry
                )
        except DatasetError:
            if splits:
                raise
    return loaded


def check_split_overlap(
    path: str | Path,
    report: ValidationReport,
    splits: Sequence[str] | None = None,
    format: str = "auto",
    options: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    workers: int | None = None,
    near_duplicate_distance: int = NEAR_DUPLICATE_DISTANCE,
) -> None:
    """Add to ``report`` every image that is in two of the dataset's splits (by path, or by identical
    bytes: ``SPLIT_OVERLAP``, an error) and every near-duplicate pair in different splits
    (``SPLIT_NEAR_DUPLICATE``, a warning); ``splits`` as in ``validate_dataset``."""
    loaded = _load_splits(path, splits, format, options, registry)
    if len(loaded) < 2:
        return
    report.splits_compared = list(loaded)
    splits_of: dict[Path, list[str]] = {}
    for name, dataset in loaded.items():
        for record in dataset.records:
            splits_of.setdefault(Path(os.path.abspath(record.image_path)), []).append(name)
    images = list(splits_of)
    for image, names in splits_of.items():
        if len(set(names)) > 1:
            report.add(SPLIT_OVERLAP, f"{image}: in {' and '.join(dict.fromkeys(names))}")
    hashes = hash_images(images, workers)
    for i, j, distance in near_duplicate_pairs(hashes, near_duplicate_distance):
        first, second = splits_of[images[i]], splits_of[images[j]]
        if set(first) == set(second) and len(set(first)) == 1:
            continue
        where = f"{images[i]} ({', '.join(first)}) and {images[j]} ({', '.join(second)})"
        if distance == 0:
            report.add(SPLIT_OVERLAP, f"{where}: the same bytes")
        else:
            report.add(SPLIT_NEAR_DUPLICATE, f"{where}: {distance} of 128 hash bits differ")


def _validate(
    path: str | Path,
    split: str | None,
    format: str,
    workers: int | None,
    registry: Registry | None,
    options: Mapping[str, Any] | None = None,
) -> tuple[ValidationReport, _Loaded]:
    registry = registry or get_registry()
    report = ValidationReport(str(path))
    loaded = _load_for_validation(path, split, format, registry, report, options)
    dataset = loaded.dataset
    report.readable = dataset is not None
    record_paths = [loaded.original_path(r.image_path) for r in dataset.records] if dataset else []
    on_disk = list_images(loaded.root) if split is None or dataset is None else []
    images = list(dict.fromkeys([*record_paths, *on_disk]))
    inspections = _map(inspect_image, images, workers or _default_workers())
    report.images_checked = len(images)
    by_hash: dict[str, Path] = {}
    referenced = set(record_paths)
    for inspection in inspections:
        for problem, where in inspection.problems:
            report.add(problem, where)
        if inspection.content_hash:
            first = by_hash.setdefault(inspection.content_hash, inspection.path)
            if first != inspection.path:
                report.add(DUPLICATE_IMAGE, f"{inspection.path} (same as {first})")
        if inspection.decodable and dataset is not None and inspection.path not in referenced:
            report.add(UNREFERENCED_IMAGE, str(inspection.path))
    if dataset is not None:
        _add_reader_report(report, dataset, loaded, set(images))
        _duplicate_boxes(dataset, loaded, report)
        _category_gaps(dataset, report)
        for record, original in zip(dataset.records, record_paths, strict=True):
            if len(record.boxes) == 0:
                report.add(NO_LABELS, str(original))
    return report, loaded


# --- Fixing --------------------------------------------------------------------------------------------


def _converted_image(path: Path, stage: Path) -> Path:
    """A copy of ``path`` that is 8-bit RGB and named after its real type, written under ``stage``."""
    stage.mkdir(parents=True, exist_ok=True)
    with Image.open(path) as image:
        if image.mode in SIXTEEN_BIT_MODES:
            array = np.asarray(image, dtype=np.float64)
            image = Image.fromarray(np.clip(array / 257.0, 0, 255).astype(np.uint8))
        target = stage / f"{path.stem}.png"
        index = 0
        while target.exists():
            index += 1
            target = stage / str(index) / f"{path.stem}.png"
            target.parent.mkdir(exist_ok=True)
        image.convert("RGB").save(target)
    return target


def _renamed_image(path: Path, kind: str, stage: Path) -> Path:
    suffix = sorted(SUFFIXES_OF_KIND.get(kind, {path.suffix}))[0]
    suffix = ".jpg" if suffix == ".jpe" else suffix
    target = stage / f"{path.stem}{suffix}"
    index = 0
    while target.exists():
        index += 1
        target = stage / str(index) / f"{path.stem}{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
    stage.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return target


def fix_dataset(
    path: str | Path,
    out_dir: str | Path,
    split: str | None = None,
    format: str = "auto",
    workers: int | None = None,
    registry: Registry | None = None,
    replace: bool = False,
    options: Mapping[str, Any] | None = None,
) -> tuple[ValidationReport, list[str]]:
    """Validate ``path`` and write a cleaned copy in the same format into ``out_dir``.

    With ``replace`` (an earlier dataset is in ``out_dir``: see ``conversion.check_dataset_folder``) the
    folder is emptied once the input has been read, just before writing.

    What changes: label lines a reader cannot use (class id out of range, malformed) are dropped; images
    that cannot be decoded are left out; of identical images only the first is kept; duplicate boxes are
    removed; grayscale, CMYK and 16-bit images become 8-bit RGB PNGs; a file whose extension lies is
    renamed to its real type. Boxes the reader clipped or dropped stay clipped or dropped. EXIF-rotated
    images are kept as they are (their boxes match the stored pixels) and stay reported.

    Returns:
        the report of the input, and one line per change made (plus the writer's own warnings).

    Raises:
        DatasetError: the dataset cannot be read at all, so there is nothing to write.
    """
    registry = registry or get_registry()
    report, loaded = _validate(path, split, format, workers, registry, options)
    try:
        if loaded.dataset is None:
            raise DatasetError(
                f"Cannot write a fixed copy of {path}: it cannot be read at all. Fix the error reported "
                f"first: {report.sorted_issues()[0].locations[0] if report.issues else 'unknown'}"
            )
        changes = _write_fixed(
            loaded, report, Path(out_dir), workers or _default_workers(), registry, replace, split
        )
    finally:
        loaded.close()
    return report, changes


def _write_fixed(
    loaded: _Loaded,
    report: ValidationReport,
    out_dir: Path,
    workers: int,
    registry: Registry,
    replace: bool,
    split: str | None,
) -> list[str]:
    dataset = loaded.dataset
    assert dataset is not None
    changes = []
    dropped = Counter(problem.problem for problem in loaded.check.problems if problem.dropped)
    for problem, count in sorted(dropped.items()):
        changes.append(f"dropped {count} label line(s): {problem}")
    for problem, count in sorted(dataset.report.counts.items()):
        if READER_PROBLEMS.get(problem) == TRUNCATED:
            changes.append(f"left out images that cannot be decoded: {count}")
        else:
            changes.append(f"{problem}: {count} (as the {loaded.format} reader does)")
    inspections = _map(inspect_image, [r.image_path for r in dataset.records], workers)
    records, seen_hashes = [], set()
    convert = {GRAYSCALE, CMYK, SIXTEEN_BIT}
    with tempfile.TemporaryDirectory(prefix="yolox_sdk_fix_") as scratch:
        counts: dict[str, int] = {}
        for record, inspection in zip(dataset.records, inspections, strict=True):
            problems = {problem for problem, _ in inspection.problems}
            if not inspection.decodable:
                counts["left out images that cannot be decoded"] = (
                    counts.get("left out images that cannot be decoded", 0) + 1
                )
                continue
            if inspection.content_hash in seen_hashes:
                counts["left out duplicate images"] = counts.get("left out duplicate images", 0) + 1
                continue
            seen_hashes.add(inspection.content_hash)
            image_path = record.image_path
            if problems & convert:
                image_path = _converted_image(image_path, Path(scratch))
                counts["converted images to 8-bit RGB PNG"] = (
                    counts.get("converted images to 8-bit RGB PNG", 0) + 1
                )
            elif EXTENSION_MISMATCH in problems:
                image_path = _renamed_image(image_path, inspection.kind, Path(scratch))
                counts["renamed images to their real type"] = (
                    counts.get("renamed images to their real type", 0) + 1
                )
            boxes, labels = _without_duplicate_boxes(record.boxes, record.labels)
            if len(boxes) != len(record.boxes):
                counts["removed duplicate boxes"] = (
                    counts.get("removed duplicate boxes", 0) + len(record.boxes) - len(boxes)
                )
            records.append(attrs.evolve(record, image_path=image_path, boxes=boxes, labels=labels))
        changes += [f"{change}: {count}" for change, count in counts.items()]
        fixed = attrs.evolve(dataset, records=records)
        writer = registry.get(KIND, loaded.format).factory(None)
        if replace:
            check_holds_no_source_image(out_dir, dataset)
            changes.append(f"deleted the earlier dataset in {out_dir}: {empty_folder(out_dir)} files")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = save_with_format(writer, fixed, out_dir, written_split_name(split))
        changes += [f"writer: {warning}" for warning in written]
        mark_dataset_folder(out_dir, loaded.format, dataset.source)
    return changes


def _without_duplicate_boxes(boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    seen: set[tuple[Any, ...]] = set()
    keep = []
    for box, label in zip(boxes.tolist(), labels.tolist(), strict=True):
        key = (label, *box)
        keep.append(key not in seen)
        seen.add(key)
    mask = np.asarray(keep, dtype=bool)
    return boxes[mask], labels[mask]


# --- The fast path -------------------------------------------------------------------------------------


def _load_cache(cache_file: Path) -> dict[str, Any]:
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != QUICK_CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def quick_validate(dataset: DetectionDataset, cache_dir: str | Path) -> ValidationReport:
    """Check the header of every image of a loaded ``dataset``; the trainer's pre-flight check.

    Only headers and file tails are read (empty, unreadable, truncated files; wrong extension; grayscale,
    CMYK, 16-bit; EXIF rotation), plus what the reader already counted in ``dataset.report``. Results are
    cached per image in ``cache_dir/quick_validate.json`` under the key (absolute path, mtime, size), so a
    second run over unchanged files opens none of them. Call it after ``load_dataset`` and stop when
    ``report.ok`` is false; print ``report.table()`` either way.

    Args:
        dataset: the dataset about to be trained on.
        cache_dir: a writable folder (created when missing) for the cache file.
    """
    cache_file = Path(cache_dir) / QUICK_CACHE_FILE
    cache = _load_cache(cache_file)
    report = ValidationReport(str(dataset.source or ""), dataset.format)
    fresh: dict[str, Any] = {}
    for record in dataset.records:
        path = record.image_path.resolve()
        try:
            stat = path.stat()
            key = [stat.st_mtime_ns, stat.st_size]
        except OSError:
            key = None
        entry = cache.get(str(path))
        if key is not None and isinstance(entry, dict) and entry.get("key") == key:
            problems = [tuple(p) for p in entry.get("problems", [])]
        else:
            problems = list(inspect_image_header(path))
        if key is not None:
            fresh[str(path)] = {"key": key, "problems": [list(p) for p in problems]}
        for problem, where in problems:
            report.add(problem, where)
    report.images_checked = len(dataset.records)
    for problem, count in dataset.report.counts.items():
        mapped = READER_PROBLEMS.get(problem, problem)
        issue = report.issues.setdefault(mapped, Issue(mapped, _reader_severity(dataset, problem, mapped)))
        issue.count += count
        issue.locations.extend(dataset.report.examples.get(problem, []))
    merged = {**cache, **fresh}
    if merged != cache:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        payload = {"version": QUICK_CACHE_VERSION, "entries": merged}
        write_text_atomically(cache_file, json.dumps(payload))
    return report
