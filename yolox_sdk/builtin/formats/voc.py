"""The ``voc`` dataset format: Pascal VOC XML, one file per image (LabelImg, CVAT, the VOC and BCCD datasets).

``path`` is the dataset root. Two layouts are read:

* strict VOC: ``Annotations/*.xml`` beside ``JPEGImages/``; the image is ``JPEGImages/<filename>`` from the
  XML, or ``JPEGImages/<annotation stem>.<ext>`` when that file does not exist.
* loose (LabelImg, hand-made folders): the XML files in a folder named ``Annotations/``, ``annotations/``,
  ``xml/`` or ``xmls/`` (any case), or directly in ``path`` (mixed with the images or not). Each image is
  the first that exists of: the XML's ``<path>``, then its ``<filename>`` (both relative to the XML's folder;
  an absolute ``<path>`` counts only inside ``path``), then the file name or the annotation stem in an
  ``images/`` or ``JPEGImages/`` folder (any case) beside the annotation folder, or in the XML's own folder.

The ``image_dir`` option (relative to ``path``) replaces that search in both layouts: the image is
``<image_dir>/<filename>`` or ``<image_dir>/<annotation stem>.<ext>``. Whatever the source, an image path must
stay inside ``path`` (see ``yolox_sdk.data.format_support.image_in_folder``); an XML ``<path>`` outside it
(LabelImg writes the annotator's own absolute path) is ignored rather than followed.

``split`` selects the ids listed in ``ImageSets/Main/<split>.txt`` (the first word of each line); ``None``
loads every annotation file. A loose folder without split lists has no splits: asking for one is an error
saying so.

A split list naming an id that has no annotation file is treated like an annotation naming an image
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
* A missing ``<size>`` is not a problem since sizes are read from the image (counted).
* ``difficult`` objects are kept as ordinary boxes (counted), because the internal records have no flag.
"""

from __future__ import annotations

import contextlib
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import attrs

from yolox_sdk.data.format_support import (
    DETECT_LAYOUT,
    DETECT_NONE,
    DETECT_SCHEMA,
    RawImage,
    assemble_dataset,
    export_image,
    format_coordinate,
    format_option_hint,
    image_dir_hint,
    image_in_folder,
    no_images_error,
    read_text,
    read_xml,
    require_images,
)
from yolox_sdk.data.image_check import IMAGE_SUFFIXES
from yolox_sdk.data.records import DetectionDataset, LoadReport
from yolox_sdk.errors import DatasetError, did_you_mean
from yolox_sdk.plugins.hookspecs import Register, hookimpl

NAME = "voc"
LAYOUT = (
    "a Pascal VOC folder: Annotations/*.xml (or annotations/, xml/, or the XML files in the folder itself), "
    "the images in JPEGImages/ or images/ (or where each XML's <path>/<filename> says), and optionally "
    "ImageSets/Main/<split>.txt."
)
SIZE_MISSING = "no <size> in XML (size read from the image)"
SPLIT_ID_MISSING = "split list names an image without annotation file"
SPLIT_LIST_UNREADABLE = "split list cannot be read"
DIFFICULT_KEPT = "difficult object kept"
COORDINATES = ("xmin", "ymin", "xmax", "ymax")
ANNOTATION_FOLDERS = ("annotations", "xml", "xmls")
IMAGE_FOLDERS = ("jpegimages", "images")
DETECT_SAMPLE = 3
DETECT_HEAD_BYTES = 64 << 10
VOC_ROOT = re.compile(r"^\ufeff?\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<annotation[\s>]", re.DOTALL)


@attrs.define
class VocOptions:
    """Options of the ``voc`` format.

    Attributes:
        class_names: the classes, in label order. Without it, the sorted set of names found is used.
        image_dir: the folder holding the images, relative to the dataset folder; replaces the search
            described in the module docstring.
    """

    class_names: list[str] | None = None
    image_dir: str | None = None


