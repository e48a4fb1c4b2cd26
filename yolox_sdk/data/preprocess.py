"""The one place that knows YOLOX's input preprocessing.

YOLOX weights were trained on letterboxed BGR images: resized keeping the aspect ratio so the image fits
the input, placed at the top-left corner, the rest filled with 114, values 0..255 as float, no mean/std
normalisation, channels first. Evaluation, prediction, export checks and the last step of training
augmentation all go through ``letterbox`` so pretrained weights see exactly what they were trained on.

``letterbox``, ``read_image`` and ``PAD_VALUE`` are public and stable: an exporter or runtime plugin
preprocesses its sample images with them (``letterbox(read_image(path), input_size)``) rather than
re-implementing the recipe, and maps boxes back by dividing by the returned ratio. Importing this module
does not import torch; only ``images_to_batch`` needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from yolox_sdk.errors import DatasetError

if TYPE_CHECKING:
    import torch

PAD_VALUE = 114


def letterbox(
    image: np.ndarray, input_size: tuple[int, int], dtype: type = np.float32
) -> tuple[np.ndarray, float]:
    """Resize ``image`` (HxWx3 uint8 BGR) into ``input_size`` (h, w) keeping aspect, pad with 114.

    Returns:
        The CHW array (float32, or ``dtype``: training keeps uint8, a quarter of the bytes to batch and
        copy to the device) and the scale factor applied to the image (divide predicted boxes by it to
        get original image coordinates).
    """
    height, width = input_size
    ratio = min(height / image.shape[0], width / image.shape[1])
    resized_h, resized_w = int(image.shape[0] * ratio), int(image.shape[1] * ratio)
    canvas = np.full((height, width, 3), PAD_VALUE, dtype=np.uint8)
    resized = cv2.resize(image, (resized_w, resized_h), interpolation=cv2.INTER_LINEAR)
    canvas[:resized_h, :resized_w] = resized
    return np.ascontiguousarray(canvas.transpose(2, 0, 1), dtype=dtype), ratio


def read_image(path: Path) -> np.ndarray:
    """Read an image as HxWx3 uint8 BGR, or raise ``DatasetError`` naming the file.

    Grayscale and 16-bit images are converted; an unreadable or truncated file is an error.
    """
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        raise DatasetError(f"Image {path} does not exist. Check the dataset path or remove its annotation.")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DatasetError(f"Image {path} cannot be decoded (corrupt, truncated or not an image).")
    return image


def images_to_batch(
    images: list[np.ndarray], input_size: tuple[int, int]
) -> tuple[torch.Tensor, list[float]]:
    """Letterbox a list of BGR images into one ``(N, 3, h, w)`` float tensor plus their scale factors."""
    import torch

    arrays, ratios = zip(*(letterbox(image, input_size) for image in images), strict=True)
    return torch.from_numpy(np.stack(arrays)), list(ratios)
