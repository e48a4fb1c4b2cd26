"""The ``createml`` dataset format: Apple CreateML object-detection JSON (CreateML, Roboflow, MakeML exports).

The annotation file is a JSON list with one entry per image::

    [{"image": "BloodImage_00000.jpg",
      "annotations": [{"label": "RBC", "coordinates": {"x": 131.0, "y": 385.5, "width": 106, "height": 99}}]}]

``x`` and ``y`` are the box *centre*, all four values absolute pixels. What ``load`` accepts as ``path``:
the ``.json`` file, or a folder holding exactly one CreateML JSON (with ``split`` given, the one named
``<split>.json`` or ``*_<split>.json``).

Conventions:

* Images. ``image`` is relative to the JSON's folder (or to the ``image_dir`` option, itself relative to
  the JSON's folder); the JSON folder's ``images/`` subfolder is tried too. The path must stay inside
  the folder it is relative to (no ``../``, no absolute path elsewhere). An entry with an empty
  ``annotations`` list is a background image.
* Classes. The ``class_names`` option fixes the classes and their order, and a label outside it is an
  error. Without it the classes are the sorted set of labels in the file.
* Writing copies the images next to ``annotations.json``, the layout CreateML itself expects. CreateML
  holds label names only, so category ids, unused classes and a non-sorted class order are not kept
  (``save`` says so in its warnings).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.data.format_support import (
    DETECT_LAYOUT,
    DETECT_NONE,
    DETECT_SCHEMA,
    RawImage,
    assemble_dataset,
    choose_class_names,
    export_image,
    find_split_file,
    image_dir_hint,
    image_ids,
    image_in_folder,
    json_list_head,
    names_only_warnings,
    read_json,
    require_images,
)
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.errors import DatasetError
from yolox_sdk.plain_values import is_finite_number
from yolox_sdk.plugins.hookspecs import Register, hookimpl

NAME = "createml"
LAYOUT = (
    "a CreateML JSON file (or a folder holding one): a list of {'image': file, 'annotations': [{'label', "
    "'coordinates': {x, y, width, height}}]} with centre-based pixel boxes and the images beside it."
)
ANNOTATION_FILE = "annotations.json"
HEAD_BYTES = 64 << 10


@attrs.define
class CreatemlOptions:
    """Options of the ``createml`` format.

    Attributes:
        class_names: the classes, in label order. Without it, the sorted set of labels found is used.
        image_dir: the folder holding the images, relative to the JSON file's folder.
    """

    class_names: list[str] | None = None
    image_dir: str | None = None


@attrs.frozen
class CreatemlBox:
    """One annotation of an entry: its label and absolute ``x1, y1, x2, y2`` box."""

    label: str
    box: tuple[float, float, float, float]
    where: str


@attrs.frozen
class CreatemlEntry:
    """One image entry of a CreateML file."""

    image: str
    boxes: tuple[CreatemlBox, ...]
    where: str


def _is_createml_annotation(annotation: Any) -> bool:
    coordinates = annotation.get("coordinates") if isinstance(annotation, dict) else None
    return (
        isinstance(annotation, dict)
        and isinstance(annotation.get("label"), str)
        and isinstance(coordinates, dict)
        and all(is_finite_number(coordinates.get(key)) for key in ("x", "y", "width", "height"))
    )


def _is_createml_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("image"), str)
        and isinstance(entry.get("annotations"), list)
        and all(_is_createml_annotation(annotation) for annotation in entry["annotations"])
    )


def createml_score(path: Path) -> float:
    """How surely ``path`` is a CreateML JSON, from the entries in its first 64 KiB (see ``DETECT_*``).

    Every whole entry in the head must have CreateML's schema: an ``image`` string and an ``annotations``
    list of ``{label, coordinates: {x, y, width, height}}``. Other JSON lists of images (Label Studio's
    tasks: ``data.image`` and ``annotations[].result``) have the words but not the schema. A first entry
    too long for the head is judged by CreateML's ``"coordinates"`` key alone.
    """
    entries = json_list_head(path, HEAD_BYTES)
    if entries is None:
        return DETECT_NONE
    if entries:
        return DETECT_SCHEMA if all(_is_createml_entry(entry) for entry in entries) else DETECT_NONE
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return DETECT_NONE
    words = ('"image"', '"annotations"', '"coordinates"')
    return DETECT_LAYOUT if all(word in head for word in words) else DETECT_NONE


def looks_like_createml(path: Path) -> bool:
    """True when the head of ``path`` is a JSON list mentioning ``image`` and ``annotations``.

    The loose test that picks the file to read in a folder once the format is known (so a damaged file is
    read and its error reported, rather than skipped); detection uses ``createml_score``.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return False
    return head.lstrip().startswith("[") and '"image"' in head and '"annotations"' in head


def _candidate_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.glob("*.json")) if p.is_file() and looks_like_createml(p)]


def find_createml_file(path: Path, split: str | None) -> Path:
    """The CreateML JSON file that ``path`` and ``split`` designate (see the module docstring)."""
    candidates = _candidate_files(path) if path.is_dir() else []
    return find_split_file(path, split, candidates, "CreateML JSON", LAYOUT)


