"""Pretrained weights: where they come from and how they are loaded into a model of any class count.

Resolution order for a weights name such as ``yolox-nano``: a catalogued file in an offline mirror
(``$YOLOX_SDK_ASSETS``, verified against the catalog's sha256), the cache (``$YOLOX_SDK_HOME/weights``,
verified against the official sha256), then a download of the official release. A local path or an
``http(s)://``/``file://`` URL is used as given.

Loading keeps every tensor whose name and shape match and leaves the rest with the fresh model's YOLOX
initialisation (for a new class count: the class predictors, whose biases get the prior-probability init).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from yolox_sdk.assets.catalog import cache_home, find_in_mirrors, mirror_error
from yolox_sdk.assets.download import download, verify_sha256
from yolox_sdk.checkpoints.torch_files import load_torch_file
from yolox_sdk.errors import CheckpointError, WeightsError
from yolox_sdk.models.structure import fit_structure, pruned_layers
from yolox_sdk.models.variants import PRETRAINED

log = logging.getLogger(__name__)


def resolve_weights(source: str | Path, variant: str | None = None, base_url: str | None = None) -> Path:
    """Find (or download) a weights file.

    Args:
        source: a variant name (``yolox-nano``), a local path, or a URL.
        variant: the model variant, used when ``source`` is ``"coco"``/``True``-like (its COCO weights).
        base_url: replaces the official release folder URL (mirrors, tests with a local server).

    Raises:
        WeightsError: when the file cannot be found, downloaded or verified.
    """
    text = str(source)
    if text in ("coco", "True", "true") and variant:
        text = variant
    if "://" in text:
        return _download_url(text)
    name = text.lower().replace("_", "-")
    if name in PRETRAINED:
        return _resolve_named(name, base_url)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    known = ", ".join(PRETRAINED)
    raise WeightsError(
        f"Weights '{text}' are neither a file nor a known name ({known}). Give a path to a .pth file, a URL, "
        "or one of those names."
    )


def _resolve_named(name: str, base_url: str | None) -> Path:
    hit = find_in_mirrors("weights", name)
    if hit is not None:
        verify_sha256(hit.path, hit.sha256)
        log.info("Weights %s: offline mirror %s (%s)", name, hit.path, hit.entry.get("note", "catalogued"))
        return hit.path
    official = PRETRAINED[name]
    cached = cache_home() / "weights" / official.file
    if cached.is_file():
        verify_sha256(cached, official.sha256, remove_on_mismatch=True)
        log.info("Weights %s: cache %s", name, cached)
        return cached
    url = f"{base_url.rstrip('/')}/{official.file}" if base_url else official.url
    log.info("Weights %s: downloading %s", name, url)
    try:
        return download(url, cached, official.sha256, official.size)
    except WeightsError as error:
        raise mirror_error("weights", name, str(error)) from error


def _download_url(url: str) -> Path:
    if url.startswith("file://"):
        path = Path(url.removeprefix("file://"))
        if not path.is_file():
            raise WeightsError(f"Weights URL {url} points to no file.")
        return path
    cached = cache_home() / "weights" / "urls" / Path(url.split("?")[0]).name
    return cached if cached.is_file() else download(url, cached)


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read model weights from one of our checkpoints or an official ``{"model": state_dict}`` file.

    Returns:
        The state dict (EMA weights when the checkpoint has them) and the checkpoint's metadata
        (empty for official files).
    """
    payload = load_torch_file(path)
    if isinstance(payload, Mapping) and "model" in payload and isinstance(payload["model"], Mapping):
        state = payload.get("ema") or payload["model"]
        meta = payload.get("meta")
        return _tensors_only(path, state), dict(meta) if isinstance(meta, Mapping) else {}
    if (
        isinstance(payload, Mapping)
        and payload
        and all(isinstance(v, torch.Tensor) for v in payload.values())
    ):
        return dict(payload), {}
    raise CheckpointError(
        f"{path} holds no model weights: expected a yolox-sdk checkpoint or an official YOLOX file with a 'model' key."
    )


def _tensors_only(path: Path, state: Any) -> dict[str, torch.Tensor]:
    """The state dict, refused when it holds anything but named tensors (an edited or foreign file)."""
    if not isinstance(state, Mapping) or not all(
        isinstance(name, str) and isinstance(value, torch.Tensor) for name, value in state.items()
    ):
        raise CheckpointError(
            f"{path} has a 'model' entry that is not a state dict (parameter names to tensors). Use a yolox-sdk "
            "checkpoint or an official YOLOX .pth file."
        )
    return dict(state)


