"""From the ``augmentation`` config section to the list of augmentation steps a training set applies.

The section names its built-in steps itself (``AugmentationConfig.steps()``, in YOLOX's order); each is
looked up in the plugin registry like any third-party one (built-ins are ordinary plugins), followed by
the user's ``augmentation.custom`` plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from yolox_sdk.config.plugin_options import named_items
from yolox_sdk.plugins.building import build_plugin

if TYPE_CHECKING:
    from yolox_sdk.config.schema import AugmentationConfig
    from yolox_sdk.plugins.interfaces import Augmentation
    from yolox_sdk.plugins.registry import Registry

KIND = "augmentation"


def builtin_steps(aug: AugmentationConfig) -> list[tuple[str, dict[str, Any]]]:
    """The enabled built-in steps as ``(plugin name, options)`` pairs, in YOLOX's order."""
    return aug.steps()


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