def _box(annotation: Any, where: str) -> CreatemlBox:
    if not isinstance(annotation, dict) or not isinstance(annotation.get("label"), str):
        raise DatasetError(f"{where}: an annotation must be an object with a 'label' string.")
    coordinates = annotation.get("coordinates")
    keys = ("x", "y", "width", "height")
    if not isinstance(coordinates, dict) or not all(is_finite_number(coordinates.get(key)) for key in keys):
        raise DatasetError(
            f"{where}: 'coordinates' must hold the numbers x, y (box centre), width and height, got "
            f"{coordinates!r}."
        )
    cx, cy, width, height = (float(coordinates[key]) for key in keys)
    box = (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)
    return CreatemlBox(annotation["label"], box, where)


def read_createml_file(json_path: Path) -> list[CreatemlEntry]:
    """Parse a CreateML JSON file into its entries (boxes converted to corner form, not checked yet)."""
    data = read_json(json_path)
    if not isinstance(data, list):
        raise DatasetError(
            f"{json_path} is not a CreateML file: the top level is a {type(data).__name__}, not a list. "
            f"Expected {LAYOUT}"
        )
    entries = []
    for position, entry in enumerate(data):
        where = f"{json_path} ([{position}])"
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise DatasetError(f"{where}: each entry must be an object with an 'image' file name.")
        annotations = entry.get("annotations") or []
        if not isinstance(annotations, list):
            raise DatasetError(f"{where}: 'annotations' must be a list, got {type(annotations).__name__}.")
        boxes = tuple(
            _box(annotation, f"{json_path} ([{position}].annotations[{number}])")
            for number, annotation in enumerate(annotations)
        )
        entries.append(CreatemlEntry(entry["image"], boxes, f"{where} ({entry['image']})"))
    return entries


def _image_path(roots: list[Path], name: str, where: str) -> Path:
    root = next((root for root in roots if (root / name).is_file()), roots[0])
    return image_in_folder(root, name, where)


def load_createml(
    json_path: Path, class_names: list[str] | None = None, image_dir: str | None = None
) -> DetectionDataset:
    """Read one CreateML JSON file (see the module docstring for the conventions)."""
    entries = read_createml_file(json_path)
    names = choose_class_names(
        ((box.label, box.where) for entry in entries for box in entry.boxes), class_names
    )
    index_of = {name: index for index, name in enumerate(names)}
    folder = json_path.parent
    roots = [folder / image_dir] if image_dir is not None else [folder, folder / "images"]
    ids = image_ids([entry.image for entry in entries])
    raw = [
        RawImage(
            _image_path(roots, entry.image, entry.where),
            entry.where,
            [box.box for box in entry.boxes],
            [index_of[box.label] for box in entry.boxes],
            [box.where for box in entry.boxes],
            image_id=image_id,
        )
        for entry, image_id in zip(entries, ids, strict=True)
    ]
    require_images(raw, image_dir_hint(f"the JSON's folder {folder}"))
    return assemble_dataset(raw, names, source=json_path, format=NAME, layout=LAYOUT)


def save_createml(dataset: DetectionDataset, out_dir: Path, split: str | None = None) -> list[str]:
    """Write ``out_dir/annotations.json`` (``out_dir/<split>.json`` for a split, which reading back with that
    split finds) with the images copied beside it.

    Boxes are written as float centres and sizes, so they read back within float rounding (~1e-4 px).
    """
    taken: set[str] = set()
    entries = []
    for record in dataset.records:
        name = export_image(record.image_path, out_dir, taken)
        annotations = [
            {
                "label": dataset.class_names[label],
                "coordinates": {
                    "x": (x1 + x2) / 2,
                    "y": (y1 + y2) / 2,
                    "width": x2 - x1,
                    "height": y2 - y1,
                },
            }
            for (x1, y1, x2, y2), label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True)
        ]
        entries.append({"image": name, "annotations": annotations})
    out_dir.mkdir(parents=True, exist_ok=True)
    file_name = f"{split}.json" if split else ANNOTATION_FILE
    (out_dir / file_name).write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return names_only_warnings(dataset, "CreateML")


class CreatemlFormat:
    """The ``DatasetFormat`` for CreateML JSON."""

    def __init__(self, options: CreatemlOptions | None = None) -> None:
        self.options = options or CreatemlOptions()

    def detect(self, path: Path) -> float:
        """How surely ``path`` is a CreateML JSON file or a folder holding one; see ``createml_score``."""
        path = Path(path)
        if path.is_file():
            return createml_score(path) if path.suffix.lower() == ".json" else DETECT_NONE
        if not path.is_dir():
            return DETECT_NONE
        scores = (createml_score(p) for p in sorted(path.glob("*.json")) if p.is_file())
        return max(scores, default=DETECT_NONE)

    def load(self, path: Path, split: str | None = None) -> DetectionDataset:
        """Read the CreateML JSON that ``path`` and ``split`` designate; see ``load_createml``."""
        json_path = find_createml_file(Path(path), split)
        return load_createml(json_path, self.options.class_names, self.options.image_dir)

    def save(self, dataset: DetectionDataset, out_dir: Path, split: str | None = None) -> list[str]:
        """Write ``dataset`` as CreateML JSON, as split ``split`` when given; see ``save_createml``."""
        return save_createml(dataset, Path(out_dir), split)


@hookimpl
def register_dataset_formats(register: Register) -> None:
    """Register the ``createml`` format."""
    register(
        NAME,
        CreatemlFormat,
        options=CreatemlOptions,
        description="Apple CreateML JSON: a .json list of {image, annotations: [{label, coordinates: "
        "{x, y, width, height}}]} (box centres, pixels) with the images beside it",
    )
