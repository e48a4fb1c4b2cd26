"""YOLOX's box decoding in numpy, for files exported with ``decode_in_graph: false``.

The raw head output holds, per anchor, offsets ``dx, dy`` from its grid cell, ``log w, log h`` in units
of the stride, then the objectness and class probabilities (sigmoids already applied). Anchors come
stride by stride (8, 16, 32), each grid row by row, as ``yolox.models.YOLOXHead.decode_outputs`` lays
them out; decoding is ``(offset + cell) * stride`` and ``exp(log size) * stride``.
"""

from __future__ import annotations

import numpy as np

STRIDES = (8, 16, 32)


def anchor_grid(
    input_size: tuple[int, int], strides: tuple[int, ...] = STRIDES
) -> tuple[np.ndarray, np.ndarray]:
    """Each anchor's grid cell ``(x, y)`` and stride, in the head's output order, for ``(height, width)``."""
    cells, anchor_strides = [], []
    height, width = input_size
    for stride in strides:
        rows, columns = height // stride, width // stride
        y, x = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
        cells.append(np.stack([x.reshape(-1), y.reshape(-1)], axis=1))
        anchor_strides.append(np.full((rows * columns, 1), stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(anchor_strides).astype(np.float32)


def decode_raw_output(raw: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Decoded ``[cx, cy, w, h, objectness, classes...]`` rows in input pixels from raw head rows.

    Raises:
        ValueError: the number of anchors is not the one ``input_size`` gives at strides 8, 16 and 32.
    """
    cells, strides = anchor_grid(input_size)
    if raw.ndim != 3 or raw.shape[1] != len(cells):
        raise ValueError(
            f"Raw YOLOX output of shape {raw.shape} does not fit input {input_size}: expected "
            f"(batch, {len(cells)}, 5 + classes)."
        )
    decoded = raw.astype(np.float32, copy=True)
    decoded[..., :2] = (decoded[..., :2] + cells) * strides
    decoded[..., 2:4] = np.exp(decoded[..., 2:4]) * strides
    return decoded
