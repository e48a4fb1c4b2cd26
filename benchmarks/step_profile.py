"""Where a real training step's time goes: data wait, forward, loss (SimOTA within it), backward, optimizer,
EMA and the host read-back of the losses, at each batch size, on the current device.

It builds a run exactly as ``yolox-sdk train`` does (``engine.setup.build_training_parts``: the config's
data, augmentation, loader, model, precision, optimizer and EMA), then runs the product's own
``engine.training_step.train_step`` with timers around its parts:

| phase | what is timed |
|---|---|
| data wait | ``next()`` on the training loader (decoding, augmentation, collation not hidden by workers) |
| forward | the step's time minus every phase below (the network's forward, the copy to the device) |
| loss | YOLOX head's ``get_losses`` (IoU, objectness, class and L1 terms) without SimOTA |
| SimOTA | label assignment: the head's ``assign_batch`` (``training.assignment: batched``) or its ``get_assignments`` calls (``yolox``, image by image) |
| backward | ``Precision.backward`` |
| optimizer | ``Precision.step`` (clipping, fp16 unscaling) and ``zero_grad`` |
| EMA | ``WeightAverage.update`` (``engine.ema``) |
| read-back | the one transfer of the ground-truth count and the loss values to the host (``read_back``: a host synchronisation on a GPU) |

On CUDA each timer synchronises the device at its edges, so every phase is charged its own kernels; that
adds a few synchronisations the unprofiled trainer does not make, so the total is a little above an
unprofiled step (printed beside it: a plain timed run of the same steps first). The trainer's logging and
evaluation are outside the step and not in this table (log lines are written every ``log_interval``
iterations; evaluation is timed in ``yolox-sdk train``'s own summary).

    .venv/bin/python benchmarks/step_profile.py --device cpu                     # nano 416, batches 8 and 64
    .venv/bin/python benchmarks/step_profile.py --device cuda --model yolox-s --input-size 640 --steps 20

Prints the CPU model and flags (or the GPU), torch's thread count, then one table per batch size: each
phase's milliseconds per step and share of the step.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

PHASES = ("data wait", "forward", "loss", "SimOTA", "backward", "optimizer", "EMA", "read-back")


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")
    parser.add_argument("--model", default="yolox-nano")
    parser.add_argument("--input-size", type=int, default=416)
    parser.add_argument("--batch-sizes", default="8,64", help="Comma-separated batch sizes.")
    parser.add_argument("--steps", type=int, default=6, help="Profiled steps per batch size.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps first.")
    parser.add_argument("--data", default="bccd", help="Dataset path or catalog name.")
    parser.add_argument("--format", default="voc")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Config override.")
    return parser.parse_args(argv)


class PhaseTimer:
    """Wall time per phase, device-synchronised at each edge on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.depth = 0  # SimOTA runs inside the loss: its time is taken out of the loss's

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.sync()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] += time.perf_counter() - started

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return function(*args, **kwargs)

        return timed


def build_parts(arguments: argparse.Namespace, batch_size: int, run_root: Path) -> Any:
    """The ``TrainingParts`` ``yolox-sdk train`` would build for this model, data and batch size."""
    from yolox_sdk.config.loader import load_config
    from yolox_sdk.engine import distributed, setup
    from yolox_sdk.plugins.manager import get_registry

    overrides = [
        f"model.name={arguments.model}",
        f"model.input_size=[{arguments.input_size},{arguments.input_size}]",
        f"data.train_path={arguments.data}",
        "data.train_split=train",
        f"data.format={arguments.format}",
        f"data.batch_size={batch_size}",
        "data.val_path=null",
        f"device.type={arguments.device.split(':')[0]}",
        f"monitoring.output_dir={run_root}",
        "monitoring.progress_bar=false",
        *arguments.overrides,
    ]
    config = load_config(None, overrides)
    return setup.build_training_parts(config, get_registry(), distributed.context_from_environment())


@contextlib.contextmanager
def instrumented(parts: Any, timer: PhaseTimer) -> Iterator[None]:
    """Timers around the step's parts: on these objects only (the classes are left alone), and on the
    step module's read-back function until the block ends."""
    from yolox_sdk.engine import training_step

    read_back = training_step.read_back
    instrument(parts, timer)
    try:
        yield
    finally:
        training_step.read_back = read_back


