"""Batch-1 latency of model files already exported, timed in interleaved rounds, as ratios to PyTorch eager.

``yolox-sdk benchmark`` times one format after another, so on a shared machine a burst of load lands on
whichever format is being timed. This script loads every file once (``yolox_sdk.load_model``, each runtime
with the same thread count) and then, round after round, times one forward pass of each in turn on the
same real letterboxed image, so load bursts are spread over all formats alike; it prints the median and
p90 per file and the ratio of PyTorch's median to each file's. It does not export or evaluate: feed it the
files a ``yolox-sdk benchmark --out DIR`` run wrote (mAP is in that run's table).

    .venv/bin/python benchmarks/exported_latency.py runs/bccd/best.pt bench/onnx/best.onnx \\
        bench/openvino/best.xml bench/tflite-int8/best.int8.tflite --image img.jpg --threads 2 --rounds 100
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from yolox_sdk.benchmarking.measure import cpu_description, median, percentile
from yolox_sdk.benchmarking.runner import _thread_options
from yolox_sdk.data.preprocess import images_to_batch, read_image
from yolox_sdk.runtimes import load_model


def interleaved_seconds(models: dict[str, object], batch: np.ndarray, rounds: int, warmup: int) -> dict:
    """Per name, the seconds of ``rounds`` forward passes, one pass of each model per round."""
    for _ in range(warmup):
        for model in models.values():
            model.forward(batch)
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            started = time.perf_counter()
            model.forward(batch)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="the checkpoint first, then exported files")
    parser.add_argument("--image", type=Path, required=True, help="a real image, letterboxed as in eval")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    arguments = parser.parse_args()

    torch.set_num_threads(arguments.threads)
    options = _thread_options(arguments.threads)
    models = {
        f"{path.parent.name}/{path.name}": load_model(path, "cpu", options=options)
        for path in arguments.files
    }
    first = next(iter(models.values()))
    batch, _ = images_to_batch([read_image(arguments.image)], first.input_size)
    seconds = interleaved_seconds(models, np.asarray(batch, np.float32), arguments.rounds, arguments.warmup)

    machine = cpu_description()
    baseline = median(seconds[next(iter(models))])
    print(
        f"CPU: {machine['model']} ({machine['cores']} cores), {arguments.threads} thread(s), load average "
        f"{machine['load_average_1_5_15']}; {arguments.rounds} interleaved rounds, batch 1"
    )
    print(f"{'file':48} {'runtime':12} {'ms median':>10} {'ms p90':>8} {'vs first':>9}")
    rows = []
    for name, model in models.items():
        row = {
            "file": name,
            "runtime": model.runtime,
            "ms_median": 1000 * median(seconds[name]),
            "ms_p90": 1000 * percentile(seconds[name], 0.9),
            "speedup": baseline / median(seconds[name]),
        }
        rows.append(row)
        print(
            f"{name:48} {row['runtime']:12} {row['ms_median']:10.2f} {row['ms_p90']:8.2f} {row['speedup']:8.2f}x"
        )
    if arguments.json:
        arguments.json.write_text(
            json.dumps({"machine": machine, "threads": arguments.threads, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
