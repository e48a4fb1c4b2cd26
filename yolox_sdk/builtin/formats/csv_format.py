"""The ``csv`` dataset format: one box per row of a CSV file (spreadsheets, scripts, Open Images).

Two header layouts are read (column names ignore case and order; other columns are ignored):

* generic: ``image,xmin,ymin,xmax,ymax,label`` in absolute pixels. ``filename`` is accepted for ``image``
  and ``class`` for ``label``, so the TensorFlow object-detection CSV
  (``filename,width,height,class,xmin,ymin,xmax,ymax``) reads as it is; its optional ``width`` and
  ``height`` are compared with the image file's header (a difference is counted, the file's size is used).
  A row whose coordinates and label are all empty (``image,,,,,``) lists a background image.
* Open Images: ``ImageID,...,LabelName,...,XMin,XMax,YMin,YMax`` with coordinates as fractions of the image
  size; the image file is ``<ImageID>.jpg``. Classes are the ``LabelName`` values as written (the MIDs,
  ``/m/01g317``), since the names live in a separate file.

What ``load`` accepts as ``path``: the ``.csv`` file, or a folder holding exactly one such file. With
``split`` given, the one whose name is the split's as exports and tutorials write it: ``train.csv``,
``*_train.csv``, ``*-train.csv``, ``train_labels.csv``, ``train-labels.csv`` (see
``yolox_sdk.data.format_support.names_split_file``).

Conventions:

* Images are relative to the CSV's folder, or to its ``images/`` subfolder (per image, in that order);
  when neither holds any of the CSV's images, to the ``images/`` folder beside the CSV's folder (a CSV in
  ``data/`` next to ``images/``). The ``image_dir`` option (relative to the CSV's folder) replaces that
  search. An image path must stay inside the folder it is relative to. Rows of one image need not be
  adjacent; images keep the order of their first row.
* Classes. The ``class_names`` option fixes the classes and their order, and a label outside it is an
  error. Without it the classes are the sorted set of labels.
* Text. The file must be UTF-8 (a byte-order mark, as Excel writes, is fine). Other bytes are an error
  naming the file and line rather than a silent replacement, since a mangled file name would only fail
  later as a missing image.
* A row with a missing column, a non-numeric coordinate or only some of the box fields is an error
  naming the file and line.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import attrs

from yolox_sdk.data.format_support import (
    DETECT_NONE,
    DETECT_SCHEMA,
    RawImage,
    assemble_dataset,
    choose_class_names,
    export_image,
    format_coordinate,
    image_dir_hint,
    image_ids,
    image_in_folder,
    names_only_warnings,
    names_split_file,
    require_images,
)
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.errors import DatasetError
from yolox_sdk.plugins.hookspecs import Register, hookimpl

NAME = "csv"
LAYOUT = (
    "a CSV file (or a folder holding one) with the header image,xmin,ymin,xmax,ymax,label (pixels; filename "
    "for image, class for label, optional width,height), or Open Images' ImageID,LabelName,XMin,XMax,YMin,YMax "
    "(fractions), and the images beside it, in images/ or in the images/ folder beside its folder."
)
ANNOTATION_FILE = "annotations.csv"
HEADER = ("image", "xmin", "ymin", "xmax", "ymax", "label")
IMAGE_COLUMNS = ("image", "filename")
LABEL_COLUMNS = ("label", "class")
BOX_COLUMNS = ("xmin", "ymin", "xmax", "ymax")
SIZE_COLUMNS = ("width", "height")
OPEN_IMAGES_COLUMNS = ("imageid", "labelname", "xmin", "xmax", "ymin", "ymax")
HEAD_BYTES = 64 << 10
ROOT_SAMPLE = 50  # images checked to tell which folder holds them (every image is checked later)


@attrs.define
class CsvOptions:
    """Options of the ``csv`` format.

    Attributes:
        class_names: the classes, in label order. Without it, the sorted set of labels found is used.
        image_dir: the folder holding the images, relative to the CSV file's folder; replaces the search
            described in the module docstring.
    """

    class_names: list[str] | None = None
    image_dir: str | None = None


@attrs.frozen
class CsvColumns:
    """Where the fields are in a CSV header, and whether coordinates are fractions (Open Images)."""

    image: int
    label: int
    box: tuple[int, int, int, int]
    normalized: bool
    size: tuple[int, int] | None = None


@attrs.frozen
class CsvBox:
    """One box row: absolute (or fractional) ``x1, y1, x2, y2``, its label and ``file:line``."""

    label: str
    box: tuple[float, float, float, float]
    where: str


def _header_names(line: str) -> list[str]:
    return [name.strip().strip('"').strip().lower() for name in line.lstrip("\ufeff").split(",")]


def columns_of(header: list[str]) -> CsvColumns | None:
    """The column positions of a lower-cased header, or ``None`` when it is neither known layout."""
    image = next((header.index(name) for name in IMAGE_COLUMNS if name in header), None)
    label = next((header.index(name) for name in LABEL_COLUMNS if name in header), None)
    if image is not None and label is not None and all(name in header for name in BOX_COLUMNS):
        box = tuple(header.index(name) for name in BOX_COLUMNS)
        size = (
            tuple(header.index(n) for n in SIZE_COLUMNS) if all(n in header for n in SIZE_COLUMNS) else None
        )
        return CsvColumns(image, label, box, normalized=False, size=size)  # type: ignore[arg-type]
    if all(name in header for name in OPEN_IMAGES_COLUMNS):
        box = tuple(header.index(name) for name in BOX_COLUMNS)
        return CsvColumns(header.index("imageid"), header.index("labelname"), box, normalized=True)  # type: ignore[arg-type]
    return None


def looks_like_csv_dataset(path: Path) -> bool:
    """True when the first line of ``path`` is a header of a known layout (reads 64 KiB at most)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            first_line = handle.read(HEAD_BYTES).split("\n", 1)[0]
    except OSError:
        return False
    return columns_of(_header_names(first_line)) is not None


