"""Batched SimOTA (``yolox_sdk.models.assignment``, ``BatchedSimotaHead``) against the ``yolox`` package's own
image-by-image assignment and loss, on real BCCD and coco8 batches built as training builds them.

The reference is always the package's code called directly (``YoloxHead.get_assignments`` per image,
``YoloxHead.get_losses``) on the same head, weights and inputs; nothing here recomputes SimOTA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from yolox.models import YoloxHead

from yolox_sdk.config.loader import load_config
from yolox_sdk.config.schema import ASSIGNMENTS
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.data.loader import collate_train_batch
from yolox_sdk.data.train_dataset import TrainDataset
from yolox_sdk.engine.setup import build_training_model, label_assignment
from yolox_sdk.errors import ConfigError
from yolox_sdk.models.assignment import valid_ground_truths
from yolox_sdk.models.batched_head import BatchedSimotaHead
from yolox_sdk.models.factory import HEADS, create_model
from yolox_sdk.models.variants import make_spec

SIZE = 320
LOSS_NAMES = ("loss", "iou_loss", "obj_loss", "cls_loss", "l1_loss", "num_fg ratio")


def training_batch(
    path: Path, format: str, count: int, size: int = SIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` training images, letterboxed into YOLOX's padded targets, as the loader does."""
    dataset = TrainDataset(load_dataset(path, "train", format), (size, size), [], seed=0)
    images, targets = collate_train_batch([dataset[index] for index in range(count)])
    return images.float(), targets  # uint8 from the loader; the trainer makes it float on the device


def nano(num_classes: int, assignment: str = "batched") -> torch.nn.Module:
    """Pretrained yolox-nano in train mode; the re-initialised class layers are seeded."""
    torch.manual_seed(0)
    model, _, _ = create_model(
        "yolox-nano", num_classes, pretrained=True, input_size=(SIZE, SIZE), assignment=assignment
    )
    return model.train()


def count(labels: torch.Tensor, image: int) -> int:
    return int(valid_ground_truths(labels)[image].sum())


