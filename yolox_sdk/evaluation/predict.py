"""Running a trained model on images: the Python side of ``yolox-sdk predict``.

``Predictor`` turns images (paths or BGR arrays) into detections in the images' own pixel coordinates;
``predict_to_folder`` does that for a file or a folder and writes annotated copies plus one JSON file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import cv2
import numpy as np
import torch

from yolox_sdk.checkpoints.format import load_checkpoint
from yolox_sdk.data.preprocess import images_to_batch, read_image
from yolox_sdk.errors import ConfigError, DatasetError
from yolox_sdk.evaluation.draw import draw_detections
from yolox_sdk.evaluation.postprocess import decoding_eval_mode, postprocess
from yolox_sdk.models import ModelSpec, model_from_checkpoint

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

ImageInput = str | Path | np.ndarray

# ``predict``'s confidence threshold when none is given, and what ``--conf auto`` falls back to when the
# checkpoint carries no recommended threshold.
DEFAULT_CONF = 0.3
AUTO_CONF = "auto"

log = logging.getLogger(__name__)


@attrs.frozen
class Detection:
    """One detected object.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in pixels of the original image, clipped to it.
        score: objectness x class probability, in ``[0, 1]``.
        class_id: index into the model's class names.
        class_name: the class's name.
    """

    box: tuple[float, float, float, float]
    score: float
    class_id: int
    class_name: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (box rounded to 0.01 px, score to 1e-5)."""
        return {
            "box": [round(value, 2) for value in self.box],
            "score": round(self.score, 5),
            "class_id": self.class_id,
            "class_name": self.class_name,
        }


def _as_bgr(image: ImageInput) -> np.ndarray:
    if isinstance(image, str | Path):
        return read_image(Path(image))
    array = np.asarray(image)
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    if array.ndim == 3 and array.shape[2] == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2BGR)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"Expected an HxWx3 BGR image array, got shape {array.shape}.")
    return array


