"""The ``kitti`` dataset format: KITTI object labels, one ``.txt`` per image (KITTI, NVIDIA TAO, DIGITS).

``path`` is a folder holding the images in ``image_2/`` (or ``images/``) and the labels in ``label_2/`` (or
``labels/``), the label file of ``image_2/000042.png`` being ``label_2/000042.txt``. ``split`` selects the
subfolder ``<path>/<split>`` laid out the same way (KITTI ships ``training/``).

Each label line has 15 space-separated fields, plus an optional 16th (a detection score, ignored)::

    type truncated occluded alpha x1 y1 x2 y2 height width length x y z rotation_y

Only ``type`` and the 2D box (``x1 y1 x2 y2``, pixels) are read. Conventions:

* ``DontCare`` lines mark regions that were not labelled; they are skipped and counted.
* A line with another number of fields, or a box that is not numbers, is an error naming the file and line.
* An image without a label file is a background image; a label file without an image is an error.
* Classes. The ``class_names`` option fixes the classes and their order, and a type outside it is an error.
  Without it the classes are the sorted set of types (``DontCare`` excluded).
* Writing puts ``image_2/`` and ``label_2/`` under the output folder and fills the fields a 2D box does not
  know with KITTI's "unknown" values: truncated and occluded ``-1``, alpha ``-10``, dimensions ``-1``,
  location ``-1000`` and rotation ``-10``. Spaces in class names are written as ``_`` (KITTI separates
  fields by spaces), with a warning.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from yolox_sdk.data.format_support import (
    DETECT_LAYOUT,
    DETECT_NONE,
    DETECT_SCHEMA,
    RawImage,
    assemble_dataset,
    choose_class_names,
    export_image,
    format_coordinate,
    names_only_warnings,
    no_images_error,
    read_text,
)
from yolox_sdk.data.image_check import IMAGE_SUFFIXES
from yolox_sdk.data.records import DetectionDataset, LoadReport
from yolox_sdk.errors import DatasetError
from yolox_sdk.plugins.hookspecs import Register, hookimpl

NAME = "kitti"
LAYOUT = (
    "a KITTI folder: image_2/ (or images/) and label_2/ (or labels/) holding one <image stem>.txt of "
    "15-field 'type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y' lines per image."
)
IMAGE_FOLDERS = ("image_2", "images")
LABEL_FOLDERS = ("label_2", "labels")
DONT_CARE = "DontCare"
DONT_CARE_SKIPPED = "KITTI DontCare region skipped"
FIELDS = 15
UNKNOWN_BEFORE_BOX = ("-1", "-1", "-10")  # truncated, occluded, alpha
UNKNOWN_AFTER_BOX = ("-1", "-1", "-1", "-1000", "-1000", "-1000", "-10")  # h w l, x y z, rotation_y
SNIFF_FILES = 5


@attrs.define
class KittiOptions:
    """Options of the ``kitti`` format.

    Attributes:
        class_names: the classes, in label order. Without it, the sorted set of types found is used.
    """

    class_names: list[str] | None = None


@attrs.frozen
class KittiObject:
    """One label line: its type, ``x1, y1, x2, y2`` in pixels, and ``file:line``."""

    type: str
    box: tuple[float, float, float, float]
    where: str


def _first_folder(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / name for name in names if (root / name).is_dir()), None)


def _looks_like_label_line(line: str) -> bool:
    fields = line.split()
    if len(fields) not in (FIELDS, FIELDS + 1):
        return False
    try:
        float(fields[0])
    except ValueError:
        return True  # the type is a name, not a number
    return False


def looks_like_kitti(root: Path) -> float:
    """How surely ``root`` is a KITTI folder: image and label folders whose first label line has KITTI's
    15 fields (``DETECT_SCHEMA``).

    Only the first lines of a few label files are read. A folder of empty label files is recognised only
    when it uses KITTI's own ``label_2`` name (``DETECT_LAYOUT``), since ``labels/`` alone is also YOLO's
    layout.
    """
    labels = _first_folder(root, LABEL_FOLDERS)
    if labels is None or _first_folder(root, IMAGE_FOLDERS) is None:
        return DETECT_NONE
    for label_file in sorted(labels.glob("*.txt"))[:SNIFF_FILES]:
        try:
            with open(label_file, encoding="utf-8", errors="replace") as handle:
                line = next((line for line in handle if line.strip()), None)
        except OSError:
            return DETECT_NONE
        if line is not None:
            return DETECT_SCHEMA if _looks_like_label_line(line) else DETECT_NONE
    return DETECT_LAYOUT if labels.name == "label_2" and any(labels.glob("*.txt")) else DETECT_NONE


def read_kitti_label_file(label_file: Path, report: LoadReport) -> list[KittiObject]:
    """Parse one label file; ``DontCare`` lines are counted in ``report`` and left out.

    Raises:
        DatasetError: a line without 15 (or 16) fields, or with a box that is not four numbers.
    """
    objects = []
    text = read_text(label_file, "KITTI label file")
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        where = f"{label_file}:{number}"
        if not fields:
            continue
        if len(fields) not in (FIELDS, FIELDS + 1):
            raise DatasetError(
                f"{where}: expected {FIELDS} fields 'type truncated occluded alpha x1 y1 x2 y2 h w l x y z "
                f"rotation_y' (and an optional score), found {len(fields)}: {line.strip()!r}."
            )
        if fields[0] == DONT_CARE:
            report.add(DONT_CARE_SKIPPED, where)
            continue
        try:
            x1, y1, x2, y2 = (float(value) for value in fields[4:8])
        except ValueError:
            raise DatasetError(
                f"{where}: the box fields 5-8 (x1 y1 x2 y2) {fields[4:8]} are not all numbers."
            ) from None
        objects.append(KittiObject(fields[0], (x1, y1, x2, y2), where))
    return objects


def _images_by_stem(folder: Path) -> dict[str, Path]:
    images: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            images.setdefault(path.stem, path)
    return images


def load_kitti(
    path: Path, split: str | None = None, class_names: list[str] | None = None
) -> DetectionDataset:
    """Read a KITTI dataset (see the module docstring for the conventions)."""
    root = path if split is None else path / split
    if split is not None and not root.is_dir():
        available = (
            sorted(p.name for p in path.iterdir() if _first_folder(p, LABEL_FOLDERS)) if path.is_dir() else []
        )
        raise DatasetError(
            f"No folder {root} for split '{split}'. Splits found: {', '.join(available) or 'none'}."
        )
    image_folder, label_folder = _first_folder(root, IMAGE_FOLDERS), _first_folder(root, LABEL_FOLDERS)
    if image_folder is None or label_folder is None:
        raise DatasetError(
            f"{root} has no image_2/ (or images/) and label_2/ (or labels/) folders. Expected {LAYOUT}"
        )
    images = _images_by_stem(image_folder)
    label_files = {label.stem: label for label in sorted(label_folder.glob("*.txt"))}
    stems = sorted({*images, *label_files})
    if not stems:
        raise no_images_error(root, LAYOUT)
    report = LoadReport()
    parsed = {
        stem: read_kitti_label_file(label_files[stem], report) if stem in label_files else []
        for stem in stems
    }
    names = choose_class_names(
        ((obj.type, obj.where) for objects in parsed.values() for obj in objects), class_names
    )
    index_of = {name: index for index, name in enumerate(names)}
    raw = [
        RawImage(
            images.get(stem, image_folder / f"{stem}.png"),
            str(label_files.get(stem, images.get(stem))),
            [obj.box for obj in parsed[stem]],
            [index_of[obj.type] for obj in parsed[stem]],
            [obj.where for obj in parsed[stem]],
            image_id=stem,
        )
        for stem in stems
    ]
    return assemble_dataset(raw, names, source=root, format=NAME, layout=LAYOUT, report=report)


def save_kitti(dataset: DetectionDataset, out_dir: Path, split: str | None = None) -> list[str]:
    """Write ``image_2/`` and ``label_2/`` (one label file per image, empty for a background image), under
    ``out_dir/<split>/`` for a split, the subfolder reading back with that split reads.

    Box coordinates are written exactly, so they read back unchanged.
    """
    warnings = names_only_warnings(dataset, "KITTI")
    types = [name.replace(" ", "_") or "_" for name in dataset.class_names]
    if types != list(dataset.class_names):
        warnings.append(f"KITTI types cannot hold spaces: classes were written as {types}.")
    if DONT_CARE in types:
        warnings.append(f"The class '{DONT_CARE}' is KITTI's marker for unlabelled regions: readers skip it.")
    taken: set[str] = set()
    out_dir = out_dir / split if split else out_dir
    (out_dir / "label_2").mkdir(parents=True, exist_ok=True)
    for record in dataset.records:
        name = export_image(record.image_path, out_dir / "image_2", taken)
        lines = [
            " ".join(
                (types[label], *UNKNOWN_BEFORE_BOX, *(format_coordinate(v) for v in box), *UNKNOWN_AFTER_BOX)
            )
            + "\n"
            for box, label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True)
        ]
        (out_dir / "label_2" / f"{Path(name).stem}.txt").write_text("".join(lines), encoding="utf-8")
    return warnings


class KittiFormat:
    """The ``DatasetFormat`` for KITTI object labels."""

    def __init__(self, options: KittiOptions | None = None) -> None:
        self.options = options or KittiOptions()

    def detect(self, path: Path) -> float:
        """How surely ``path`` is a KITTI folder; see ``looks_like_kitti``."""
        path = Path(path)
        return looks_like_kitti(path) if path.is_dir() else DETECT_NONE

    def load(self, path: Path, split: str | None = None) -> DetectionDataset:
        """Read the KITTI dataset at ``path``; see ``load_kitti``."""
        return load_kitti(Path(path), split, self.options.class_names)

    def save(self, dataset: DetectionDataset, out_dir: Path, split: str | None = None) -> list[str]:
        """Write ``dataset`` in KITTI layout, in the subfolder ``split`` when given; see ``save_kitti``."""
        return save_kitti(dataset, Path(out_dir), split)


@hookimpl
def register_dataset_formats(register: Register) -> None:
    """Register the ``kitti`` format."""
    register(
        NAME,
        KittiFormat,
        options=KittiOptions,
        description="KITTI object labels: a folder with image_2/ (or images/) and label_2/ (or labels/) "
        "holding one 15-field .txt per image",
    )
