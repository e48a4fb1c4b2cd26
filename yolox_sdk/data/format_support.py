"""What every dataset format reader and writer shares, so all formats treat the same problems the same way.

A reader parses its annotation files into ``RawImage`` entries (image path, boxes as read, where they
came from) and hands them to ``assemble_dataset``, which applies the common rules:

* an image an annotation refers to that does not exist is an error (``DatasetError``), because training
  without it would silently lose its labels;
* a truncated or unreadable image is skipped with a warning and counted in the report;
* the image size comes from the file's header, so boxes are clipped to what the network will see;
* boxes partly outside the image are clipped, boxes with no area are dropped, both counted;
* a dataset with no usable image is an error that says which layout was expected;
* an image path written in an annotation must stay inside the folder it is relative to
  (``image_in_folder``): annotation files are often someone else's, and ``../../`` or an absolute path
  would otherwise make a reader open, and ``data convert`` copy, any file on the machine. The check is on
  the path as written, with ``..`` folded away; symbolic links inside the dataset are followed, since
  whoever can create a link there can already put any file there (and image folders linked to shared
  storage are common);
* annotation text is UTF-8 (``read_text``, ``read_json``), and a file that is not, or a JSON nested too
  deeply to parse, is a ``DatasetError`` naming the file rather than a crash;
* ``detect`` says how specific its match is (``DETECT_*``), so that ``format: auto`` picks the format that
  checked the most and two formats can recognise overlapping files (a JSON list) without a clash.

Third-party format plugins use these helpers through ``yolox_sdk.data.formats``, which re-exports the
stable ones (see CONTRIBUTING.md, "Writing a dataset format").
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import yaml

from yolox_sdk.data.image_check import probe_images
from yolox_sdk.data.records import DetectionDataset, ImageRecord, LoadReport
from yolox_sdk.errors import DatasetError, did_you_mean
from yolox_sdk.yaml_files import load_yaml_file

log = logging.getLogger(__name__)

BOX_CLIPPED = "box clipped to image"
BOX_ZERO_AREA = "zero-area box dropped"
BOX_OUTSIDE = "box outside image dropped"
BOX_NOT_FINITE = "box with non-finite coordinates dropped"
IMAGE_CORRUPT = "corrupt or truncated image skipped"
SIZE_MISMATCH = "annotated image size differs from the file (file size used)"
CLIP_TOLERANCE_PX = 0.01

# What ``DatasetFormat.detect`` returns: how much of the format it checked. ``format: auto`` picks the one
# format with the highest score, so a detector that checks more wins over one that only saw a file name.
DETECT_NONE = 0.0
"""Not this format."""
DETECT_GENERIC = 0.25
"""A guess from names alone (a ``.json`` suffix); also what ``True`` from a bool-returning detector counts as."""
DETECT_LAYOUT = 0.5
"""The folder layout fits (``Annotations/`` beside ``JPEGImages/``), or a marker word appears in the text."""
DETECT_SCHEMA = 0.75
"""The file's content was checked against the format's schema: keys and value types of its first entries."""
DETECT_DECLARED = 1.0
"""The file names its format itself (a format or version field only this format writes)."""
JSON_HEAD_BYTES = 64 << 10

# Problems a format's ``check_labels`` reports that ``data validate`` knows by name (with their severity).
LABEL_MALFORMED = "malformed label line"
LABEL_CLASS_OUT_OF_RANGE = "class id out of range"
LABEL_FILE_ORPHAN = "label file without image"
LABEL_FILE_UNREADABLE = "annotations cannot be read"


def _float_boxes(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float64).reshape(-1, 4)


@attrs.define
class RawImage:
    """One image as a reader found it, before the common checks.

    Attributes:
        image_path: where the image file should be.
        annotation: the annotation file (and entry) that names the image, for messages.
        boxes: ``(N, 4)`` ``x1, y1, x2, y2`` as read: absolute pixels, or fractions of the image size when
            ``normalized`` (YOLO), which ``assemble_dataset`` scales once the size is known.
        labels: ``(N,)`` class indices.
        box_places: where each box was written (``file:line``), for the report; defaults to ``annotation``.
        declared_size: ``(width, height)`` the annotation states, compared with the file's header.
        normalized: whether ``boxes`` are fractions of the image size.
        image_id: the record's id (file stem when empty).
    """

    image_path: Path
    annotation: str
    boxes: np.ndarray = attrs.field(converter=_float_boxes, factory=lambda: np.zeros((0, 4)))
    labels: np.ndarray = attrs.field(
        converter=lambda v: np.asarray(v, dtype=np.int64).reshape(-1), factory=lambda: np.zeros(0, np.int64)
    )
    box_places: list[str] | None = None
    declared_size: tuple[int, int] | None = None
    normalized: bool = False
    image_id: str = ""


@attrs.frozen
class LabelProblem:
    """One problem a format's ``check_labels`` found in its label files.

    Attributes:
        problem: what is wrong: one of the ``LABEL_*`` names (which ``data validate`` knows the severity
            of), or the format's own wording.
        where: the file and line (``labels/a.txt:3``), for the report.
        severity: ``"error"`` or ``"warning"``; ``None`` takes the known name's, else ``"warning"``.
        dropped: whether the cleaned copy leaves this line out (``--fix`` lists what it dropped).
    """

    problem: str
    where: str
    severity: str | None = None
    dropped: bool = False


@attrs.frozen
class LabelCheck:
    """What a format's ``check_labels`` found, and where the dataset can be read without those problems.

    Attributes:
        problems: every problem, in the order found (one bad line must not hide the others).
        cleaned: a copy of the dataset folder without the lines the reader would stop at, laid out exactly
            like the original (validation maps its paths back), or ``None`` when the original reads as is.
    """

    problems: tuple[LabelProblem, ...] = ()
    cleaned: Path | None = None


def clean_boxes(
    boxes: np.ndarray, width: int, height: int, report: LoadReport, places: Sequence[str]
) -> np.ndarray:
    """Clip ``boxes`` (absolute xyxy) to the image in place and return the mask of boxes to keep.

    A box with no area as written is dropped as zero-area; a box with area that lies entirely outside the
    image is dropped as outside; a box partly outside is clipped. Each case is counted in ``report``,
    except overshoots below ``CLIP_TOLERANCE_PX``: those are rounding in normalised formats (a YOLO box
    touching the right edge reads back as x2 = 640.0000001), clipped silently so they don't bury real
    labelling mistakes in the report.
    """
    finite = np.isfinite(boxes).all(axis=1)
    with np.errstate(invalid="ignore"):
        has_area = finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        clipped = np.clip(boxes, 0.0, [width, height, width, height])
        inside = has_area & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        moved = inside & (np.abs(clipped - boxes).max(axis=1, initial=0.0) > CLIP_TOLERANCE_PX)
    for problem, mask in (
        (BOX_NOT_FINITE, ~finite),
        (BOX_ZERO_AREA, finite & ~has_area),
        (BOX_OUTSIDE, has_area & ~inside),
        (BOX_CLIPPED, moved),
    ):
        for index in np.flatnonzero(mask):
            report.add(problem, places[index])
    boxes[inside] = clipped[inside]
    return inside


def _already_clean(images: Sequence[tuple[Any, np.ndarray]]) -> np.ndarray:
    """Per image, whether every box is finite, has area and lies inside the image, checked for all boxes
    of the dataset in one vectorised pass: ``clean_boxes`` then runs only on the few images that need it
    (per-image NumPy calls dominated the indexing of large datasets)."""
    counts = np.array([len(boxes) for _, boxes in images], dtype=np.int64)
    if not counts.sum():
        return np.ones(len(images), bool)
    boxes = np.concatenate([boxes for _, boxes in images if len(boxes)])
    sizes = np.repeat(np.array([[p.width, p.height] for p, _ in images], np.float64), counts, axis=0)
    with np.errstate(invalid="ignore"):
        good = (
            np.isfinite(boxes).all(axis=1)
            & (boxes[:, 0] >= 0)
            & (boxes[:, 1] >= 0)
            & (boxes[:, 2] <= sizes[:, 0])
            & (boxes[:, 3] <= sizes[:, 1])
            & (boxes[:, 2] > boxes[:, 0])
            & (boxes[:, 3] > boxes[:, 1])
        )
    owner = np.repeat(np.arange(len(images)), counts)
    return np.bincount(owner[~good], minlength=len(images)) == 0


def missing_images_error(missing: Sequence[RawImage]) -> DatasetError:
    """The error for annotations that refer to images that do not exist."""
    first = missing[0]
    total = f" ({len(missing)} referenced images are missing in total)" if len(missing) > 1 else ""
    return DatasetError(
        f"{first.annotation} refers to the image {first.image_path}, which does not exist{total}. "
        "Loading stops because training without these images would silently lose their labels: put the "
        "image files there, fix the file names in the annotations, or remove those annotations."
    )


def format_option_hint(key: str, value: str) -> str:
    """How to set the format option ``key``, in the config and on the command line, for error messages.

    Every error that an option would fix names it this way, so the two spellings users meet stay the same
    across formats: ``data.format_options.image_dir (--format-option image_dir=PATH on the command line)``.
    """
    return f"data.format_options.{key} (--format-option {key}={value} on the command line)"


def image_dir_hint(relative_to: str) -> str:
    """The sentence that tells a user with images elsewhere about the ``image_dir`` option.

    Args:
        relative_to: what the option is relative to, with the folder (``"the CSV's folder data"``).
    """
    return (
        f"If the images are in another folder, set {format_option_hint('image_dir', 'PATH')} to it, "
        f"relative to {relative_to}."
    )


def require_images(raw_images: Sequence[RawImage], hint: str) -> None:
    """Raise ``missing_images_error`` followed by ``hint`` when an image of ``raw_images`` does not exist.

    For readers with an option that would fix it (``image_dir_hint``): ``assemble_dataset`` raises the same
    error, but cannot know the reader's options.
    """
    missing = [raw for raw in raw_images if not raw.image_path.is_file()]
    if missing:
        raise DatasetError(f"{missing_images_error(missing)} {hint}")


def no_images_error(path: Path, layout: str) -> DatasetError:
    """The error for a dataset (or split) in which no image was found."""
    return DatasetError(f"No images were found at {path}. Expected {layout}")


def assemble_dataset(
    raw_images: Sequence[RawImage],
    class_names: Sequence[str],
    *,
    source: Path,
    format: str,
    layout: str,
    report: LoadReport | None = None,
    category_ids: Sequence[int] = (),
) -> DetectionDataset:
    """Apply the common rules to what a reader parsed and build the ``DetectionDataset``.

    Args:
        raw_images: the images and boxes the reader found, in the order records should have.
        class_names: the ordered class names ``labels`` index into.
        source: the path the dataset was read from (for messages and ``DetectionDataset.source``).
        format: the format plugin's name.
        layout: what the format expects, ending a sentence, used when no image is found.
        report: problems the reader already counted; the common checks add theirs to it.
        category_ids: the source format's id of each class, when it has its own.

    Raises:
        DatasetError: an image file is missing, or no usable image remains.
    """
    report = report if report is not None else LoadReport()
    if not raw_images:
        raise no_images_error(source, layout)
    missing = [raw for raw in raw_images if not raw.image_path.is_file()]
    if missing:
        raise missing_images_error(missing)
    usable = []
    for raw, probe in zip(raw_images, probe_images([raw.image_path for raw in raw_images]), strict=True):
        if not probe.ok:
            log.warning("Skipping %s: %s", raw.image_path, probe.problem)
            report.add(IMAGE_CORRUPT, f"{raw.image_path}: {probe.problem}")
            continue
        if raw.declared_size is not None and tuple(raw.declared_size) != (probe.width, probe.height):
            declared = "x".join(str(v) for v in raw.declared_size)
            report.add(SIZE_MISMATCH, f"{raw.annotation}: {declared} vs {probe.width}x{probe.height}")
        boxes = raw.boxes.copy()
        if raw.normalized:
            boxes *= [probe.width, probe.height, probe.width, probe.height]
        usable.append((raw, probe, boxes))
    records = []
    for (raw, probe, boxes), clean in zip(
        usable, _already_clean([(p, b) for _, p, b in usable]), strict=True
    ):
        keep = np.ones(len(boxes), bool)
        if not clean:
            keep = clean_boxes(
                boxes, probe.width, probe.height, report, raw.box_places or [raw.annotation] * len(boxes)
            )
        records.append(
            ImageRecord(
                raw.image_path, probe.width, probe.height, boxes[keep], raw.labels[keep], raw.image_id
            )
        )
    if not records:
        raise DatasetError(
            f"None of the {len(raw_images)} images at {source} is usable: every one is corrupt or "
            f"truncated (e.g. {report.examples[IMAGE_CORRUPT][0]}). Re-copy or re-download the images."
        )
    return DetectionDataset(records, class_names, category_ids, source, format, report)


def image_in_folder(
    folder: Path, name: str, where: str, *, relative_to: Path | None = None, what: str = "image"
) -> Path:
    """``folder / name`` with ``..`` folded away, or a ``DatasetError`` when that leaves ``folder``.

    Every reader builds the image paths its annotations write (``file_name``, ``imagePath``, a list file's
    line) through this, so an annotation file cannot point a reader (or ``data convert``'s copy) at a file
    outside the dataset. ``name`` may be absolute when it lies inside ``folder``. Symbolic links are not
    resolved (see the module docstring).

    This is the one image-path rule for every format: use the returned path as it is. It is relative when
    ``folder`` is (the dataset path as the user gave it); making it absolute (``os.path.abspath``,
    ``resolve()``) would make it differ from the paths the rest of the SDK lists under that folder (``data
    validate`` then counted each image twice).

    Args:
        folder: the folder the image must be in: the dataset's (or the ``image_dir`` option's).
        name: the image path as the annotation writes it.
        where: the annotation file and entry, for the message.
        relative_to: the folder ``name`` is relative to, when it is not ``folder`` itself (LabelMe's
            ``imagePath`` is relative to its JSON file, which may lie deeper in the dataset).
        what: what ``name`` is, for the message (``"image"``, ``"image folder"``).
    """
    joined = os.path.normpath(os.path.join(relative_to if relative_to is not None else folder, name))
    base = os.path.abspath(folder)
    resolved = os.path.abspath(joined)
    if resolved == base or resolved.startswith(base.rstrip(os.sep) + os.sep):
        return Path(joined)
    raise DatasetError(
        f"{where}: the {what} {name!r} resolves to {resolved}, which is outside the dataset folder {base}. "
        "Paths in annotation files must stay inside the dataset, so that a file you were given cannot make "
        "yolox-sdk read (or data convert copy) other files on this machine. Put the file inside that "
        "folder and write its path relative to it (no '..' leading out, no absolute path elsewhere)."
    )


def _not_utf8_error(path: Path, data: bytes, error: UnicodeDecodeError, what: str) -> DatasetError:
    line = data[: error.start].count(b"\n") + 1
    return DatasetError(
        f"{path}:{line}: the {what} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset "
        f"{error.start}). yolox-sdk reads annotation and list files as UTF-8: re-save it as UTF-8, or "
        "re-export it, so that names and labels read as written."
    )


def read_text(path: Path, what: str = "file") -> str:
    """The text of an annotation, label or list file decoded as UTF-8 (a byte-order mark is dropped).

    Raises:
        DatasetError: the file cannot be read, or is not UTF-8 (naming the line of the first bad byte);
            ``what`` names the kind of file in that message (``"YOLO label file"``).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise DatasetError(f"Cannot read {path}: {error.strerror or error}.") from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _not_utf8_error(Path(path), data, error, what) from error


