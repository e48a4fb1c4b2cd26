"""The ``yolo`` dataset format: one ``.txt`` of normalised ``class cx cy w h`` lines per image (Ultralytics, Roboflow).

What ``load`` accepts as ``path``:

* a ``data.yaml`` (or ``data.yml``, ``dataset.yaml``) file, or a folder holding one. Its ``names`` (a list,
  or a mapping from class id to name) gives the classes; ``train``/``val``/``test`` name image folders, lists
  of folders, or ``.txt`` files listing images, relative to the ``path`` key (itself relative to the YAML's
  folder) or to the YAML's folder. ``split`` selects one of those keys; ``None`` loads every split the file
  lists (images listed twice are read once).
* a folder holding ``classes.txt`` (one name per line). ``split`` selects ``images/<split>``; ``None`` loads
  ``images/`` when it exists, otherwise the folder itself.

Exports often write split paths that are wrong relative to the YAML (Roboflow's ``train: ../train/images``
beside ``train/``), so a split entry is looked for, in order: relative to the ``path`` key, relative to the
YAML's folder, relative to that folder without its leading ``../``, and then by the split's name in the two
common layouts, ``<split>/images`` (Roboflow) and ``images/<split>`` (Ultralytics), ``valid`` standing in
for ``val`` and back. The same two folders serve a split the YAML does not list, a ``classes.txt`` folder,
and a YAML without split keys (which otherwise reads ``images/``, or every image under its folder).
Every split path found and every line of a list file must stay inside the folder it is relative to (no
``../`` leading out, no absolute path elsewhere); an entry that leads out and matches none of the folders
above is an error.

The label file of an image is found by replacing the last ``images`` folder of its path with ``labels`` and
the extension with ``.txt``; an image whose path has no ``images`` folder has its label file beside it. An
image without a label file, or with an empty one, is a background image. Box coordinates are fractions of
the image size, which is read from the image file's header.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from yolox_sdk.data.format_support import (
    DETECT_LAYOUT,
    DETECT_NONE,
    LabelCheck,
    RawImage,
    assemble_dataset,
    export_image,
    image_in_folder,
    no_images_error,
    read_text,
    read_yaml,
)
from yolox_sdk.data.image_check import IMAGE_SUFFIXES, list_images
from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.errors import DatasetError
from yolox_sdk.plugins.hookspecs import Register, hookimpl

NAME = "yolo"
YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml")
CLASSES_FILE = "classes.txt"
SPLIT_KEYS = ("train", "val", "test")
SPLIT_ALIASES = {"val": ("valid",), "valid": ("val",)}
LAYOUT = (
    "a YOLO folder: data.yaml (names, train/val/test image folders) or classes.txt, images under images/ "
    "and one .txt per image under labels/ with the same relative path."
)
DECIMALS = 8


def find_yaml(path: Path) -> Path | None:
    """The dataset YAML ``path`` is or holds, or ``None``."""
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return path
    return next((path / name for name in YAML_NAMES if (path / name).is_file()), None)


def label_path(image_path: Path) -> Path:
    """Where the label file of ``image_path`` is (see the module docstring)."""
    parts = list(image_path.parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image_path.with_suffix(".txt")


def _parse_names(names: Any, yaml_path: Path) -> tuple[list[str], list[int]]:
    if isinstance(names, list) and names:
        return [str(name) for name in names], list(range(len(names)))
    if isinstance(names, dict) and names and all(isinstance(key, int) for key in names):
        ids = sorted(names)
        return [str(names[i]) for i in ids], ids
    raise DatasetError(
        f"{yaml_path}: 'names' must be a non-empty list of class names or a mapping from class id to name, "
        f"got {names!r}."
    )


def _listed_images(list_file: Path, base: Path) -> list[Path]:
    lines = read_text(list_file, "YOLO image list").splitlines()
    return [
        image_in_folder(base, line.strip(), f"{list_file}:{number}")
        for number, line in enumerate(lines, start=1)
        if line.strip()
    ]


def _split_folders(root: Path, split: str) -> list[Path]:
    """The image folders of ``split`` in the common export layouts: ``<split>/images`` (Roboflow) and
    ``images/<split>`` (Ultralytics), with ``val`` and ``valid`` standing in for each other."""
    names = [split, *SPLIT_ALIASES.get(split, ())]
    candidates = [folder for name in names for folder in (root / name / "images", root / "images" / name)]
    return [folder for folder in candidates if folder.is_dir()]


def available_splits(root: Path) -> list[str]:
    """The split folders ``root`` holds in either export layout, for messages."""
    found = [p.name for p in root.glob("images/*") if p.is_dir()]
    found += [p.parent.name for p in root.glob("*/images") if p.is_dir() and p.parent.name != "labels"]
    return sorted(set(found))


def _without_leading_dots(item: str) -> str:
    parts = Path(item).parts
    while parts and parts[0] in ("..", "."):
        parts = parts[1:]
    return Path(*parts).as_posix() if parts else "."


def _split_target(item: str, base: Path, root: Path, yaml_path: Path, key: str) -> Path:
    """The file or folder a split entry names, looked for where the module docstring says.

    Raises:
        DatasetError: the entry leads out of its folder and none of the fallbacks exists.
    """
    where = f"{yaml_path}: '{key}'"
    refused = None
    candidates = []
    for folder, name in ((base, item), (root, item), (root, _without_leading_dots(item))):
        try:
            candidates.append(image_in_folder(folder, name, where, what="split path"))
        except DatasetError as error:
            refused = refused or error
    candidates += _split_folders(root, key)
    found = next((candidate for candidate in candidates if candidate.exists()), None)
    if found is not None:
        return found
    if refused is not None:
        raise refused
    return candidates[0]


def _images_of(entry: Any, base: Path, yaml_path: Path, key: str) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    images: list[Path] = []
    for item in entries:
        target = _split_target(str(item), base, yaml_path.parent, yaml_path, key)
        if target.is_dir():
            images += list_images(target)
        elif target.is_file() and target.suffix.lower() == ".txt":
            images += _listed_images(target, base)
        elif target.is_file() and target.suffix.lower() in IMAGE_SUFFIXES:
            images.append(target)
        else:
            raise DatasetError(
                f"{yaml_path}: '{key}: {item}' points to {target}, which is neither a folder of images nor a "
                f".txt list of images, and there is no {key}/images or images/{key} folder beside the YAML. "
                "Fix the path (it is relative to the 'path' key or the YAML's folder)."
            )
    return images


def _unlisted_images(root: Path, split: str | None) -> list[Path]:
    """The images of a dataset whose YAML or class list says nothing about ``split`` (or about any split)."""
    if split is not None:
        return [image for folder in _split_folders(root, split) for image in list_images(folder)]
    return list_images(root / "images" if (root / "images").is_dir() else root)


def _from_yaml(yaml_path: Path, split: str | None) -> tuple[list[Path], list[str], list[int]]:
    config = read_yaml(yaml_path)
    if not isinstance(config, dict) or "names" not in config:
        raise DatasetError(f"{yaml_path} has no 'names' key. Expected {LAYOUT}")
    names, ids = _parse_names(config["names"], yaml_path)
    base = yaml_path.parent / str(config.get("path") or ".")
    root = yaml_path.parent
    if split is not None and not config.get(split):
        if _split_folders(root, split):
            return _unlisted_images(root, split), names, ids
        listed = ", ".join(str(k) for k in config if k not in ("names", "path", "nc", "download")) or "none"
        folders = available_splits(root)
        also = f"; split folders found: {', '.join(folders)}" if folders else ""
        raise DatasetError(
            f"{yaml_path} has no '{split}' split; it lists: {listed}{also}. Set the split to one of them."
        )
    keys = [split] if split is not None else [k for k in SPLIT_KEYS if config.get(k)]
    if not keys:
        return _unlisted_images(root, None), names, ids
    images = [image for key in keys for image in _images_of(config[key], base, yaml_path, key)]
    return images, names, ids


def _from_classes_file(folder: Path, split: str | None) -> tuple[list[Path], list[str], list[int]]:
    classes_file = folder / CLASSES_FILE
    names = [line.strip() for line in read_text(classes_file, "class list").splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"{classes_file} lists no class names. Write one name per line.")
    if split is not None and not _split_folders(folder, split):
        available = available_splits(folder)
        raise DatasetError(
            f"No folder {folder / 'images' / split} or {folder / split / 'images'} for split '{split}'. "
            f"Splits found: {', '.join(available) or 'none'}."
        )
    return _unlisted_images(folder, split), names, list(range(len(names)))


def _number(text: str, label_file: Path, line_number: int, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DatasetError(f"{label_file}:{line_number}: {what} {text!r} is not a number.") from None


def read_label_file(
    label_file: Path, index_of: dict[int, int]
) -> tuple[list[list[float]], list[int], list[str]]:
    """Parse one label file into normalised xyxy boxes, class indices and ``file:line`` places.

    Raises:
        DatasetError: a line without exactly 5 values, or a class id the dataset does not declare.
    """
    boxes, labels, places = [], [], []
    for line_number, line in enumerate(read_text(label_file, "YOLO label file").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise DatasetError(
                f"{label_file}:{line_number}: expected 5 values 'class cx cy w h', found {len(fields)}: "
                f"{line.strip()!r}. Segmentation polygons and keypoints are not boxes; convert them first."
            )
        class_value = _number(fields[0], label_file, line_number, "class id")
        class_id = int(class_value) if class_value.is_integer() else -1
        if class_id not in index_of:
            ids = sorted(index_of)
            declared = f"ids 0..{len(ids) - 1}" if ids == list(range(len(ids))) else f"ids {ids}"
            raise DatasetError(
                f"{label_file}:{line_number}: class id {fields[0]} is out of range: the dataset declares "
                f"{len(ids)} classes ({declared}). Fix the label or add the class to the names."
            )
        cx, cy, width, height = (_number(v, label_file, line_number, "coordinate") for v in fields[1:])
        boxes.append([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2])
        labels.append(index_of[class_id])
        places.append(f"{label_file}:{line_number}")
    return boxes, labels, places


def _image_ids(images: list[Path], root: Path) -> list[str]:
    stems = [image.stem for image in images]
    if len(set(stems)) == len(stems):
        return stems
    return [
        image.relative_to(root).with_suffix("").as_posix() if image.is_relative_to(root) else str(image)
        for image in images
    ]


def load_yolo(path: Path, split: str | None = None) -> DetectionDataset:
    """Read a YOLO dataset (see the module docstring for what ``path`` and ``split`` may be)."""
    yaml_path = find_yaml(path)
    if yaml_path is not None:
        images, names, ids = _from_yaml(yaml_path, split)
        root = yaml_path.parent
    elif (path / CLASSES_FILE).is_file():
        images, names, ids = _from_classes_file(path, split)
        root = path
    else:
        raise DatasetError(f"{path} has no data.yaml or classes.txt. Expected {LAYOUT}")
    images = list(dict.fromkeys(images))
    if not images:
        where = path if split is None else Path(f"{path} (split '{split}')")
        raise no_images_error(where, LAYOUT)
    index_of = {class_id: index for index, class_id in enumerate(ids)}
    raw = []
    for image, image_id in zip(images, _image_ids(images, root), strict=True):
        labels_file = label_path(image)
        boxes, labels, places = (
            read_label_file(labels_file, index_of) if labels_file.is_file() else ([], [], [])
        )
        raw.append(
            RawImage(image, str(labels_file), boxes, labels, places, normalized=True, image_id=image_id)
        )
    return assemble_dataset(raw, names, source=path, format=NAME, layout=LAYOUT, category_ids=ids)


def save_yolo(dataset: DetectionDataset, out_dir: Path, split: str | None = None) -> list[str]:
    """Write ``images/``, ``labels/`` and a ``data.yaml`` whose ``split`` key (``train`` without a split)
    is the whole dataset, so that reading back with that split gives this dataset.

    Coordinates are written with 8 decimals, so boxes read back within about 1e-5 pixels.
    """
    warnings = []
    if list(dataset.category_ids) != list(range(dataset.num_classes)):
        warnings.append(
            f"YOLO class ids are 0..N-1, so the original category ids {list(dataset.category_ids)} are not kept."
        )
    taken: set[str] = set()
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    for record in dataset.records:
        name = export_image(record.image_path, out_dir / "images", taken)
        lines = _label_lines(record.boxes.tolist(), record.labels.tolist(), record.width, record.height)
        (out_dir / "labels" / Path(name).with_suffix(".txt")).write_text("".join(lines), encoding="utf-8")
    data = {"path": ".", split or "train": "images", "names": dict(enumerate(dataset.class_names))}
    (out_dir / "data.yaml").write_text(
        yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    return warnings


def _label_lines(boxes: Iterable[list[float]], labels: Iterable[int], width: int, height: int) -> list[str]:
    lines = []
    for (x1, y1, x2, y2), label in zip(boxes, labels, strict=True):
        values = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
        lines.append(f"{label} " + " ".join(f"{v:.{DECIMALS}f}" for v in values) + "\n")
    return lines


class YoloFormat:
    """The ``DatasetFormat`` for YOLO txt labels."""

    def __init__(self, options: None = None) -> None:
        self.options = options

    def detect(self, path: Path) -> float:
        """``DETECT_LAYOUT`` for a data.yaml with ``names`` or a folder holding one or a ``classes.txt``.

        A word in a YAML file or a file name is all it checks, hence the layout score.
        """
        path = Path(path)
        yaml_path = find_yaml(path) if path.exists() else None
        if yaml_path is not None:
            try:
                text = yaml_path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                return DETECT_NONE
            return DETECT_LAYOUT if "names" in text else DETECT_NONE
        return DETECT_LAYOUT if path.is_dir() and (path / CLASSES_FILE).is_file() else DETECT_NONE

    def load(self, path: Path, split: str | None = None) -> DetectionDataset:
        """Read the YOLO dataset at ``path``; see ``load_yolo``."""
        return load_yolo(Path(path), split)

    def save(self, dataset: DetectionDataset, out_dir: Path, split: str | None = None) -> list[str]:
        """Write ``dataset`` in YOLO layout, as split ``split`` when given; see ``save_yolo``."""
        return save_yolo(dataset, Path(out_dir), split)

    def check_labels(self, root: Path, scratch: Path) -> LabelCheck:
        """Every label line checked on its own, for ``data validate``; see ``yolo_checks``."""
        from yolox_sdk.builtin.formats.yolo_checks import check_yolo_labels

        return check_yolo_labels(Path(root), Path(scratch))


@hookimpl
def register_dataset_formats(register: Register) -> None:
    """Register the ``yolo`` format."""
    register(
        NAME,
        YoloFormat,
        description="YOLO txt: a folder with data.yaml (or classes.txt), images/ and labels/ holding one "
        "'class cx cy w h' .txt per image",
    )
