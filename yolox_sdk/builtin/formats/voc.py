"""The ``voc`` dataset format: Pascal VOC XML, one file per image (LabelImg, CVAT, the VOC and BCCD datasets).

``path`` is the dataset root holding ``Annotations/*.xml`` and ``JPEGImages/``. ``split`` selects the ids
listed in ``ImageSets/Main/<split>.txt`` (the first word of each line); ``None`` loads every annotation file.

A split list naming an id that has no ``Annotations/<id>.xml`` is treated like an annotation naming an image
that does not exist: an error when that split is read (the split would silently lose the image). Without a
split every list is still checked and each such line is counted in the report (a note in ``data info`` and
``data stats``, a warning in the training log, an error in ``data validate``), since the split fails the
day it is used.

Conventions:

* Coordinates. VOC writes 1-based pixel indices. Like YOLOX's own VOC loader, 1 is subtracted from all four
  values, so ``xmin == xmax`` stays a zero-area box (an annotation slip, dropped and counted) rather than
  becoming a 1-pixel box; ``save`` adds the 1 back, so a round trip is exact.
* Classes. The ``class_names`` option fixes the classes and their order, and a name outside it is an
  error. Without it, the classes are the sorted (Python string order) set of names in *all* annotation
  files, whatever the split, so the train and val splits of one dataset always get the same indices.
* The image is ``JPEGImages/<filename>`` from the XML, or ``JPEGImages/<annotation stem>.<ext>`` when that
  file does not exist. A missing ``<size>`` is not a problem since sizes are read from the image (counted).
* ``difficult`` objects are kept as ordinary boxes (counted), because the internal records have no flag.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import attrs

from yolox_sdk.data.format_support import (
    DETECT_LAYOUT,
    DETECT_NONE,
    RawImage,
    assemble_dataset,
    export_image,
    format_coordinate,
    image_in_folder,
    no_images_error,
    read_text,
    read_xml,
)
from yolox_sdk.data.image_check import IMAGE_SUFFIXES
from yolox_sdk.data.records import DetectionDataset, LoadReport
from yolox_sdk.errors import DatasetError, did_you_mean
from yolox_sdk.plugins.hookspecs import Register, hookimpl

NAME = "voc"
LAYOUT = "a Pascal VOC folder: Annotations/*.xml, JPEGImages/ and ImageSets/Main/<split>.txt."
SIZE_MISSING = "no <size> in XML (size read from the image)"
SPLIT_ID_MISSING = "split list names an image without annotation file"
SPLIT_LIST_UNREADABLE = "split list cannot be read"
DIFFICULT_KEPT = "difficult object kept"
COORDINATES = ("xmin", "ymin", "xmax", "ymax")


@attrs.define
class VocOptions:
    """Options of the ``voc`` format.

    Attributes:
        class_names: the classes, in label order. Without it, the sorted set of names found is used.
    """

    class_names: list[str] | None = None


@attrs.frozen
class VocObject:
    """One ``<object>`` of an annotation file, coordinates as written (1-based)."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool
    where: str


@attrs.frozen
class VocAnnotation:
    """One parsed annotation file."""

    path: Path
    filename: str | None
    size: tuple[int, int] | None
    objects: tuple[VocObject, ...]


def _text(element: ET.Element | None, tag: str) -> str | None:
    text = element.findtext(tag) if element is not None else None
    return (text.strip() or None) if text else None


def _size(root: ET.Element) -> tuple[int, int] | None:
    size = root.find("size")
    try:
        width, height = int(float(_text(size, "width") or 0)), int(float(_text(size, "height") or 0))
    except (ValueError, OverflowError):  # "abc", "nan", "inf"
        return None
    return (width, height) if width > 0 and height > 0 else None


