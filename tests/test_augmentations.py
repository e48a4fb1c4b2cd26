"""The built-in augmentation plugins and the pipeline built from the ``augmentation`` config section.

Geometry is checked against pixels, not against the code's own arithmetic: a bright rectangle is drawn
where a box is, the image is augmented, and the box must still frame the bright pixels.
"""

from __future__ import annotations

import random
from pathlib import Path

import attrs
import numpy as np
import pytest
from conftest import BCCD_CLASSES, read_bccd_boxes

from yolox_sdk.builtin.augmentations.color import HsvJitter, apply_hsv_gains
from yolox_sdk.builtin.augmentations.geometry import HorizontalFlip, RandomAffine
from yolox_sdk.builtin.augmentations.mixup import Mixup
from yolox_sdk.builtin.augmentations.mosaic import Mosaic
from yolox_sdk.builtin.augmentations.options import (
    AffineOptions,
    FlipOptions,
    HsvOptions,
    MixupOptions,
    MosaicOptions,
)
from yolox_sdk.config.schema import AugmentationConfig
from yolox_sdk.data.image_cache import load_resized_image
from yolox_sdk.data.pipeline import build_augmentations
from yolox_sdk.data.preprocess import read_image
from yolox_sdk.data.train_dataset import letterbox_targets
from yolox_sdk.errors import ConfigError
from yolox_sdk.plugins import build_plugin_manager, get_registry, hookimpl
from yolox_sdk.plugins.interfaces import AugmentationContext, Sample

CLASSES = BCCD_CLASSES


def read_voc_sample(bccd_dir: Path, image_id: str) -> Sample:
    """A BCCD image with its boxes, read independently of the SDK's format plugins."""
    boxes, labels = read_bccd_boxes(bccd_dir, image_id)
    image = read_image(bccd_dir / "JPEGImages" / f"{image_id}.jpg")
    return Sample(image, np.array(boxes, np.float32), np.array(labels, np.int64))


@pytest.fixture(scope="module")
def bccd_samples(bccd_dir: Path) -> list[Sample]:
    """Eight BCCD training samples resized to fit 320 x 320, like the training dataset hands them out."""
    ids = (bccd_dir / "ImageSets" / "Main" / "train.txt").read_text().split()[:8]
    samples = []
    for image_id in ids:
        full = read_voc_sample(bccd_dir, image_id)
        image, (height, width) = load_resized_image(bccd_dir / "JPEGImages" / f"{image_id}.jpg", (320, 320))
        ratio = min(320 / height, 320 / width)
        samples.append(Sample(image, full.boxes * np.float32(ratio), full.labels))
    return samples


def make_context(
    samples: list[Sample], seed: int = 0, input_size: tuple[int, int] = (320, 320)
) -> AugmentationContext:
    return AugmentationContext(input_size, np.random.default_rng(seed), lambda i: samples[i], len(samples))


def frozen_copy(sample: Sample) -> Sample:
    return Sample(sample.image.copy(), sample.boxes.copy(), sample.labels.copy(), sample.mosaic)


def assert_unchanged(sample: Sample, before: Sample) -> None:
    np.testing.assert_array_equal(sample.image, before.image)
    np.testing.assert_array_equal(sample.boxes, before.boxes)
    np.testing.assert_array_equal(sample.labels, before.labels)


