"""The ``cvat`` dataset format: CVAT for images 1.1 XML (``annotations.xml`` of a CVAT task or project export).

The file looks like::

    <annotations>
      <version>1.1</version>
      <meta><task><labels><label><name>RBC</name></label>...</labels></task></meta>
      <image id="0" name="BloodImage_00000.jpg" width="640" height="480" subset="train">
        <box label="RBC" occluded="0" xtl="77" ytl="335" xbr="183" ybr="434" z_order="0"/>
        <polygon label="WBC" points="260,177;491,177;491,376"/>
      </image>
      <track id="0" label="RBC"><box frame="0" outside="0" xtl="..." ytl="..." xbr="..." ybr="..."/></track>
    </annotations>

What ``load`` accepts as ``path``: the ``.xml`` file, or a folder holding ``annotations.xml`` (or exactly one
CVAT XML). ``split`` selects the images whose ``subset`` attribute equals it (project exports).

Conventions:

* Shapes. A ``<box>`` is read as is; a box with a ``rotation`` becomes the axis-aligned box around it and a
  ``<polygon>`` its bounding box, both counted. Other shapes (polylines, points, ellipses, masks, cuboids,
  skeletons) are skipped and counted; ``<tag>`` is an image label, not a shape, and is ignored.
* Tracks (CVAT for video 1.1). Each ``<box>`` or ``<polygon>`` of a ``<track>`` becomes a box of the image
  whose ``id`` is its ``frame``; shapes with ``outside="1"`` mark frames where the object is not visible and
  are left out. A track with no box or polygon is skipped and counted, as is a shape on a frame that has no
  ``<image>``. A file with tracks but no ``<image>`` elements is an error: the frames are unknown.
* Classes. The order of ``<labels>`` in ``<meta>`` (labels without boxes included), and a label outside it
  is an error. Without ``<labels>`` the classes are the sorted set of labels used.
* Images. ``name`` is relative to the XML's ``images/`` subfolder (CVAT's dataset export) or to its folder,
  or to the ``image_dir`` option (relative to the XML's folder), and must stay inside that folder. ``width``/``height`` are compared with the
  file's header.
* Writing puts ``annotations.xml`` and ``images/`` under the output folder. CVAT holds the class list and
  its order but no category ids.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import attrs

from yolox_sdk.data.format_support import (
    DETECT_NONE,
    DETECT_SCHEMA,
    RawImage,
    assemble_dataset,
    export_image,
    format_coordinate,
    image_dir_hint,
    image_ids,
    image_in_folder,
    no_images_error,
    read_xml,
    require_images,
)
from yolox_sdk.data.records import DetectionDataset, LoadReport
from yolox_sdk.errors import DatasetError, did_you_mean
from yolox_sdk.plugins.hookspecs import Register, hookimpl

NAME = "cvat"
LAYOUT = (
    "a CVAT for images 1.1 XML file (or a folder holding annotations.xml) with <meta> labels and <image> "
    "elements holding <box> shapes, and the images in images/ beside it."
)
ANNOTATION_FILE = "annotations.xml"
CVAT_VERSION = "1.1"
HEAD_BYTES = 4096
POLYGON_CONVERTED = "CVAT polygon converted to box"
ROTATED_BOX_CONVERTED = "CVAT rotated box converted to axis-aligned box"
SHAPE_SKIPPED = "CVAT shape that is not a box or polygon skipped"
EMPTY_TRACK = "CVAT track without boxes skipped"
FRAME_WITHOUT_IMAGE = "CVAT track box on a frame without <image> skipped"
BOX_SHAPES = ("box", "polygon")
NOT_SHAPES = ("tag", "attribute")
ROOT_PATTERN = re.compile(r"<annotations[\s>]")


@attrs.define
class CvatOptions:
    """Options of the ``cvat`` format.

    Attributes:
        image_dir: the folder holding the images, relative to the XML file's folder.
    """

    image_dir: str | None = None


@attrs.frozen
class CvatBox:
    """One box of an image: its label, absolute ``x1, y1, x2, y2`` and where it was written."""

    label: str
    box: tuple[float, float, float, float]
    where: str


@attrs.define
class CvatImage:
    """One ``<image>`` element and the boxes found for it (its own shapes and track shapes)."""

    id: str
    name: str
    subset: str | None
    declared_size: tuple[int, int] | None
    boxes: list[CvatBox] = attrs.field(factory=list)


def looks_like_cvat(path: Path) -> bool:
    """True when the head of ``path`` opens an ``<annotations>`` root (reads 4 KiB at most)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return False
    return bool(ROOT_PATTERN.search(head)) and any(
        tag in head for tag in ("<version", "<meta", "<image", "<track")
    )


