"""The ``yolo`` format's label checks for ``data validate``: every label line read on its own.

The YOLO reader stops at the first line it cannot use (a class id the dataset does not declare, a line
without five numbers), which is right for training but would let one bad line hide the others in a
report. ``check_yolo_labels`` reads every label file line by line, reports each problem, and writes a copy
of the dataset without those lines, which validation then reads (and ``--fix`` writes out) instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from yolox_sdk.builtin.formats import yolo
from yolox_sdk.data.format_support import (
    LABEL_CLASS_OUT_OF_RANGE,
    LABEL_FILE_ORPHAN,
    LABEL_FILE_UNREADABLE,
    LABEL_MALFORMED,
    LabelCheck,
    LabelProblem,
    read_text,
    read_yaml,
)
from yolox_sdk.data.image_check import IMAGE_SUFFIXES
from yolox_sdk.errors import DatasetError


def declared_class_ids(root: Path) -> list[int] | None:
    """The class ids the dataset at ``root`` declares (data.yaml ``names`` or classes.txt), or ``None``
    when they cannot be told (the reader then reports why)."""
    yaml_path = yolo.find_yaml(root)
    if yaml_path is not None:
        try:
            names = read_yaml(yaml_path).get("names")
        except (DatasetError, AttributeError):
            return None
        if isinstance(names, list):
            return list(range(len(names)))
        if isinstance(names, dict):
            return [key for key in names if isinstance(key, int)]
        return None
    classes = root / yolo.CLASSES_FILE
    if classes.is_file():
        try:
            text = read_text(classes, "class list")
        except DatasetError:
            return None  # the reader reports it
        return list(range(len([line for line in text.splitlines() if line.strip()])))
    return None


def label_files(root: Path) -> list[Path]:
    """Every ``.txt`` under a ``labels`` folder of ``root``."""
    return sorted(
        path
        for path in root.rglob("*.txt")
        if "labels" in path.relative_to(root).parts[:-1] and path.is_file()
    )


def image_of_label(label_file: Path) -> Path | None:
    """The image a label file belongs to (``labels`` -> ``images``, any image suffix), or ``None``."""
    parts = list(label_file.parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "labels":
            parts[index] = "images"
            stem = Path(*parts).with_suffix("")
            for candidate in (stem.with_suffix(s) for s in sorted(IMAGE_SUFFIXES)):
                if candidate.is_file():
                    return candidate
            for candidate in stem.parent.glob(f"{stem.name}.*") if stem.parent.is_dir() else ():
                if candidate.suffix.lower() in IMAGE_SUFFIXES:
                    return candidate
            return None
    return None


def _line_problem(line: str, class_ids: list[int] | None) -> str | None:
    fields = line.split()
    try:
        values = [float(v) for v in fields]
    except ValueError:
        values = []
    if len(fields) != 5 or not values:
        return LABEL_MALFORMED
    if class_ids is not None and (not values[0].is_integer() or int(values[0]) not in class_ids):
        return LABEL_CLASS_OUT_OF_RANGE
    return None


def check_yolo_labels(root: Path, scratch: Path) -> LabelCheck:
    """Check every label line under ``root``; when some cannot be used, copy the dataset without them.

    Unreadable label files (not UTF-8) are copied as empty files, so the copy reads as background images.
    """
    class_ids = declared_class_ids(root)
    problems: list[LabelProblem] = []
    bad_lines: dict[Path, set[int]] = {}
    unreadable: set[Path] = set()
    for label_file in label_files(root):
        if image_of_label(label_file) is None:
            problems.append(LabelProblem(LABEL_FILE_ORPHAN, str(label_file)))
        try:
            lines = read_text(label_file, "YOLO label file").splitlines()
        except DatasetError as error:
            problems.append(LabelProblem(LABEL_FILE_UNREADABLE, str(error)))
            unreadable.add(label_file)
            continue
        for number, line in enumerate(lines, start=1):
            if not line.split():
                continue
            problem = _line_problem(line, class_ids)
            if problem is None:
                continue
            detail = f"{line.strip()!r}" if problem == LABEL_MALFORMED else f"class id {line.split()[0]}"
            problems.append(LabelProblem(problem, f"{label_file}:{number}: {detail}", dropped=True))
            bad_lines.setdefault(label_file, set()).add(number)
    if not bad_lines and not unreadable:
        return LabelCheck(tuple(problems))
    return LabelCheck(tuple(problems), _cleaned_copy(root, bad_lines, unreadable, scratch))


def _cleaned_copy(root: Path, bad_lines: dict[Path, set[int]], unreadable: set[Path], stage: Path) -> Path:
    """A copy of the YOLO folder ``root`` under ``stage`` without the bad label lines; images are linked."""
    for source in root.rglob("*"):
        target = stage / source.relative_to(root)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        bad = bad_lines.get(source)
        if source in unreadable:
            target.write_text("", encoding="utf-8")
        elif bad is not None:
            lines = source.read_text(encoding="utf-8").splitlines()
            kept = [line for number, line in enumerate(lines, start=1) if number not in bad]
            target.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        elif source.suffix.lower() in IMAGE_SUFFIXES:
            # Images are only ever read from the stage, so a hard link is safe and costs no space.
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
        else:
            shutil.copyfile(source, target)
    return stage
