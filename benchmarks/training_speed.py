"""Training speed of yolox-sdk's precision, memory-format, compile and checkpointing switches.

Each variant trains the same model on the same real BCCD batches (the SDK's ``TrainDataset`` with its default
augmentations, drawn once before timing so data loading is not measured) and reports images/s over ``--steps``
timed steps after ``--warmup`` untimed ones, with its ratio against the ``fp32`` baseline measured in the same
run, and peak memory (below). A step is what the trainer does: forward with YOLOX's loss under
the variant's precision, backward, optimizer step (the SDK's SGD), zero grad.

| variant | what changes against ``fp32`` (NCHW, fp32, eager) |
|---|---|
| ``channels_last`` | ``training.channels_last: true`` (the SDK's default) |
| ``amp`` | mixed precision, forced: bf16 autocast on CPU even where ``amp: true`` would pick fp32 (the table says what the SDK would pick); on CUDA what ``amp: true`` runs (bf16, or fp16 with a grad scaler) |
| ``compile`` | ``training.compile: true``: ``torch.compile`` of the training forward (compile time is in the warm-up column) |
| ``checkpointing`` | ``training.gradient_checkpointing: true`` |

    .venv/bin/python benchmarks/training_speed.py --device cpu --steps 10
    .venv/bin/python benchmarks/training_speed.py --device cuda --models yolox-nano yolox-s --steps 50
    .venv/bin/python benchmarks/training_speed.py --device cpu --models yolox-nano --input-size 256 --steps 3

By default every variant runs in a fresh child process, so peak memory is its own (CUDA:
``torch.cuda.max_memory_allocated`` over the timed steps; CPU: the rise of the process's peak RSS,
``ru_maxrss``, from before the first warm-up step, so it includes what compiling takes) and no compile cache
or allocator state leaks between variants. ``--in-process`` runs them all in this process (faster to start;
CPU memory is then not reported, since a high-water mark left by one variant hides the next one's).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("fp32", "channels_last", "amp", "compile", "checkpointing")
BASELINE = "fp32"
BCCD_CLASSES = 3
DISTINCT_BATCHES = 4  # real batches drawn once and cycled through the warm-up and timed steps

log = logging.getLogger("training_speed")


def make_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (CUDA when visible)")
    parser.add_argument("--models", nargs="+", default=["yolox-nano", "yolox-s"])
    parser.add_argument("--input-size", type=int, default=416)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compiling happens here)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)"
    )
    parser.add_argument("--split", default="train", help="BCCD split the batches come from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--in-process", action="store_true", help="run every variant in this process")
    parser.add_argument(
        "--json", type=Path, default=None, help="default: benchmarks/runs/training_speed-<time>.json"
    )
    return parser


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when visible, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@functools.lru_cache(maxsize=4)
def draw_batches(model_name: str, input_size: int, batch_size: int, split: str, seed: int) -> list[tuple]:
    """``DISTINCT_BATCHES`` real BCCD batches from the SDK's ``TrainDataset`` and loader (default augmentations)."""
    from yolox_sdk.config.loader import load_config
    from yolox_sdk.data.formats import load_dataset
    from yolox_sdk.data.loader import build_train_loader
    from yolox_sdk.data.pipeline import build_augmentations
    from yolox_sdk.data.train_dataset import TrainDataset
    from yolox_sdk.plugins.manager import get_registry

    config = load_config(None, [f"model.name={model_name}"])
    dataset = load_dataset("bccd", split=split)
    train_dataset = TrainDataset(
        dataset, (input_size, input_size), build_augmentations(config.augmentation, get_registry()), seed=seed
    )
    loader = build_train_loader(train_dataset, batch_size, num_workers=0, seed=seed)
    batches = []
    for images, targets in loader:
        batches.append((images.float(), targets))  # the loader's uint8, as batch_to_device makes it
        if len(batches) == DISTINCT_BATCHES:
            break
    return batches


def build_model(model_name: str, input_size: int) -> tuple[torch.nn.Module, str]:
    """The model with COCO weights when the offline mirror has them, else randomly initialised (the arithmetic of a
    step is the same; no download is attempted)."""
    from yolox_sdk.assets.catalog import find_in_mirrors
    from yolox_sdk.models import create_model

    pretrained = find_in_mirrors("weights", model_name) is not None
    model, _, _ = create_model(
        model_name, num_classes=BCCD_CLASSES, pretrained=pretrained, input_size=(input_size, input_size)
    )
    return model.train(), "COCO weights" if pretrained else "random init (no offline weights)"


