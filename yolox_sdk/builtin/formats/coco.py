"""The ``coco`` dataset format: COCO object-detection JSON (the COCO dataset, CVAT, Label Studio exports).

What ``load`` accepts as ``path``:

* a ``.json`` file (``split`` must then be ``None``: the file is the split);
* a folder holding exactly one COCO JSON, directly or in ``annotations/``, or else in one of its
  subfolders (Roboflow's ``train/_annotations.coco.json``, ``valid/...``); with ``split`` given, the one
  JSON whose name is ``<split>.json`` or ends in ``_<split>.json`` (``instances_val2017.json`` for
  ``val2017``), or that lies in a subfolder named ``<split>`` (``valid`` standing in for ``val`` and back).

``file_name`` entries are resolved against, in order: ``image_dir`` when that option is set (relative to
the JSON's folder), else the JSON's folder (Roboflow puts the images beside the JSON), its ``images/``
subfolder, the JSON folder's parent and the parent's ``images/``, plus ``<parent>/<split>`` and
``<parent>/images/<split>`` where ``<split>`` is the text after the JSON name's last underscore (the
official ``annotations/instances_val2017.json`` + ``val2017/`` layout), then the folders named after the
JSON's stem (``train.json`` + ``train/``) and after the split asked for, beside the JSON and beside its
folder. The folder holding most of the first 20 images is used for all of them, and no ``file_name`` may
lead out of it (``../``, an absolute path elsewhere): see ``yolox_sdk.data.format_support.image_in_folder``.

Category ids need not be contiguous: classes are ordered by id and the ids are kept in
``DetectionDataset.category_ids``. ``iscrowd`` annotations are skipped (YOLOX trains on instances) and
counted. Images without annotations are kept as background images.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from yolox_sdk.data.format_support import (
    DETECT_LAYOUT,
    DETECT_NONE,
    DETECT_SCHEMA,
    RawImage,
    assemble_dataset,
    export_image,
    image_dir_hint,
    image_in_folder,
    read_json,
    require_images,
)
from yolox_sdk.data.records import DetectionDataset, LoadReport
from yolox_sdk.errors import DatasetError
from yolox_sdk.plugins.hookspecs import Register, hookimpl

NAME = "coco"
LAYOUT = (
    "a COCO JSON file (or a folder holding one, directly or in annotations/) with 'images', "
    "'annotations' and 'categories', and the images beside it or in images/."
)
CROWD_SKIPPED = "iscrowd annotation skipped"
HEAD_BYTES = 4 << 20
ROOT_SAMPLE = 20
SPLIT_ALIASES = {"val": ("valid",), "valid": ("val",)}


@attrs.define
class CocoOptions:
    """Options of the ``coco`` format.

    Attributes:
        image_dir: the folder holding the images (relative to the JSON file's folder), for layouts the
            default search (see the module docstring) does not find.
    """

    image_dir: str | None = None


def _looks_like_coco(path: Path) -> float:
    """An object whose head names both ``images`` and ``annotations`` scores ``DETECT_SCHEMA``; one naming
    either is still taken, at ``DETECT_LAYOUT`` (a COCO file's keys may come in any order)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return DETECT_NONE
    if not head.lstrip().startswith("{"):
        return DETECT_NONE
    found = [key in head for key in ('"images"', '"annotations"')]
    return DETECT_SCHEMA if all(found) else DETECT_LAYOUT if any(found) else DETECT_NONE


def _folder_jsons(folder: Path) -> list[Path]:
    """The ``.json`` files of ``folder`` and its ``annotations/``; when there are none, those of its
    subfolders (one file per split folder, as Roboflow exports)."""
    found = sorted(folder.glob("*.json")) + sorted((folder / "annotations").glob("*.json"))
    if not any(path.is_file() for path in found):
        found = sorted(folder.glob("*/*.json"))
    return [path for path in found if path.is_file()]


def _candidate_jsons(folder: Path) -> list[Path]:
    return [path for path in _folder_jsons(folder) if _looks_like_coco(path)]


def _is_split_file(path: Path, folder: Path, split: str) -> bool:
    """Whether the COCO JSON ``path`` found under ``folder`` is the file of ``split``."""
    names = (split, *SPLIT_ALIASES.get(split, ()))
    in_split_folder = path.parent != folder and path.parent.name in names
    return path.stem == split or path.stem.endswith(f"_{split}") or in_split_folder


def find_annotation_file(path: Path, split: str | None) -> Path:
    """The COCO JSON that ``path`` and ``split`` designate (see the module docstring)."""
    if path.is_file():
        if split is not None:
            raise DatasetError(
                f"{path} is a single COCO file, so split '{split}' cannot select anything in it. Point the "
                "path at the folder holding one JSON per split, or leave the split empty."
            )
        return path
    candidates = _candidate_jsons(path)
    if split is not None:
        candidates = [c for c in candidates if _is_split_file(c, path, split)]
    if len(candidates) == 1:
        return candidates[0]
    wanted = f" for split '{split}' (named {split}.json or *_{split}.json, or in {split}/)" if split else ""
    if not candidates:
        raise DatasetError(
            f"No COCO JSON{wanted} in {path} or {path / 'annotations'}.{_skipped_jsons(path)} Expected {LAYOUT}"
        )
    names = ", ".join(str(c.relative_to(path)) for c in candidates)
    raise DatasetError(
        f"{path} holds several COCO JSON files{wanted}: {names}. Give the path of the file to use, or a split."
    )


def _skipped_jsons(folder: Path) -> str:
    """Why the ``.json`` files of ``folder`` (and its ``annotations/``) are not COCO files, for the message."""
    reasons = []
    for path in sorted(folder.glob("*.json")) + sorted((folder / "annotations").glob("*.json")):
        if not path.is_file() or _looks_like_coco(path):
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                head = handle.read(HEAD_BYTES).lstrip()
        except OSError as error:
            reasons.append(f"{path} cannot be read ({error.strerror or error})")
            continue
        if not head.startswith("{"):
            reasons.append(f"{path} is not a COCO file: its top level is not an object")
        else:
            reasons.append(f"{path} is not a COCO file: it has no 'images' or 'annotations' key")
    return "".join(f" {reason}." for reason in reasons[:5])


def _image_roots(json_path: Path, image_dir: str | None, split: str | None = None) -> list[Path]:
    """The folders the images may be in, in the order the module docstring gives."""
    folder = json_path.parent
    if image_dir is not None:
        return [folder / Path(image_dir).expanduser()]
    roots = [folder, folder / "images", folder.parent, folder.parent / "images"]
    if "_" in json_path.stem:
        name_split = json_path.stem.rsplit("_", 1)[1]
        roots += [folder.parent / name_split, folder.parent / "images" / name_split]
    for name in dict.fromkeys([json_path.stem, *([split] if split else [])]):
        roots += [
            folder / name,
            folder / "images" / name,
            folder.parent / name,
            folder.parent / "images" / name,
        ]
    return list(dict.fromkeys(roots))


def _image_dir_sentence(json_path: Path) -> str:
    return image_dir_hint(f"the JSON's folder {json_path.parent}")


def _choose_root(json_path: Path, roots: list[Path], file_names: list[str]) -> Path:
    sample = file_names[:ROOT_SAMPLE]
    hits = [sum((root / name).is_file() for name in sample) for root in roots]
    if max(hits) > 0:
        return roots[hits.index(max(hits))]
    searched = ", ".join(str(root) for root in roots)
    raise DatasetError(
        f"{json_path} lists images (e.g. {sample[0]}) that are in none of the folders searched: {searched}. "
        f"Training without them would silently lose their labels. {_image_dir_sentence(json_path)}"
    )


def _require_list(data: dict[str, Any], key: str, json_path: Path) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise DatasetError(
            f"{json_path} is not a COCO detection file: '{key}' should be a list, got {type(value).__name__}. "
            f"Expected {LAYOUT}"
        )
    return value


def _categories(data: dict[str, Any], json_path: Path) -> tuple[list[str], list[int]]:
    by_id: dict[int, str] = {}
    for position, category in enumerate(_require_list(data, "categories", json_path)):
        if (
            not isinstance(category, dict)
            or not isinstance(category.get("id"), int)
            or "name" not in category
        ):
            raise DatasetError(f"{json_path}: categories[{position}] needs an integer 'id' and a 'name'.")
        if category["id"] in by_id:
            raise DatasetError(f"{json_path}: category id {category['id']} appears twice in 'categories'.")
        by_id[category["id"]] = str(category["name"])
    ids = sorted(by_id)
    return [by_id[i] for i in ids], ids


def _is_id(value: Any) -> bool:
    """COCO ids are integers (some exporters write strings); anything else cannot index the file."""
    return isinstance(value, int | str) and not isinstance(value, bool)


def _images(data: dict[str, Any], json_path: Path) -> dict[Any, dict[str, Any]]:
    images: dict[Any, dict[str, Any]] = {}
    for position, image in enumerate(_require_list(data, "images", json_path)):
        if (
            not isinstance(image, dict)
            or not _is_id(image.get("id"))
            or not isinstance(image.get("file_name"), str)
        ):
            raise DatasetError(
                f"{json_path}: images[{position}] needs an 'id' (an integer) and a 'file_name' (a string), got "
                f"{_short(image)}."
            )
        if image["id"] in images:
            raise DatasetError(f"{json_path}: image id {image['id']!r} appears twice in 'images'.")
        images[image["id"]] = image
    return images


def _bbox(annotation: dict[str, Any], where: str) -> list[float]:
    bbox = annotation.get("bbox")
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
    ):
        raise DatasetError(f"{where}: 'bbox' must be four numbers [x, y, width, height], got {bbox!r}.")
    x, y, width, height = (float(v) for v in bbox)
    return [x, y, x + width, y + height]


@attrs.define
class _ImageBoxes:
    boxes: Any = attrs.field(factory=lambda: np.zeros((0, 4), np.float32))
    labels: Any = attrs.field(factory=lambda: np.zeros(0, np.int64))
    places: Sequence[str] | None = None


class _AnnotationPlaces(Sequence[str]):
    """``"<file> (annotations[i], id x)"`` for each box of one image, formatted only when a problem is
    reported: building two million such strings up front was a third of the load time of a large file."""

    def __init__(self, json_path: Path, annotations: list[Any], positions: np.ndarray) -> None:
        self.json_path, self.annotations, self.positions = json_path, annotations, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        position = int(self.positions[index])
        return _where(self.json_path, position, self.annotations[position])


def _where(json_path: Path, position: int, annotation: Any) -> str:
    identifier = annotation.get("id") if isinstance(annotation, dict) else None
    return f"{json_path} (annotations[{position}], id {identifier!r})"


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _check_annotation(json_path: Path, position: int, annotation: Any, images: dict, index_of: dict) -> None:
    """The precise error for one annotation the fast path found wrong."""
    if not isinstance(annotation, dict):
        raise DatasetError(f"{json_path}: annotations[{position}] is not an object: {_short(annotation)}.")
    where = _where(json_path, position, annotation)
    if "id" in annotation and not _is_id(annotation["id"]):
        raise DatasetError(f"{where}: 'id' must be an integer, got {_short(annotation['id'])}.")
    if not _is_id(annotation.get("image_id")) or annotation.get("image_id") not in images:
        raise DatasetError(f"{where}: image_id {_short(annotation.get('image_id'))} is not in 'images'.")
    category_id = annotation.get("category_id")
    if not annotation.get("iscrowd") and (not _is_id(category_id) or category_id not in index_of):
        raise DatasetError(
            f"{where}: category_id {category_id!r} is not in 'categories' (ids {list(index_of)})."
        )
    _bbox(annotation, where)


def _duplicate_id_error(json_path: Path, annotations: list[dict[str, Any]]) -> DatasetError:
    seen: set[Any] = set()
    for position, annotation in enumerate(annotations):
        if "id" in annotation and annotation["id"] in seen:
            return DatasetError(
                f"{json_path}: annotation id {annotation['id']!r} is used twice (second at "
                f"annotations[{position}]). Annotation ids must be unique; re-export the file."
            )
        seen.add(annotation.get("id"))
    raise AssertionError("no duplicate id found")


def _annotations_by_image(
    data: dict[str, Any],
    json_path: Path,
    images: dict[Any, Any],
    index_of: dict[int, int],
    report: LoadReport,
) -> dict[Any, _ImageBoxes]:
    """Group annotations by image in one vectorised pass; a precise per-annotation check runs only when
    the fast path finds something wrong, so a clean 100k-image file indexes in seconds."""
    annotations = data.get("annotations") or []
    if not isinstance(annotations, list):
        raise DatasetError(f"{json_path}: 'annotations' should be a list, got {type(annotations).__name__}.")
    image_index = {image_id: i for i, image_id in enumerate(images)}
    try:
        ids = [a.get("id") for a in annotations]
        image_rows = np.fromiter(
            (image_index[a["image_id"]] for a in annotations), np.int64, len(annotations)
        )
        crowd = np.fromiter((bool(a.get("iscrowd")) for a in annotations), bool, len(annotations))
        labels = np.fromiter(
            (index_of.get(a.get("category_id"), -1) for a in annotations), np.int64, len(annotations)
        )
        raw_boxes = np.array([a["bbox"] for a in annotations])
        xywh = raw_boxes.astype(np.float64).reshape(len(annotations), 4)
        numeric = raw_boxes.dtype.kind in "iuf" or not len(annotations)
        valid = (
            numeric
            and bool(((labels >= 0) | crowd).all())
            and all(type(a["bbox"]) is list for a in annotations)
            and all(identifier is None or _is_id(identifier) for identifier in ids)
        )
    except (AttributeError, KeyError, TypeError, ValueError):
        valid = False
    if not valid:
        for position, annotation in enumerate(annotations):
            _check_annotation(json_path, position, annotation, images, index_of)
        raise DatasetError(
            f"{json_path}: an annotation is malformed; check its 'bbox', 'image_id' and 'category_id'."
        )
    present = [identifier for identifier in ids if identifier is not None]
    if len(set(present)) != len(present):
        raise _duplicate_id_error(json_path, annotations)
    for position in np.flatnonzero(crowd):
        report.add(CROWD_SKIPPED, _where(json_path, int(position), annotations[position]))
    keep = np.flatnonzero(~crowd)
    order = keep[np.argsort(image_rows[keep], kind="stable")]
    starts = np.searchsorted(image_rows[order], np.arange(len(images) + 1))
    boxes_sorted = np.concatenate([xywh[order, :2], xywh[order, :2] + xywh[order, 2:]], axis=1)
    by_image = {}
    for row, image_id in enumerate(images):
        begin, end = starts[row], starts[row + 1]
        positions = order[begin:end]
        by_image[image_id] = _ImageBoxes(
            boxes_sorted[begin:end], labels[positions], _AnnotationPlaces(json_path, annotations, positions)
        )
    return by_image


def load_coco(json_path: Path, image_dir: str | None = None, split: str | None = None) -> DetectionDataset:
    """Read one COCO JSON file into a ``DetectionDataset`` (see the module docstring for the rules)."""
    data = read_json(json_path)
    if not isinstance(data, dict):
        raise DatasetError(
            f"{json_path} is not a COCO detection file: the top level is a {type(data).__name__}, not an object. "
            f"Expected {LAYOUT}"
        )
    class_names, category_ids = _categories(data, json_path)
    images = _images(data, json_path)
    if not images:
        raise DatasetError(
            f"No images were found at {json_path}: its 'images' list is empty. Expected {LAYOUT}"
        )
    report = LoadReport()
    index_of = {category_id: index for index, category_id in enumerate(category_ids)}
    by_image = _annotations_by_image(data, json_path, images, index_of, report)
    root = _choose_root(
        json_path, _image_roots(json_path, image_dir, split), [i["file_name"] for i in images.values()]
    )
    raw = [
        RawImage(
            image_in_folder(root, image["file_name"], f"{json_path} (image id {image_id!r})"),
            f"{json_path} (image id {image_id!r})",
            by_image[image_id].boxes,
            by_image[image_id].labels,
            by_image[image_id].places,
            _declared_size(image),
            image_id=str(image_id),
        )
        for image_id, image in images.items()
    ]
    require_images(raw, _image_dir_sentence(json_path))
    return assemble_dataset(
        raw,
        class_names,
        source=json_path,
        format=NAME,
        layout=LAYOUT,
        report=report,
        category_ids=category_ids,
    )


def _declared_size(image: dict[str, Any]) -> tuple[int, int] | None:
    width, height = image.get("width"), image.get("height")
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return width, height
    return None


def _output_image_ids(dataset: DetectionDataset) -> list[int]:
    ids = [record.image_id for record in dataset.records]
    if all(i.isdigit() for i in ids) and len(set(ids)) == len(ids):
        return [int(i) for i in ids]
    return list(range(1, len(ids) + 1))


def save_coco(dataset: DetectionDataset, out_dir: Path, split: str | None = None) -> list[str]:
    """Write ``out_dir/annotations.json`` (``out_dir/<split>.json`` for a split, which reading back with
    that split finds) and copy the images to ``out_dir/images/``.

    Image ids are kept when they are integers, otherwise numbered from 1. Category ids are the dataset's
    own when they are increasing (so reading back keeps the class order), otherwise numbered from 1.
    """
    warnings = []
    category_ids = [int(i) for i in dataset.category_ids]
    if any(b <= a for a, b in zip(category_ids, category_ids[1:], strict=False)):
        category_ids = list(range(1, dataset.num_classes + 1))
        warnings.append(
            "COCO orders classes by category id, and this dataset's ids were not increasing: classes were "
            "renumbered 1..N in their current order."
        )
    images, annotations, taken = [], [], set()
    for record, image_id in zip(dataset.records, _output_image_ids(dataset), strict=True):
        name = export_image(record.image_path, out_dir / "images", taken)
        images.append({"id": image_id, "file_name": name, "width": record.width, "height": record.height})
        for box, label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True):
            width, height = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_ids[label],
                    "bbox": [box[0], box[1], width, height],
                    "area": width * height,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i, "name": n} for i, n in zip(category_ids, dataset.class_names, strict=True)]
    payload = {"images": images, "annotations": annotations, "categories": categories}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{split or 'annotations'}.json").write_text(json.dumps(payload), encoding="utf-8")
    return warnings