def find_cvat_file(path: Path) -> Path:
    """The CVAT XML that ``path`` designates (see the module docstring)."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise DatasetError(f"{path} does not exist. Expected {LAYOUT}")
    if (path / ANNOTATION_FILE).is_file():
        return path / ANNOTATION_FILE
    candidates = [p for p in sorted(path.glob("*.xml")) if p.is_file() and looks_like_cvat(p)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DatasetError(f"No CVAT XML ({ANNOTATION_FILE}) in {path}. Expected {LAYOUT}")
    names = ", ".join(c.name for c in candidates)
    raise DatasetError(f"{path} holds several CVAT XML files: {names}. Give the path of the file to use.")


def _number(element: ET.Element, key: str, where: str) -> float:
    value = element.get(key)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: attribute {key}={value!r} should be a number.") from None


def _points(element: ET.Element, where: str) -> list[tuple[float, float]]:
    text = element.get("points") or ""
    try:
        points = [tuple(float(v) for v in pair.split(",")) for pair in text.split(";") if pair.strip()]
    except ValueError:
        points = []
    if not points or any(len(point) != 2 for point in points):
        raise DatasetError(f"{where}: points={text!r} should be 'x1,y1;x2,y2;...'.")
    return points  # type: ignore[return-value]


def _shape_box(element: ET.Element, where: str, report: LoadReport) -> tuple[float, float, float, float]:
    """The axis-aligned box of a ``<box>`` or ``<polygon>`` element, counting conversions."""
    if element.tag == "polygon":
        xs, ys = zip(*_points(element, where), strict=True)
        report.add(POLYGON_CONVERTED, where)
        return min(xs), min(ys), max(xs), max(ys)
    x1, y1, x2, y2 = (_number(element, key, where) for key in ("xtl", "ytl", "xbr", "ybr"))
    angle = math.radians(float(element.get("rotation") or 0.0))
    if angle % (2 * math.pi) == 0:
        return x1, y1, x2, y2
    report.add(ROTATED_BOX_CONVERTED, where)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half_w = (abs((x2 - x1) * math.cos(angle)) + abs((y2 - y1) * math.sin(angle))) / 2
    half_h = (abs((x2 - x1) * math.sin(angle)) + abs((y2 - y1) * math.cos(angle))) / 2
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def _label(element: ET.Element, where: str, fallback: str | None = None) -> str:
    label = element.get("label") or fallback
    if not label:
        raise DatasetError(f"{where}: the shape has no label attribute.")
    return label


def _declared_size(element: ET.Element) -> tuple[int, int] | None:
    try:
        width, height = int(element.get("width", "")), int(element.get("height", ""))
    except ValueError:
        return None
    return (width, height) if width > 0 and height > 0 else None


def _meta_labels(root: ET.Element) -> list[str]:
    meta = root.find("meta")
    if meta is None:
        return []
    # A skeleton's points are declared as labels with a <parent>: they are not classes of their own.
    labels = (label for label in meta.iter("label") if not (label.findtext("parent") or "").strip())
    names = (label.findtext("name") for label in labels)
    return list(dict.fromkeys(name.strip() for name in names if name and name.strip()))


def _image_boxes(root: ET.Element, path: Path, report: LoadReport) -> dict[str, CvatImage]:
    images: dict[str, CvatImage] = {}
    for element in root.findall("image"):
        image_id, name = element.get("id"), element.get("name")
        if image_id is None or not name:
            raise DatasetError(f"{path}: an <image> element needs 'id' and 'name' attributes.")
        if image_id in images:
            raise DatasetError(f"{path}: image id {image_id!r} appears twice.")
        image = CvatImage(image_id, name, element.get("subset"), _declared_size(element))
        for number, shape in enumerate(element, start=1):
            where = f"{path} (image id {image_id} '{name}', shape {number})"
            if shape.tag in BOX_SHAPES:
                image.boxes.append(CvatBox(_label(shape, where), _shape_box(shape, where, report), where))
            elif shape.tag not in NOT_SHAPES:
                report.add(SHAPE_SKIPPED, f"{where}: <{shape.tag}>")
        images[image_id] = image
    return images


def _add_track_boxes(root: ET.Element, path: Path, images: dict[str, CvatImage], report: LoadReport) -> None:
    tracks = root.findall("track")
    if tracks and not images:
        raise DatasetError(
            f"{path} holds {len(tracks)} <track> elements but no <image> elements, so the frames their boxes "
            "belong to are unknown. Export the task as 'CVAT for images 1.1', or as 'CVAT for video 1.1' with "
            "images."
        )
    for track in tracks:
        track_id = track.get("id")
        shapes = [shape for shape in track if shape.tag in BOX_SHAPES]
        if not shapes:
            report.add(EMPTY_TRACK, f"{path} (track id {track_id})")
            continue
        for shape in shapes:
            where = f"{path} (track id {track_id}, frame {shape.get('frame')})"
            if shape.get("outside") == "1":
                continue
            image = images.get(str(shape.get("frame")))
            if image is None:
                report.add(FRAME_WITHOUT_IMAGE, where)
                continue
            box = _shape_box(shape, where, report)
            image.boxes.append(CvatBox(_label(shape, where, track.get("label")), box, where))


def _class_names(meta_labels: list[str], images: list[CvatImage]) -> list[str]:
    used = [box for image in images for box in image.boxes]
    if not meta_labels:
        return sorted({box.label for box in used})
    for box in used:
        if box.label not in meta_labels:
            raise DatasetError(
                f"{box.where}: label '{box.label}' is not among the <labels> of <meta> "
                f"({', '.join(meta_labels)}).{did_you_mean(box.label, meta_labels)} Fix the label or add it "
                "to <labels>."
            )
    return meta_labels


def _select_split(images: list[CvatImage], split: str | None, path: Path) -> list[CvatImage]:
    if split is None:
        return images
    chosen = [image for image in images if image.subset == split]
    if not chosen:
        subsets = sorted({image.subset for image in images if image.subset})
        raise DatasetError(
            f"{path} has no images with subset '{split}'.{did_you_mean(split, subsets)} Subsets found: "
            f"{', '.join(subsets) or 'none (the file has no subset attributes: leave the split empty)'}."
        )
    return chosen


def _image_path(roots: list[Path], name: str, where: str) -> Path:
    root = next((root for root in roots if (root / name).is_file()), roots[0])
    return image_in_folder(root, name, where)


def load_cvat(xml_path: Path, split: str | None = None, image_dir: str | None = None) -> DetectionDataset:
    """Read one CVAT for images 1.1 XML file (see the module docstring for the conventions)."""
    root = read_xml(xml_path)
    if root.tag != "annotations":
        raise DatasetError(
            f"{xml_path} is not a CVAT XML file: its root element is <{root.tag}>, not <annotations>."
        )
    report = LoadReport()
    by_id = _image_boxes(root, xml_path, report)
    _add_track_boxes(root, xml_path, by_id, report)
    images = _select_split(list(by_id.values()), split, xml_path)
    if not images:
        raise no_images_error(xml_path, LAYOUT)
    names = _class_names(_meta_labels(root), list(by_id.values()))
    index_of = {name: index for index, name in enumerate(names)}
    folder = xml_path.parent
    roots = [folder / image_dir] if image_dir is not None else [folder / "images", folder]
    raw = [
        RawImage(
            _image_path(roots, image.name, f"{xml_path} (image id {image.id} '{image.name}')"),
            f"{xml_path} (image id {image.id} '{image.name}')",
            [box.box for box in image.boxes],
            [index_of[box.label] for box in image.boxes],
            [box.where for box in image.boxes],
            image.declared_size,
            image_id=image_id,
        )
        for image, image_id in zip(images, image_ids([image.name for image in images]), strict=True)
    ]
    require_images(raw, image_dir_hint(f"the XML's folder {folder}"))
    return assemble_dataset(raw, names, source=xml_path, format=NAME, layout=LAYOUT, report=report)


def _meta(dataset: DetectionDataset) -> ET.Element:
    meta = ET.Element("meta")
    task = ET.SubElement(meta, "task")
    ET.SubElement(task, "name").text = dataset.source.name if dataset.source else "yolox-sdk export"
    ET.SubElement(task, "size").text = str(len(dataset))
    ET.SubElement(task, "mode").text = "annotation"
    labels = ET.SubElement(task, "labels")
    for name in dataset.class_names:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "type").text = "rectangle"
        ET.SubElement(label, "attributes")
    return meta


def save_cvat(dataset: DetectionDataset, out_dir: Path, split: str | None = None) -> list[str]:
    """Write ``out_dir/annotations.xml`` (CVAT for images 1.1) and copy the images to ``out_dir/images/``;
    with ``split``, every image gets ``subset="<split>"``, which reading back with that split selects.

    The class list, its order included, is kept in ``<meta>``; coordinates are written exactly.
    """
    warnings = []
    if list(dataset.category_ids) != list(range(dataset.num_classes)):
        warnings.append(
            f"CVAT has no category ids, so the original ids {list(dataset.category_ids)} are not kept."
        )
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = CVAT_VERSION
    root.append(_meta(dataset))
    taken: set[str] = set()
    for number, record in enumerate(dataset.records):
        name = export_image(record.image_path, out_dir / "images", taken)
        attributes = {
            "id": str(number),
            "name": name,
            "width": str(record.width),
            "height": str(record.height),
            **({"subset": split} if split else {}),
        }
        image = ET.SubElement(root, "image", attributes)
        for box, label in zip(record.boxes.tolist(), record.labels.tolist(), strict=True):
            coordinates = dict(zip(("xtl", "ytl", "xbr", "ybr"), map(format_coordinate, box), strict=True))
            ET.SubElement(
                image,
                "box",
                {
                    "label": dataset.class_names[label],
                    "source": "manual",
                    "occluded": "0",
                    **coordinates,
                    "z_order": "0",
                },
            )
    ET.indent(root, space="  ")
    out_dir.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(out_dir / ANNOTATION_FILE, encoding="utf-8", xml_declaration=True)
    return warnings


class CvatFormat:
    """The ``DatasetFormat`` for CVAT for images 1.1 XML."""

    def __init__(self, options: CvatOptions | None = None) -> None:
        self.options = options or CvatOptions()

    def detect(self, path: Path) -> float:
        """``DETECT_SCHEMA`` for a CVAT XML file or a folder holding one: its head opens CVAT's own
        ``<annotations>`` root (VOC's is ``<annotation>``) with CVAT's first elements."""
        path = Path(path)
        if path.is_file():
            found = path.suffix.lower() == ".xml" and looks_like_cvat(path)
        elif not path.is_dir():
            found = False
        elif (path / ANNOTATION_FILE).is_file():
            found = looks_like_cvat(path / ANNOTATION_FILE)
        else:
            found = any(looks_like_cvat(p) for p in sorted(path.glob("*.xml"))[:3])
        return DETECT_SCHEMA if found else DETECT_NONE

    def load(self, path: Path, split: str | None = None) -> DetectionDataset:
        """Read the CVAT XML that ``path`` designates; ``split`` selects a ``subset``; see ``load_cvat``."""
        return load_cvat(find_cvat_file(Path(path)), split, self.options.image_dir)

    def save(self, dataset: DetectionDataset, out_dir: Path, split: str | None = None) -> list[str]:
        """Write ``dataset`` as CVAT for images 1.1, as subset ``split`` when given; see ``save_cvat``."""
        return save_cvat(dataset, Path(out_dir), split)


@hookimpl
def register_dataset_formats(register: Register) -> None:
    """Register the ``cvat`` format."""
    register(
        NAME,
        CvatFormat,
        options=CvatOptions,
        description="CVAT for images 1.1 XML: annotations.xml (<meta> labels, <image> with <box>/<polygon>, "
        "<track>) with the images in images/",
    )
