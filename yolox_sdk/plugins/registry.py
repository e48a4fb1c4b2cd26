"""The registry: every dataset format, augmentation, logger, ... by kind and name.

Filled by ``yolox_sdk.plugins.manager`` from the ``register_<kind>`` hooks; the kinds it holds are the
rows of ``yolox_sdk.plugins.kinds.PLUGIN_KINDS`` (``KINDS`` is re-exported here for callers). Lookups of an unknown name
raise a ``PluginError`` that lists what is available and suggests the closest name; a name claimed by two
plugins raises a ``PluginError`` naming both distributions when it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from yolox_sdk.errors import PluginError, did_you_mean
from yolox_sdk.plugins.kinds import KINDS, PLUGIN_KINDS, PluginKind
from yolox_sdk.plugins.unavailable import UNAVAILABLE_FEATURES

__all__ = ["FIRST_PARTY_PLUGINS", "FIRST_PARTY_SUFFIXES", "KINDS", "BrokenPlugin", "PluginEntry", "PluginOrigin", "Registry"]

# Features of the separately installed distributions in ``plugins/``: an unknown name that is one of these
# is answered with the command that installs it rather than only a did-you-mean.
FIRST_PARTY_PLUGINS: Mapping[tuple[str, str], str] = {
    ("exporter", "openvino"): "yolox-sdk-openvino",
    ("runtime", "openvino"): "yolox-sdk-openvino",
    ("exporter", "openvino-int8"): "yolox-sdk-openvino",
    ("exporter", "tflite"): "yolox-sdk-tflite",
    ("exporter", "tflite-int8"): "yolox-sdk-tflite",
    ("runtime", "tflite"): "yolox-sdk-tflite",
    ("exporter", "coreml"): "yolox-sdk-coreml",
    ("runtime", "coreml"): "yolox-sdk-coreml",
    ("logger", "wandb"): "yolox-sdk-wandb",
    ("logger", "mlflow"): "yolox-sdk-mlflow",
    ("dataset_format", "labelme"): "yolox-sdk-labelme",
}

# Model files read by the runtimes of those distributions: a file no installed runtime accepts is answered
# with the distribution that reads it.
FIRST_PARTY_SUFFIXES: Mapping[str, str] = {
    ".xml": "yolox-sdk-openvino",
    ".tflite": "yolox-sdk-tflite",
    ".mlpackage": "yolox-sdk-coreml",
}


@attrs.frozen
class PluginOrigin:
    """Where a registration came from: the plugin (entry point) name and its distribution."""

    plugin: str
    distribution: str = "unknown"
    version: str = ""

    def __str__(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"{self.distribution}{version} (plugin '{self.plugin}')"


@attrs.frozen
class PluginEntry:
    """One registered feature.

    Attributes:
        kind: the name of one of the registry's kinds (``KINDS`` by default).
        name: the name users write in YAML.
        factory: builds the feature; see the hook's docstring for its arguments.
        options: attrs class of the feature's own options, or ``None`` when it takes none.
        description: one line for ``yolox-sdk plugins``.
        origin: the plugin and distribution that registered it.
        always_on: used in every run without being named in the config (the ``csv`` logger).
        enabled_by: dotted config key that switches the feature on without naming it in a list: a
            boolean (``monitoring.tensorboard``) or a mapping whose ``enabled`` does and whose other keys
            are the feature's options (``monitoring.wandb``).
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    options: type | None
    description: str
    origin: PluginOrigin
    always_on: bool = False
    enabled_by: str | None = None


@attrs.frozen
class BrokenPlugin:
    """A plugin that failed to import or to register; reported, never fatal."""

    origin: PluginOrigin
    error: str