def rectangle_sample(shape: tuple[int, int], box: tuple[int, int, int, int], mosaic: bool = True) -> Sample:
    """A black image with a white filled rectangle exactly covering ``box`` (xyxy, pixel edges)."""
    image = np.zeros((*shape, 3), np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return Sample(image, np.array([box], np.float32), np.array([1]), mosaic)


def bright_extent(image: np.ndarray, threshold: int = 200) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(image.max(axis=2) > threshold)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


# --- plugins -------------------------------------------------------------------------------------------


def test_builtins_are_registered_with_options_and_descriptions() -> None:
    registry = get_registry()
    for name in ("mosaic", "mixup", "hsv", "flip", "affine"):
        entry = registry.get("augmentation", name)
        assert attrs.has(entry.options) and entry.description
        assert callable(entry.factory(entry.options()))


# --- flip ----------------------------------------------------------------------------------------------


def test_flip_mirrors_image_and_boxes_exactly(bccd_samples: list[Sample]) -> None:
    sample = bccd_samples[0]
    before = frozen_copy(sample)
    flipped = HorizontalFlip(FlipOptions(prob=1.0))(sample, make_context(bccd_samples))
    width = sample.image.shape[1]
    np.testing.assert_array_equal(flipped.image, sample.image[:, ::-1])
    np.testing.assert_array_equal(flipped.boxes[:, 0], width - sample.boxes[:, 2])
    np.testing.assert_array_equal(flipped.boxes[:, 2], width - sample.boxes[:, 0])
    np.testing.assert_array_equal(flipped.boxes[:, [1, 3]], sample.boxes[:, [1, 3]])
    assert_unchanged(sample, before)
    unflipped = HorizontalFlip(FlipOptions(prob=0.0))(sample, make_context(bccd_samples))
    assert_unchanged(unflipped, before)


def test_flip_keeps_boxes_on_the_bright_pixels() -> None:
    sample = rectangle_sample((240, 320), (30, 40, 100, 90), mosaic=False)
    flipped = HorizontalFlip(FlipOptions(prob=1.0))(sample, make_context([sample]))
    assert bright_extent(flipped.image) == tuple(flipped.boxes[0].astype(int))


# --- hsv -----------------------------------------------------------------------------------------------


def test_hsv_is_bit_identical_to_yolox_augment_hsv(bccd_samples: list[Sample]) -> None:
    from yolox.data.data_augment import augment_hsv

    image = bccd_samples[1].image
    for seed in range(10):
        np.random.seed(seed)
        expected = image.copy()
        augment_hsv(expected)  # writes into its argument
        np.random.seed(seed)  # replay YOLOX's own draw of the gains
        gains = np.random.uniform(-1, 1, 3) * [5, 30, 30]
        gains *= np.random.randint(0, 2, 3)
        np.testing.assert_array_equal(apply_hsv_gains(image, gains.astype(np.int16)), expected)


def test_hsv_changes_colours_not_boxes_nor_input(bccd_samples: list[Sample]) -> None:
    sample = bccd_samples[2]
    before = frozen_copy(sample)
    outputs = [HsvJitter(HsvOptions())(sample, make_context(bccd_samples, seed)) for seed in range(4)]
    assert any(not np.array_equal(out.image, sample.image) for out in outputs)
    for out in outputs:
        np.testing.assert_array_equal(out.boxes, sample.boxes)
    assert_unchanged(sample, before)


# --- letterbox and targets -----------------------------------------------------------------------------


def test_letterbox_scales_boxes_by_the_ratio_and_pads_targets(bccd_dir: Path) -> None:
    sample = read_voc_sample(bccd_dir, "BloodImage_00000")  # 640 x 480
    image, targets = letterbox_targets(sample, (320, 320), max_labels=50)
    assert (
        image.shape == (3, 320, 320) and image.dtype == np.uint8
    )  # training batches stay uint8 until the device
    assert (image[:, 240:, :] == 114).all()  # padding below the 320 x 240 image
    boxes = sample.boxes * 0.5
    expected = np.stack(
        [
            sample.labels,
            (boxes[:, 0] + boxes[:, 2]) / 2,
            (boxes[:, 1] + boxes[:, 3]) / 2,
            boxes[:, 2] - boxes[:, 0],
            boxes[:, 3] - boxes[:, 1],
        ],
        axis=1,
    )
    np.testing.assert_allclose(targets[: len(boxes)], expected, rtol=1e-6)
    assert not targets[len(boxes) :].any()


def test_targets_drop_boxes_of_one_pixel_or_less_and_cap_the_count() -> None:
    boxes = np.array([[10, 10, 11, 30], [10, 10, 11.5, 30], [5, 5, 50, 5.9], [0, 0, 40, 40]], np.float32)
    sample = Sample(np.zeros((64, 64, 3), np.uint8), boxes, np.array([0, 1, 2, 2]))
    _, targets = letterbox_targets(sample, (64, 64), max_labels=5)
    np.testing.assert_array_equal(targets[:, 0], [1, 2, 0, 0, 0])  # widths 1.0 and heights 0.9 dropped
    _, capped = letterbox_targets(sample, (64, 64), max_labels=1)
    assert capped.shape == (1, 5) and capped[0, 0] == 1


# --- mosaic and affine ---------------------------------------------------------------------------------


def test_mosaic_builds_a_double_size_canvas_with_boxes_inside(bccd_samples: list[Sample]) -> None:
    sample = bccd_samples[0]
    before = frozen_copy(sample)
    for seed in range(5):
        out = Mosaic(MosaicOptions(prob=1.0))(sample, make_context(bccd_samples, seed))
        assert out.mosaic and out.image.shape == (640, 640, 3)
        assert len(out.boxes) >= len(sample.boxes) and len(out.boxes) == len(out.labels)
        assert (out.boxes >= 0).all() and (out.boxes <= 640).all()
    assert_unchanged(sample, before)
    assert Mosaic(MosaicOptions(prob=0.0))(sample, make_context(bccd_samples)) is sample


def test_mosaic_places_each_tile_under_its_boxes() -> None:
    tiles = [
        rectangle_sample((200, 300), (20 + 10 * i, 30, 120 + 10 * i, 150), mosaic=False) for i in range(4)
    ]
    for seed in range(5):
        out = Mosaic(MosaicOptions(prob=1.0))(tiles[0], make_context(tiles, seed, (320, 320)))
        bright = out.image.max(axis=2) > 200
        covered = np.zeros_like(bright)
        for x1, y1, x2, y2 in out.boxes.astype(int):
            covered[y1:y2, x1:x2] = True
        assert bright.any() and not (bright & ~covered).any()


def test_mosaic_then_affine_gives_input_size_with_boxes_inside(bccd_samples: list[Sample]) -> None:
    affine = RandomAffine(AffineOptions(scale=(0.5, 1.5)))
    for seed in range(5):
        context = make_context(bccd_samples, seed)
        out = affine(Mosaic(MosaicOptions())(bccd_samples[seed], context), context)
        assert out.image.shape == (320, 320, 3) and out.mosaic
        assert (
            (out.boxes >= 0).all() and (out.boxes[:, 0::2] <= 320).all() and (out.boxes[:, 1::2] <= 320).all()
        )


def test_identity_affine_keeps_boxes_on_their_content() -> None:
    sample = rectangle_sample((640, 640), (100, 120, 220, 200))
    options = AffineOptions(degrees=0.0, translate=0.0, scale=(1.0, 1.0), shear=0.0)
    out = RandomAffine(options)(sample, make_context([sample], input_size=(320, 320)))
    assert out.image.shape == (320, 320, 3)
    assert bright_extent(out.image) == (100, 120, 220, 200)
    np.testing.assert_allclose(out.boxes, [[100, 120, 220, 200]])


def test_random_affine_box_frames_the_warped_rectangle() -> None:
    sample = rectangle_sample((640, 640), (80, 60, 200, 160))
    options = AffineOptions(degrees=10.0, translate=0.1, scale=(0.5, 1.5), shear=2.0)
    for seed in range(6):
        out = RandomAffine(options)(sample, make_context([sample], seed, (320, 320)))
        x1, y1, x2, y2 = bright_extent(out.image, threshold=127)
        np.testing.assert_allclose(out.boxes[0], [x1, y1, x2, y2], atol=2.0)


def test_affine_matches_yolox_random_affine(bccd_samples: list[Sample]) -> None:
    from yolox.data.data_augment import random_affine

    options = AffineOptions(degrees=10.0, translate=0.1, scale=(0.5, 1.5), shear=2.0)
    context = make_context(bccd_samples, seed=11)
    canvas = Mosaic(MosaicOptions())(bccd_samples[0], context)
    for seed in range(5):
        ours = RandomAffine(options)(canvas, make_context(bccd_samples, seed))
        random.seed(int(np.random.default_rng(seed).integers(0, 2**32)))  # the seed our step gives `random`
        image, boxes = random_affine(
            canvas.image, canvas.boxes.astype(np.float64), (320, 320), 10.0, 0.1, (0.5, 1.5), 2.0
        )
        np.testing.assert_array_equal(ours.image, image)
        np.testing.assert_allclose(ours.boxes, boxes, rtol=1e-6, atol=1e-4)


def test_affine_skips_non_mosaic_samples_and_leaves_global_random_alone(bccd_samples: list[Sample]) -> None:
    sample = bccd_samples[3]
    assert RandomAffine(AffineOptions())(sample, make_context(bccd_samples)) is sample
    mosaic = Sample(np.zeros((640, 640, 3), np.uint8), sample.boxes, sample.labels, mosaic=True)
    random.seed(123)
    state = random.getstate()
    RandomAffine(AffineOptions())(mosaic, make_context(bccd_samples))
    assert random.getstate() == state


def test_affine_on_every_sample_when_asked(bccd_samples: list[Sample]) -> None:
    out = RandomAffine(AffineOptions(only_mosaic=False))(bccd_samples[3], make_context(bccd_samples))
    assert out.image.shape == (320, 320, 3)


# --- mixup ---------------------------------------------------------------------------------------------


def test_mixup_blends_with_a_partner_and_adds_its_boxes() -> None:
    base = Sample(
        np.full((320, 320, 3), 40, np.uint8), np.array([[10, 10, 50, 50]], np.float32), np.array([0]), True
    )
    partner = rectangle_sample((160, 200), (50, 40, 150, 120), mosaic=False)
    for seed in range(6):
        out = Mixup(MixupOptions(prob=1.0))(base, make_context([partner], seed))
        np.testing.assert_array_equal(out.boxes[0], base.boxes[0])
        assert list(out.labels) == [0, 1]
        x1, y1, x2, y2 = out.boxes[1]
        if min(x2 - x1, y2 - y1) < 2:
            continue  # the partner's rectangle was cropped away
        bright = out.image.max(axis=2) >= 147  # 0.5 * 40 + 0.5 * 255, minus resize blur
        ys, xs = np.nonzero(bright)
        assert xs.min() >= x1 - 1 and xs.max() < x2 + 1 and ys.min() >= y1 - 1 and ys.max() < y2 + 1


def test_mixup_only_touches_labelled_mosaics(bccd_samples: list[Sample]) -> None:
    mixup = Mixup(MixupOptions(prob=1.0))
    plain = bccd_samples[0]
    assert mixup(plain, make_context(bccd_samples)) is plain
    empty = Sample(plain.image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), mosaic=True)
    assert mixup(empty, make_context(bccd_samples)) is empty
    mosaic = Sample(plain.image[:320, :320].copy(), plain.boxes.clip(0, 320), plain.labels, True)
    before = frozen_copy(mosaic)
    out = mixup(mosaic, make_context(bccd_samples))
    assert len(out.boxes) > len(mosaic.boxes)
    assert_unchanged(mosaic, before)