def load_initial_weights(
    model: nn.Module, source: bool | str | Path | None, variant: str, strict_shapes: bool = True
) -> TransferReport | None:
    """Initialise ``model`` from ``source``: the one way weights get into a new network (``create_model``
    and training's ``model.checkpoint``/``model.pretrained`` both come here).

    Args:
        source: ``True`` for ``variant``'s COCO weights; a weights name, path or URL (``resolve_weights``);
            ``False`` or ``None`` for none.
        strict_shapes: refuse weights of another variant (see ``load_matching_weights``).

    Returns:
        What was transferred, with the resolved file as ``source``; ``None`` when no weights were asked for.
    """
    if source is False or source is None:
        return None
    wanted = variant if source is True else source
    path = resolve_weights(wanted, variant=variant)
    state, meta = read_state_dict(path)
    if _pruned_from_this_architecture(model, state, meta, path):
        reshaped = fit_structure(model, state, str(path))
        log.info(
            "Initial weights %s are channel-pruned: %d layers take their pruned shapes.", wanted, reshaped
        )
        _initialize_prediction_biases(model)
    report = attrs.evolve(load_matching_weights(model, state, strict_shapes=strict_shapes), source=path)
    log.info("Initial weights %s: %s", wanted, report.summary())
    return report


def _pruned_from_this_architecture(
    model: nn.Module, state: Mapping[str, torch.Tensor], meta: Mapping[str, Any], path: Path
) -> bool:
    """Whether ``state`` is a channel-pruned version of ``model``'s own architecture.

    Only our checkpoints qualify, and only when the unpruned network of their own model spec has
    ``model``'s shapes (the class count aside): weights of a narrower variant (yolox-tiny into a yolox-s
    config) also have fewer channels, and must keep being refused as another variant's, not become a
    "pruned yolox-s".
    """
    if not pruned_layers(model, state) or not isinstance(meta.get("spec"), Mapping):
        return False
    from yolox_sdk.checkpoints.format import checked_spec
    from yolox_sdk.models.factory import build_model

    own_spec = checked_spec(path, meta["spec"])
    with torch.device("meta"):
        unpruned = build_model(own_spec)
    return _same_shapes(unpruned, model)


def _initialize_prediction_biases(model: nn.Module) -> None:
    """YOLOX's prior-probability biases again, for prediction convolutions rebuilt at their pruned shapes
    (a new class count keeps them where the checkpoint's tensors do not fit)."""
    from yolox_sdk.models.factory import PRIOR_PROBABILITY

    model.head.initialize_biases(PRIOR_PROBABILITY)


def _same_shapes(first: nn.Module, second: nn.Module) -> bool:
    """Same tensor names and shapes, the head's prediction convolutions (class count) aside."""
    from yolox_sdk.models.structure import is_prediction_layer

    one, two = first.state_dict(), second.state_dict()
    return set(one) == set(two) and all(
        is_prediction_layer(name) or one[name].shape == two[name].shape for name in one
    )


@attrs.frozen
class TransferReport:
    """What ``load_matching_weights`` did; ``source`` is the weights file, when the caller knows it (the
    trainer records its sha256 in the run's lineage)."""

    transferred: int
    total: int
    reinitialised: tuple[str, ...]
    unused: tuple[str, ...]
    source: Path | None = None

    def summary(self) -> str:
        """``transferred N/M tensors, reinitialised: ...`` for the run log."""
        text = f"transferred {self.transferred}/{self.total} tensors"
        if self.reinitialised:
            text += f", reinitialised: {', '.join(self.reinitialised)}"
        if self.unused:
            text += f"; {len(self.unused)} checkpoint tensors unused"
        return text


def load_matching_weights(
    model: nn.Module, state: Mapping[str, torch.Tensor], strict_shapes: bool = False
) -> TransferReport:
    """Copy every tensor of ``state`` whose name and shape match ``model``; keep the model's init for the rest.

    Args:
        strict_shapes: raise instead of re-initialising when fewer than half of the tensors match, which
            means the weights belong to another variant.
    """
    own = model.state_dict()
    kept = {name: tensor for name, tensor in state.items() if name in own and own[name].shape == tensor.shape}
    reinitialised = tuple(sorted(set(own) - set(kept)))
    unused = tuple(sorted(set(state) - set(kept)))
    if strict_shapes and len(kept) < len(own) / 2:
        raise CheckpointError(
            f"Only {len(kept)}/{len(own)} tensors of the checkpoint fit this model: it was trained for another "
            "variant or depth/width. Set model.name to the checkpoint's variant."
        )
    model.load_state_dict({**own, **kept})
    return TransferReport(len(kept), len(own), reinitialised, unused)
