"""Model optimization figures on BCCD: structured pruning with recovery finetuning (distillation: ``benchmarks/distillation.py``).

For each pruning ratio and seed: ``yolox_sdk.prune`` (L2 magnitude within each layer; each layer's share
from measured loss, ``--scope sensitivity``, by default; the head's predictions kept; BatchNorm statistics
re-estimated) of a BCCD-finetuned checkpoint, then recovery finetuning with the SDK's own training for
``--epochs`` epochs (the checkpoint's own config, ``training.seed`` set, the unpruned checkpoint as
distillation teacher unless ``--no-distill``), and the figures of the
unpruned, pruned and recovered models: parameters, MACs at the input size, CPU latency at batch 1
(timed in alternation, so the ratio holds on a shared machine) and val mAP50:95 from ``yolox-sdk eval``.

Run (nice: it trains)::

    nice .venv/bin/python benchmarks/optimization.py /path/to/bccd-nano-256/best.pt \\
        --ratios 0.3,0.5 --epochs 6 --seeds 0 --work /tmp/optimization

Prints the CPU model and load average with the figures, each run's table, then one summary row per
ratio (mean and spread over seeds) against the unpruned model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import attrs


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="A trained checkpoint (copied; never modified).")
    parser.add_argument("--ratios", default="0.3,0.5", help="Comma-separated pruning ratios.")
    parser.add_argument("--epochs", type=int, default=6, help="Recovery finetuning epochs.")
    parser.add_argument("--seeds", default="0", help="Comma-separated training seeds (spread over seeds).")
    parser.add_argument("--method", default="l2", choices=["l1", "l2", "taylor"])
    parser.add_argument("--scope", default="sensitivity", choices=["sensitivity", "global", "uniform"])
    parser.add_argument("--no-distill", action="store_true", help="Recovery without the unpruned teacher.")
    parser.add_argument(
        "--control",
        action="store_true",
        help="Also train the unpruned checkpoint for the same epochs and seeds (no pruning, no teacher): "
        "what the extra epochs alone give, the fair reference for the recovered mAP.",
    )
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--work", type=Path, default=Path("/tmp/yolox-sdk-optimization"))
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="Recovery run config override (repeatable).",
    )
    return parser.parse_args(argv)


def machine() -> str:
    """CPU model, cores and load average, printed with the figures (ratios, not ms, carry over)."""
    from yolox_sdk.benchmarking.measure import cpu_description

    cpu = cpu_description()
    load = ", ".join(f"{value:.2f}" for value in cpu["load_average_1_5_15"] or [])
    return f"CPU: {cpu['model']} ({cpu['cores']} cores), load average {load}"


def pruning_run(source: Path, ratio: float, seed: int, arguments: argparse.Namespace) -> dict[str, Any]:
    """One prune + recovery; the figures as plain data."""
    from yolox_sdk.optimization import prune

    out = arguments.work / f"r{int(ratio * 100)}-s{seed}" / "pruned.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = prune(
        source,
        ratio,
        method=arguments.method,
        scope=arguments.scope,
        distill=not arguments.no_distill,
        out=out,
        force=True,
        latency_runs=arguments.latency_runs,
        finetune_epochs=arguments.epochs,
        finetune_overrides=[f"training.seed={seed}", "monitoring.progress_bar=false", *arguments.overrides],
    )
    print(f"\n== ratio {ratio}, seed {seed} ({time.perf_counter() - started:.0f} s) ==\n{machine()}")
    print(result.table(), flush=True)
    return {
        "ratio": ratio,
        "seed": seed,
        "channels_removed": result.ratio,
        "before": attrs.asdict(result.before),
        "after": attrs.asdict(result.after),
        "recovered": attrs.asdict(result.recovered) if result.recovered else None,
        "run": str(result.recovery_run),
    }


def control_run(source: Path, seed: int, arguments: argparse.Namespace) -> dict[str, Any]:
    """The unpruned checkpoint trained for the recovery epochs with the same recipe: the extra epochs'
    share of a recovered model's mAP."""
    from yolox_sdk.checkpoints.format import load_checkpoint
    from yolox_sdk.engine.jobs import evaluate_checkpoint
    from yolox_sdk.engine.trainer import train
    from yolox_sdk.optimization.job import _training_config

    overrides = [
        f"model.checkpoint={source.resolve()}",
        f"training.epochs={arguments.epochs}",
        f"training.seed={seed}",
        "training.auto_resume=false",
        f"monitoring.output_dir={arguments.work.resolve()}",
        f"monitoring.run_name=control-s{seed}",
        "monitoring.progress_bar=false",
        *arguments.overrides,
    ]
    checkpoint = load_checkpoint(source)
    trained = train(_training_config(checkpoint, None, overrides))
    data = checkpoint.config["data"]
    metrics = evaluate_checkpoint(
        trained.best_checkpoint,
        data["val_path"],
        split=data["val_split"],
        format_name=data["format"],
        device="cpu",
    ).metrics
    print(
        f"\n== control, seed {seed}: unpruned + {arguments.epochs} epochs: mAP {metrics['mAP']:.4f} ==",
        flush=True,
    )
    return {"seed": seed, "map": metrics["mAP"], "map50": metrics["mAP50"], "run": str(trained.run_dir)}


