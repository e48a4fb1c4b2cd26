"""Cheap checks of image files at dataset load time: size from the header, truncation from the tail.

Decoding every image when a dataset is loaded would take minutes on a large dataset, so readers only
open the header (Pillow reads a few hundred bytes) and look at the last bytes of the file: a JPEG cut
short by an interrupted copy or download has a valid header but no end-of-image marker (``FF D9``), and
a PNG cut short has no ``IEND`` chunk. That catches the common corruption without paying for a decode;
an image that passes here and still fails to decode is reported by ``read_image`` during training.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".pbm", ".pgm", ".ppm"}
)
TAIL_BYTES = 1024
JPEG_END_MARKER = b"\xff\xd9"
JPEG_KINDS = frozenset({"JPEG", "MPO"})  # Pillow calls many phone photos MPO: JPEGs with extra frames
PNG_END_CHUNK = b"IEND"


@attrs.frozen
class ImageProbe:
    """What the header and tail of one image file say.

    Attributes:
        path: the file probed.
        width: width in pixels as stored (0 when unreadable).
        height: height in pixels as stored (0 when unreadable).
        problem: why the image cannot be used, or ``None`` when it looks fine.
    """

    path: Path
    width: int = 0
    height: int = 0
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """True when the image looks complete and its size is known."""
        return self.problem is None


def _tail(path: Path) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - TAIL_BYTES))
        return handle.read()


def probe_image(path: Path) -> ImageProbe:
    """Read ``path``'s size from its header and check that the file is not truncated.

    Padding after a JPEG's end marker (some cameras write it) is tolerated: the marker only has to be in
    the last ``TAIL_BYTES`` bytes.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            kind = image.format
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        return ImageProbe(path, problem=f"not a readable image ({error})")
    if width <= 0 or height <= 0:
        return ImageProbe(path, problem=f"header says the image is {width}x{height} pixels")
    try:
        tail = _tail(path)
    except OSError as error:
        return ImageProbe(path, problem=f"cannot be read ({error})")
    if kind in JPEG_KINDS and JPEG_END_MARKER not in tail:
        return ImageProbe(path, width, height, "truncated JPEG: no end-of-image marker (FF D9)")
    if kind == "PNG" and PNG_END_CHUNK not in tail:
        return ImageProbe(path, width, height, "truncated PNG: no IEND chunk")
    return ImageProbe(path, width, height)


def probe_images(paths: Iterable[Path], workers: int = 8) -> list[ImageProbe]:
    """``probe_image`` for many files, in order; threads hide file-system latency on network disks.

    A path listed several times (a COCO file naming one image under several ids, frames shared between
    records) is probed once and its probe repeated: on a 100,000-record COCO file sharing 8 images,
    probing every entry took 37 of the reader's 79 s (``benchmarks/scale_index.py``).
    """
    paths = [Path(path) for path in paths]
    unique = list(dict.fromkeys(paths))
    if len(unique) < 2 * workers:
        probes = [probe_image(path) for path in unique]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            probes = list(pool.map(probe_image, unique))
    by_path = dict(zip(unique, probes, strict=True))
    return [by_path[path] for path in paths]


def list_images(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (recursively), sorted, matched by suffix case-insensitively."""
    return sorted(
        path for path in Path(folder).rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )
