"""Where training images come from: decoded on every access, or decoded once and kept in RAM or on disk.

Every source hands out the image already resized (keeping aspect) to just fit the network input, as
YOLOX's ``load_resized_img`` does: mosaic tiles and the final letterbox then work on small images, and a
cache holds ``input_size`` pixels per image rather than full-resolution ones. Because the three modes
share the same decode-and-resize function, they give identical pixels.

The RAM and disk caches use one fixed slot of ``input_h x input_w x 3`` bytes per image (resized images
always fit it) plus an index of real and original sizes. The disk cache is a NumPy ``.npy`` memmap under
``<cache_dir>/<hash of the file list and input size>/``; it is reused by later runs while a fingerprint
of every file's path, size and modification time matches, and rebuilt when any source changes. Images
that fail to decode while a cache is built are marked unreadable (and skipped by the training dataset)
rather than stopping the build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolox_sdk.data.preprocess import read_image
from yolox_sdk.data.records import ImageRecord
from yolox_sdk.errors import DatasetError, DataUnavailableError
from yolox_sdk.files import write_text_atomically

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
_UNREADABLE = 0  # index height of an image that failed to decode


def fit_ratio(height: int, width: int, input_size: tuple[int, int]) -> float:
    """The scale that makes a ``height x width`` image just fit ``input_size`` (YOLOX's ``r``)."""
    return min(input_size[0] / height, input_size[1] / width)


def load_resized_image(path: Path, input_size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``path`` and resize it to fit ``input_size``; also return the original ``(height, width)``.

    Raises:
        DatasetError: the file is missing or cannot be decoded.
    """
    image = read_image(path)
    height, width = image.shape[:2]
    ratio = fit_ratio(height, width, input_size)
    size = (int(width * ratio), int(height * ratio))
    if size != (width, height):
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return image, (height, width)


class ImageSource:
    """Resized images by dataset index; subclasses decide whether they are cached."""

    def __init__(self, records: Sequence[ImageRecord], input_size: tuple[int, int]) -> None:
        self.paths = [record.image_path for record in records]
        self.input_size = input_size

    def get(self, index: int) -> tuple[np.ndarray, float]:
        """The resized BGR image at ``index`` and the ratio applied to it (multiply boxes by it).

        Raises:
            DatasetError: the image cannot be read.
        """
        image, (height, width) = load_resized_image(self.paths[index], self.input_size)
        return image, fit_ratio(height, width, self.input_size)


class ArrayImageSource(ImageSource):
    """Images held in an ``(N, H, W, 3)`` uint8 array with an ``(N, 4)`` index ``[h, w, h0, w0]``."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        input_size: tuple[int, int],
        images: np.ndarray | None = None,
        index: np.ndarray | None = None,
    ) -> None:
        super().__init__(records, input_size)
        self._images = images
        self.index = index if index is not None else np.zeros((len(records), 4), np.int64)

    def images(self) -> np.ndarray:
        """The image array (subclasses may open it lazily)."""
        assert self._images is not None
        return self._images

    def get(self, index: int) -> tuple[np.ndarray, float]:
        height, width, orig_h, orig_w = (int(v) for v in self.index[index])
        if height == _UNREADABLE:
            raise DatasetError(
                f"Image {self.paths[index]} could not be decoded when the image cache was built."
            )
        image = np.array(self.images()[index, :height, :width])  # a copy: the cache must stay pristine
        return image, fit_ratio(orig_h, orig_w, self.input_size)

    @property
    def unreadable(self) -> list[Path]:
        """Images that failed to decode while the cache was built."""
        return [self.paths[i] for i in np.flatnonzero(self.index[:, 0] == _UNREADABLE)]


class DiskImageSource(ArrayImageSource):
    """An ``ArrayImageSource`` whose array is a read-only memmap, opened lazily in each process.

    Pickling (for spawned data-loader workers) drops the open memmap instead of copying its contents.
    """

    def __init__(
        self, records: Sequence[ImageRecord], input_size: tuple[int, int], folder: Path, reused: bool
    ) -> None:
        super().__init__(records, input_size, None, np.load(folder / "index.npy"))
        self.folder = folder
        self.reused = reused

    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.folder / "images.npy", mmap_mode="r")
        return self._images

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_images"] = None
        return state


RAM_CACHE_SHARE = 0.25  # of the memory available now: the model, the loader and the rest keep the other 3/4


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (Linux), else ``None``."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def resolve_cache_mode(
    cache_mode: str, image_count: int, input_size: tuple[int, int], available: int | None, processes: int = 1
) -> str:
    """``data.cache_mode`` with ``auto`` decided: ``ram`` when ``processes`` copies of the cache (one per
    training process on this machine) fit in ``RAM_CACHE_SHARE`` of ``available`` bytes, else ``none``.

    Decoding once saves the JPEG decode and resize of every image in every epoch: on the 2-core CPU
    that was 10 % of a yolox-nano epoch on BCCD (``cache_mode: ram`` 17.4 vs 15.8 img/s over 4 epochs),
    paid for by a second or two of decoding at start (threads, OpenCV releases the GIL). When the memory
    is unknown, ``none``: a cache that does not fit would end the run.
    """
    if cache_mode != "auto":
        return cache_mode
    needed = image_count * input_size[0] * input_size[1] * 3 * max(processes, 1)
    fits = available is not None and needed <= RAM_CACHE_SHARE * available
    log.info(
        "data.cache_mode auto: %s (%d decoded images of %dx%d, %.2f GB%s, %s GB available); set "
        "data.cache_mode to none, ram or disk to choose.",
        "decoded images are kept in RAM" if fits else "images are decoded on every access",
        image_count,
        *input_size,
        needed / 1e9,
        f" for {processes} processes" if processes > 1 else "",
        f"{available / 1e9:.1f}" if available is not None else "unknown",
    )
    return "ram" if fits else "none"


