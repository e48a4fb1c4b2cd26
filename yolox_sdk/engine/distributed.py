"""Multi-process training with ``torch.distributed``: one process per device, launched by ``torchrun``.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; ``init_distributed`` reads them, joins the
process group (NCCL on CUDA, gloo on CPU) and picks this process's device. Without those variables (a
plain ``yolox-sdk train``) it returns a single-process context and nothing else changes.

Conventions the trainer follows so that N processes train like one:

- ``data.batch_size`` is the *global* batch per step, as YOLOX's ``-b``; each process takes
  ``batch_size / world_size`` images of every global batch (see ``TrainSampler.shard``), in the order
  one process would have used.
- The YOLOX loss divides by the number of foreground anchors of its batch; each process rescales its
  loss by ``local_fg * world_size / global_fg`` (``global_loss_weight``), so the averaged gradient is
  the gradient of the loss normalised over the global batch, not a mean of per-process normalisations.
  With frozen (or synchronised) BatchNorm a 2-process run then matches 1 process with the same global
  batch up to float rounding.
- Only rank 0 logs, evaluates and writes files; the others wait at a barrier and learn what they need
  (run directory, whether to stop) by broadcast.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Mapping
from typing import Any

import attrs
import torch
import torch.distributed as dist

from yolox_sdk.config.schema import DeviceConfig
from yolox_sdk.engine.devices import resolve_device
from yolox_sdk.errors import ConfigError

log = logging.getLogger(__name__)

TIMEOUT = datetime.timedelta(minutes=30)
# Overrides the backend, e.g. gloo for several processes sharing one GPU (NCCL refuses that).
BACKEND_VARIABLE = "YOLOX_SDK_DIST_BACKEND"


@attrs.frozen
class DistributedContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates and saves."""
        return self.rank == 0


def context_from_environment(environ: Mapping[str, str] | None = None) -> DistributedContext:
    """The context ``torchrun`` describes in the environment (single process when it is absent)."""
    env = os.environ if environ is None else environ
    world_size = int(env.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    return DistributedContext(int(env["RANK"]), world_size, int(env.get("LOCAL_RANK", env["RANK"])))


def device_for_rank(
    context: DistributedContext, device: DeviceConfig | str, gpu_ids: list[int] | None = None
) -> torch.device:
    """This process's device: ``devices.resolve_device`` for its ``LOCAL_RANK``, so a requested GPU that
    cannot be used falls back to the CPU with a warning (or stops the run without ``device.fallback``),
    exactly as in a single process.

    ``device`` is the run's ``DeviceConfig``; a device type string with ``gpu_ids`` is accepted too (then
    ``device.fallback`` takes its default).
    """
    setting = device if isinstance(device, DeviceConfig) else DeviceConfig(type=device, gpu_ids=gpu_ids)
    return resolve_device(setting, local_rank=context.local_rank)


def init_distributed(context: DistributedContext, device: torch.device) -> None:
    """Join the process group (NCCL for CUDA devices, gloo for CPU) unless already joined."""
    if not context.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = os.environ.get(BACKEND_VARIABLE) or ("nccl" if device.type == "cuda" else "gloo")
    dist.init_process_group(backend, rank=context.rank, world_size=context.world_size, timeout=TIMEOUT)
    log.info(
        "Process %d of %d joined the %s process group on %s.",
        context.rank,
        context.world_size,
        backend,
        device,
    )


def shutdown() -> None:
    """Leave the process group (safe to call when not distributed)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def check_batch_size(batch_size: int, context: DistributedContext) -> int:
    """Images per process and step; ``data.batch_size`` must split evenly over the processes."""
    if batch_size % context.world_size:
        raise ConfigError(
            f"Invalid config: data.batch_size is {batch_size}, which does not split over "
            f"{context.world_size} processes. data.batch_size is the global batch of one step; make it a "
            f"multiple of the process count (e.g. {context.world_size * max(1, batch_size // context.world_size)})."
        )
    return batch_size // context.world_size


def _device_of_group() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )


def average_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Each metric averaged over all processes (the same keys on every process, in any order)."""
    if not dist.is_initialized() or not metrics:
        return dict(metrics)
    keys = sorted(metrics)
    tensor = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64, device=_device_of_group())
    dist.all_reduce(tensor)
    tensor /= dist.get_world_size()
    return dict(zip(keys, tensor.tolist(), strict=True))


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every process."""
    if not dist.is_initialized():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if dist.is_initialized():
        dist.barrier()


def step_agreement(local_fg: float, finite: bool, context: DistributedContext) -> tuple[float, bool]:
    """What all processes must agree on before a backward pass, in one all-reduce.

    Returns the factor that turns this process's loss (normalised by its own foreground count) into its
    share of the loss normalised by the global foreground count, given that DDP averages gradients; and
    whether every process's loss is finite (all skip the step together, or none does).
    """
    if not context.enabled:
        return 1.0, finite
    tensor = torch.tensor([local_fg, 0.0 if finite else 1.0], dtype=torch.float64, device=_device_of_group())
    dist.all_reduce(tensor)
    total_fg, bad = tensor.tolist()
    return local_fg * context.world_size / max(total_fg, 1.0), bad == 0


def foreground_count(outputs: Mapping[str, Any], targets: torch.Tensor, num_gts: int | None = None) -> float:
    """Foreground anchors YOLOX normalised this batch's loss by.

    The ``yolox`` head reports ``num_fg / max(num_gts, 1)`` (with ``num_fg`` clamped to at least 1); the
    ground-truth count is the number of non-empty target rows, counted the way the head counts them
    (``num_gts``, when the caller read it back already, saves a host synchronisation).
    """
    ratio = float(outputs["num_fg"])
    if num_gts is None:
        num_gts = int((targets.sum(dim=2) > 0).sum())
    return round(ratio * max(num_gts, 1))