def summary(runs: list[dict[str, Any]]) -> str:
    """One row per ratio: size, speed and mAP against the unpruned model, mean and spread over seeds."""
    lines = [
        "ratio  seeds  params M (x)     GMACs (x)       latency x  mAP pruned  mAP recovered (min-max)  vs unpruned"
    ]
    for ratio in sorted({run["ratio"] for run in runs}):
        group = [run for run in runs if run["ratio"] == ratio]
        first = group[0]
        base = first["before"]
        recovered = [run["recovered"]["map"] for run in group]
        latency = [run["recovered"]["latency_ms"] / run["before"]["latency_ms"] for run in group]
        mean = statistics.mean(recovered)
        lines.append(
            f"{ratio:<5}  {len(group):<5}  "
            f"{first['after']['params'] / 1e6:.3f} ({first['after']['params'] / base['params']:.2f})  "
            f"{first['after']['macs'] / 1e9:.3f} ({first['after']['macs'] / base['macs']:.2f})  "
            f"{statistics.mean(latency):.2f}       "
            f"{statistics.mean(run['after']['map'] for run in group):.4f}      "
            f"{mean:.4f} ({min(recovered):.4f}-{max(recovered):.4f})       "
            f"{100 * (mean - base['map']):+.1f} AP (unpruned {base['map']:.4f})"
        )
    return "\n".join(lines)


def pruning(arguments: argparse.Namespace) -> list[dict[str, Any]]:
    arguments.work.mkdir(parents=True, exist_ok=True)
    source = arguments.work / "unpruned.pt"
    shutil.copyfile(arguments.checkpoint, source)
    runs = []
    for seed in [int(text) for text in arguments.seeds.split(",")]:
        for ratio in [float(text) for text in arguments.ratios.split(",") if text]:
            runs.append(pruning_run(source, ratio, seed, arguments))
            (arguments.work / "pruning.json").write_text(json.dumps(runs, indent=1), encoding="utf-8")
    return runs


def controls(arguments: argparse.Namespace) -> list[dict[str, Any]]:
    source = arguments.work / "unpruned.pt"
    runs = [control_run(source, int(seed), arguments) for seed in arguments.seeds.split(",")]
    (arguments.work / "control.json").write_text(json.dumps(runs, indent=1), encoding="utf-8")
    return runs


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    print(f"{machine()}; torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}", flush=True)
    runs = pruning(arguments)
    control = controls(arguments) if arguments.control else []
    recipe = f"{arguments.method}, {arguments.scope}, {arguments.epochs} recovery epochs"
    recipe += ", no distillation" if arguments.no_distill else ", unpruned teacher"
    print(f"\n== Pruning summary ({recipe}) ==\n{machine()}")
    if runs:
        print(summary(runs))
    if control:
        maps = [run["map"] for run in control]
        print(
            f"control (unpruned + {arguments.epochs} epochs, no teacher): mAP50:95 {statistics.mean(maps):.4f} "
            f"({min(maps):.4f}-{max(maps):.4f}) over seeds {arguments.seeds}"
        )


if __name__ == "__main__":
    main()