def build_optimizer(model: torch.nn.Module, model_name: str, batch_size: int) -> torch.optim.Optimizer:
    """The SDK's SGD with YOLOX's parameter groups, at a small fixed learning rate (speed does not depend on it)."""
    from yolox_sdk.config.loader import load_config
    from yolox_sdk.engine import setup
    from yolox_sdk.plugins.manager import get_registry

    config = load_config(None, [f"model.name={model_name}", f"data.batch_size={batch_size}"])
    optimizer = setup.build_optimizer(config, model, get_registry())
    for group in optimizer.param_groups:
        group["lr"] = 1e-4
    return optimizer


def variant_precision(variant: str, device: torch.device) -> Any:
    """The SDK's ``Precision`` for ``variant``: forced bf16 autocast for ``amp`` on CPU (to measure it even where the
    SDK would choose fp32), the SDK's own ``amp: true`` choice on other devices, fp32 otherwise."""
    from yolox_sdk.engine.precision import Precision

    if variant != "amp":
        return Precision(device, amp=False)
    if device.type == "cpu":
        precision = Precision(device, amp=False)
        precision.dtype = torch.bfloat16
        return precision
    return Precision(device, amp=True)


def sdk_amp_choice(device: torch.device) -> str:
    """What ``training.amp: true`` runs on this device, in words."""
    from yolox_sdk.engine.precision import Precision, cpu_precision_choice

    if device.type == "cpu":
        choice = cpu_precision_choice()
        return f"{'bf16' if choice.dtype is not None else 'fp32'}: {choice.reason}"
    precision = Precision(device, amp=True)
    return f"{precision.dtype}{' with a grad scaler' if precision.scaler is not None else ''}"


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so wall-clock timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mb() -> float:
    """The process's peak resident size so far, in MB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def train_step(
    forward: Callable[..., Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    precision: Any,
    batch: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    memory_format: torch.memory_format,
) -> float:
    """One trainer step (forward with loss, backward, optimizer step); returns the loss."""
    images = batch[0].to(device, non_blocking=True).contiguous(memory_format=memory_format)
    targets = batch[1].to(device, non_blocking=True)
    with precision.autocast():
        loss = forward(images, targets)["total_loss"]
    precision.backward(loss)
    precision.step(optimizer, model, None)
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def run_variant(
    variant: str, model_name: str, settings: dict[str, Any], measure_cpu_memory: bool
) -> dict[str, Any]:
    """Build the model for ``variant``, warm up, time ``settings['steps']`` steps; one result row."""
    from yolox_sdk.engine.memory import CompiledForward, compile_for_training, enable_gradient_checkpointing

    device = resolve_device(settings["device"])
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    torch.manual_seed(settings["seed"])
    batches = draw_batches(
        model_name, settings["input_size"], settings["batch_size"], settings["split"], settings["seed"]
    )
    model, weights = build_model(model_name, settings["input_size"])
    if variant == "checkpointing":
        enable_gradient_checkpointing(model)
    # One switch per variant: everything else stays as in the baseline (NCHW, fp32, eager, no checkpointing).
    memory_format = torch.channels_last if variant == "channels_last" else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    optimizer = build_optimizer(model, model_name, settings["batch_size"])
    precision = variant_precision(variant, device)
    forward = compile_for_training(model, variant == "compile", device)

    def step(index: int) -> float:
        return train_step(
            forward, model, optimizer, precision, batches[index % len(batches)], device, memory_format
        )

    rss_before = peak_rss_mb()  # before the first step: the rise is what training steps (and compiling) add
    warmup_start = time.perf_counter()
    for index in range(settings["warmup"]):
        step(index)
    synchronize(device)
    warmup_seconds = time.perf_counter() - warmup_start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    durations, losses = [], []
    for index in range(settings["warmup"], settings["warmup"] + settings["steps"]):
        start = time.perf_counter()
        losses.append(step(index))
        synchronize(device)
        durations.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak, memory_kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    elif measure_cpu_memory:
        peak, memory_kind = peak_rss_mb() - rss_before, "peak RSS rise from the first step (ru_maxrss)"
    else:
        peak, memory_kind = None, "not measured in-process on CPU"
    notes = [weights]
    if variant == "compile" and not (isinstance(forward, CompiledForward) and forward.compiled is not None):
        notes.append("torch.compile failed: ran eagerly (see the warning)")
    if variant == "amp":
        notes.append(f"{precision.dtype}{' + grad scaler' if precision.scaler is not None else ''}")
    return {
        "model": model_name,
        "variant": variant,
        "images_per_second": settings["batch_size"] * len(durations) / sum(durations),
        "median_step_seconds": statistics.median(durations),
        "warmup_seconds": warmup_seconds,
        "peak_memory_mb": peak,
        "memory_kind": memory_kind,
        "final_loss": losses[-1],
        "notes": "; ".join(notes),
    }


def _child(queue: Any, variant: str, model_name: str, settings: dict[str, Any]) -> None:
    """Entry point of a variant's child process: put its row (or its error) on ``queue``."""
    try:
        queue.put(run_variant(variant, model_name, settings, measure_cpu_memory=True))
    except BaseException:  # noqa: BLE001 - reported by the parent as the variant's error
        queue.put({"model": model_name, "variant": variant, "error": traceback.format_exc()})


