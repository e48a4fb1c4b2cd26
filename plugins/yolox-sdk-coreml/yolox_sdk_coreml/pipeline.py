"""The ``nms: true`` package: the ML Program followed by CoreML's non-maximum suppression, for Vision.

Apple's Vision framework (``VNCoreMLRequest``) turns a model into ``VNRecognizedObjectObservation``s when
the model takes an image and ends in a ``NonMaximumSuppression`` model whose outputs are ``confidence``
(boxes x classes) and ``coordinates`` (boxes x 4: centre x, centre y, width, height as fractions of the
input). coremltools has no NMS operation for ML Programs that Vision reads this way, so the package is a
pipeline (``coremltools.utils.make_pipeline``) of two models: the ML Program, whose outputs are
``raw_confidence`` (objectness x class probability per anchor) and ``raw_coordinates``, and a
``nonMaximumSuppression`` model built as a spec, carrying the thresholds and the class labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from yolox_sdk.plugins.interfaces import METADATA_RECOMMENDED_CONF

if TYPE_CHECKING:
    import torch

IMAGE_INPUT = "image"
RAW_CONFIDENCE, RAW_COORDINATES = "raw_confidence", "raw_coordinates"
CONFIDENCE, COORDINATES = "confidence", "coordinates"
DEFAULT_IOU = 0.45  # predict's --nms default
DEFAULT_CONFIDENCE = 0.3  # predict's --conf default


@attrs.frozen
class NmsSettings:
    """The thresholds the NMS stage is built with, and where each came from (for the export's notes)."""

    iou_threshold: float
    confidence_threshold: float
    per_class: bool
    sources: tuple[str, ...]


def nms_settings(
    metadata: Mapping[str, Any], iou_threshold: float | None, confidence_threshold: float | None
) -> NmsSettings:
    """Options first, then the export metadata (the checkpoint's ``evaluation`` thresholds and its
    recommended confidence), then predict's defaults."""
    evaluation = metadata.get("evaluation")
    evaluation = evaluation if isinstance(evaluation, Mapping) else {}
    sources = []
    if iou_threshold is not None:
        iou, iou_from = float(iou_threshold), "option iou_threshold"
    elif _is_probability(evaluation.get("nms_threshold")):
        iou, iou_from = float(evaluation["nms_threshold"]), "the checkpoint's evaluation.nms_threshold"
    else:
        iou, iou_from = DEFAULT_IOU, "predict's default"
    sources.append(f"IoU {iou:g} ({iou_from})")
    if confidence_threshold is not None:
        conf, conf_from = float(confidence_threshold), "option confidence_threshold"
    elif _is_probability(metadata.get(METADATA_RECOMMENDED_CONF)):
        conf, conf_from = float(metadata[METADATA_RECOMMENDED_CONF]), "the checkpoint's recommended threshold"
    else:
        conf, conf_from = DEFAULT_CONFIDENCE, "predict's default"
    sources.append(f"confidence {conf:g} ({conf_from})")
    per_class = evaluation.get("class_agnostic_nms") is not True
    return NmsSettings(iou, conf, per_class, tuple(sources))


def _is_probability(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


def vision_outputs(network: torch.nn.Module, input_size: tuple[int, int]) -> torch.nn.Module:
    """``network`` (decoded rows) wrapped to return what the NMS stage reads, for batch 1: scores
    (objectness x class probability) and boxes as fractions of the input. (The class is local: torch is
    imported only when exporting.)"""
    import torch

    class VisionOutputs(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner
            height, width = input_size
            self.register_buffer("scale", torch.tensor([width, height, width, height], dtype=torch.float32))

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            rows = self.inner(images)[0]
            return rows[:, 5:] * rows[:, 4:5], rows[:, :4] / self.scale

    return VisionOutputs(network).eval()


def nms_spec(ct: Any, program_spec: Any, class_names: Sequence[str], settings: NmsSettings) -> Any:
    """The ``nonMaximumSuppression`` model reading the ML Program's two outputs; its outputs have a
    flexible box count (0 or more rows)."""
    spec = ct.proto.Model_pb2.Model()
    spec.specificationVersion = program_spec.specificationVersion
    for source in program_spec.description.output:
        spec.description.input.add().CopyFrom(source)
        output = spec.description.output.add()
        output.CopyFrom(source)
        output.name = CONFIDENCE if source.name == RAW_CONFIDENCE else COORDINATES
        array = output.type.multiArrayType
        columns = int(array.shape[-1])
        del array.shape[:]
        boxes, width = array.shapeRange.sizeRanges.add(), array.shapeRange.sizeRanges.add()
        boxes.lowerBound, boxes.upperBound = 0, -1
        width.lowerBound, width.upperBound = columns, columns
    nms = spec.nonMaximumSuppression
    nms.confidenceInputFeatureName, nms.coordinatesInputFeatureName = RAW_CONFIDENCE, RAW_COORDINATES
    nms.confidenceOutputFeatureName, nms.coordinatesOutputFeatureName = CONFIDENCE, COORDINATES
    nms.iouThreshold = settings.iou_threshold
    nms.confidenceThreshold = settings.confidence_threshold
    nms.pickTop.perClass = settings.per_class
    nms.stringClassLabels.vector.extend(class_names)
    return spec


def nms_problems(
    spec: Any, class_names: Sequence[str], input_size: tuple[int, int], settings: NmsSettings
) -> list[str]:
    """What in a saved pipeline does not fit an ``nms: true`` export (empty when all fits)."""
    from yolox_sdk_coreml.package import anchor_count

    if spec.WhichOneof("Type") != "pipeline":
        return [f"the model is a {spec.WhichOneof('Type')}, not a pipeline"]
    kinds = [model.WhichOneof("Type") for model in spec.pipeline.models]
    if kinds != ["mlProgram", "nonMaximumSuppression"]:
        return [f"expected an ML Program then a nonMaximumSuppression model, found {kinds}"]
    problems = []
    height, width = input_size
    inputs = list(spec.description.input)
    image = (
        inputs[0].type.imageType
        if len(inputs) == 1 and inputs[0].type.WhichOneof("Type") == "imageType"
        else None
    )
    if image is None or inputs[0].name != IMAGE_INPUT or (image.height, image.width) != input_size:
        problems.append(f"expected one image input {IMAGE_INPUT!r} of {height}x{width}")
    elif image.colorSpace != image.BGR:
        problems.append("the image input is not BGR (the network was trained on BGR)")
    program_outputs = {
        item.name: list(item.type.multiArrayType.shape) for item in spec.pipeline.models[0].description.output
    }
    anchors = anchor_count(input_size)
    expected = {RAW_CONFIDENCE: [anchors, len(class_names)], RAW_COORDINATES: [anchors, 4]}
    if program_outputs != expected:
        problems.append(f"expected ML Program outputs {expected}, found {program_outputs}")
    if [item.name for item in spec.description.output] != [CONFIDENCE, COORDINATES]:
        problems.append(f"expected outputs {CONFIDENCE!r}, {COORDINATES!r}")
    nms = spec.pipeline.models[1].nonMaximumSuppression
    found = (
        list(nms.stringClassLabels.vector),
        round(nms.iouThreshold, 6),
        round(nms.confidenceThreshold, 6),
        nms.pickTop.perClass,
    )
    wanted = (
        list(class_names),
        round(settings.iou_threshold, 6),
        round(settings.confidence_threshold, 6),
        settings.per_class,
    )
    if found != wanted:
        problems.append(
            f"NMS stage holds labels/IoU/confidence/per-class {found[1:]} with {len(found[0])} labels, expected "
            f"{wanted[1:]} with the {len(class_names)} class names"
        )
    return problems