def _candidate_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.glob("*.csv")) if p.is_file() and looks_like_csv_dataset(p)]


def find_csv_file(path: Path, split: str | None) -> Path:
    """The annotation CSV file that ``path`` and ``split`` designate (see the module docstring)."""
    if path.is_file():
        if split is not None:
            raise DatasetError(
                f"{path} is a single annotation CSV file, so split '{split}' cannot select anything in it. "
                "Point the path at the folder holding one CSV file per split, or leave the split empty."
            )
        return path
    if not path.is_dir():
        raise DatasetError(f"{path} does not exist. Expected {LAYOUT}")
    every = _candidate_files(path)
    candidates = every if split is None else [c for c in every if names_split_file(c.stem, split)]
    if len(candidates) == 1:
        return candidates[0]
    wanted = (
        f" for split '{split}' (named {split}.csv, *_{split}.csv, *-{split}.csv or {split}_labels.csv)"
        if split
        else ""
    )
    if not candidates:
        seen = f" It holds {', '.join(c.name for c in every)}." if every else ""
        raise DatasetError(f"No annotation CSV file{wanted} in {path}.{seen} Expected {LAYOUT}")
    names = ", ".join(c.name for c in candidates)
    raise DatasetError(
        f"{path} holds several annotation CSV files{wanted}: {names}. Give the path of the file to use, or "
        "a split."
    )