def run_isolated(variant: str, model_name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``run_variant`` in a fresh (spawned) process."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, variant, model_name, settings))
    process.start()
    row = queue.get()
    process.join()
    return row


def run_all(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Every requested (model, variant) row, the baseline first, with ratios against it."""
    variants = [BASELINE] + [v for v in settings["variants"] if v != BASELINE]
    rows = []
    for model_name in settings["models"]:
        for variant in variants:
            print(f"{model_name} {variant} ...", flush=True)
            if settings["in_process"]:
                try:
                    row = run_variant(variant, model_name, settings, measure_cpu_memory=False)
                except Exception:  # noqa: BLE001 - one failing variant must not hide the others
                    row = {"model": model_name, "variant": variant, "error": traceback.format_exc()}
            else:
                row = run_isolated(variant, model_name, settings)
            if "error" in row:
                print(row["error"], file=sys.stderr)
            else:  # as it comes, so a run cut short by a time limit still reports what it measured
                print(
                    json.dumps({k: v for k, v in row.items() if not isinstance(v, dict | list)}), flush=True
                )
            rows.append(row)
    add_ratios(rows)
    return rows


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``speed_ratio`` and ``memory_ratio`` of each row against its model's baseline row."""
    baselines = {row["model"]: row for row in rows if row["variant"] == BASELINE and "error" not in row}
    for row in rows:
        base = baselines.get(row["model"])
        if base is None or "error" in row:
            continue
        row["speed_ratio"] = row["images_per_second"] / base["images_per_second"]
        if row["peak_memory_mb"] and base["peak_memory_mb"]:
            row["memory_ratio"] = row["peak_memory_mb"] / base["peak_memory_mb"]


def format_table(rows: Iterable[dict[str, Any]]) -> str:
    """The rows as a plain-text table."""
    header = ("model", "variant", "img/s", "x fp32", "step s", "warm-up s", "peak MB", "x fp32 mem", "notes")
    lines = [header]
    for row in rows:
        if "error" in row:
            lines.append(
                (row["model"], row["variant"], "failed", "", "", "", "", "", row["error"].splitlines()[-1])
            )
            continue
        memory = row["peak_memory_mb"]
        lines.append(
            (
                row["model"],
                row["variant"],
                f"{row['images_per_second']:.2f}",
                f"{row.get('speed_ratio', float('nan')):.2f}x",
                f"{row['median_step_seconds']:.3f}",
                f"{row['warmup_seconds']:.1f}",
                "n/a" if memory is None else f"{memory:.0f}",
                f"{row['memory_ratio']:.2f}x" if "memory_ratio" in row else "",
                row["notes"],
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)) for line in lines
    )


def environment(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on."""
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "sdk_amp_true_runs": sdk_amp_choice(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when a variant failed."""
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("YOLOX_SDK_ASSETS", str((REPO_ROOT.parent / "shared" / "assets").resolve()))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    settings = {
        "device": str(device),
        "models": args.models,
        "input_size": args.input_size,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "variants": args.variants,
        "threads": args.threads,
        "split": args.split,
        "seed": args.seed,
        "in_process": args.in_process,
    }
    info = environment(device)
    print(json.dumps(info, indent=1))
    rows = run_all(settings)
    print(format_table(rows))
    out = (
        args.json
        or REPO_ROOT / "benchmarks" / "runs" / f"training_speed-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": info, "settings": settings, "results": rows}, indent=1))
    print(f"Wrote {out}")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
