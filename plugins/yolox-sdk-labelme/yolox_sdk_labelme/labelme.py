"""Reading and writing LabelMe annotations as a ``DetectionDataset``.

LabelMe saves one JSON file per image, usually next to it::

    {"version": "5.4.1", "flags": {},
     "shapes": [{"label": "RBC", "points": [[x1, y1], [x2, y2]], "group_id": null,
                 "shape_type": "rectangle", "flags": {}}],
     "imagePath": "BloodImage_00000.jpg", "imageData": null, "imageHeight": 480, "imageWidth": 640}

A rectangle is two opposite corners, a polygon its vertices, in pixels from the image's top-left corner.

Conventions (the common ones come from ``yolox_sdk.data.formats``, the plugin kit the built-ins use too):

* Shapes. Detection needs boxes, so a polygon becomes its bounding box; points, lines, circles and masks are
  skipped. Both are counted in the dataset's report. A shape without ``shape_type`` (LabelMe 3) is a polygon.
* Images. ``imagePath`` is relative to the JSON file (or to the ``image_root`` option). A missing image is
  an error, and so is one outside the dataset folder (the folder given, or ``image_root``): a LabelMe file
  naming ``../../`` or an absolute path elsewhere is refused rather than read. The size is read from the image header; ``imageWidth``/``imageHeight`` are compared with it and
  a mismatch is counted. Boxes are clipped to the image, boxes without area dropped, both counted.
* Classes. The ``class_names`` option fixes the classes and their order, and a label outside it is an error.
  Without it the classes are the sorted labels of every file, of all splits when ``split`` is given, so the
  splits of one dataset get the same indices. A split is a subfolder: LabelMe has no split files.
* Writing copies each image into the output folder and writes ``<image stem>.json`` beside it with
  rectangle shapes, ``imagePath`` the image's file name and no embedded image (``imageData: null``): the
  layout LabelMe itself uses, complete on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from yolox_sdk.data.formats import (
    DETECT_NONE,
    DETECT_SCHEMA,
    DetectionDataset,
    ImageRecord,
    LoadReport,
    RawImage,
    assemble_dataset,
    export_image,
    image_in_folder,
    read_json,
)
from yolox_sdk.errors import DatasetError, did_you_mean

if TYPE_CHECKING:
    from yolox_sdk_labelme import LabelmeOptions

NAME = "labelme"
LAYOUT = "a folder of LabelMe .json files, one per image, whose imagePath names the image (a split is a subfolder)."
# The LabelMe release whose file layout ``save`` writes; LabelMe 5 opens these files as its own.
LABELME_VERSION = "5.4.1"
BOX_SHAPE_TYPES = ("rectangle", "polygon")
POLYGON_CONVERTED = "polygon converted to box"
NOT_LABELME = "JSON file without LabelMe 'shapes' and 'imagePath' skipped"
SIZE_MISSING = "no imageWidth/imageHeight (size read from the image)"


@attrs.frozen
class LabelmeShape:
    """A box-like shape of a LabelMe file, as its bounding box."""

    label: str
    box: tuple[float, float, float, float]
    where: str


@attrs.frozen
class LabelmeAnnotation:
    """One parsed LabelMe file: the image it names, its declared size and its box-like shapes."""

    path: Path
    image_path: Path
    declared_size: tuple[int, int] | None
    shapes: tuple[LabelmeShape, ...]


class LabelmeFormat:
    """The ``labelme`` dataset format; see the module docstring for the conventions."""

    def __init__(self, options: LabelmeOptions) -> None:
        self.options = options

    def detect(self, path: Path) -> float:
        """``DETECT_SCHEMA`` when ``path`` is a LabelMe ``.json`` file or a folder holding some (reads at
        most three): the parsed object has LabelMe's ``shapes`` list and ``imagePath``."""
        path = Path(path)
        if path.is_file():
            candidates = [path] if path.suffix.lower() == ".json" else []
        elif path.is_dir():
            candidates = _json_files(path)[:3]
        else:
            return DETECT_NONE
        for candidate in candidates:
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError):
                continue
            if is_labelme_document(data):
                return DETECT_SCHEMA
        return DETECT_NONE

    def load(self, path: Path, split: str | None = None) -> DetectionDataset:
        """Read the LabelMe files in folder ``path`` (or its subfolder ``split``), or the one file ``path``."""
        return load_labelme(Path(path), split, self.options.class_names, self.options.image_root)

    def save(self, dataset: DetectionDataset, out_dir: Path) -> list[str]:
        """Write ``dataset`` as LabelMe files beside copies of its images; see ``save_labelme``."""
        return save_labelme(dataset, Path(out_dir))


