"""Decoding and NMS on hand-made head outputs, and the model-state guard used around inference."""

from __future__ import annotations

import pytest
import torch

from yolox_sdk.evaluation.postprocess import ImageDetections, decoding_eval_mode, postprocess
from yolox_sdk.models.factory import build_model
from yolox_sdk.models.variants import make_spec

NUM_CLASSES = 3


def head_rows(*rows: tuple[float, float, float, float, float, int, float]) -> torch.Tensor:
    """``(cx, cy, w, h, objectness, class, class probability)`` rows as one image's decoded output.

    Other classes get probability 0.05 so the argmax is the given class.
    """
    output = torch.full((len(rows), 5 + NUM_CLASSES), 0.05)
    for index, (cx, cy, w, h, objectness, label, probability) in enumerate(rows):
        output[index, :5] = torch.tensor([cx, cy, w, h, objectness])
        output[index, 5 + label] = probability
    return output


def test_box_conversion_score_and_label() -> None:
    outputs = head_rows((50, 60, 20, 10, 0.8, 2, 0.5)).unsqueeze(0)
    (found,) = postprocess(outputs, conf_threshold=0.1, nms_threshold=0.5)
    torch.testing.assert_close(found.boxes, torch.tensor([[40.0, 55.0, 60.0, 65.0]]))
    torch.testing.assert_close(found.scores, torch.tensor([0.4]))  # objectness x best class probability
    assert found.labels.tolist() == [2]
    assert found.labels.dtype == torch.int64


def test_confidence_threshold_uses_the_product_of_objectness_and_class() -> None:
    # 0.9 x 0.3 = 0.27 is below 0.3 although both factors are high enough on their own
    outputs = head_rows((50, 50, 10, 10, 0.9, 0, 0.3), (150, 150, 10, 10, 0.6, 1, 0.6)).unsqueeze(0)
    (found,) = postprocess(outputs, conf_threshold=0.3, nms_threshold=0.5)
    assert found.labels.tolist() == [1]
    torch.testing.assert_close(found.scores, torch.tensor([0.36]))


def test_nms_suppresses_overlapping_boxes_of_the_same_class() -> None:
    outputs = head_rows(
        (100, 100, 40, 40, 0.9, 1, 0.9),  # kept: best score
        (102, 101, 40, 40, 0.8, 1, 0.9),  # IoU ~0.9 with the first, same class: suppressed
        (300, 300, 40, 40, 0.7, 1, 0.9),  # same class, far away: kept
    ).unsqueeze(0)
    (found,) = postprocess(outputs, conf_threshold=0.1, nms_threshold=0.5)
    assert len(found) == 2
    torch.testing.assert_close(found.boxes[:, 0], torch.tensor([80.0, 280.0]))
    assert torch.all(found.scores[:-1] >= found.scores[1:])


def test_nms_keeps_other_classes_unless_class_agnostic() -> None:
    outputs = head_rows((100, 100, 40, 40, 0.9, 0, 0.9), (101, 100, 40, 40, 0.8, 2, 0.9)).unsqueeze(0)
    (per_class,) = postprocess(outputs, conf_threshold=0.1, nms_threshold=0.5)
    assert sorted(per_class.labels.tolist()) == [0, 2]
    (agnostic,) = postprocess(outputs, conf_threshold=0.1, nms_threshold=0.5, class_agnostic=True)
    assert agnostic.labels.tolist() == [0]


def test_nms_threshold_is_an_iou_bound() -> None:
    # two 40x40 boxes 20 px apart overlap with IoU 800 / 2400 = 1/3
    outputs = head_rows((100, 100, 40, 40, 0.9, 0, 0.9), (120, 100, 40, 40, 0.8, 0, 0.9)).unsqueeze(0)
    assert len(postprocess(outputs, 0.1, nms_threshold=0.3)[0]) == 1
    assert len(postprocess(outputs, 0.1, nms_threshold=0.4)[0]) == 2


def test_batch_with_an_empty_image() -> None:
    detected = head_rows((100, 100, 40, 40, 0.9, 0, 0.9), (300, 300, 40, 40, 0.9, 1, 0.9))
    nothing = head_rows((100, 100, 40, 40, 0.01, 0, 0.9), (300, 300, 40, 40, 0.02, 1, 0.9))
    results = postprocess(torch.stack([detected, nothing, detected]), conf_threshold=0.1, nms_threshold=0.5)
    assert [len(found) for found in results] == [2, 0, 2]
    empty = results[1]
    assert empty.boxes.shape == (0, 4) and empty.scores.shape == (0,) and empty.labels.shape == (0,)
    assert empty.labels.dtype == torch.int64


def test_rejects_a_raw_training_output() -> None:
    with pytest.raises(ValueError, match="batch, anchors, 5 \\+ classes"):
        postprocess(torch.zeros(10, 8))


def test_to_original_divides_by_the_ratio_and_clips() -> None:
    found = ImageDetections(
        torch.tensor([[10.0, 20.0, 110.0, 220.0], [-5.0, 100.0, 500.0, 300.0]]),
        torch.tensor([0.9, 0.8]),
        torch.tensor([0, 1]),
    )
    original = found.to_original(ratio=0.5, width=640, height=480)
    torch.testing.assert_close(
        original.boxes, torch.tensor([[20.0, 40.0, 220.0, 440.0], [0.0, 200.0, 640.0, 480.0]])
    )


def test_decoding_eval_mode_restores_the_model_state() -> None:
    model = build_model(make_spec("yolox-nano", NUM_CLASSES, input_size=(128, 128)))
    model.head.decode_in_inference = False
    assert model.training
    with decoding_eval_mode(model), torch.inference_mode():
        assert not model.training and model.head.decode_in_inference
        output = model(torch.zeros(2, 3, 128, 128))
    assert model.training and not model.head.decode_in_inference
    # (128/8)^2 + (128/16)^2 + (128/32)^2 anchors, decoded widths are positive pixels
    assert output.shape == (2, 336, 5 + NUM_CLASSES)
    assert bool((output[..., 2:4] > 0).all())
    assert len(postprocess(output, conf_threshold=0.0, nms_threshold=0.65)) == 2
