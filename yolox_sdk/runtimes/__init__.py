"""Loading any model file (a checkpoint, an ONNX file, whatever a runtime plugin accepts) for predict, eval
and benchmark.

``load_model(path)`` asks every installed ``runtime`` plugin whether it accepts the file and loads it with
the one that does. ``as_torch_module`` then gives the ``torch.nn.Module`` the SDK's existing evaluator
and ``Predictor`` call, so an exported file goes through exactly the postprocessing, NMS and pycocotools
evaluation a checkpoint does; only the forward pass differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolox_sdk.errors import ConfigError, PluginError, WeightsError

if TYPE_CHECKING:
    import torch

    from yolox_sdk.plugins.interfaces import LoadedModel
    from yolox_sdk.plugins.registry import Registry


def _runtimes(registry: Registry, options: dict[str, dict[str, Any]]) -> list[tuple[str, Any]]:
    from yolox_sdk.plugins.building import build_plugin

    return [
        (name, build_plugin(registry, "runtime", name, options.get(name, {}), f"runtime.{name}"))
        for name in registry.names("runtime")
    ]


def load_model(
    path: Path | str,
    device: str = "cpu",
    registry: Registry | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> LoadedModel:
    """Load ``path`` with the runtime plugin that accepts it.

    Args:
        path: a model file: ``.pt`` checkpoint, ``.onnx``, or any suffix an installed runtime accepts
            (a folder too, for formats stored as one, such as CoreML's ``.mlpackage``).
        device: ``cpu``, ``cuda``, ``cuda:1``...; runtimes that cannot use it say so.
        registry: the plugin registry; the process-wide one by default.
        options: per runtime name, its raw options (``{"onnxruntime": {"threads": 2}}``).

    Raises:
        WeightsError: the file does not exist, or the runtime cannot read it (the message names it).
        ConfigError: no installed runtime accepts the file's suffix.
        PluginError: more than one runtime accepts it.
    """
    path = Path(path)
    if not path.exists():  # a folder is fine when a runtime accepts it (a CoreML .mlpackage is one)
        raise WeightsError(f"Model file {path} does not exist.")
    if registry is None:
        from yolox_sdk.plugins import get_registry

        registry = get_registry()
    runtimes = _runtimes(registry, dict(options or {}))
    accepting = [(name, runtime) for name, runtime in runtimes if runtime.accepts(path)]
    if not accepting:
        known = sorted({suffix for _, runtime in runtimes for suffix in getattr(runtime, "suffixes", ())})
        raise ConfigError(
            f"No installed runtime reads {path}: its suffix '{path.suffix}' is none of {', '.join(known)}. Give "
            "a yolox-sdk checkpoint (.pt) or a file exported by `yolox-sdk export`, or install the runtime "
            f"plugin for this format (`yolox-sdk plugins` lists the runtimes installed).{_suffix_hint(path)}"
        )
    if len(accepting) > 1:
        raise PluginError(
            f"Several runtimes accept {path}: {', '.join(name for name, _ in accepting)}. Uninstall one of the "
            "plugins, or load the file with the runtime you want through its plugin directly."
        )
    return accepting[0][1].load(path, device)


def _suffix_hint(path: Path) -> str:
    """Which first-party plugin reads ``path``'s suffix, or why yolox-sdk has none, or an empty string."""
    from yolox_sdk.plugins.registry import FIRST_PARTY_SUFFIXES
    from yolox_sdk.plugins.unavailable import UNAVAILABLE_SUFFIXES

    suffix = path.suffix.lower()
    if suffix in UNAVAILABLE_SUFFIXES:
        return f" {UNAVAILABLE_SUFFIXES[suffix]}"
    distribution = FIRST_PARTY_SUFFIXES.get(suffix)
    if distribution is None:
        return ""
    return (
        f" '{suffix}' files are read by the plugin {distribution}: install it from a checkout of yolox-sdk with "
        f"`pip install ./plugins/{distribution}`."
    )


def as_torch_module(loaded: LoadedModel) -> torch.nn.Module:
    """The module the evaluator and ``Predictor`` run: the network itself for a PyTorch checkpoint,
    otherwise an adapter calling ``loaded.forward`` on numpy arrays."""
    import torch

    module = getattr(loaded, "module", None)
    if isinstance(module, torch.nn.Module):
        return module
    from yolox_sdk.runtimes.adapter import RuntimeModule

    return RuntimeModule(loaded)