def _coordinate(tag: str, value: str | None, where: str, name: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except ValueError:
        raise DatasetError(
            f"{where}, class '{name}': <{tag}> is {value!r}, not a number. Write the pixel coordinate as a "
            f"number (e.g. <{tag}>48</{tag}>)."
        ) from None


def _object(element: ET.Element, path: Path, number: int) -> VocObject:
    where = f"{path} (object {number})"
    name = _text(element, "name")
    if name is None:
        raise DatasetError(f"{where}: the object has no <name>. Give every object a class name.")
    box = element.find("bndbox")
    values = [_text(box, tag) for tag in COORDINATES]
    if box is None or None in values:
        raise DatasetError(f"{where}: the object needs a <bndbox> with <xmin>, <ymin>, <xmax> and <ymax>.")
    coordinates = tuple(
        _coordinate(tag, value, where, name) for tag, value in zip(COORDINATES, values, strict=True)
    )
    difficult = _text(element, "difficult") not in (None, "0")
    return VocObject(name, coordinates, difficult, where)  # type: ignore[arg-type]


def read_voc_annotation(path: Path) -> VocAnnotation:
    """Parse one VOC annotation file (coordinates stay as written)."""
    root = read_xml(path)
    if root.tag != "annotation":
        raise DatasetError(
            f"{path} is not a VOC annotation: its root element is <{root.tag}>, not <annotation>."
        )
    objects = tuple(_object(element, path, n) for n, element in enumerate(root.findall("object"), start=1))
    return VocAnnotation(path, _text(root, "filename"), _size(root), objects)


def _list_lines(list_file: Path) -> list[tuple[int, str]]:
    """``(line number, id)`` of each non-blank line of a split list (the id is the line's first word)."""
    lines = read_text(list_file, "VOC split list").splitlines()
    return [(number, line.split()[0]) for number, line in enumerate(lines, start=1) if line.split()]


def _split_ids(root: Path, split: str) -> list[str]:
    list_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not list_file.is_file():
        available = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt"))
        raise DatasetError(
            f"No split list {list_file} for split '{split}'.{did_you_mean(split, available)} "
            f"Splits found: {', '.join(available) or 'none'}."
        )
    ids = []
    for number, image_id in _list_lines(list_file):
        ids.append(image_id)
        if not (root / "Annotations" / f"{image_id}.xml").is_file():
            raise DatasetError(
                f"{list_file}:{number}: '{image_id}' has no annotation file {root / 'Annotations' / image_id}.xml. "
                "Remove the line or add the annotation."
            )
    return ids


def check_split_lists(root: Path, annotation_files: Sequence[Path], report: LoadReport) -> None:
    """Count in ``report`` every split-list line naming an id without annotation file, in every list.

    Loading without a split reads every annotation file, not the lists; but a list naming an image that
    does not exist fails the day that split is trained on, so ``data info``, ``data stats``, ``data
    validate`` and training say so now (see the module docstring).
    """
    known = {path.stem for path in annotation_files}
    for list_file in sorted((root / "ImageSets" / "Main").glob("*.txt")):
        try:
            lines = _list_lines(list_file)
        except DatasetError as error:
            report.add(SPLIT_LIST_UNREADABLE, str(error), severity="error")
            continue
        for number, image_id in lines:
            if image_id not in known:
                report.add(SPLIT_ID_MISSING, f"{list_file}:{number}: '{image_id}'", severity="error")


def _image_path(root: Path, annotation: VocAnnotation) -> Path:
    folder = root / "JPEGImages"
    # Only the file name of <filename> counts (never its folders, nor <path>): the image is in JPEGImages/.
    name = Path(annotation.filename).name if annotation.filename else ""
    if name not in ("", ".", ".."):
        named = image_in_folder(folder, name, f"{annotation.path} (<filename>)")
        if named.is_file():
            return named
    for suffix in sorted(IMAGE_SUFFIXES):
        candidate = folder / f"{annotation.path.stem}{suffix}"
        if candidate.is_file():
            return candidate
    return folder / (name if name not in ("", ".", "..") else f"{annotation.path.stem}.jpg")


def _class_names(annotations: Sequence[VocAnnotation], given: list[str] | None) -> list[str]:
    if given is None:
        return sorted({obj.name for annotation in annotations for obj in annotation.objects})
    for annotation in annotations:
        for obj in annotation.objects:
            if obj.name not in given:
                raise DatasetError(
                    f"{obj.where}: class '{obj.name}' is not in data.format_options.class_names "
                    f"({', '.join(given)}).{did_you_mean(obj.name, given)} Add it to class_names or fix the "
                    "annotation."
                )
    return list(given)


def load_voc(root: Path, split: str | None = None, class_names: list[str] | None = None) -> DetectionDataset:
    """Read a VOC dataset (see the module docstring for the conventions)."""
    annotation_dir = root / "Annotations"
    if not annotation_dir.is_dir():
        raise DatasetError(f"{root} has no Annotations/ folder. Expected {LAYOUT}")
    every_file = sorted(annotation_dir.glob("*.xml"))
    wanted = every_file if split is None else [annotation_dir / f"{i}.xml" for i in _split_ids(root, split)]
    if not wanted:
        raise no_images_error(root if split is None else root / "ImageSets" / "Main" / f"{split}.txt", LAYOUT)
    names_from = every_file if class_names is None else wanted
    parsed = {path: read_voc_annotation(path) for path in dict.fromkeys([*wanted, *names_from])}
    names = _class_names([parsed[path] for path in names_from], class_names)
    index_of = {name: index for index, name in enumerate(names)}
    report = LoadReport()
    if split is None:
        check_split_lists(root, every_file, report)
    raw = []
    for path in dict.fromkeys(wanted):
        annotation = parsed[path]
        if annotation.size is None:
            report.add(SIZE_MISSING, str(path))
        for obj in annotation.objects:
            if obj.difficult:
                report.add(DIFFICULT_KEPT, obj.where)
        raw.append(
            RawImage(
                _image_path(root, annotation),
                str(path),
                [[v - 1 for v in obj.box] for obj in annotation.objects],
                [index_of[obj.name] for obj in annotation.objects],
                [obj.where for obj in annotation.objects],
                annotation.size,
                image_id=path.stem,
            )
        )
    return assemble_dataset(raw, names, source=root, format=NAME, layout=LAYOUT, report=report)


def _annotation_xml(
    name: str, record_width: int, record_height: int, objects: list[tuple[str, list[float]]]
) -> ET.Element:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = name
    size = ET.SubElement(root, "size")
    for tag, value in (("width", record_width), ("height", record_height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for class_name, box in objects:
        element = ET.SubElement(root, "object")
        ET.SubElement(element, "name").text = class_name
        ET.SubElement(element, "pose").text = "Unspecified"
        ET.SubElement(element, "truncated").text = "0"
        ET.SubElement(element, "difficult").text = "0"
        bndbox = ET.SubElement(element, "bndbox")
        for tag, value in zip(COORDINATES, box, strict=True):
            ET.SubElement(bndbox, tag).text = format_coordinate(value + 1)
    ET.indent(root, space="\t")
    return root


def save_voc(dataset: DetectionDataset, out_dir: Path) -> list[str]:
    """Write ``Annotations/``, ``JPEGImages/`` and ``ImageSets/Main/all.txt`` (every image).

    VOC files hold class names only, so the warnings say when reading back needs ``class_names`` to get
    the same classes in the same order.
    """
    warnings = _class_warnings(dataset)
    taken: set[str] = set()
    (out_dir / "Annotations").mkdir(parents=True, exist_ok=True)
    (out_dir / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    stems = []
    for record in dataset.records:
        name = export_image(record.image_path, out_dir / "JPEGImages", taken)
        objects = [
            (dataset.class_names[label], box)
            for box, label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True)
        ]
        stems.append(Path(name).stem)
        element = _annotation_xml(name, record.width, record.height, objects)
        ET.ElementTree(element).write(out_dir / "Annotations" / f"{stems[-1]}.xml", encoding="utf-8")
    (out_dir / "ImageSets" / "Main" / "all.txt").write_text(
        "".join(f"{s}\n" for s in stems), encoding="utf-8"
    )
    return warnings


def _class_warnings(dataset: DetectionDataset) -> list[str]:
    warnings = []
    names = list(dataset.class_names)
    used = {names[label] for record in dataset.records for label in record.labels.tolist()}
    if names != sorted(names) or used != set(names):
        warnings.append(
            f"VOC files hold class names, not the class list: read this dataset back with class_names {names} "
            "to keep every class in this order (without it the classes are the sorted names that have boxes)."
        )
    if list(dataset.category_ids) != list(range(dataset.num_classes)):
        warnings.append(
            f"VOC has no category ids, so the original ids {list(dataset.category_ids)} are not kept."
        )
    return warnings


class VocFormat:
    """The ``DatasetFormat`` for Pascal VOC XML."""

    def __init__(self, options: VocOptions | None = None) -> None:
        self.options = options or VocOptions()

    def detect(self, path: Path) -> float:
        """``DETECT_LAYOUT`` for a folder holding ``Annotations/`` and ``JPEGImages/`` (no file is read)."""
        path = Path(path)
        found = (path / "Annotations").is_dir() and (path / "JPEGImages").is_dir()
        return DETECT_LAYOUT if found else DETECT_NONE

    def load(self, path: Path, split: str | None = None) -> DetectionDataset:
        """Read the VOC dataset rooted at ``path``; see ``load_voc``."""
        return load_voc(Path(path), split, self.options.class_names)

    def save(self, dataset: DetectionDataset, out_dir: Path) -> list[str]:
        """Write ``dataset`` in VOC layout; see ``save_voc``."""
        return save_voc(dataset, Path(out_dir))


@hookimpl
def register_dataset_formats(register: Register) -> None:
    """Register the ``voc`` format."""
    register(
        NAME,
        VocFormat,
        options=VocOptions,
        description="Pascal VOC XML: a folder with Annotations/*.xml, JPEGImages/ and ImageSets/Main/<split>.txt",
    )