def loss_inputs(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[tuple, dict]:
    """The arguments the head's training forward passes to ``get_losses`` (with their autograd graph)."""
    seen: dict[str, Any] = {}

    def keep(*args: Any, **kwargs: Any) -> tuple:
        seen.update(args=args, kwargs=kwargs)
        return (torch.zeros(()),) * 6

    model.head.get_losses = keep
    try:
        model(images, labels)
    finally:
        del model.head.get_losses
    return seen["args"], seen["kwargs"]


def package_assignment(head: YoloxHead, args: tuple, image: int) -> tuple[torch.Tensor, ...]:
    """The package's own ``get_assignments`` for one image: classes, fg mask, IoUs, gt indices."""
    _, x_shifts, y_shifts, strides, labels, outputs, _ = args
    x_shifts, y_shifts, strides = (torch.cat(values, 1) for values in (x_shifts, y_shifts, strides))
    num_gt = count(labels, image)
    classes, foreground, ious, matched, _ = YoloxHead.get_assignments(
        head,
        image,
        num_gt,
        labels[image, :num_gt, 1:5],
        labels[image, :num_gt, 0],
        outputs[image, :, :4],
        strides,
        x_shifts,
        y_shifts,
        outputs[:, :, 5:],
        outputs[:, :, 4:5],
    )
    return classes, foreground, ious, matched


def batched_assignment(head: BatchedSimotaHead, args: tuple) -> Any:
    _, x_shifts, y_shifts, strides, labels, outputs, _ = args
    x_shifts, y_shifts, strides = (torch.cat(values, 1)[0] for values in (x_shifts, y_shifts, strides))
    with torch.no_grad():
        return head.assign_batch(labels, valid_ground_truths(labels), outputs, x_shifts, y_shifts, strides)


def assert_same_assignments(head: BatchedSimotaHead, args: tuple) -> Any:
    """Image by image: fg mask, matched gt indices, classes and IoUs equal the package's."""
    ours = batched_assignment(head, args)
    labels = args[4]
    for image in range(labels.shape[0]):
        if count(labels, image) == 0:  # the package's get_losses skips these: no foreground
            assert not ours.foreground[image].any()
            continue
        classes, foreground, ious, matched = package_assignment(head, args, image)
        assert torch.equal(ours.foreground[image], foreground), f"image {image}"
        assert torch.equal(ours.matched_gt[image][foreground], matched), f"image {image}"
        assert torch.equal(ours.matched_class[image][foreground], classes.long()), f"image {image}"
        torch.testing.assert_close(ours.matched_iou[image][foreground], ious, rtol=1e-6, atol=1e-7)
    return ours


def assert_same_losses(head: BatchedSimotaHead, args: tuple, kwargs: dict) -> tuple:
    expected = YoloxHead.get_losses(head, *args, **kwargs)
    actual = BatchedSimotaHead.get_losses(head, *args, **kwargs)
    for name, mine, theirs in zip(LOSS_NAMES, actual, expected, strict=True):
        torch.testing.assert_close(
            torch.as_tensor(mine, dtype=torch.float64),
            torch.as_tensor(theirs, dtype=torch.float64),
            rtol=1e-6,
            atol=1e-7,
            msg=lambda text, name=name: f"{name}: {text}",
        )
    return actual, expected


@pytest.fixture(scope="module")
def bccd_model() -> torch.nn.Module:
    return nano(3)


@pytest.fixture(scope="module")
def bccd_batch(bccd_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return training_batch(bccd_dir, "voc", 6)


@pytest.fixture
def use_l1(request: pytest.FixtureRequest, bccd_model: torch.nn.Module) -> Any:
    bccd_model.head.use_l1 = request.param
    yield request.param
    bccd_model.head.use_l1 = False


@pytest.mark.parametrize("use_l1", [False, True], indirect=True)
def test_bccd_batch_with_an_empty_image_matches_the_package(
    bccd_model: torch.nn.Module, bccd_batch: tuple, use_l1: bool
) -> None:
    images, labels = bccd_batch
    labels = labels.clone()
    labels[2] = 0  # a background image
    args, kwargs = loss_inputs(bccd_model, images, labels)
    ours = assert_same_assignments(bccd_model.head, args)
    assert not ours.foreground[2].any() and ours.foreground[0].sum() > 50
    actual, _ = assert_same_losses(bccd_model.head, args, kwargs)
    assert (float(actual[4]) > 0) == use_l1


def test_coco8_multiclass_batch_matches_the_package(coco8_dir: Path) -> None:
    model = nano(80)
    images, labels = training_batch(coco8_dir, "yolo", 4)
    assert len(set(labels[..., 0][valid_ground_truths(labels)].tolist())) > 3
    model.head.use_l1 = True  # the forward keeps the raw regression outputs for the L1 term only then
    args, kwargs = loss_inputs(model, images, labels)
    assert_same_assignments(model.head, args)
    assert_same_losses(model.head, args, kwargs)
    model.head.use_l1 = False
    assert_same_losses(model.head, args, kwargs)


def tiled(images: torch.Tensor, labels: torch.Tensor, image: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One image shrunk to half size and tiled 2x2 with its boxes: four times as many, twice as dense."""
    half = torch.nn.functional.interpolate(images[image : image + 1], scale_factor=0.5, mode="bilinear")
    tile = torch.cat([torch.cat([half, half], 3), torch.cat([half, half], 3)], 2)
    boxes = labels[image, : count(labels, image)].clone()
    boxes[:, 1:] *= 0.5
    rows = []
    for dx in (0, SIZE // 2):
        for dy in (0, SIZE // 2):
            shifted = boxes.clone()
            shifted[:, 1] += dx
            shifted[:, 2] += dy
            rows.append(shifted)
    crowded = torch.zeros_like(labels[image])
    rows = torch.cat(rows)[: crowded.shape[0]]
    crowded[: len(rows)] = rows
    return tile[0], crowded


def test_crowded_and_tiny_boxes_match_the_package(bccd_model: torch.nn.Module, bccd_batch: tuple) -> None:
    images, labels = bccd_batch
    densest = int(valid_ground_truths(labels).sum(1).argmax())
    tile, crowded = tiled(images, labels, densest)
    tiny = labels[1].clone()
    spots = torch.arange(count(labels, 1), dtype=torch.float32)
    tiny[: len(spots), 1] = 100.0 + 3.0 * (spots % 4)  # packed tightly: dynamic k 1 for each, and
    tiny[: len(spots), 2] = 100.0 + 3.0 * (spots // 4)  # several want the same anchor
    tiny[: len(spots), 3:5] = 2.5
    images = torch.stack([tile, images[1], images[0]])
    labels = torch.stack([crowded, tiny, labels[0]])
    assert count(labels, 0) >= 60
    args, kwargs = loss_inputs(bccd_model, images, labels)
    ours = assert_same_assignments(bccd_model.head, args)
    assert ours.foreground[1].sum() < count(labels, 1)  # conflicts: some tiny boxes lost their anchor
    assert_same_losses(bccd_model.head, args, kwargs)


def own_region_and_k(head: YoloxHead, args: tuple, image: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per gt of ``image``: anchors in its own centre region, and its dynamic k, from the package's code."""
    _, x_shifts, y_shifts, strides, labels, outputs, _ = args
    x_shifts, y_shifts, strides = (torch.cat(values, 1) for values in (x_shifts, y_shifts, strides))
    boxes = labels[image, : count(labels, image), 1:5]
    candidates, in_region = head.get_geometry_constraint(boxes, strides, x_shifts, y_shifts)
    from yolox.utils import bboxes_iou

    ious = bboxes_iou(boxes, outputs[image, candidates, :4].detach(), False)
    ks = ious.topk(min(10, ious.shape[1]), dim=1).values.sum(1).int().clamp(min=1)
    return in_region.sum(1), ks


def test_boxes_centred_outside_the_image_match_the_package(
    bccd_model: torch.nn.Module, bccd_batch: tuple
) -> None:
    images, labels = bccd_batch
    labels = labels[:3].clone()
    images = images[:3]
    first = count(labels, 0)
    # Centred right of the image: no anchor of its own region, yet dynamic k 2 from the IoUs with the
    # candidates of the other boxes; it takes two of those at +1e6 cost.
    labels[0, first] = torch.tensor([1.0, SIZE + 60.0, 120.0, 300.0, 240.0])
    labels[1] = 0
    labels[1, 0] = torch.tensor([0.0, SIZE + 100.0, 100.0, 50.0, 50.0])  # every box of image 1 outside
    labels[1, 1] = torch.tensor([2.0, 60.0, SIZE + 80.0, 40.0, 40.0])
    third = count(labels, 2)
    labels[2, third] = torch.tensor([1.0, -20.0, 260.0, 140.0, 240.0])  # centre just outside, half visible
    args, kwargs = loss_inputs(bccd_model, images, labels)
    own, ks = own_region_and_k(bccd_model.head, args, 0)
    assert own[first] == 0 and ks[first] >= 2
    ours = assert_same_assignments(bccd_model.head, args)
    assert (ours.matched_gt[0][ours.foreground[0]] == first).sum() >= 2
    assert not ours.foreground[1].any()
    assert_same_losses(bccd_model.head, args, kwargs)


def test_gradients_match_the_package(bccd_model: torch.nn.Module, bccd_batch: tuple) -> None:
    images, labels = bccd_batch
    bccd_model.head.use_l1 = True
    try:
        args, kwargs = loss_inputs(bccd_model, images[:3], labels[:3])
        parameters = [p for p in bccd_model.parameters() if p.requires_grad]
        expected = torch.autograd.grad(
            YoloxHead.get_losses(bccd_model.head, *args, **kwargs)[0], parameters, retain_graph=True
        )
        actual = torch.autograd.grad(
            BatchedSimotaHead.get_losses(bccd_model.head, *args, **kwargs)[0], parameters
        )
    finally:
        bccd_model.head.use_l1 = False
    assert any(grad.abs().sum() > 0 for grad in actual)
    for mine, theirs in zip(actual, expected, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-7)


def test_assignment_ignores_autocast(bccd_model: torch.nn.Module, bccd_batch: tuple) -> None:
    images, labels = bccd_batch
    args, _ = loss_inputs(bccd_model, images[:2], labels[:2])
    plain = batched_assignment(bccd_model.head, args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = batched_assignment(bccd_model.head, args)
    assert cast.matched_iou.dtype == torch.float32
    assert torch.equal(cast.foreground, plain.foreground) and torch.equal(cast.matched_iou, plain.matched_iou)


def test_both_heads_give_the_same_loss_dict_and_share_weights(bccd_batch: tuple) -> None:
    images, labels = bccd_batch
    ours, theirs = nano(3, "batched"), nano(3, "yolox")
    assert type(ours.head) is BatchedSimotaHead and type(theirs.head) is YoloxHead
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())  # strict: same keys and shapes
    ours.load_state_dict(theirs.state_dict())
    mine, expected = ours(images[:3], labels[:3]), theirs(images[:3], labels[:3])
    assert (
        set(mine) == set(expected) == {"total_loss", "iou_loss", "l1_loss", "conf_loss", "cls_loss", "num_fg"}
    )
    for key, value in expected.items():
        torch.testing.assert_close(torch.as_tensor(mine[key]), torch.as_tensor(value), rtol=1e-6, atol=1e-7)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(images[:1]), theirs(images[:1]), rtol=0, atol=0)


def test_training_assignment_chooses_the_head() -> None:
    assert ("auto", *HEADS) == ASSIGNMENTS
    spec = make_spec("yolox-nano", 3, input_size=(160, 160))
    for name, head in HEADS.items():
        config = load_config(
            None, ["model.name=yolox-nano", "model.pretrained=false", f"training.assignment={name}"]
        )
        model, _ = build_training_model(config, spec)
        assert type(model.head) is head
    default = load_config(None, ["model.name=yolox-nano", "model.pretrained=false"])
    assert default.training.assignment == "auto"
    # auto: batched where per-image synchronisations stall a GPU, the package's loop elsewhere
    assert type(build_training_model(default, spec, torch.device("cpu"))[0].head) is YoloxHead
    assert label_assignment("auto", torch.device("cuda")) == "batched"
    assert label_assignment("auto", torch.device("mps")) == "yolox"
    assert label_assignment("batched", torch.device("cpu")) == "batched"


def test_unknown_assignment_is_a_config_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["training.assignment=batchd"])
    message = str(caught.value)
    assert "training.assignment" in message and "auto, batched, yolox" in message
    assert "Did you mean 'batched'" in message
    assert "\n" not in message.strip()


def test_background_only_batch_has_no_foreground(bccd_model: torch.nn.Module, bccd_batch: tuple) -> None:
    images, labels = bccd_batch
    args, kwargs = loss_inputs(bccd_model, images[:2], torch.zeros_like(labels[:2]))
    assert not batched_assignment(bccd_model.head, args).foreground.any()
    actual, expected = assert_same_losses(bccd_model.head, args, kwargs)
    assert float(actual[1]) == 0.0 and float(actual[5]) == 1.0
    assert np.isfinite(float(actual[0]))