class Registry:
    """Registered features by kind and name, plus the plugins that failed to load.

    ``kinds`` defaults to the table in ``yolox_sdk.plugins.kinds``; a test or an embedding application
    may pass more rows (with their hook specs given to the manager).
    """

    def __init__(self, kinds: Iterable[PluginKind] = PLUGIN_KINDS) -> None:
        self.kinds: tuple[PluginKind, ...] = tuple(kinds)
        self._entries: dict[str, dict[str, PluginEntry]] = {kind.name: {} for kind in self.kinds}
        self._conflicts: dict[tuple[str, str], list[PluginEntry]] = {}
        self.broken: list[BrokenPlugin] = []

    def add(
        self,
        kind: str,
        origin: PluginOrigin,
        name: str,
        factory: Callable[..., Any],
        options: type | None = None,
        description: str = "",
        *,
        always_on: bool = False,
        enabled_by: str | None = None,
    ) -> None:
        """Register ``factory`` as ``name`` of ``kind``; a second claim on a name is kept as a conflict.

        ``always_on`` and ``enabled_by`` say how a config turns the feature on besides naming it (see
        ``PluginEntry``); the config layer reads them, so the core names no plugin.
        """
        self._check_kind(kind)
        if options is not None and not attrs.has(options):
            raise PluginError(
                f"{origin} registered {kind} '{name}' with options {options!r}, which is not an attrs "
                "class. Declare plugin options with @attrs.define so the SDK can validate them."
            )
        entry = PluginEntry(kind, name, factory, options, description, origin, always_on, enabled_by)
        existing = self._entries[kind].get(name)
        if existing is not None and existing.origin != origin:
            self._conflicts.setdefault((kind, name), [existing]).append(entry)
            return
        self._entries[kind][name] = entry

    def kind(self, name: str) -> PluginKind:
        """The row of the kinds table called ``name``."""
        self._check_kind(name)
        return next(kind for kind in self.kinds if kind.name == name)

    def _check_kind(self, kind: str) -> None:
        if kind not in self._entries:
            known = ", ".join(self._entries)
            raise PluginError(
                f"Unknown plugin kind '{kind}'; expected one of: {known}.{did_you_mean(kind, list(self._entries))}"
            )

    def names(self, kind: str) -> list[str]:
        """Sorted names registered for ``kind``."""
        return sorted(self._entries[kind])

    def entries(self, kind: str) -> list[PluginEntry]:
        """All entries of ``kind``, sorted by name."""
        return [self._entries[kind][name] for name in self.names(kind)]

    def conflicts(self) -> Mapping[tuple[str, str], list[PluginEntry]]:
        """Names claimed by more than one plugin, with every claimant."""
        return dict(self._conflicts)

    def get(self, kind: str, name: str) -> PluginEntry:
        """Look up ``name`` of ``kind``, with a did-you-mean error when it is unknown."""
        self._check_kind(kind)
        claimants = self._conflicts.get((kind, name))
        if claimants:
            who = " and ".join(str(entry.origin) for entry in claimants)
            raise PluginError(
                f"The {kind.replace('_', ' ')} '{name}' is registered by more than one plugin: {who}. "
                "Uninstall one of these distributions, or disable one with YOLOX_SDK_PLUGINS."
            )
        entry = self._entries[kind].get(name)
        if entry is None and (kind, name) in UNAVAILABLE_FEATURES:
            raise PluginError(f"No {kind.replace('_', ' ')} '{name}'. {UNAVAILABLE_FEATURES[kind, name]}")
        if entry is None:
            available = ", ".join(self.names(kind)) or "none"
            raise PluginError(
                f"Unknown {kind.replace('_', ' ')} '{name}'.{did_you_mean(name, self.names(kind))} "
                f"Available: {available}. Run `yolox-sdk plugins` to see what is installed.{_install_hint(kind, name)}"
            )
        return entry


def _install_hint(kind: str, name: str) -> str:
    """How to install the first-party distribution providing ``name``, or an empty string."""
    distribution = FIRST_PARTY_PLUGINS.get((kind, name))
    if distribution is None:
        return ""
    return (
        f" The {kind.replace('_', ' ')} '{name}' comes with the plugin {distribution}: install it from a checkout "
        f"of yolox-sdk with `pip install ./plugins/{distribution}`."
    )