class CocoFormat:
    """The ``DatasetFormat`` for COCO JSON."""

    def __init__(self, options: CocoOptions | None = None) -> None:
        self.options = options or CocoOptions()

    def detect(self, path: Path) -> float:
        """How surely ``path`` is a COCO JSON file or a folder holding one (only the file's head is read)."""
        path = Path(path)
        if path.is_file():
            return _looks_like_coco(path) if path.suffix.lower() == ".json" else DETECT_NONE
        if not path.is_dir():
            return DETECT_NONE
        return max((_looks_like_coco(p) for p in _folder_jsons(path)), default=DETECT_NONE)

    def load(self, path: Path, split: str | None = None) -> DetectionDataset:
        """Read the COCO JSON that ``path`` and ``split`` designate."""
        return load_coco(find_annotation_file(Path(path), split), self.options.image_dir, split)

    def save(self, dataset: DetectionDataset, out_dir: Path, split: str | None = None) -> list[str]:
        """Write ``dataset`` as ``annotations.json`` (``<split>.json``) plus ``images/``; see ``save_coco``."""
        return save_coco(dataset, Path(out_dir), split)


@hookimpl
def register_dataset_formats(register: Register) -> None:
    """Register the ``coco`` format."""
    register(
        NAME,
        CocoFormat,
        options=CocoOptions,
        description="COCO JSON: an annotations .json file (or a folder holding one) with images beside it "
        "or in images/",
    )
