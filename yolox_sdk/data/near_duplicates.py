"""Finding images that are the same picture: byte-identical files and near-duplicates (resized, re-encoded
copies, consecutive video frames), so that ``data split`` keeps them in one split and ``data validate``
can report them across existing splits.

Two hashes per image, from one read of the file:

* the *content hash*: SHA-1 of the file's bytes (what ``data validate`` reports duplicate images by);
* a *difference hash* (dHash) of 128 bits: the image is shrunk to a 9x8 and an 8x9 grayscale thumbnail and
  each bit says whether a pixel is brighter than its right (first 64 bits) or lower (last 64 bits)
  neighbour. Resizing, JPEG re-encoding and small brightness changes keep almost every bit; two different
  pictures differ in about half of them. Two images are near-duplicates when their dHashes differ in at
  most ``NEAR_DUPLICATE_DISTANCE`` bits (Hamming distance).

The thumbnail is what makes this fast: JPEGs are decoded at 1/8 scale by the decoder itself (PIL's
``draft``), so hashing costs about as much as reading the file. Pairs are found by comparing every hash
with every other in blocks (``numpy.bitwise_count``): 0.8 s for 10,000 images on 2 cores, growing with the square of the count.
``duplicate_groups`` merges the matching pairs into groups with union-find: a group is every image
connected by a chain of matches.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import numpy as np
from PIL import Image

HASH_SIDE = 8
NEAR_DUPLICATE_DISTANCE = 12
"""Default largest Hamming distance (of 128 bits) between near-duplicates. Measured on BCCD (docs/guides/data.md,
"Checking and preparing data"): 0.5x resized and JPEG-60 copies differ in at most 6 bits, the closest two
unrelated images in 28."""
BLOCK_ROWS = 512


def content_hash(data: bytes) -> str:
    """The hex SHA-1 of an image file's bytes: equal for byte-identical files only."""
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


@attrs.frozen
class ImageHashes:
    """The two hashes of one image file.

    Attributes:
        path: the image file.
        content: hex SHA-1 of the bytes ("" when the file cannot be read).
        difference: the 128-bit dHash as two ``uint64`` words, or ``None`` when the image cannot be decoded.
    """

    path: Path
    content: str = ""
    difference: tuple[int, int] | None = None


def _bits_to_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(np.uint8).reshape(-1)).tobytes(), "big")


def difference_hash(image: Image.Image) -> tuple[int, int]:
    """The 128-bit dHash of ``image`` (see the module docstring) as two 64-bit words (rows, columns)."""
    gray = image.convert("L")
    wide = np.asarray(gray.resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.BOX), dtype=np.int16)
    tall = np.asarray(gray.resize((HASH_SIDE, HASH_SIDE + 1), Image.Resampling.BOX), dtype=np.int16)
    return _bits_to_int(wide[:, 1:] > wide[:, :-1]), _bits_to_int(tall[1:, :] > tall[:-1, :])


def hash_image(path: Path) -> ImageHashes:
    """Both hashes of the image at ``path``; an unreadable or undecodable file gets empty hashes (never
    raises: validation reports why the image is bad)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        return ImageHashes(path)
    digest = content_hash(data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (4 * HASH_SIDE, 4 * HASH_SIDE))
            return ImageHashes(path, digest, difference_hash(image))
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return ImageHashes(path, digest)


def hash_images(paths: Sequence[Path], workers: int | None = None) -> list[ImageHashes]:
    """``hash_image`` of every path, in order, on a thread pool (decoding releases the GIL)."""
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    if workers <= 1 or len(paths) < 4:
        return [hash_image(path) for path in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(hash_image, paths))


def hamming_distance(first: tuple[int, int], second: tuple[int, int]) -> int:
    """How many of the 128 bits of two dHashes differ."""
    return sum(bin(a ^ b).count("1") for a, b in zip(first, second, strict=True))


def near_duplicate_pairs(hashes: Sequence[ImageHashes], max_distance: int) -> list[tuple[int, int, int]]:
    """``(i, j, distance)`` for every ``i < j`` whose images are byte-identical (distance 0) or, when
    ``max_distance > 0``, whose dHashes differ in at most ``max_distance`` bits."""
    pairs = {}
    first_with: dict[str, int] = {}
    for index, item in enumerate(hashes):
        if item.content:
            first = first_with.setdefault(item.content, index)
            if first != index:
                pairs[(first, index)] = 0
    if max_distance > 0:
        for i, j, distance in _close_difference_hashes(hashes, max_distance):
            pairs.setdefault((i, j), distance)
    return sorted((i, j, distance) for (i, j), distance in pairs.items())


def _close_difference_hashes(hashes: Sequence[ImageHashes], max_distance: int) -> list[tuple[int, int, int]]:
    indices = [index for index, item in enumerate(hashes) if item.difference is not None]
    if len(indices) < 2:
        return []
    words = np.array([hashes[i].difference for i in indices], dtype=np.uint64)
    found = []
    for start in range(0, len(words), BLOCK_ROWS):
        block, rest = words[start : start + BLOCK_ROWS], words[start:]  # each pair once: j >= i
        distances = np.bitwise_count(block[:, None, 0] ^ rest[None, :, 0])  # uint8: at most 128
        distances += np.bitwise_count(block[:, None, 1] ^ rest[None, :, 1])
        rows, columns = np.nonzero(distances <= max_distance)
        for row, column in zip(rows.tolist(), columns.tolist(), strict=True):
            if row < column:
                found.append((indices[start + row], indices[start + column], int(distances[row, column])))
    return found


def duplicate_groups(count: int, pairs: Sequence[tuple[int, int, int]]) -> list[tuple[int, ...]]:
    """The groups of more than one index among ``range(count)`` joined by ``pairs`` (union-find), each
    sorted, ordered by their first index."""
    parent = list(range(count))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for i, j, _ in pairs:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for index in range(count):
        members.setdefault(root(index), []).append(index)
    return sorted((tuple(group) for group in members.values() if len(group) > 1), key=lambda g: g[0])
