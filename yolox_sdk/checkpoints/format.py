"""Our checkpoint format, written atomically and self-describing.

A checkpoint holds, besides the weights, everything needed to use them later without the training
config: the model spec (variant, depth/width, input size, class count), the class names, the resolved
config and the SDK version. ``eval``, ``predict`` and ``export`` therefore need nothing but the file.
Training state (optimizer, EMA, epoch, iteration, RNG states) is included for ``--resume``.

Files are written to a temporary name in the same folder, flushed to disk and renamed, so a crash or
``kill -9`` never leaves a half-written checkpoint under the final name. Each file also carries a sha256
of its content (``content_digest``: why over values, not file bytes, is explained there), checked on
every load, so a file damaged after it was written (disk, copy, sync tool) is refused instead of silently
resuming from wrong weights. Files written before the digest existed have none and load as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from yolox_sdk.checkpoints.content_digest import content_digest
from yolox_sdk.checkpoints.torch_files import atomic_torch_save, load_torch_file
from yolox_sdk.errors import CheckpointError
from yolox_sdk.models.variants import ModelSpec
from yolox_sdk.plain_values import is_finite_number, is_whole_number

FORMAT_VERSION = 1
FORMAT_NAME = "yolox-sdk-checkpoint"
DIGEST_KEY = "sha256"
# What the digest covers: everything but the format markers and the digest itself.
DIGESTED_KEYS = ("format_version", "model", "ema", "meta", "training_state")


def _sdk_version() -> str:
    from yolox_sdk import __version__

    return __version__


@attrs.define
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        model: the model state dict (raw weights).
        ema: the EMA state dict, or ``None``; the EMA weights are what evaluation uses.
        spec: the model spec the weights fit.
        class_names: the class names, index = class id.
        config: the resolved run config as plain data (may be empty for converted files).
        sdk_version: the SDK version that wrote it.
        training_state: optimizer, epoch, iteration, RNG, metrics (empty for inference-only files).
        lineage: where the weights came from (parent weights, dataset fingerprint, versions, git commit;
            see ``yolox_sdk.engine.lineage``); empty for files written before lineage existed.
        recommended_conf: the confidence threshold with the highest F1 on the data ``yolox-sdk run``
            evaluated it on (``predict --conf auto`` and exports use it); ``None`` when never measured.
        pruning: what ``yolox-sdk prune`` did (method, ratio, parameters and MACs before/after, the file
            it pruned), as plain data; empty for unpruned files. Only a record: the pruned structure
            itself is read from the tensors' shapes (``yolox_sdk.models.structure``).
        path: the file it was loaded from (``None`` for one built in memory); not saved.
    """

    model: dict[str, torch.Tensor]
    spec: ModelSpec
    class_names: tuple[str, ...]
    ema: dict[str, torch.Tensor] | None = None
    config: dict[str, Any] = attrs.field(factory=dict)
    sdk_version: str = ""
    training_state: dict[str, Any] = attrs.field(factory=dict)
    lineage: dict[str, Any] = attrs.field(factory=dict)
    recommended_conf: float | None = None
    pruning: dict[str, Any] = attrs.field(factory=dict)
    path: Path | None = attrs.field(default=None, eq=False)

    @property
    def inference_weights(self) -> dict[str, torch.Tensor]:
        """EMA weights when present (those are the evaluated ones), else the raw weights."""
        return self.ema if self.ema is not None else self.model


def payload_digest(payload: Mapping[str, Any]) -> str:
    """The sha256 stored under ``DIGEST_KEY``: over the payload's content, see ``content_digest``."""
    return content_digest({key: payload.get(key) for key in DIGESTED_KEYS})