@attrs.frozen
class VocObject:
    """One ``<object>`` of an annotation file, coordinates as written (1-based)."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool
    where: str


@attrs.frozen
class VocAnnotation:
    """One parsed annotation file (``image_path`` is its ``<path>``, as written)."""

    path: Path
    filename: str | None
    size: tuple[int, int] | None
    objects: tuple[VocObject, ...]
    image_path: str | None = None


@attrs.frozen
class VocLayout:
    """Where the files of one VOC dataset are (see the module docstring).

    Attributes:
        root: the dataset folder; every image path must stay inside it.
        annotations: the folder of XML files.
        strict: ``Annotations/`` beside ``JPEGImages/``, read exactly as VOC always was.
        image_folders: the ``images/``-like folders of ``root`` the loose search looks in, in order.
        lists: the folder of split lists (``ImageSets/Main``), which need not exist.
    """

    root: Path
    annotations: Path
    strict: bool
    image_folders: tuple[Path, ...]
    lists: Path

    def annotation_files(self) -> list[Path]:
        """The XML files, sorted (the strict layout reads ``*.xml`` only, as it always did)."""
        if self.strict:
            return sorted(self.annotations.glob("*.xml"))
        return _xml_files(self.annotations)


def _subfolders(folder: Path, names: Sequence[str]) -> list[Path]:
    """The subfolders of ``folder`` whose lower-cased name is in ``names``, in the order of ``names``."""
    try:
        with os.scandir(folder) as entries:
            found = [Path(entry.path) for entry in entries if entry.is_dir() and entry.name.lower() in names]
    except OSError:
        return []
    return sorted(found, key=lambda path: (names.index(path.name.lower()), path.name))


def _xml_files(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            found = [Path(e.path) for e in entries if e.name.lower().endswith(".xml") and e.is_file()]
    except OSError:
        return []
    return sorted(found)


def _lists_folder(root: Path) -> Path:
    image_sets = next(iter(_subfolders(root, ("imagesets",))), root / "ImageSets")
    return next(iter(_subfolders(image_sets, ("main",))), image_sets / "Main")


def find_voc_layout(root: Path) -> VocLayout:
    """The layout of the VOC dataset at ``root`` (see the module docstring).

    Raises:
        DatasetError: ``root`` holds no folder of XML files and no XML file, or several such folders.
    """
    if (root / "Annotations").is_dir():
        if (root / "JPEGImages").is_dir():
            return VocLayout(root, root / "Annotations", True, (), root / "ImageSets" / "Main")
        return VocLayout(
            root, root / "Annotations", False, tuple(_subfolders(root, IMAGE_FOLDERS)), _lists_folder(root)
        )
    folders = [folder for folder in _subfolders(root, ANNOTATION_FOLDERS) if _xml_files(folder)]
    if len(folders) > 1:
        raise DatasetError(
            f"{root} holds several folders of XML files ({', '.join(f.name + '/' for f in folders)}), so "
            "which one holds the annotations is unclear. Keep one of them, or merge them."
        )
    if not folders and not root.is_dir():
        raise DatasetError(f"{root} does not exist or is not a folder. Expected {LAYOUT}")
    if not folders and not _xml_files(root):
        raise DatasetError(
            f"{root} has no VOC annotation files: no Annotations/ (or annotations/, xml/) folder of .xml "
            f"files, and no .xml file in the folder itself. Expected {LAYOUT}"
        )
    annotations = folders[0] if folders else root
    return VocLayout(root, annotations, False, tuple(_subfolders(root, IMAGE_FOLDERS)), _lists_folder(root))


def looks_like_voc(files: Sequence[Path]) -> bool:
    """True when every file's head opens an ``<annotation>`` root and one has an ``<object>`` with a
    ``<bndbox>`` (reads 64 KiB of each at most); CVAT's ``<annotations>`` root does not match."""
    heads = []
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                heads.append(handle.read(DETECT_HEAD_BYTES))
        except OSError:
            return False
    return (
        bool(heads)
        and all(VOC_ROOT.match(head) for head in heads)
        and any("<object" in head and "<bndbox" in head for head in heads)
    )


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
    return VocAnnotation(path, _text(root, "filename"), _size(root), objects, _text(root, "path"))


def _list_lines(list_file: Path) -> list[tuple[int, str]]:
    """``(line number, id)`` of each non-blank line of a split list (the id is the line's first word)."""
    lines = read_text(list_file, "VOC split list").splitlines()
    return [(number, line.split()[0]) for number, line in enumerate(lines, start=1) if line.split()]


