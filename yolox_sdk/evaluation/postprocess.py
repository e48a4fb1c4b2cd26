"""From the YOLOX head's decoded output to boxes, scores and class ids per image.

The head (eval mode, ``decode_in_inference=True``) returns ``(B, A, 5 + C)`` rows of
``[cx, cy, w, h, objectness, class probabilities...]`` in input pixels, with sigmoids already applied.
A box's score is YOLOX's: objectness times its best class probability. Non-maximum suppression comes from
torchvision, per class by default (a box only suppresses boxes of its own class).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import attrs
import torch
import torchvision


@attrs.frozen(eq=False)
class ImageDetections:
    """The detections kept for one image, best score first.

    Attributes:
        boxes: ``(N, 4)`` float ``x1, y1, x2, y2`` in the coordinates of the network input.
        scores: ``(N,)`` objectness x class probability.
        labels: ``(N,)`` int64 class indices.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to_original(self, ratio: float, width: int, height: int) -> ImageDetections:
        """On CPU, boxes mapped from the letterboxed input back to the original image and clipped to it.

        ``ratio`` is the letterbox scale factor; the image sits at the top-left of the input, so dividing
        by it is the whole inverse transform.
        """
        boxes = self.boxes.detach().float().cpu() / ratio
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        return ImageDetections(boxes, self.scores.detach().cpu(), self.labels.detach().cpu())


def empty_detections(device: torch.device | str = "cpu") -> ImageDetections:
    """Detections of an image where nothing passed the thresholds."""
    return ImageDetections(
        torch.zeros((0, 4), device=device),
        torch.zeros((0,), device=device),
        torch.zeros((0,), dtype=torch.int64, device=device),
    )


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """Centre/size boxes (YOLOX's output) to corner boxes (the SDK's format)."""
    centre, size = boxes[..., :2], boxes[..., 2:4]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def postprocess(
    outputs: torch.Tensor,
    conf_threshold: float = 0.01,
    nms_threshold: float = 0.65,
    class_agnostic: bool = False,
) -> list[ImageDetections]:
    """Threshold and suppress the decoded head output of a batch.

    Args:
        outputs: ``(B, A, 5 + C)`` decoded head output.
        conf_threshold: keep boxes whose score (objectness x class probability) is at least this.
        nms_threshold: IoU above which a lower-scored box is suppressed.
        class_agnostic: suppress across classes too (one box per object whatever its class).

    Returns:
        One ``ImageDetections`` per image, sorted by decreasing score; empty where nothing passed.
    """
    if outputs.dim() != 3 or outputs.shape[-1] < 6:
        raise ValueError(
            f"Expected the decoded YOLOX output of shape (batch, anchors, 5 + classes), got {tuple(outputs.shape)}."
        )
    results = []
    for prediction in outputs:
        class_probability, labels = prediction[:, 5:].max(dim=1)
        scores = prediction[:, 4] * class_probability
        keep = scores >= conf_threshold
        if not bool(keep.any()):
            results.append(empty_detections(outputs.device))
            continue
        boxes = cxcywh_to_xyxy(prediction[keep, :4].float())
        scores, labels = scores[keep].float(), labels[keep]
        if class_agnostic:
            kept = torchvision.ops.nms(boxes, scores, nms_threshold)
        else:
            kept = torchvision.ops.batched_nms(boxes, scores, labels, nms_threshold)
        results.append(ImageDetections(boxes[kept], scores[kept], labels[kept]))
    return results


@contextlib.contextmanager
def decoding_eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put a YOLOX model in eval mode with box decoding on, and restore both afterwards.

    ``postprocess`` needs decoded boxes, but the same model object may be mid-training (evaluation every
    epoch) or set to raw output (after an export), so its state is given back as it was.
    """
    head = getattr(model, "head", None)
    was_training = model.training
    was_decoding = getattr(head, "decode_in_inference", None)
    model.eval()
    if was_decoding is not None:
        head.decode_in_inference = True
    try:
        yield model
    finally:
        if was_decoding is not None:
            head.decode_in_inference = was_decoding
        model.train(was_training)