def build_image_source(
    records: Sequence[ImageRecord],
    input_size: tuple[int, int],
    cache_mode: str = "none",
    cache_dir: Path | None = None,
) -> ImageSource:
    """The image source for ``cache_mode`` (``none``, ``ram`` or ``disk``).

    ``ram`` and ``disk`` decode every image now (in threads; OpenCV releases the GIL). ``disk`` reuses a
    matching cache under ``cache_dir`` (default ``$YOLOX_SDK_HOME/image_cache``) when there is one.

    Raises:
        DatasetError: an unknown mode, no image could be decoded, or the disk has no room for the cache.
    """
    input_size = (int(input_size[0]), int(input_size[1]))
    if cache_mode == "none":
        return ImageSource(records, input_size)
    if cache_mode == "ram":
        images = np.empty((len(records), *input_size, 3), dtype=np.uint8)
        log.info("Caching %d images in RAM (%.1f GB)", len(records), images.nbytes / 1e9)
        source = ArrayImageSource(records, input_size, images, _decode_all(records, input_size, images))
    elif cache_mode == "disk":
        source = _disk_source(records, input_size, Path(cache_dir) if cache_dir else _default_cache_dir())
    else:
        raise DatasetError(f"Unknown cache mode '{cache_mode}'; use one of: none, ram, disk.")
    _check_readable(source)
    return source


def _default_cache_dir() -> Path:
    from yolox_sdk.assets.catalog import cache_home

    return cache_home() / "image_cache"


def _decode_all(records: Sequence[ImageRecord], input_size: tuple[int, int], out: np.ndarray) -> np.ndarray:
    """Decode every image into ``out`` (``(N, H, W, 3)``) and return the ``[h, w, h0, w0]`` index."""
    index = np.zeros((len(records), 4), np.int64)
    start = time.perf_counter()

    def decode(position: int) -> None:
        try:
            image, (orig_h, orig_w) = load_resized_image(records[position].image_path, input_size)
        except DatasetError as error:
            log.warning("%s It will be skipped during training.", error)
            return
        height, width = image.shape[:2]
        out[position, :height, :width] = image
        index[position] = (height, width, orig_h, orig_w)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(decode, range(len(records))))
    log.info("Decoded %d images in %.1f s", len(records), time.perf_counter() - start)
    return index


def _check_readable(source: ArrayImageSource) -> None:
    unreadable = source.unreadable
    if unreadable and len(unreadable) == len(source.paths):
        raise DatasetError(
            f"None of the {len(source.paths)} training images could be decoded (e.g. {unreadable[0]})."
        )
    if unreadable:
        log.warning(
            "%d of %d training images are unreadable and will be skipped", len(unreadable), len(source.paths)
        )


def cache_fingerprints(records: Sequence[ImageRecord], input_size: tuple[int, int]) -> tuple[str, str]:
    """``(name, stats)``: a hash of the file list and input size (the cache folder's name) and a hash of
    every file's size and modification time (whether that folder's contents are still valid)."""
    head = json.dumps({"version": CACHE_FORMAT_VERSION, "input_size": list(input_size)})
    name = hashlib.sha256(head.encode())
    stats = hashlib.sha256(head.encode())
    for record in records:
        path = str(record.image_path)
        name.update(path.encode() + b"\0")
        try:
            status = os.stat(path)
            stamp = f"{path}\0{status.st_mtime_ns}\0{status.st_size}\n"
        except OSError:
            stamp = f"{path}\0missing\n"
        stats.update(stamp.encode())
    return name.hexdigest()[:20], stats.hexdigest()


def _disk_source(
    records: Sequence[ImageRecord], input_size: tuple[int, int], cache_dir: Path
) -> DiskImageSource:
    name, stats = cache_fingerprints(records, input_size)
    folder = cache_dir / name
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("stats") == stats and meta.get("count") == len(records):
            log.info("Reusing the disk image cache %s", folder)
            return DiskImageSource(records, input_size, folder, reused=True)
        log.info("Training images changed since the disk cache %s was built; rebuilding it", folder)
    _write_disk_cache(records, input_size, folder, stats)
    return DiskImageSource(records, input_size, folder, reused=False)


def _write_disk_cache(
    records: Sequence[ImageRecord], input_size: tuple[int, int], folder: Path, stats: str
) -> None:
    """Decode every image into ``folder``; ``meta.json`` is written last so a half-built cache is never used."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)
    needed = len(records) * input_size[0] * input_size[1] * 3
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DataUnavailableError(
            f"The disk image cache needs {needed / 1e9:.1f} GB in {folder} but only {free / 1e9:.1f} GB are "
            "free. Free some space, point the cache elsewhere, or use data.cache_mode: none."
        )
    log.info("Caching %d images on disk in %s (%.1f GB)", len(records), folder, needed / 1e9)
    partial = folder / "images.partial.npy"
    images = np.lib.format.open_memmap(
        partial, mode="w+", dtype=np.uint8, shape=(len(records), *input_size, 3)
    )
    index = _decode_all(records, input_size, images)
    images.flush()
    del images
    os.replace(partial, folder / "images.npy")
    np.save(folder / "index.npy", index)
    meta = {
        "version": CACHE_FORMAT_VERSION,
        "stats": stats,
        "count": len(records),
        "input_size": list(input_size),
    }
    write_text_atomically(folder / "meta.json", json.dumps(meta))
