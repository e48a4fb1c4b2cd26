"""The plugin kinds: one table from which the registry, the manager and the config checks are derived.

Each row says what a kind is called, which ``register_<kind>s`` hook fills it, what its factories return
and where the config names its plugins and their options. Adding a kind is one row here plus its hook
spec in ``yolox_sdk.plugins.hookspecs`` (and, when the factory returns a new kind of object, its protocol
in ``yolox_sdk.plugins.interfaces``); the registry, the manager, ``yolox-sdk plugins`` and the config's
plugin checks read the table and need no edit.

This module imports attrs only: it is read whenever the registry is built, ``--help`` included.
"""

from __future__ import annotations

import attrs

SINGLE = "single"
"""``names`` is one plugin name (``training.optimizer: sgd``); ``options`` one mapping."""
NAME_LIST = "name_list"
"""``names`` is a list of names (``export.formats: [onnx]``); ``options`` a mapping of mappings by name."""
ITEM_LIST = "item_list"
"""``names`` is a list of ``name`` or ``{name: x, option: value}`` items; the options sit in each item."""
CONFIG_SHAPES = (SINGLE, NAME_LIST, ITEM_LIST)


@attrs.frozen
class ConfigSlot:
    """Where a config refers to plugins of one kind.

    Attributes:
        names: dotted path of the name, list of names or list of items (see ``CONFIG_SHAPES``).
        shape: how ``names`` is written: ``SINGLE``, ``NAME_LIST`` or ``ITEM_LIST``.
        options: dotted path of the options; for ``NAME_LIST`` the mapping of options by plugin name.
            ``None`` for ``ITEM_LIST`` (options are written in the item).
        skip: names that mean "no plugin here" (``data.format: auto``).
    """

    names: str
    shape: str = attrs.field(validator=attrs.validators.in_(CONFIG_SHAPES))
    options: str | None = None
    skip: tuple[str, ...] = ()

    def options_path(self, name: str) -> str:
        """The YAML path of plugin ``name``'s options (``monitoring.logger_options.wandb``)."""
        if self.shape == NAME_LIST:
            return f"{self.options}.{name}"
        return self.options or self.names


@attrs.frozen
class PluginKind:
    """One kind of plugin.

    Attributes:
        name: the kind as the registry and error messages spell it (``dataset_format``).
        hook: the hook spec plugins implement to register this kind (``register_dataset_formats``).
        returns: what the factory returns: a protocol of ``yolox_sdk.plugins.interfaces`` or a dotted
            name (``torch.optim.Optimizer``).
        factory_arguments: what the factory is called with, for the docs and ``yolox-sdk plugins``.
        config: where a config names plugins of this kind; ``None`` when only code uses them.
    """

    name: str
    hook: str
    returns: str
    factory_arguments: tuple[str, ...] = ("options",)
    config: ConfigSlot | None = None

    @property
    def label(self) -> str:
        """The kind in prose: ``dataset format``."""
        return self.name.replace("_", " ")


PLUGIN_KINDS: tuple[PluginKind, ...] = (
    PluginKind(
        "dataset_format",
        "register_dataset_formats",
        "DatasetFormat",
        config=ConfigSlot("data.format", SINGLE, "data.format_options", skip=("auto",)),
    ),
    PluginKind(
        "augmentation",
        "register_augmentations",
        "Augmentation",
        config=ConfigSlot("augmentation.custom", ITEM_LIST),
    ),
    PluginKind(
        "logger",
        "register_loggers",
        "Logger",
        ("options", "run_dir"),
        config=ConfigSlot("monitoring.loggers", NAME_LIST, "monitoring.logger_options"),
    ),
    PluginKind(
        "optimizer",
        "register_optimizers",
        "torch.optim.Optimizer",
        ("options", "model", "training"),
        config=ConfigSlot("training.optimizer", SINGLE, "training.optimizer_options"),
    ),
    PluginKind(
        "scheduler",
        "register_schedulers",
        "LrSchedule",
        ("options", "settings"),
        config=ConfigSlot("training.scheduler", SINGLE, "training.scheduler_options"),
    ),
    PluginKind(
        "callback",
        "register_callbacks",
        "Callback",
        config=ConfigSlot("training.callbacks", ITEM_LIST),
    ),
    PluginKind(
        "loss_term",
        "register_loss_terms",
        "LossTerm",
        ("options", "context"),
        config=ConfigSlot("training.losses", ITEM_LIST),
    ),
    PluginKind(
        "metric",
        "register_metrics",
        "Metric",
        config=ConfigSlot("evaluation.metrics", NAME_LIST, "evaluation.metric_options"),
    ),
    PluginKind(
        "exporter",
        "register_exporters",
        "Exporter",
        config=ConfigSlot("export.formats", NAME_LIST, "export.options"),
    ),
    PluginKind("runtime", "register_runtimes", "Runtime"),
)

KINDS: tuple[str, ...] = tuple(kind.name for kind in PLUGIN_KINDS)