def _split_files(layout: VocLayout, split: str, every_file: Sequence[Path]) -> list[Path]:
    """The annotation files ``ImageSets/Main/<split>.txt`` lists, in its order."""
    list_file = layout.lists / f"{split}.txt"
    if not list_file.is_file():
        available = sorted(p.stem for p in layout.lists.glob("*.txt"))
        found = ", ".join(available) or (
            "none (the dataset has no ImageSets/Main/<split>.txt lists: leave the split empty to read every "
            "annotation file, or write the lists)"
        )
        raise DatasetError(
            f"No split list {list_file} for split '{split}'.{did_you_mean(split, available)} Splits found: "
            f"{found}."
        )
    by_stem = {path.stem: path for path in every_file}
    files = []
    for number, image_id in _list_lines(list_file):
        path = layout.annotations / f"{image_id}.xml"
        if not path.is_file():
            path = by_stem.get(image_id, path)
        if not path.is_file():
            raise DatasetError(
                f"{list_file}:{number}: '{image_id}' has no annotation file {layout.annotations / image_id}.xml. "
                "Remove the line or add the annotation."
            )
        files.append(path)
    return files


def check_split_lists(lists: Path, annotation_files: Sequence[Path], report: LoadReport) -> None:
    """Count in ``report`` every line of the split lists in ``lists`` naming an id without annotation file.

    Loading without a split reads every annotation file, not the lists; but a list naming an image that
    does not exist fails the day that split is trained on, so ``data info``, ``data stats``, ``data
    validate`` and training say so now (see the module docstring).
    """
    known = {path.stem for path in annotation_files}
    for list_file in sorted(lists.glob("*.txt")):
        try:
            lines = _list_lines(list_file)
        except DatasetError as error:
            report.add(SPLIT_LIST_UNREADABLE, str(error), severity="error")
            continue
        for number, image_id in lines:
            if image_id not in known:
                report.add(SPLIT_ID_MISSING, f"{list_file}:{number}: '{image_id}'", severity="error")


def _file_name(text: str | None) -> str:
    """The file name an XML field ends in (LabelImg on Windows writes backslashes), or ``""``."""
    name = Path(text.replace("\\", "/")).name if text else ""
    return "" if name in (".", "..") else name


def _in_folder(folder: Path, annotation: VocAnnotation) -> list[Path]:
    """``folder/<filename>``, then ``folder/<annotation stem>.<ext>`` for each image extension."""
    name = _file_name(annotation.filename)
    named = [image_in_folder(folder, name, f"{annotation.path} (<filename>)")] if name else []
    return named + [folder / f"{annotation.path.stem}{suffix}" for suffix in sorted(IMAGE_SUFFIXES)]


def _written_paths(layout: VocLayout, annotation: VocAnnotation) -> list[Path]:
    """``<path>`` and ``<filename>`` relative to the XML's folder, those that stay inside the dataset."""
    places = []
    for tag, text in (("path", annotation.image_path), ("filename", annotation.filename)):
        if text:
            with contextlib.suppress(DatasetError):  # outside the dataset: not followed, other places tried
                where = f"{annotation.path} (<{tag}>)"
                places.append(
                    image_in_folder(
                        layout.root, text.replace("\\", "/"), where, relative_to=annotation.path.parent
                    )
                )
    return places


def image_candidates(layout: VocLayout, annotation: VocAnnotation, image_dir: str | None) -> list[Path]:
    """Where the image of ``annotation`` may be, in the order tried (see the module docstring)."""
    if image_dir is not None:
        return _in_folder(layout.root / Path(image_dir).expanduser(), annotation)
    if layout.strict:
        return _in_folder(layout.root / "JPEGImages", annotation)
    places = _written_paths(layout, annotation)
    for folder in (*layout.image_folders, annotation.path.parent):
        places += _in_folder(folder, annotation)
    return list(dict.fromkeys(places))


def _image_path(layout: VocLayout, annotation: VocAnnotation, image_dir: str | None) -> Path:
    candidates = image_candidates(layout, annotation, image_dir)
    return next((path for path in candidates if path.is_file()), candidates[0])


