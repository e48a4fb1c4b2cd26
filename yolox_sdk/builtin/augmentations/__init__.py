"""Built-in training augmentations: YOLOX's default recipe as five ordinary plugins.

``mosaic`` -> ``affine`` -> ``mixup`` -> ``hsv`` -> ``flip`` is the order ``yolox_sdk.data.pipeline``
composes them in, mirroring ``MosaicDetection`` followed by ``TrainTransform``; the final letterbox,
minimum-size filter and label padding belong to the training dataset, not to a plugin.

Augmentations that YOLOX switches off for the last ``no_aug_epochs`` (mosaic and what only applies to
mosaics) carry ``disabled_in_no_aug = True``; the training dataset skips those in no-aug mode. A custom
augmentation may set the same attribute.

Factories import their implementation lazily so that registering costs no OpenCV or ``yolox`` import.
"""

from __future__ import annotations

from typing import Any

import yolox_sdk.config  # noqa: F401 - first: the config schema imports this package's recipe (recipe.py)
from yolox_sdk.builtin.augmentations.options import (
    AffineOptions,
    FlipOptions,
    HsvOptions,
    MixupOptions,
    MosaicOptions,
)
from yolox_sdk.plugins.hookspecs import Register, hookimpl


def _mosaic(options: MosaicOptions) -> Any:
    from yolox_sdk.builtin.augmentations.mosaic import Mosaic

    return Mosaic(options)


def _affine(options: AffineOptions) -> Any:
    from yolox_sdk.builtin.augmentations.geometry import RandomAffine

    return RandomAffine(options)


def _mixup(options: MixupOptions) -> Any:
    from yolox_sdk.builtin.augmentations.mixup import Mixup

    return Mixup(options)


def _hsv(options: HsvOptions) -> Any:
    from yolox_sdk.builtin.augmentations.color import HsvJitter

    return HsvJitter(options)


def _flip(options: FlipOptions) -> Any:
    from yolox_sdk.builtin.augmentations.geometry import HorizontalFlip

    return HorizontalFlip(options)


@hookimpl
def register_augmentations(register: Register) -> None:
    """Register YOLOX's mosaic, affine, mixup, HSV and flip augmentations."""
    register(
        "mosaic",
        _mosaic,
        options=MosaicOptions,
        description="YOLOX mosaic: 4 images tiled on a 2h x 2w canvas around a random centre",
    )
    register(
        "affine",
        _affine,
        options=AffineOptions,
        description="YOLOX random affine (rotate, scale, shear, translate) of mosaics to the input size",
    )
    register(
        "mixup",
        _mixup,
        options=MixupOptions,
        description="YOLOX mixup: blend a mosaic 50/50 with another scale-jittered, maybe flipped image",
    )
    register(
        "hsv",
        _hsv,
        options=HsvOptions,
        description="YOLOX HSV jitter: random hue, saturation and value shifts",
    )
    register("flip", _flip, options=FlipOptions, description="horizontal flip with probability prob")
