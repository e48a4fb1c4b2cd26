"""Choosing the device: ``auto`` prefers CUDA, then MPS, then CPU; failures fall back loudly, never silently."""

from __future__ import annotations

import logging

import torch

from yolox_sdk.config.schema import DeviceConfig
from yolox_sdk.errors import ConfigError

log = logging.getLogger(__name__)


def _cuda_works(index: int) -> str | None:
    """``None`` when CUDA device ``index`` can run a kernel, else the reason it cannot."""
    try:
        if not torch.cuda.is_available():
            return "no CUDA device is visible"
        if index >= torch.cuda.device_count():
            return f"gpu id {index} does not exist ({torch.cuda.device_count()} visible)"
        torch.zeros(1, device=f"cuda:{index}").add_(1)
        return None
    except Exception as error:  # noqa: BLE001 - any driver failure means "not usable"
        return f"CUDA failed to initialise: {error}"


def resolve_device(setting: DeviceConfig | str, local_rank: int | None = None) -> torch.device:
    """The torch device for ``setting`` (a ``DeviceConfig`` or a string such as ``auto``, ``cpu``, ``cuda:1``).

    Args:
        local_rank: this process's ``LOCAL_RANK`` under ``torchrun``: it takes GPU ``gpu_ids[local_rank]``
            (or ``local_rank``), and never MPS, on which ``torch.distributed`` cannot train. ``None`` for a
            single process, which takes ``gpu_ids[0]``. Either way a requested accelerator that cannot be
            used falls back to the CPU with a warning, or stops the run when ``fallback`` is off.

    Raises:
        ConfigError: when the requested accelerator cannot be used and ``fallback`` is off, or when
            ``gpu_ids`` lists fewer GPUs than ``torchrun`` started processes on this node.
    """
    config, index = _parse_device(setting) if isinstance(setting, str) else (setting, 0)
    if local_rank is not None:
        index = _gpu_for_rank(config, local_rank)
    elif config.gpu_ids:
        index = config.gpu_ids[0]
    if config.type == "cpu":
        return torch.device("cpu")
    if config.type in ("auto", "cuda"):
        problem = _cuda_works(index)
        if problem is None:
            return torch.device("cuda", index)
        if config.type == "auto" and not _cuda_visible():
            return torch.device("cpu") if local_rank is not None else _mps_or_cpu()
        return _fallback("cuda", problem, config.fallback)
    if config.type == "mps":
        if local_rank is not None:
            return _fallback("mps", "torch.distributed cannot train on MPS", config.fallback)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return _fallback("mps", "MPS is not available on this machine", config.fallback)
    raise ConfigError(f"Invalid config: device.type: unknown device '{config.type}'.")


def _gpu_for_rank(config: DeviceConfig, local_rank: int) -> int:
    """The GPU index of process ``local_rank`` of a node: ``gpu_ids[local_rank]``, else ``local_rank``."""
    if config.type not in ("auto", "cuda"):
        return local_rank
    ids = config.gpu_ids
    if ids is None:
        try:
            ids = list(range(torch.cuda.device_count()))
        except Exception:  # noqa: BLE001 - a broken driver: resolve_device falls back with the reason
            ids = []
        if not ids:
            return local_rank  # no GPU: resolve_device falls back (or refuses) with the reason
    if local_rank >= len(ids):
        raise ConfigError(
            f"Invalid config: device.gpu_ids lists {len(ids)} GPU(s) but torchrun started process "
            f"{local_rank} on this node. Start as many processes per node as device.gpu_ids has entries "
            "(torchrun --nproc_per_node)."
        )
    return ids[local_rank]


def _parse_device(text: str) -> tuple[DeviceConfig, int]:
    """``cuda:1`` -> (cuda, 1); a typo (``--device tpu``, ``cuda:x``) is a ``ConfigError`` saying what is valid."""
    kind, _, index = text.partition(":")
    try:
        return DeviceConfig(type=kind), int(index) if index else 0
    except ValueError as error:  # FieldError (unknown type) is a ValueError too
        raise ConfigError(
            f"Unknown device '{text}': expected auto, cpu, mps, cuda or cuda:N (N the GPU index, e.g. cuda:0). "
            f"{error}"
        ) from None


def _cuda_visible() -> bool:
    """A CUDA device is visible (its failing to initialise then deserves a warning even under ``auto``)."""
    try:
        return torch.cuda.device_count() > 0
    except Exception:  # noqa: BLE001 - a broken driver can raise here too
        return True


def _mps_or_cpu() -> torch.device:
    return torch.device("mps") if torch.backends.mps.is_available() else torch.device("cpu")


def _fallback(requested: str, problem: str, allowed: bool) -> torch.device:
    if not allowed:
        raise ConfigError(
            f"device.type is '{requested}' but {problem}. Set device.type: cpu, or device.fallback: true to "
            "fall back to the CPU automatically."
        )
    log.warning(
        "device.type is '%s' but %s; falling back to the CPU (device.fallback is true). Training on the CPU "
        "is much slower; fix the driver or set device.type: cpu to silence this.",
        requested,
        problem,
    )
    return torch.device("cpu")