def read_json(path: Path) -> Any:
    """Parse a JSON file, or raise ``DatasetError`` naming the file, line and column.

    A document nested so deeply that the parser runs out of stack (``[[[[...``) is refused the same way:
    no annotation format nests more than a few levels.
    """
    text = read_text(path, "JSON file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"{path}:{error.lineno}:{error.colno}: malformed JSON: {error.msg}. Fix the file or re-export it."
        ) from error
    except RecursionError as error:
        raise DatasetError(
            f"{path}: the JSON is nested too deeply to read (more than about {sys.getrecursionlimit()} "
            "levels of lists or objects); no annotation format nests that deep. The file is damaged or "
            "not an annotation file: re-export it."
        ) from error


def json_list_head(path: Path, max_bytes: int = JSON_HEAD_BYTES) -> list[Any] | None:
    """The entries of a JSON list file that lie whole in its first ``max_bytes``; for cheap detection.

    Returns ``None`` when the file is not a JSON list (or cannot be read), and an empty list when it is one
    whose first entry does not fit in the head (or an empty list file). Detectors check the schema of these
    entries instead of looking for key names anywhere in the text, which other formats' files contain too.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(max_bytes)
    except OSError:
        return None
    text = head.lstrip().removeprefix("\ufeff").lstrip()
    if not text.startswith("["):
        return None
    decoder = json.JSONDecoder()
    entries: list[Any] = []
    position = 1
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text) or text[position] == "]":
            return entries
        try:
            entry, position = decoder.raw_decode(text, position)
        except (ValueError, RecursionError):
            return entries  # cut off by the head (or malformed): judge on what was whole
        entries.append(entry)


def read_xml(path: Path) -> ET.Element:
    """Parse an XML file and return its root, or raise ``DatasetError`` naming the file, line and column."""
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as error:
        line, column = error.position
        reason = str(error).split(":")[0]
        raise DatasetError(
            f"{path}:{line}:{column + 1}: malformed XML: {reason}. Fix the file or re-export it."
        ) from error
    except OSError as error:
        raise DatasetError(f"Cannot read {path}: {error}.") from error


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, or raise ``DatasetError`` naming the file, line and column."""
    try:
        return load_yaml_file(path, exponent_floats=False)[0]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise DatasetError(f"{where}: malformed YAML: {error.problem or error.context}.") from error
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"Cannot read {path}: {error}.") from error


