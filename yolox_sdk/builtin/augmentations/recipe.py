"""The ``augmentation`` section of the config: YOLOX's recipe, written as switches and settings of the
five built-in augmentation plugins.

Users write flat keys (``augmentation.mosaic_prob``, ``degrees``, ``scale``: the product plan's names);
each setting is one option of one plugin, and its default and bounds are read from that plugin's own
options class (``options.py``), so they are written once. ``steps()`` turns the section into the
``(plugin name, options)`` pairs the training pipeline builds through the registry, in YOLOX's order.
"""

from __future__ import annotations

from typing import Any

import attrs

from yolox_sdk.builtin.augmentations.options import (
    AffineOptions,
    FlipOptions,
    HsvOptions,
    MixupOptions,
    MosaicOptions,
)


def _option(options_class: type, name: str) -> Any:
    """A recipe field with the default and validator of ``options_class``'s option ``name``."""
    option = attrs.fields_dict(options_class)[name]
    return attrs.field(default=option.default, validator=option.validator)


@attrs.frozen
class AugmentationRecipe:
    """YOLOX's training augmentation recipe, step by step.

    ``mosaic``, ``mixup`` and ``hsv_aug`` switch a step on or off; the other keys are the steps' options
    (``mosaic_prob`` is the ``mosaic`` plugin's ``prob``, ``degrees`` the ``affine`` plugin's, ...).
    ``scale`` is the mosaic scale range; the random affine (``degrees``, ``translate``, ``shear``,
    ``scale``) applies to mosaic canvases, as in YOLOX. ``custom`` appends third-party augmentation
    plugins: a list of ``{name: <plugin>, <option>: <value>, ...}``.
    """

    mosaic: bool = True
    mosaic_prob: float = _option(MosaicOptions, "prob")
    mixup: bool = True
    mixup_prob: float = _option(MixupOptions, "prob")
    mixup_scale: tuple[float, float] = _option(MixupOptions, "scale")
    hsv_aug: bool = True
    hsv_prob: float = _option(HsvOptions, "prob")
    flip_prob: float = _option(FlipOptions, "prob")
    degrees: float = _option(AffineOptions, "degrees")
    translate: float = _option(AffineOptions, "translate")
    scale: tuple[float, float] = _option(AffineOptions, "scale")
    shear: float = _option(AffineOptions, "shear")
    custom: list[Any] = attrs.field(factory=list)

    def steps(self) -> list[tuple[str, dict[str, Any]]]:
        """The enabled built-in steps as ``(plugin name, options)`` pairs, in YOLOX's order: mosaic, affine
        and mixup (mosaics only), HSV, flip. A step switched off or with probability 0 is left out."""
        steps: list[tuple[str, dict[str, Any]]] = []
        if self.mosaic and self.mosaic_prob > 0:
            steps.append(("mosaic", {"prob": self.mosaic_prob}))
            affine = {
                "degrees": self.degrees,
                "translate": self.translate,
                "scale": list(self.scale),
                "shear": self.shear,
            }
            steps.append(("affine", affine))
            if self.mixup and self.mixup_prob > 0:
                steps.append(("mixup", {"prob": self.mixup_prob, "scale": list(self.mixup_scale)}))
        if self.hsv_aug and self.hsv_prob > 0:
            steps.append(("hsv", {"prob": self.hsv_prob}))
        if self.flip_prob > 0:
            steps.append(("flip", {"prob": self.flip_prob}))
        return steps
