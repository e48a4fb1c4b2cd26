"""Knowledge distillation figures on BCCD: yolox-nano trained alone against yolox-nano trained with a teacher.

Both arms start from the same COCO weights and train with the same recipe, epochs and seeds
(``yolox-sdk train`` with the overrides below, ``training.distillation`` added to one arm); each run's
final val mAP50:95 and mAP50 (EMA weights, after the last epoch) are read from its ``metrics.csv``.
The runs of all arms and seeds start together as processes (``--parallel``), so a shared machine's load
falls on both arms alike. A run whose ``metrics.csv`` already has its last epoch is read, not retrained,
so a second call prints the table again.

Run (nice: it trains)::

    nice .venv/bin/python benchmarks/distillation.py --teacher /path/to/teacher/best.pt \\
        --epochs 3 --seeds 0,1 --work /tmp/distill-bench

The teacher must be a yolox-sdk checkpoint of BCCD's classes at ``--size``. Prints the CPU model and load
average, one row per run, then per arm the mean and spread over seeds and the difference.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RECIPE = [
    "model.name=yolox-nano",
    "model.pretrained=true",
    "data.train_path=bccd",
    "data.train_split=train",
    "data.val_path=bccd",
    "data.val_split=val",
    "data.format=voc",
    "data.batch_size=8",
    "augmentation.mosaic_prob=0.5",
    "augmentation.mixup=false",
    "augmentation.scale=[0.5,1.5]",
    "training.warmup_epochs=1",
    "training.no_aug_epochs=1",
    "training.multiscale_range=0",
    "training.ema=true",
    "monitoring.progress_bar=false",
    "device.type=cpu",
]


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True, help="Teacher checkpoint (BCCD classes).")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="0,1", help="Comma-separated training seeds.")
    parser.add_argument("--size", type=int, default=256, help="Input size (the teacher's).")
    parser.add_argument("--weight", type=float, default=1.0, help="training.distillation.weight")
    parser.add_argument("--temperature", type=float, default=1.0, help="training.distillation.temperature")
    parser.add_argument("--threads", type=int, default=1, help="OMP/torch threads per run.")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/runs/distillation"))
    parser.add_argument("--sequential", action="store_true", help="One run at a time instead of together.")
    return parser.parse_args(argv)


def run_overrides(args: argparse.Namespace, arm: str, seed: int) -> list[str]:
    """The ``yolox-sdk train`` overrides of one run."""
    overrides = [
        *RECIPE,
        f"model.input_size=[{args.size},{args.size}]",
        f"training.epochs={args.epochs}",
        f"evaluation.eval_interval={args.epochs}",
        f"training.seed={seed}",
        f"monitoring.output_dir={args.work}",
        f"monitoring.run_name={arm}-s{seed}",
    ]
    if arm == "distilled":
        overrides.append(
            f"training.distillation={{teacher: {args.teacher}, weight: {args.weight}, "
            f"temperature: {args.temperature}}}"
        )
    return overrides


def final_row(run_dir: Path, epochs: int) -> dict[str, str] | None:
    """The last ``metrics.csv`` row when the run reached ``epochs``, else ``None``."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    rows = list(csv.DictReader(path.open()))
    return rows[-1] if rows and int(float(rows[-1]["epoch"])) >= epochs else None


def start_run(args: argparse.Namespace, arm: str, seed: int) -> subprocess.Popen | None:
    """Start one training run as a process (``None`` when it already finished)."""
    run_dir = args.work / f"{arm}-s{seed}"
    if final_row(run_dir, args.epochs) is not None:
        return None
    if run_dir.exists():
        sys.exit(f"{run_dir} exists but did not finish; remove it (or resume it with yolox-sdk) and rerun.")
    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    base = args.work / "base.yaml"  # the defaults; everything this benchmark sets is an override
    base.write_text("{}\n")
    command = [sys.executable, "-m", "yolox_sdk", "train", str(base), *run_overrides(args, arm, seed)]
    log = (args.work / f"{arm}-s{seed}.log").open("w")
    print(" ".join(command[2:]), flush=True)
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} (min {100 * min(values):.2f}, max {100 * max(values):.2f})"


def report(args: argparse.Namespace, seeds: list[int], seconds: float) -> int:
    """Print every run's figures and each arm's mean and spread; 1 when a run has no final row."""
    print(
        f"\nCPU: {cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()}; wall {seconds:.0f} s"
    )
    print(f"teacher: {args.teacher}; {args.epochs} epochs at {args.size} px; seeds {seeds}")
    figures: dict[str, dict[str, list[float]]] = {}
    print("\n| run | mAP50:95 | mAP50 |\n|---|---|---|")
    for arm in ("alone", "distilled"):
        for seed in seeds:
            row = final_row(args.work / f"{arm}-s{seed}", args.epochs)
            if row is None:
                print(f"| {arm}-s{seed} | failed (see {args.work / f'{arm}-s{seed}.log'}) | |")
                return 1
            ap, ap50 = float(row["val/mAP"]), float(row["val/mAP50"])
            figures.setdefault(arm, {"ap": [], "ap50": []})
            figures[arm]["ap"].append(ap)
            figures[arm]["ap50"].append(ap50)
            print(f"| {arm}-s{seed} | {100 * ap:.2f} | {100 * ap50:.2f} |")
    print("\n| arm | mAP50:95 mean (spread) | mAP50 mean (spread) |\n|---|---|---|")
    for arm, values in figures.items():
        print(f"| {arm} | {spread(values['ap'])} | {spread(values['ap50'])} |")
    gain = {
        key: statistics.fmean(figures["distilled"][key]) - statistics.fmean(figures["alone"][key])
        for key in ("ap", "ap50")
    }
    paired = [d - a for d, a in zip(figures["distilled"]["ap"], figures["alone"]["ap"], strict=True)]
    print(
        f"\ndistilled - alone: mAP50:95 {100 * gain['ap']:+.2f}, mAP50 {100 * gain['ap50']:+.2f} "
        f"(per seed mAP50:95: {', '.join(f'{100 * d:+.2f}' for d in paired)})"
    )
    return 0


def main(argv: list[str]) -> int:
    args = parse_arguments(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    args.teacher = args.teacher.resolve()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    start = time.perf_counter()
    running = []
    for seed in seeds:
        for arm in ("alone", "distilled"):
            process = start_run(args, arm, seed)
            if process is not None and args.sequential:
                process.wait()
            elif process is not None:
                running.append(process)
    for process in running:
        process.wait()
    return report(args, seeds, time.perf_counter() - start)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
