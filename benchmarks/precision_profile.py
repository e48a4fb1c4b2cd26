"""Why bf16 autocast wins or loses on this CPU: one yolox-nano training step (forward with YOLOX's loss,
backward) profiled op by op in fp32 and under bf16 autocast, channels-last, on real BCCD boxes.

``training.amp: true`` decides from a small conv probe (``engine.precision``); a whole step also runs the
loss, SimOTA, casts between precisions and ops with no bf16 kernel. This prints the step time in both
precisions (best of ``--repeats``, after a warm-up step) and the ops whose self CPU time changed most, so
the difference can be traced to convolutions, casts (``aten::to``/``_to_copy``/``copy_``) or the rest.

    .venv/bin/python benchmarks/precision_profile.py                # nano 416, batch 8
    .venv/bin/python benchmarks/precision_profile.py --batch 16 --top 20
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_profile import machine  # noqa: E402

CAST_OPS = ("aten::to", "aten::_to_copy", "aten::copy_")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=416)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    return parser.parse_args(argv)


def real_batch(size: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` BCCD train images letterboxed to ``size`` with their boxes, as training lays them out."""
    from yolox_sdk.config import load_config
    from yolox_sdk.data import training_data
    from yolox_sdk.data.preprocess import letterbox, read_image

    config = load_config(None, ["data.train_path=bccd", "data.format=voc", "data.train_split=train"])
    dataset = training_data.load_training_data(config)[0]
    images, targets = [], torch.zeros(batch, 64, 5)
    for index in range(batch):
        record = dataset.records[index]
        image, ratio = letterbox(read_image(record.image_path), (size, size))
        images.append(torch.from_numpy(image))
        boxes = torch.as_tensor(record.boxes, dtype=torch.float32) * ratio
        count = min(len(boxes), 64)
        targets[index, :count, 0] = torch.as_tensor(record.labels[:count], dtype=torch.float32)
        targets[index, :count, 1:3] = (boxes[:count, :2] + boxes[:count, 2:]) / 2
        targets[index, :count, 3:5] = boxes[:count, 2:] - boxes[:count, :2]
    return torch.stack(images).contiguous(memory_format=torch.channels_last), targets


def step(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(images, targets)["total_loss"]
    loss.backward()
    model.zero_grad(set_to_none=True)


def best_seconds(
    model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, bf16: bool, repeats: int
) -> float:
    step(model, images, targets, bf16)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        step(model, images, targets, bf16)
        timings.append(time.perf_counter() - started)
    return min(timings)


def op_times(
    model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, bf16: bool
) -> dict[str, float]:
    """Self CPU milliseconds per op name for one step."""
    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        step(model, images, targets, bf16)
    totals: dict[str, float] = defaultdict(float)
    for event in profiled.key_averages():
        totals[event.key] += event.self_cpu_time_total / 1e3
    return totals


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from yolox_sdk.models.factory import create_model

    print(machine("cpu"))
    model = create_model("yolox-nano", num_classes=3, pretrained=True, input_size=(args.input_size,) * 2)[0]
    model = model.to(memory_format=torch.channels_last).train()
    images, targets = real_batch(args.input_size, args.batch)
    fp32 = best_seconds(model, images, targets, False, args.repeats)
    bf16 = best_seconds(model, images, targets, True, args.repeats)
    print(
        f"step, batch {args.batch} at {args.input_size}: fp32 {fp32 * 1e3:.0f} ms, bf16 {bf16 * 1e3:.0f} ms ({bf16 / fp32:.2f}x)"
    )
    ops_fp32, ops_bf16 = op_times(model, images, targets, False), op_times(model, images, targets, True)
    names = set(ops_fp32) | set(ops_bf16)
    casts = sum(ops_bf16.get(name, 0.0) for name in CAST_OPS) - sum(
        ops_fp32.get(name, 0.0) for name in CAST_OPS
    )
    print(f"casts (aten::to, _to_copy, copy_): {casts:+.0f} ms under bf16")
    print(f"{'op':<48}{'fp32 ms':>10}{'bf16 ms':>10}{'change':>10}")
    changed = sorted(names, key=lambda name: -abs(ops_bf16.get(name, 0.0) - ops_fp32.get(name, 0.0)))
    for name in changed[: args.top]:
        a, b = ops_fp32.get(name, 0.0), ops_bf16.get(name, 0.0)
        print(f"{name[:47]:<48}{a:>10.1f}{b:>10.1f}{b - a:>+10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
