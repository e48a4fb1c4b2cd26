"""Options of the built-in augmentations, one attrs class per plugin.

Kept apart from the implementations so registering the plugins (which happens for every CLI call,
``--help`` included) imports only attrs, never OpenCV or the ``yolox`` package. Defaults are YOLOX's
generic recipe (``yolox/config.py``). These classes are the one source of the defaults and bounds of the
config's ``augmentation`` section too (``recipe.py`` reads them), so ``augmentation.degrees`` and the
``affine`` plugin's ``degrees`` cannot drift apart. Scale ranges are bounded at 10: the section always
refused more, and a larger factor only makes empty or enormous images.
"""

from __future__ import annotations

import attrs

from yolox_sdk.config.validators import number, ordered_pair, probability

MAX_SCALE = 10.0


@attrs.frozen
class MosaicOptions:
    """``prob``: chance that a sample becomes a 2x2 mosaic of itself and three random images."""

    prob: float = attrs.field(default=1.0, validator=probability())


@attrs.frozen
class AffineOptions:
    """YOLOX's random affine: rotation (+-``degrees``), translation (+-``translate`` of the input size),
    scale drawn from ``scale`` and shear (+-``shear`` degrees).

    ``only_mosaic`` keeps YOLOX's rule that the affine warps mosaic canvases only; set it to false to warp
    every sample.
    """

    degrees: float = attrs.field(default=10.0, validator=number(0.0, 180.0))
    translate: float = attrs.field(default=0.1, validator=number(0.0, 1.0))
    scale: tuple[float, float] = attrs.field(default=(0.1, 2.0), validator=ordered_pair(0.0, MAX_SCALE))
    shear: float = attrs.field(default=2.0, validator=number(0.0, 90.0))
    only_mosaic: bool = True


@attrs.frozen
class MixupOptions:
    """``prob``: chance to blend a mosaic with another image jittered by a factor drawn from ``scale``."""

    prob: float = attrs.field(default=1.0, validator=probability())
    scale: tuple[float, float] = attrs.field(default=(0.5, 1.5), validator=ordered_pair(0.0, MAX_SCALE))


@attrs.frozen
class HsvOptions:
    """``prob``: chance of a random hue/saturation/value shift with YOLOX's gains (5, 30, 30)."""

    prob: float = attrs.field(default=1.0, validator=probability())
    hgain: int = attrs.field(default=5, validator=number(0, 180))
    sgain: int = attrs.field(default=30, validator=number(0, 255))
    vgain: int = attrs.field(default=30, validator=number(0, 255))


@attrs.frozen
class FlipOptions:
    """``prob``: chance of a horizontal flip."""

    prob: float = attrs.field(default=0.5, validator=probability())