def instrument(parts: Any, timer: PhaseTimer) -> None:
    """Put timers around the step's parts (``instrumented`` undoes the one module-level change)."""
    from yolox_sdk.engine import training_step

    head = parts.model.head
    assign_name = "assign_batch" if hasattr(head, "assign_batch") else "get_assignments"
    original_assign = getattr(head, assign_name)

    def assignments(*args: Any, **kwargs: Any) -> Any:
        timer.depth += 1
        try:
            with timer.phase("SimOTA"):
                return original_assign(*args, **kwargs)
        finally:
            timer.depth -= 1

    setattr(head, assign_name, assignments)
    head.get_losses = timer.wrap("loss", head.get_losses)
    parts.precision.backward = timer.wrap("backward", parts.precision.backward)
    parts.precision.step = timer.wrap("optimizer", parts.precision.step)
    parts.optimizer.zero_grad = timer.wrap("optimizer", parts.optimizer.zero_grad)
    if parts.ema is not None:
        parts.ema.update = timer.wrap("EMA", parts.ema.update)
    training_step.read_back = timer.wrap("read-back", training_step.read_back)


def batches(loader: Any) -> Iterator[Any]:
    """The loader's batches, epoch after epoch."""
    epoch = 0
    while True:
        if hasattr(loader, "sampler") and hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def run_steps(parts: Any, stream: Iterator[Any], steps: int, timer: PhaseTimer | None) -> list[float]:
    """``steps`` training steps through the product's ``train_step``; each step's seconds (data included)."""
    from yolox_sdk.engine.setup import base_learning_rate
    from yolox_sdk.engine.training_step import NonFiniteGuard, train_step

    guard = NonFiniteGuard(10, lambda: (0, 0, Path("last.pt")))
    lr = base_learning_rate(parts.config)  # the rate after warm-up: the step's cost does not depend on it
    durations = []
    for _ in range(steps):
        started = time.perf_counter()
        if timer is not None:
            with timer.phase("data wait"):
                images, targets = next(stream)
        else:
            images, targets = next(stream)
        train_step(parts, parts.model, lr, images, targets, True, guard)
        if parts.device.type == "cuda":
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - started)
    return durations


def profile(arguments: argparse.Namespace, batch_size: int) -> dict[str, Any]:
    """One batch size: plain timed steps, then the same number profiled."""
    with tempfile.TemporaryDirectory(prefix="step-profile-") as folder:
        parts = build_parts(arguments, batch_size, Path(folder))
        parts.model.train()
        stream = batches(parts.loader)
        run_steps(parts, stream, arguments.warmup, None)
        plain = run_steps(parts, stream, arguments.steps, None)
        timer = PhaseTimer(parts.device)
        with instrumented(parts, timer):
            profiled = run_steps(parts, stream, arguments.steps, timer)
    total = sum(profiled)
    seconds = dict(timer.seconds)
    seconds["loss"] -= seconds["SimOTA"]  # SimOTA runs inside get_losses
    measured = sum(value for name, value in seconds.items() if name != "forward")
    seconds["forward"] = total - measured
    return {
        "batch_size": batch_size,
        "plain_ms": 1000 * statistics.median(plain),
        "profiled_ms": 1000 * total / len(profiled),
        "images_per_second": batch_size / statistics.median(plain),
        "phases_ms": {name: 1000 * seconds[name] / len(profiled) for name in PHASES},
        "shares": {name: seconds[name] / total for name in PHASES},
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"batch {result['batch_size']}: {result['plain_ms']:.1f} ms per step unprofiled "
        f"({result['images_per_second']:.1f} img/s), {result['profiled_ms']:.1f} ms profiled",
        f"{'phase':<10} {'ms/step':>9} {'share':>7}",
    ]
    for name in PHASES:
        lines.append(f"{name:<10} {result['phases_ms'][name]:>9.1f} {100 * result['shares'][name]:>6.1f}%")
    return "\n".join(lines)


def machine(device: str) -> str:
    from yolox_sdk.benchmarking.measure import cpu_description

    cpu = cpu_description()
    flags = " ".join(
        flag for flag in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if _has_flag(flag)
    )
    text = f"CPU: {cpu['model']} ({cpu['cores']} cores; {flags}); torch threads {torch.get_num_threads()}"
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f"; GPU: {torch.cuda.get_device_name(torch.device(device))}"
    load = cpu.get("load_average_1_5_15")
    return text + (f"; load average {', '.join(f'{value:.2f}' for value in load)}" if load else "")


def _has_flag(flag: str) -> bool:
    try:
        return f" {flag}" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    print(machine(arguments.device), flush=True)
    print(f"{arguments.model} at {arguments.input_size} px on {arguments.data}, device {arguments.device}")
    results = []
    for batch_size in [int(text) for text in arguments.batch_sizes.split(",")]:
        result = profile(arguments, batch_size)
        print("\n" + table(result), flush=True)
        results.append(result)
    return results


if __name__ == "__main__":
    main()