def save_checkpoint(path: Path, checkpoint: Checkpoint, keep_previous: Path | None = None) -> Path:
    """Write ``checkpoint`` atomically to ``path``, with its content digest.

    ``keep_previous``: where the file being replaced is moved first (the trainer keeps the previous
    ``last.pt`` as ``last.prev.pt``, the fallback when the newest file turns out damaged).
    """
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": checkpoint.model,
        "ema": checkpoint.ema,
        "meta": {
            "spec": attrs.asdict(checkpoint.spec),
            "class_names": list(checkpoint.class_names),
            "config": checkpoint.config,
            "sdk_version": checkpoint.sdk_version or _sdk_version(),
            "lineage": checkpoint.lineage,
            **(
                {}
                if checkpoint.recommended_conf is None
                else {"recommended_conf": checkpoint.recommended_conf}
            ),
            **({"pruning": checkpoint.pruning} if checkpoint.pruning else {}),
        },
        "training_state": checkpoint.training_state,
    }
    payload[DIGEST_KEY] = payload_digest(payload)
    atomic_torch_save(payload, path, keep_previous=keep_previous)
    return path


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Read one of our checkpoints.

    Raises:
        CheckpointError: for a missing, truncated, damaged (content digest mismatch) or foreign file (an
            official YOLOX file is refused here with a hint: it carries no class names; use it as
            ``model.pretrained`` instead).
    """
    path = Path(path)
    payload = load_torch_file(path)
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{path} is not a yolox-sdk checkpoint (no class names or model spec inside). An official YOLOX "
            "file can be used as starting weights: set model.pretrained or model.checkpoint to it and train."
        )
    verify_digest(path, payload)
    meta = _section(path, payload, "meta", Mapping)
    return Checkpoint(
        model=_state_dict(path, payload, "model"),
        ema=_state_dict(path, payload, "ema") if payload.get("ema") is not None else None,
        spec=_spec(path, _section(path, meta, "spec", Mapping)),
        class_names=_class_names(path, meta),
        config=dict(_section(path, meta, "config", Mapping, default={})),
        sdk_version=str(meta.get("sdk_version", "")),
        training_state=dict(_section(path, payload, "training_state", Mapping, default={})),
        lineage=_lineage(meta),
        recommended_conf=_recommended_conf(path, meta),
        pruning=dict(_section(path, meta, "pruning", Mapping, default={})),
        path=path,
    )


# The bounds a checkpoint's model spec must keep: a hostile file must not make us build a model that
# exhausts memory, or hand YOLOX values its constructors were never meant to see.
_MAX_CLASSES = 100_000
_MAX_MULTIPLIER = 4.0
_MAX_INPUT = 4096
_ACTIVATIONS = ("silu", "relu", "lrelu")


def _damaged(path: Path, what: str) -> CheckpointError:
    return CheckpointError(
        f"Checkpoint {path} is malformed: {what}. It was edited or written by other software; use a checkpoint "
        "written by yolox-sdk (or an official YOLOX .pth as model.pretrained)."
    )


def _section(path: Path, data: Mapping[str, Any], key: str, kind: type, default: Any = None) -> Any:
    value = data.get(key, default)
    if not isinstance(value, kind):
        raise _damaged(path, f"'{key}' should be a {kind.__name__}, found {type(value).__name__}")
    return value


def _state_dict(path: Path, payload: Mapping[str, Any], key: str) -> dict[str, torch.Tensor]:
    state = _section(path, payload, key, Mapping)
    wrong = next((name for name, value in state.items() if not isinstance(value, torch.Tensor)), None)
    if wrong is not None or not all(isinstance(name, str) for name in state):
        raise _damaged(
            path, f"'{key}' should map parameter names to tensors (entry {wrong!r} is not a tensor)"
        )
    return dict(state)


def checked_spec(path: Path, fields: Mapping[str, Any]) -> ModelSpec:
    """A model spec read from a file (``meta['spec']``), checked before any network is built from it.

    Raises:
        CheckpointError: naming ``path``, for missing fields, wrong types or values out of bounds.
    """
    return _spec(path, fields)


def _spec(path: Path, fields: Mapping[str, Any]) -> ModelSpec:
    """The model spec, checked field by field before any network is built from it."""
    try:
        spec = ModelSpec(**fields)
    except (TypeError, ValueError, IndexError, OverflowError) as error:
        raise _damaged(
            path, f"its model spec {dict(fields)!r} is incomplete or of the wrong types ({error})"
        ) from None
    checks = [
        (isinstance(spec.name, str), "name is not a string"),
        (
            is_finite_number(spec.depth) and 0 < spec.depth <= _MAX_MULTIPLIER,
            f"depth should be in (0, {_MAX_MULTIPLIER}]",
        ),
        (
            is_finite_number(spec.width) and 0 < spec.width <= _MAX_MULTIPLIER,
            f"width should be in (0, {_MAX_MULTIPLIER}]",
        ),
        (isinstance(spec.depthwise, bool), "depthwise should be true or false"),
        (
            is_whole_number(spec.num_classes) and 1 <= spec.num_classes <= _MAX_CLASSES,
            f"num_classes should be 1..{_MAX_CLASSES}",
        ),
        (
            all(32 <= side <= _MAX_INPUT and side % 32 == 0 for side in spec.input_size),
            f"input_size sides should be multiples of 32 up to {_MAX_INPUT}",
        ),
        (spec.act in _ACTIVATIONS, f"act should be one of {', '.join(_ACTIVATIONS)}"),
    ]
    problems = [problem for ok, problem in checks if not ok]
    if problems:
        raise _damaged(path, f"its model spec has {'; '.join(problems)} (spec: {attrs.asdict(spec)})")
    return spec


def _lineage(meta: Mapping[str, Any]) -> dict[str, Any]:
    lineage = meta.get("lineage")
    return dict(lineage) if isinstance(lineage, Mapping) else {}


def _recommended_conf(path: Path, meta: Mapping[str, Any]) -> float | None:
    """``meta['recommended_conf']``: absent in files written before it existed (or never evaluated)."""
    value = meta.get("recommended_conf")
    if value is None:
        return None
    if not is_finite_number(value) or not 0 <= value <= 1:
        raise _damaged(path, f"its recommended_conf should be a number in [0, 1], found {value!r}")
    return float(value)


def _class_names(path: Path, meta: Mapping[str, Any]) -> tuple[str, ...]:
    names = meta.get("class_names")
    if not isinstance(names, list | tuple) or not all(isinstance(name, str) for name in names):
        raise _damaged(path, "its class names should be a list of strings")
    spec = meta["spec"]
    if len(names) != spec.get("num_classes"):
        raise _damaged(
            path, f"it has {len(names)} class names for a model of {spec.get('num_classes')} classes"
        )
    return tuple(names)


def verify_digest(path: Path, payload: Mapping[str, Any]) -> None:
    """Check the stored content digest; files written before digests existed have none and pass.

    Raises:
        CheckpointError: naming the file, when its content no longer matches the digest saved with it.
    """
    stored = payload.get(DIGEST_KEY)
    if stored is None:
        return
    actual = payload_digest(payload)
    if actual != stored:
        raise CheckpointError(
            f"Checkpoint {path} is damaged: its content sha256 is {actual[:16]}..., but the file was saved "
            f"with {str(stored)[:16]}... (a weight, optimizer or training-state value changed after it was "
            "written). Do not use it: resume falls back to an earlier checkpoint of the run (last.prev.pt, "
            "epoch_N.pt), or point at one of those yourself."
        )