def _check_images_exist(layout: VocLayout, raw: Sequence[RawImage], image_dir: str | None) -> None:
    if image_dir is not None:
        searched = f"the image_dir folder {layout.root / image_dir}"
    elif layout.strict:
        searched = f"{layout.root / 'JPEGImages'}"
    else:
        folders = [*(str(f) for f in layout.image_folders), "the XML's folder"]
        searched = f"the XML's <path> and <filename>, then {', '.join(folders)}"
    require_images(raw, f"Searched: {searched}. {image_dir_hint(f'the dataset folder {layout.root}')}")


def _class_names(annotations: Sequence[VocAnnotation], given: list[str] | None) -> list[str]:
    if given is None:
        return sorted({obj.name for annotation in annotations for obj in annotation.objects})
    for annotation in annotations:
        for obj in annotation.objects:
            if obj.name not in given:
                extended = "[" + ",".join([*given, obj.name]) + "]"
                raise DatasetError(
                    f"{obj.where}: class '{obj.name}' is not in data.format_options.class_names "
                    f"({', '.join(given)}).{did_you_mean(obj.name, given)} Add it to "
                    f"{format_option_hint('class_names', extended)}, or fix the annotation."
                )
    return list(given)


def load_voc(
    root: Path, split: str | None = None, class_names: list[str] | None = None, image_dir: str | None = None
) -> DetectionDataset:
    """Read a VOC dataset, strict or loose (see the module docstring for the conventions)."""
    layout = find_voc_layout(root)
    every_file = layout.annotation_files()
    wanted = every_file if split is None else _split_files(layout, split, every_file)
    if not wanted:
        raise no_images_error(root if split is None else layout.lists / f"{split}.txt", LAYOUT)
    names_from = every_file if class_names is None else wanted
    parsed = {path: read_voc_annotation(path) for path in dict.fromkeys([*wanted, *names_from])}
    names = _class_names([parsed[path] for path in names_from], class_names)
    index_of = {name: index for index, name in enumerate(names)}
    report = LoadReport()
    if split is None:
        check_split_lists(layout.lists, every_file, report)
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
                _image_path(layout, annotation, image_dir),
                str(path),
                [[v - 1 for v in obj.box] for obj in annotation.objects],
                [index_of[obj.name] for obj in annotation.objects],
                [obj.where for obj in annotation.objects],
                annotation.size,
                image_id=path.stem,
            )
        )
    _check_images_exist(layout, raw, image_dir)
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


def save_voc(dataset: DetectionDataset, out_dir: Path, split: str | None = None) -> list[str]:
    """Write ``Annotations/``, ``JPEGImages/`` and ``ImageSets/Main/<split>.txt`` listing every image
    (``all.txt`` without a split), so that reading back with that split gives this dataset.

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
    (out_dir / "ImageSets" / "Main" / f"{split or 'all'}.txt").write_text(
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
        """``DETECT_SCHEMA`` for a folder whose first XML files are VOC annotations (an ``<annotation>``
        root with ``<object>``s), in any layout ``load`` reads; ``DETECT_LAYOUT`` for ``Annotations/``
        beside ``JPEGImages/`` whose files do not show it (so that ``load`` names what is wrong)."""
        path = Path(path)
        if not path.is_dir():
            return DETECT_NONE
        try:
            layout = find_voc_layout(path)
        except DatasetError:
            return DETECT_NONE
        if looks_like_voc(layout.annotation_files()[:DETECT_SAMPLE]):
            return DETECT_SCHEMA
        return DETECT_LAYOUT if layout.strict else DETECT_NONE

    def load(self, path: Path, split: str | None = None) -> DetectionDataset:
        """Read the VOC dataset rooted at ``path``; see ``load_voc``."""
        return load_voc(Path(path), split, self.options.class_names, self.options.image_dir)

    def save(self, dataset: DetectionDataset, out_dir: Path, split: str | None = None) -> list[str]:
        """Write ``dataset`` in VOC layout, as split ``split`` when given; see ``save_voc``."""
        return save_voc(dataset, Path(out_dir), split)


@hookimpl
def register_dataset_formats(register: Register) -> None:
    """Register the ``voc`` format."""
    register(
        NAME,
        VocFormat,
        options=VocOptions,
        description="Pascal VOC XML: a folder with Annotations/*.xml (or annotations/, xml/, or the XML files "
        "themselves), the images in JPEGImages/, images/ or where each XML says, optional "
        "ImageSets/Main/<split>.txt",
    )
