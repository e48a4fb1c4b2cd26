"""From the ``augmentation`` config section to the list of augmentation steps a training set applies.

The built-in steps are looked up in the plugin registry like any third-party one (built-ins are ordinary
plugins), in YOLOX's order: mosaic, affine (mosaics only), mixup (mosaics only), HSV, flip; then the
user's ``augmentation.custom`` plugins. A disabled step (switched off or with probability 0) is left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from yolox_sdk.config.plugin_options import build_plugin, named_items

if TYPE_CHECKING:
    from yolox_sdk.config.schema import AugmentationConfig
    from yolox_sdk.plugins.interfaces import Augmentation
    from yolox_sdk.plugins.registry import Registry

KIND = "augmentation"


def builtin_steps(aug: AugmentationConfig) -> list[tuple[str, dict[str, Any]]]:
    """The enabled built-in steps as ``(plugin name, options)`` pairs, in YOLOX's order."""
    steps: list[tuple[str, dict[str, Any]]] = []
    if aug.mosaic and aug.mosaic_prob > 0:
        steps.append(("mosaic", {"prob": aug.mosaic_prob}))
        affine = {
            "degrees": aug.degrees,
            "translate": aug.translate,
            "scale": list(aug.scale),
            "shear": aug.shear,
        }
        steps.append(("affine", affine))
        if aug.mixup and aug.mixup_prob > 0:
            steps.append(("mixup", {"prob": aug.mixup_prob, "scale": list(aug.mixup_scale)}))
    if aug.hsv_aug and aug.hsv_prob > 0:
        steps.append(("hsv", {"prob": aug.hsv_prob}))
    if aug.flip_prob > 0:
        steps.append(("flip", {"prob": aug.flip_prob}))
    return steps


def build_augmentations(aug: AugmentationConfig, registry: Registry) -> list[Augmentation]:
    """Instantiate the built-in steps enabled in ``aug`` followed by ``aug.custom``.

    Raises:
        PluginError: a custom augmentation is not installed.
        ConfigError: a custom augmentation's options are invalid (the message names
            ``augmentation.custom[i]``).
    """
    augmentations = [
        build_plugin(registry, KIND, name, options, "augmentation") for name, options in builtin_steps(aug)
    ]
    for name, options, where in named_items(aug.custom, "augmentation.custom"):
        augmentations.append(build_plugin(registry, KIND, name, options, where))
    return augmentations