# --- pipeline ------------------------------------------------------------------------------------------


def test_pipeline_default_recipe_order() -> None:
    steps = build_augmentations(AugmentationConfig(), get_registry())
    assert [type(step) for step in steps] == [Mosaic, RandomAffine, Mixup, HsvJitter, HorizontalFlip]
    affine = steps[1].options
    assert (affine.degrees, affine.translate, affine.scale, affine.shear) == (10.0, 0.1, (0.1, 2.0), 2.0)


def test_pipeline_leaves_out_disabled_steps() -> None:
    config = AugmentationConfig(mosaic=False, hsv_aug=False, flip_prob=0.0)
    assert build_augmentations(config, get_registry()) == []
    config = AugmentationConfig(mixup_prob=0.0, hsv_prob=0.0, mosaic_prob=0.5, scale=(0.5, 1.5))
    steps = build_augmentations(config, get_registry())
    assert [type(step) for step in steps] == [Mosaic, RandomAffine, HorizontalFlip]
    assert steps[0].options.prob == 0.5 and steps[1].options.scale == (0.5, 1.5)


@attrs.define
class InvertOptions:
    strength: int = 255


class InvertPlugin:
    @staticmethod
    @hookimpl
    def register_augmentations(register) -> None:  # noqa: ANN001
        register("invert", lambda options: lambda sample, context: sample, options=InvertOptions)


