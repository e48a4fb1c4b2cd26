"""The YOLOX model family as data: depth/width multipliers, input sizes and pretrained weight files.

Values are those of the official experiment files; weights are Megvii's 0.1.1rc0 release, with the sha256
and sizes from ``shared/assets/weights/README.md``.
"""

from __future__ import annotations

import attrs

from yolox_sdk.errors import ConfigError, did_you_mean

RELEASE_URL = "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/{file}"


@attrs.frozen
class PretrainedWeights:
    """An official weights file: where it is published, its sha256 and size, its COCO mAP."""

    file: str
    sha256: str
    size: int
    coco_map: float

    @property
    def url(self) -> str:
        """The official download URL."""
        return RELEASE_URL.format(file=self.file)


@attrs.frozen
class ModelSpec:
    """Everything needed to rebuild a YOLOX network; stored in every checkpoint."""

    name: str
    depth: float
    width: float
    depthwise: bool
    num_classes: int
    input_size: tuple[int, int] = attrs.field(converter=lambda size: (int(size[0]), int(size[1])))
    act: str = "silu"

    def evolve(self, **changes: object) -> ModelSpec:
        """A copy with some fields changed."""
        return attrs.evolve(self, **changes)


_VARIANTS: dict[str, tuple[float, float, bool, int]] = {
    "yolox-nano": (0.33, 0.25, True, 416),
    "yolox-tiny": (0.33, 0.375, False, 416),
    "yolox-s": (0.33, 0.50, False, 640),
    "yolox-m": (0.67, 0.75, False, 640),
    "yolox-l": (1.0, 1.0, False, 640),
    "yolox-x": (1.33, 1.25, False, 640),
}

PRETRAINED: dict[str, PretrainedWeights] = {
    "yolox-nano": PretrainedWeights(
        "yolox_nano.pth", "cd28f55fbbc1829f99d9ac9b38a16d259a22889739c8728ea877610201feff7b", 7694953, 25.8
    ),
    "yolox-tiny": PretrainedWeights(
        "yolox_tiny.pth", "9de513de589ac98bb92d3bca53b5af7b9acfa9b0bacb831f7999d0f7afaee8f0", 40755013, 32.8
    ),
    "yolox-s": PretrainedWeights(
        "yolox_s.pth", "f55ded7181e1b0c13285c56e7790b8f0e8f8db590fe4edb37f0b7f345c913a30", 72089125, 40.5
    ),
    "yolox-m": PretrainedWeights(
        "yolox_m.pth", "60076992b32da82951c90cfa7bd6ab70eba9eda243e08b940a396f60ac2d19b6", 203114461, 46.9
    ),
    "yolox-l": PretrainedWeights(
        "yolox_l.pth", "1e6b7fa6240375370b2a8a8eab9066b3cdd43fd1d0bfa8d2027fd3a51def2917", 434357141, 49.7
    ),
    "yolox-x": PretrainedWeights(
        "yolox_x.pth", "5652330b6ae860043f091b8f550a60c10e1129f416edfdb65c259be6caf355cf", 793463373, 51.1
    ),
}

COCO_NUM_CLASSES = 80


def variant_names() -> list[str]:
    """The named variants, smallest first."""
    return list(_VARIANTS)


def make_spec(
    name: str,
    num_classes: int = COCO_NUM_CLASSES,
    depth: float | None = None,
    width: float | None = None,
    depthwise: bool | None = None,
    input_size: tuple[int, int] | None = None,
) -> ModelSpec:
    """Build a ``ModelSpec`` for a named variant (overrides allowed) or for ``custom``.

    Raises:
        ConfigError: for an unknown name, or ``custom`` without depth and width.
    """
    normalised = name.lower().replace("_", "-")
    if not normalised.startswith("yolox-") and normalised != "custom":
        normalised = f"yolox-{normalised}"
    if normalised == "custom":
        if depth is None or width is None:
            raise ConfigError(
                "Invalid config: model.name is 'custom', so model.depth and model.width must be set "
                "(e.g. depth: 0.33, width: 0.5 is yolox-s)."
            )
        base = (depth, width, bool(depthwise), 640)
    elif normalised in _VARIANTS:
        base = _VARIANTS[normalised]
    else:
        raise ConfigError(
            f"Invalid config: model.name: unknown YOLOX variant '{name}'.{did_you_mean(normalised, _VARIANTS)} "
            f"Expected one of {', '.join([*_VARIANTS, 'custom'])}."
        )
    return ModelSpec(
        name=normalised,
        depth=base[0] if depth is None else depth,
        width=base[1] if width is None else width,
        depthwise=base[2] if depthwise is None else depthwise,
        num_classes=num_classes,
        input_size=input_size or (base[3], base[3]),
    )