def read_csv_text(path: Path) -> str:
    """The text of ``path`` decoded as UTF-8, or a ``DatasetError`` naming the line of the first bad byte."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"Cannot read {path}: {error}.") from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DatasetError(
            f"{path}:{line}: the file is not UTF-8 text (byte 0x{data[error.start]:02x} at offset "
            f"{error.start}). Re-save the CSV as UTF-8 so image names and labels read as written."
        ) from error


@attrs.define
class CsvRows:
    """What a box CSV holds: the boxes of each image name (in order of first appearance), the size its
    ``width``/``height`` columns declare for an image, and whether coordinates are fractions (Open Images)."""

    by_image: dict[str, list[CsvBox]]
    normalized: bool
    sizes: dict[str, tuple[int, int]] = attrs.field(factory=dict)


def _declared_size(row: list[str], columns: CsvColumns) -> tuple[int, int] | None:
    if columns.size is None:
        return None
    try:
        width, height = (int(float(row[index])) for index in columns.size)
    except (ValueError, OverflowError):  # a column left empty or not a number: the file's size is used
        return None
    return (width, height) if width > 0 and height > 0 else None


def read_csv_rows(path: Path) -> CsvRows:
    """Parse a box CSV into the boxes of each image name (see ``CsvRows``)."""
    rows = csv.reader(io.StringIO(read_csv_text(path), newline=""))
    header = next(rows, None)
    columns = columns_of([name.strip().lower() for name in header]) if header else None
    if columns is None:
        raise DatasetError(
            f"{path}:1: the header {','.join(header or [])!r} has none of the known column sets. Expected "
            f"{LAYOUT}"
        )
    by_image: dict[str, list[CsvBox]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    width = len(header)  # type: ignore[arg-type]
    for row in rows:
        where = f"{path}:{rows.line_num}"
        if not any(field.strip() for field in row):
            continue
        if len(row) != width:
            raise DatasetError(
                f"{where}: expected {width} fields like the header, found {len(row)}: {','.join(row)!r}."
            )
        image = row[columns.image].strip()
        if not image:
            raise DatasetError(f"{where}: the row has no image name.")
        if columns.normalized and not Path(image).suffix:
            image += ".jpg"
        boxes = by_image.setdefault(image, [])
        declared = _declared_size(row, columns)
        if declared is not None:
            sizes.setdefault(image, declared)
        fields = [row[index].strip() for index in (*columns.box, columns.label)]
        if not any(fields):
            continue  # a background image
        if not all(fields):
            raise DatasetError(
                f"{where}: a box row needs all of xmin, ymin, xmax, ymax and the label; leave all five empty "
                f"to list an image without boxes. Got {','.join(row)!r}."
            )
        try:
            x1, y1, x2, y2 = (float(value) for value in fields[:4])
        except ValueError:
            raise DatasetError(f"{where}: box coordinates {fields[:4]} are not all numbers.") from None
        boxes.append(CsvBox(fields[4], (x1, y1, x2, y2), where))
    return CsvRows(by_image, columns.normalized, sizes)


def _image_roots(csv_path: Path, images: list[str], image_dir: str | None) -> list[Path]:
    """The folders images are looked for in, per image in order (see the module docstring).

    The ``images/`` beside the CSV's folder is chosen only when the first images are in none of the nearer
    folders but are there, so a dataset that read before reads the same.
    """
    folder = csv_path.parent
    if image_dir is not None:
        return [folder / Path(image_dir).expanduser()]
    roots = [folder, folder / "images"]
    beside = folder.parent / "images"
    sample = images[:ROOT_SAMPLE]
    found_near = any((root / image).is_file() for root in roots for image in sample)
    if not found_near and folder.parent != folder and any((beside / image).is_file() for image in sample):
        return [beside]
    return roots


def load_csv(
    csv_path: Path, class_names: list[str] | None = None, image_dir: str | None = None
) -> DetectionDataset:
    """Read one box CSV (see the module docstring for the conventions)."""
    rows = read_csv_rows(csv_path)
    by_image = rows.by_image
    names = choose_class_names(
        ((box.label, box.where) for boxes in by_image.values() for box in boxes), class_names
    )
    index_of = {name: index for index, name in enumerate(names)}
    roots = _image_roots(csv_path, list(by_image), image_dir)
    raw = []
    for (image, boxes), image_id in zip(by_image.items(), image_ids(list(by_image)), strict=True):
        root = next((root for root in roots if (root / image).is_file()), roots[0])
        image_path = image_in_folder(root, image, boxes[0].where if boxes else f"{csv_path} ({image})")
        raw.append(
            RawImage(
                image_path,
                f"{csv_path} ({image})",
                [box.box for box in boxes],
                [index_of[box.label] for box in boxes],
                [box.where for box in boxes],
                rows.sizes.get(image),
                normalized=rows.normalized,
                image_id=image_id,
            )
        )
    searched = ", ".join(str(root) for root in roots)
    hint = image_dir_hint(f"the CSV's folder {csv_path.parent}")
    require_images(raw, f"Searched: {searched}. {hint}")
    return assemble_dataset(raw, names, source=csv_path, format=NAME, layout=LAYOUT)


def save_csv(dataset: DetectionDataset, out_dir: Path, split: str | None = None) -> list[str]:
    """Write ``out_dir/annotations.csv`` (``out_dir/<split>.csv`` for a split, which reading back with that
    split finds; generic header, pixels) and copy the images to ``out_dir/images/``.

    Coordinates are written exactly, so boxes read back unchanged; an image without boxes gets one empty
    row so it stays in the dataset as a background image.
    """
    taken: set[str] = set()
    out_dir.mkdir(parents=True, exist_ok=True)
    file_name = f"{split}.csv" if split else ANNOTATION_FILE
    with open(out_dir / file_name, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for record in dataset.records:
            image = "images/" + export_image(record.image_path, out_dir / "images", taken)
            if not len(record.boxes):
                writer.writerow([image, "", "", "", "", ""])
            for box, label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True):
                writer.writerow([image, *(format_coordinate(v) for v in box), dataset.class_names[label]])
    return names_only_warnings(dataset, "CSV")


class CsvFormat:
    """The ``DatasetFormat`` for box CSV files."""

    def __init__(self, options: CsvOptions | None = None) -> None:
        self.options = options or CsvOptions()

    def detect(self, path: Path) -> float:
        """``DETECT_SCHEMA`` for a box CSV file or a folder holding one: its header names a known set of
        columns (only the header line is read)."""
        path = Path(path)
        if path.is_file():
            found = path.suffix.lower() == ".csv" and looks_like_csv_dataset(path)
        else:
            found = path.is_dir() and bool(_candidate_files(path))
        return DETECT_SCHEMA if found else DETECT_NONE

    def load(self, path: Path, split: str | None = None) -> DetectionDataset:
        """Read the CSV that ``path`` and ``split`` designate; see ``load_csv``."""
        return load_csv(find_csv_file(Path(path), split), self.options.class_names, self.options.image_dir)

    def save(self, dataset: DetectionDataset, out_dir: Path, split: str | None = None) -> list[str]:
        """Write ``dataset`` as a CSV, as split ``split`` when given; see ``save_csv``."""
        return save_csv(dataset, Path(out_dir), split)


@hookimpl
def register_dataset_formats(register: Register) -> None:
    """Register the ``csv`` format."""
    register(
        NAME,
        CsvFormat,
        options=CsvOptions,
        description="box CSV: a .csv with the header image,xmin,ymin,xmax,ymax,label or "
        "filename,width,height,class,xmin,ymin,xmax,ymax (pixels; Open Images' normalised columns also read) "
        "and the images beside it, in images/ or in ../images/",
    )