def test_pipeline_appends_custom_plugins_and_checks_their_options() -> None:
    _, registry = build_plugin_manager(extra_plugins=[("invert", InvertPlugin())])
    config = AugmentationConfig(mosaic=False, custom=[{"name": "invert", "strength": 3}])
    steps = build_augmentations(config, registry)
    assert [type(step) for step in steps[:2]] == [HsvJitter, HorizontalFlip] and len(steps) == 3
    with pytest.raises(ConfigError, match=r"augmentation\.custom\[0\]"):
        build_augmentations(AugmentationConfig(custom=[{"name": "invert", "strenght": 3}]), registry)


# --- the augmentation section is the plugins' own ---------------------------------------------------------

# What `augmentation:` resolved to before the section read its defaults from the plugins' options classes.
SECTION_DEFAULTS = {
    "mosaic": True,
    "mosaic_prob": 1.0,
    "mixup": True,
    "mixup_prob": 1.0,
    "mixup_scale": (0.5, 1.5),
    "hsv_aug": True,
    "hsv_prob": 1.0,
    "flip_prob": 0.5,
    "degrees": 10.0,
    "translate": 0.1,
    "scale": (0.1, 2.0),
    "shear": 2.0,
    "custom": [],
}


def test_section_defaults_and_bounds_come_from_the_plugins_options_classes() -> None:
    from yolox_sdk.builtin.augmentations import options

    owners = {
        "mosaic_prob": (options.MosaicOptions, "prob"),
        "mixup_prob": (options.MixupOptions, "prob"),
        "mixup_scale": (options.MixupOptions, "scale"),
        "hsv_prob": (options.HsvOptions, "prob"),
        "flip_prob": (options.FlipOptions, "prob"),
        "degrees": (options.AffineOptions, "degrees"),
        "translate": (options.AffineOptions, "translate"),
        "scale": (options.AffineOptions, "scale"),
        "shear": (options.AffineOptions, "shear"),
    }
    section = attrs.fields_dict(AugmentationConfig)
    for key, (owner, option) in owners.items():
        source = attrs.fields_dict(owner)[option]
        assert (section[key].default, section[key].validator) == (source.default, source.validator), key
    assert {key: getattr(AugmentationConfig(), key) for key in section} == SECTION_DEFAULTS
    assert AugmentationConfig.__module__ == "yolox_sdk.builtin.augmentations.recipe"


def test_section_keys_and_bounds_are_unchanged_for_users() -> None:
    from yolox_sdk.config import load_config

    config = load_config(None, ["augmentation.degrees=45", "augmentation.mixup_scale=[0.25,3]"])
    assert (config.augmentation.degrees, config.augmentation.mixup_scale) == (45.0, (0.25, 3.0))
    for bad in ("augmentation.scale=[0.1,11]", "augmentation.degrees=181", "augmentation.mosaic_prob=2"):
        with pytest.raises(ConfigError, match=bad.split("=")[0].replace(".", r"\.")):
            load_config(None, [bad])