class Predictor:
    """A model ready for inference, with the class names and input size it was trained with.

    The model is used in eval mode with box decoding on during each call and restored afterwards, so a
    model still being trained can be wrapped too. ``from_file`` wraps any model file a runtime plugin
    reads (an exported ``.onnx`` too); ``spec`` is then ``None`` and ``input_size`` comes from the file.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        spec: ModelSpec | None,
        class_names: Sequence[str],
        device: torch.device | str = "cpu",
        recommended_conf: float | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        if spec is not None and len(class_names) != spec.num_classes:
            raise ConfigError(
                f"The model has {spec.num_classes} classes but {len(class_names)} class names were given."
            )
        if spec is None and input_size is None:
            raise ConfigError("A Predictor without a model spec needs input_size=(height, width).")
        self.model = model.to(device)
        self.spec = spec
        self.class_names = tuple(class_names)
        self.device = torch.device(device)
        self.recommended_conf = recommended_conf
        self._input_size = tuple(input_size) if input_size is not None else spec.input_size  # type: ignore[union-attr]

    @classmethod
    def from_checkpoint(
        cls, path: Path | str, device: torch.device | str = "cpu", use_ema: bool = True
    ) -> Predictor:
        """Load one of our checkpoints (EMA weights by default, as evaluated during training)."""
        checkpoint = load_checkpoint(path)
        model = model_from_checkpoint(checkpoint, use_ema=use_ema)
        return cls(model, checkpoint.spec, checkpoint.class_names, device, checkpoint.recommended_conf)

    @classmethod
    def from_file(cls, path: Path | str, device: torch.device | str = "cpu") -> Predictor:
        """Load any model file an installed runtime reads: a ``.pt`` checkpoint, an exported ``.onnx``,
        ... (``yolox_sdk.runtimes.load_model``); class names, input size and the recommended threshold
        come from the file itself."""
        from yolox_sdk.runtimes import as_torch_module, load_model

        loaded = load_model(path, str(device))
        spec = getattr(getattr(loaded, "checkpoint", None), "spec", None)
        return cls(
            as_torch_module(loaded),
            spec,
            loaded.class_names,
            device,
            loaded.recommended_conf,
            input_size=loaded.input_size,
        )

    def resolve_conf(self, conf: float | str) -> tuple[float, str | None]:
        """The confidence threshold ``conf`` stands for, and a note when ``auto`` had to fall back.

        ``auto`` is the recommended threshold the checkpoint carries (max F1 where ``yolox-sdk run``
        evaluated it), else ``DEFAULT_CONF``; a number is itself.
        """
        if conf != AUTO_CONF:
            return float(conf), None
        if self.recommended_conf is not None:
            return self.recommended_conf, None
        return DEFAULT_CONF, (
            f"The checkpoint carries no recommended confidence threshold (it was not written by `yolox-sdk run`, "
            f"or by an older SDK); --conf auto uses {DEFAULT_CONF}. Run `yolox-sdk eval CHECKPOINT --data ...` "
            "to measure one, then pass it as --conf."
        )

    @property
    def input_size(self) -> tuple[int, int]:
        """The network input ``(height, width)`` images are letterboxed to."""
        return self._input_size  # type: ignore[return-value]

    @torch.inference_mode()
    def predict(
        self,
        images: Sequence[ImageInput],
        conf: float = 0.3,
        nms: float = 0.45,
        class_agnostic: bool = False,
        batch_size: int = 8,
    ) -> list[list[Detection]]:
        """Detect objects in each image.

        Args:
            images: file paths or HxWx3 uint8 BGR arrays (as ``cv2.imread`` returns).
            conf: minimum score kept.
            nms: IoU threshold of non-maximum suppression.
            class_agnostic: suppress overlapping boxes of different classes too.
            batch_size: images per forward pass.

        Returns:
            Per image, its detections sorted by decreasing score.
        """
        results: list[list[Detection]] = []
        with decoding_eval_mode(self.model):
            for start in range(0, len(images), batch_size):
                arrays = [_as_bgr(image) for image in images[start : start + batch_size]]
                batch, ratios = images_to_batch(arrays, self.input_size)
                outputs = self.model(batch.to(self.device))
                found = postprocess(outputs, conf, nms, class_agnostic)
                for array, ratio, detections in zip(arrays, ratios, found, strict=True):
                    original = detections.to_original(ratio, array.shape[1], array.shape[0])
                    results.append(self._as_detections(original.boxes, original.scores, original.labels))
        return results

    def _as_detections(
        self, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor
    ) -> list[Detection]:
        return [
            Detection(tuple(box), score, label, self.class_names[label])
            for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True)
        ]


def list_images(source: Path | str) -> list[Path]:
    """The image itself, or the images directly inside a folder (sorted by name).

    Raises:
        DatasetError: when ``source`` does not exist, is not an image, or a folder holds no images.
    """
    source = Path(source)
    if source.is_file():
        if source.suffix.lower() not in IMAGE_SUFFIXES:
            raise DatasetError(
                f"{source} is not an image file (expected one of {', '.join(sorted(IMAGE_SUFFIXES))})."
            )
        return [source]
    if source.is_dir():
        found = sorted(path for path in source.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DatasetError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) directly inside {source}.")
        return found
    raise DatasetError(f"{source} does not exist: give an image file or a folder of images.")


def predict_to_folder(
    predictor: Predictor,
    source: Path | str,
    out_dir: Path | str,
    conf: float = 0.3,
    nms: float = 0.45,
    class_agnostic: bool = False,
    batch_size: int = 8,
) -> Path:
    """Predict on an image or a folder; write annotated images and ``detections.json`` into ``out_dir``.

    Annotated images keep their file names. Images are read batch by batch, so a large folder never sits
    in memory at once. An image that cannot be read or decoded (corrupt, 0 bytes, not an image) is skipped
    with a warning and listed under ``skipped`` in the JSON, so one bad file never costs the results of the
    others; ``read_skipped`` gives the list back.

    Returns:
        The path of ``detections.json``.

    Raises:
        DatasetError: when no image at all could be read.
    """
    paths = list_images(source)
    out_dir = Path(out_dir)
    if out_dir.resolve() == paths[0].parent.resolve():
        raise ConfigError(
            f"The output folder {out_dir} is the folder of the input images; annotated copies would overwrite "
            "them. Choose another output folder."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for start in range(0, len(paths), batch_size):
        readable = _read_or_skip(paths[start : start + batch_size], skipped)
        found = predictor.predict([array for _, array in readable], conf, nms, class_agnostic, batch_size)
        for (path, array), detections in zip(readable, found, strict=True):
            _write_image(out_dir / path.name, draw_detections(array, detections))
            entries.append(
                {
                    "file": path.name,
                    "path": str(path.resolve()),
                    "width": int(array.shape[1]),
                    "height": int(array.shape[0]),
                    "detections": [detection.to_dict() for detection in detections],
                }
            )
    if not entries:
        raise DatasetError(
            f"None of the {len(paths)} images in {source} could be read: {skipped[0]['error']} Check that they "
            "are image files (JPEG, PNG, ...)."
        )
    report = {
        "source": str(Path(source).resolve()),
        "settings": {
            "conf": conf,
            "nms": nms,
            "class_agnostic": class_agnostic,
            "input_size": list(predictor.input_size),
        },
        "class_names": list(predictor.class_names),
        "images": entries,
        "skipped": skipped,
    }
    json_path = out_dir / "detections.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return json_path


def read_skipped(json_path: Path) -> list[dict[str, str]]:
    """The images ``predict_to_folder`` could not read (``file``, ``path``, ``error``), from its JSON."""
    return list(json.loads(Path(json_path).read_text(encoding="utf-8")).get("skipped", []))


def _read_or_skip(paths: Sequence[Path], skipped: list[dict[str, str]]) -> list[tuple[Path, np.ndarray]]:
    """The images of ``paths`` that decode; each one that does not is logged and added to ``skipped``."""
    readable = []
    for path in paths:
        try:
            readable.append((path, read_image(path)))
        except (DatasetError, OSError, cv2.error) as error:
            reason = (
                str(error) if isinstance(error, DatasetError) else f"Image {path} cannot be read ({error})."
            )
            log.warning("Skipping %s: %s", path.name, reason)
            skipped.append({"file": path.name, "path": str(path.resolve()), "error": reason})
    return readable


def _write_image(path: Path, image: np.ndarray) -> None:
    # imencode + tofile rather than imwrite: imwrite fails silently on non-ASCII paths on Windows.
    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise DatasetError(f"OpenCV cannot write an image as {path.suffix}: {path}.")
    encoded.tofile(str(path))