def is_labelme_document(data: Any) -> bool:
    """True for a parsed JSON object with LabelMe's ``shapes`` and ``imagePath`` keys."""
    return isinstance(data, dict) and "shapes" in data and "imagePath" in data


def load_labelme(
    path: Path, split: str | None = None, class_names: list[str] | None = None, image_root: str | None = None
) -> DetectionDataset:
    """Read a LabelMe dataset (see the module docstring for the conventions)."""
    report = LoadReport()
    root = Path(image_root) if image_root else (path if path.is_dir() else path.parent)
    annotations = _read_annotations(_annotation_files(path, split), image_root, report, root)
    if class_names is None and split is not None:
        every_split = _read_annotations(_all_split_files(path), image_root, LoadReport(), root)
        names = sorted(_labels([*annotations, *every_split]))
    elif class_names is None:
        names = sorted(_labels(annotations))
    else:
        _check_labels(annotations, class_names)
        names = list(class_names)
    index_of = {name: index for index, name in enumerate(names)}
    raw = [
        RawImage(
            annotation.image_path,
            str(annotation.path),
            [shape.box for shape in annotation.shapes],
            [index_of[shape.label] for shape in annotation.shapes],
            [shape.where for shape in annotation.shapes],
            annotation.declared_size,
            image_id=annotation.path.stem,
        )
        for annotation in annotations
    ]
    return assemble_dataset(raw, names, source=path, format=NAME, layout=LAYOUT, report=report)


def read_labelme_annotation(
    data: dict[str, Any],
    path: Path,
    image_root: str | None,
    report: LoadReport,
    dataset_root: Path | None = None,
) -> LabelmeAnnotation:
    """Turn a parsed LabelMe file into its image path, declared size and box-like shapes.

    Polygons and skipped shape types are counted in ``report``; structural errors raise ``DatasetError``,
    as does an image outside ``dataset_root`` (by default ``image_root``, else the JSON file's folder).
    """
    shapes = data["shapes"]
    if not isinstance(shapes, list):
        raise DatasetError(f"{path}: 'shapes' must be a list of shapes, got {type(shapes).__name__}.")
    boxes = []
    for index, shape in enumerate(shapes):
        box = _shape_box(shape, f"{path}: shapes[{index}]", report)
        if box is not None:
            boxes.append(box)
    return LabelmeAnnotation(
        path,
        _image_path(data["imagePath"], path, image_root, dataset_root),
        _declared_size(data, path, report),
        tuple(boxes),
    )


def save_labelme(dataset: DetectionDataset, out_dir: Path) -> list[str]:
    """Copy each image into ``out_dir`` and write its LabelMe file beside it; return what LabelMe cannot hold."""
    out_dir.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    for record in dataset.records:
        image_name = export_image(record.image_path, out_dir, taken)
        document = labelme_document(record, dataset.class_names, image_name)
        text = json.dumps(document, indent=2, ensure_ascii=False)
        (out_dir / f"{Path(image_name).stem}.json").write_text(text + "\n", encoding="utf-8")
    return _class_warnings(dataset)


def labelme_document(record: ImageRecord, class_names: Sequence[str], image_path: str) -> dict[str, Any]:
    """The LabelMe JSON object of ``record``, one rectangle per box."""
    shapes = [
        {
            "label": class_names[label],
            "points": [box[:2], box[2:]],
            "group_id": None,
            "description": "",
            "shape_type": "rectangle",
            "flags": {},
        }
        for box, label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True)
    ]
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": None,
        "imageHeight": record.height,
        "imageWidth": record.width,
    }


def _json_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.suffix.lower() == ".json" and path.is_file())


def _annotation_files(path: Path, split: str | None) -> list[Path]:
    if not path.exists():
        raise DatasetError(f"{path} does not exist. Expected {LAYOUT}")
    if path.is_file():
        if split:
            raise DatasetError(
                f"{path} is a single LabelMe file, so it has no split '{split}'; leave the split empty."
            )
        return [path]
    folder = path / split if split else path
    if not folder.is_dir():
        raise DatasetError(
            f"LabelMe has no split files, so split '{split}' means the subfolder {folder}, which does not exist. "
            "Point the data path at the folder of that split's .json files and leave the split empty."
        )
    files = _json_files(folder)
    if not files:
        raise DatasetError(f"No .json files in {folder}. Expected {LAYOUT}")
    return files