def export_image(source: Path, folder: Path, taken: set[str]) -> str:
    """Copy ``source`` into ``folder`` under a file name whose stem is not yet in ``taken``; return the name.

    Writers call this so a saved dataset is complete on its own. The file is copied, not hard-linked, so
    editing the saved images can never change the original dataset. Stems are kept unique (ignoring
    case) because VOC and YOLO name annotation files after them; clashes get ``_1``, ``_2`` ... suffixes.
    """
    stem = source.stem
    counter = 0
    while stem.lower() in taken:
        counter += 1
        stem = f"{source.stem}_{counter}"
    taken.add(stem.lower())
    folder.mkdir(parents=True, exist_ok=True)
    name = stem + source.suffix
    with contextlib.suppress(shutil.SameFileError):  # saving a dataset over itself: already in place
        shutil.copyfile(source, folder / name)
    return name


def format_coordinate(value: float) -> str:
    """A coordinate as text: an integer when it is one, otherwise the shortest exact decimal."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def choose_class_names(labels: Iterable[tuple[str, str]], given: list[str] | None) -> list[str]:
    """The classes of a format whose files hold label names only, from ``(label, where)`` pairs.

    Without ``given`` (the ``class_names`` option) the classes are the sorted set of labels; with it, a
    label outside ``given`` is an error naming where it was written. Shared by the ``createml``, ``csv``
    and ``kitti`` readers.
    """
    labels = list(labels)
    if given is None:
        return sorted({label for label, _ in labels})
    for label, where in labels:
        if label not in given:
            raise DatasetError(
                f"{where}: label '{label}' is not in data.format_options.class_names "
                f"({', '.join(given)}).{did_you_mean(label, given)} Add it to class_names or fix the "
                "annotation."
            )
    return list(given)


def image_ids(names: Sequence[str]) -> list[str]:
    """Record ids for image names as written: the file stems, or the names without suffix when stems clash.

    Shared by the ``createml``, ``csv`` and ``cvat`` readers, whose image names may include folders.
    """
    stems = [Path(name).stem for name in names]
    if len(set(stems)) == len(stems):
        return stems
    return [Path(name).with_suffix("").as_posix() for name in names]


def names_only_warnings(dataset: DetectionDataset, format_title: str) -> list[str]:
    """Warnings for a format whose files hold class names only (no class list, no ids).

    Shared by the ``createml``, ``csv`` and ``kitti`` writers.
    """
    warnings = []
    names = list(dataset.class_names)
    used = {names[label] for record in dataset.records for label in record.labels.tolist()}
    if names != sorted(names) or used != set(names):
        unused = [name for name in names if name not in used]
        lost = f" (the classes without boxes, {', '.join(unused)}, are lost)" if unused else ""
        warnings.append(
            f"{format_title} files hold class names, not the class list: read this dataset back with "
            f"class_names {names} to keep every class in this order{lost}; without it the classes are the "
            "sorted names that have boxes."
        )
    if list(dataset.category_ids) != list(range(dataset.num_classes)):
        warnings.append(
            f"{format_title} has no category ids, so the original ids {list(dataset.category_ids)} are not "
            "kept."
        )
    return warnings


SPLIT_FILE_WORDS = ("labels", "annotations", "annotation", "label")


def names_split_file(stem: str, split: str) -> bool:
    """Whether a file stem names the file of ``split``, as exports and tutorials name them.

    ``train``, ``*_train``, ``*-train`` and ``train_labels``, ``train-labels``, ``train_annotations`` (the
    TensorFlow object-detection tutorials) all name the ``train`` file; case is ignored. For formats with one
    annotation file per split that want more than ``find_split_file``'s ``<split>`` and ``*_<split>``.
    """
    stem, split = stem.lower(), split.lower()
    if stem == split or stem.endswith((f"_{split}", f"-{split}")):
        return True
    return any(stem in (f"{split}_{word}", f"{split}-{word}") for word in SPLIT_FILE_WORDS)


def find_split_file(path: Path, split: str | None, candidates: list[Path], title: str, layout: str) -> Path:
    """The one annotation file that ``path`` and ``split`` designate, for formats with one file per split.

    Args:
        path: a file (used as is; a split cannot select inside it) or a folder.
        split: picks ``<split>.<ext>`` or ``*_<split>.<ext>`` among ``candidates``.
        candidates: the folder's files that look like this format (ignored when ``path`` is a file).
        title: how messages name the file kind, e.g. ``"CreateML JSON"``.
        layout: what the format expects, ending a sentence.
    """
    if path.is_file():
        if split is not None:
            raise DatasetError(
                f"{path} is a single {title} file, so split '{split}' cannot select anything in it. Point the "
                f"path at the folder holding one {title} file per split, or leave the split empty."
            )
        return path
    if not path.is_dir():
        raise DatasetError(f"{path} does not exist. Expected {layout}")
    if split is not None:
        candidates = [c for c in candidates if c.stem == split or c.stem.endswith(f"_{split}")]
    if len(candidates) == 1:
        return candidates[0]
    wanted = f" for split '{split}' (named {split}.* or *_{split}.*)" if split else ""
    if not candidates:
        raise DatasetError(f"No {title} file{wanted} in {path}. Expected {layout}")
    names = ", ".join(c.name for c in candidates)
    raise DatasetError(
        f"{path} holds several {title} files{wanted}: {names}. Give the path of the file to use, or a split."
    )
