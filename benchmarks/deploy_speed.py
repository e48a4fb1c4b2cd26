"""Deployment speed on this machine: ONNX Runtime (fp32, fp16, onnxslim) against PyTorch eager, batch 1.

Runs ``yolox_sdk.benchmark`` (the ``yolox-sdk benchmark`` command: export, evaluate, time) for yolox-nano at
416 px and yolox-s at 640 px, at each ``--threads`` count, and prints the ratios to PyTorch eager measured
in the same run with the load average at the time: on a shared machine the milliseconds move with the load,
the ratios much less. yolox-nano carries the COCO weights of the offline mirror (its mAP on coco8 is
meaningful); yolox-s has no weights there, so it is timed with random weights and its mAP is not reported.

    .venv/bin/python benchmarks/deploy_speed.py                       # both models, 1 and 2 threads
    .venv/bin/python benchmarks/deploy_speed.py --models yolox-nano --threads 2 --runs 20

Output: ``benchmarks/runs/deploy-<time>/`` (git-ignored) with each benchmark's JSON/Markdown and
``deploy_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from yolox_sdk import benchmark
from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.models import create_model

INPUT_SIZES = {"yolox-nano": 416, "yolox-s": 640}
PRETRAINED_HERE = {"yolox-nano"}
FORMATS = ("pytorch", "onnx", "onnx-fp16", "onnx-slim")


def checkpoint_for(name: str, folder: Path) -> Path:
    """A coco8 checkpoint of ``name`` at its usual input size (COCO weights where the mirror has them)."""
    size = INPUT_SIZES[name]
    class_names = load_dataset("coco8", split="val", format="yolo").class_names
    model, spec, _ = create_model(name, 80, pretrained=name in PRETRAINED_HERE, input_size=(size, size))
    return save_checkpoint(
        folder / f"{name}.pt", Checkpoint(model.state_dict(), spec, class_names, config={})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(INPUT_SIZES), choices=list(INPUT_SIZES))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/runs") / time.strftime("deploy-%Y%m%d-%H%M%S")
    )
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)
    summary = []
    for name in arguments.models:
        checkpoint = checkpoint_for(name, arguments.out)
        for threads in arguments.threads:
            result = benchmark(
                checkpoint,
                "coco8",
                split="val",
                formats=FORMATS,
                batch=arguments.batch,
                runs=arguments.runs,
                warmup=arguments.warmup,
                threads=threads,
                out_dir=arguments.out / f"{name}-{threads}t",
                format_name="yolo",
            )
            load = os.getloadavg()
            print(f"\n{name} {INPUT_SIZES[name]} px, {threads} thread(s), load average {load[0]:.2f}")
            print(result.table())
            summary.append(
                {
                    "model": name,
                    "input_size": INPUT_SIZES[name],
                    "threads": threads,
                    "load_average_after": list(load),
                    "cpu": result.machine["model"],
                    "rows": {
                        row.format: {
                            "latency_ms_median": row.latency_ms_median,
                            "speedup_vs_pytorch": row.speedup,
                            "mAP": row.mAP if name in PRETRAINED_HERE else None,
                            "status": row.status,
                            "reason": row.reason,
                        }
                        for row in result.rows
                    },
                }
            )
    (arguments.out / "deploy_speed.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"\nWritten {arguments.out / 'deploy_speed.json'}")


if __name__ == "__main__":
    main()