def _all_split_files(root: Path) -> list[Path]:
    folders = [root, *sorted(child for child in root.iterdir() if child.is_dir())]
    return [path for folder in folders for path in _json_files(folder)]


def _read_annotations(
    files: Iterable[Path], image_root: str | None, report: LoadReport, dataset_root: Path
) -> list[LabelmeAnnotation]:
    annotations = []
    for path in files:
        data = read_json(path)
        if is_labelme_document(data):
            annotations.append(read_labelme_annotation(data, path, image_root, report, dataset_root))
        else:
            report.add(NOT_LABELME, str(path))
    return annotations


def _labels(annotations: Iterable[LabelmeAnnotation]) -> set[str]:
    return {shape.label for annotation in annotations for shape in annotation.shapes}


def _check_labels(annotations: Iterable[LabelmeAnnotation], class_names: list[str]) -> None:
    for annotation in annotations:
        for shape in annotation.shapes:
            if shape.label not in class_names:
                raise DatasetError(
                    f"{shape.where}: label '{shape.label}' is not in data.format_options.class_names "
                    f"({', '.join(class_names)}).{did_you_mean(shape.label, class_names)} Add it to class_names "
                    "or fix the label in LabelMe."
                )


def _image_path(raw: Any, json_path: Path, image_root: str | None, dataset_root: Path | None) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise DatasetError(f"{json_path}: 'imagePath' must name the image file, got {raw!r}.")
    # LabelMe on Windows writes backslashes; they are separators there, never part of a file name.
    relative = raw.replace("\\", "/")
    base = Path(image_root) if image_root else json_path.parent
    folder = dataset_root if dataset_root is not None else base
    where = f"{json_path} (imagePath)"
    # Kept as built (relative when the dataset path is): one rule for every format, so validation, which
    # lists the images under the path as given, sees the same paths.
    return image_in_folder(folder, relative, where, relative_to=base)


def _declared_size(data: dict[str, Any], json_path: Path, report: LoadReport) -> tuple[int, int] | None:
    width, height = data.get("imageWidth"), data.get("imageHeight")
    if width is None or height is None:
        report.add(SIZE_MISSING, str(json_path))
        return None
    for key, value in (("imageWidth", width), ("imageHeight", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise DatasetError(
                f"{json_path}: '{key}' must be a positive whole number of pixels, got {value!r}."
            )
    return width, height


def _shape_box(shape: Any, where: str, report: LoadReport) -> LabelmeShape | None:
    if not isinstance(shape, dict):
        raise DatasetError(
            f"{where}: expected an object with 'label', 'points' and 'shape_type', got {shape!r}."
        )
    shape_type = shape.get("shape_type") or "polygon"  # LabelMe 3 wrote no shape_type: all were polygons
    if shape_type not in BOX_SHAPE_TYPES:
        report.add(f"{shape_type} shape skipped", where)
        return None
    label = shape.get("label")
    if not isinstance(label, str) or not label:
        raise DatasetError(f"{where}: 'label' must be a non-empty string, got {label!r}.")
    points = _points(shape.get("points"), where)
    if shape_type == "rectangle" and len(points) != 2:
        raise DatasetError(f"{where}: a rectangle has 2 points (opposite corners), got {len(points)}.")
    if shape_type == "polygon":
        report.add(POLYGON_CONVERTED, where)
    xs, ys = points[:, 0], points[:, 1]
    return LabelmeShape(label, (xs.min(), ys.min(), xs.max(), ys.max()), where)


def _points(raw: Any, where: str) -> np.ndarray:
    def is_point(point: Any) -> bool:
        return (
            isinstance(point, list)
            and len(point) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in point)
        )

    if not isinstance(raw, list) or not raw or not all(is_point(point) for point in raw):
        raise DatasetError(f"{where}: 'points' must be a non-empty list of [x, y] numbers, got {raw!r}.")
    return np.asarray(raw, dtype=np.float64)


def _class_warnings(dataset: DetectionDataset) -> list[str]:
    warnings = []
    names = list(dataset.class_names)
    used = {names[label] for record in dataset.records for label in record.labels.tolist()}
    if names != sorted(names) or used != set(names):
        warnings.append(
            f"LabelMe files hold each shape's label, not the class list: read this dataset back with class_names "
            f"{names} to keep every class in this order (without it the classes are the sorted labels that have "
            "boxes)."
        )
    if list(dataset.category_ids) != list(range(dataset.num_classes)):
        warnings.append(
            f"LabelMe has no category ids, so the original ids {list(dataset.category_ids)} are not kept."
        )
    return warnings
