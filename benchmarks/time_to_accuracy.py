"""Time to accuracy: after how many seconds of training each recipe reaches a target mAP50:95, and where
it ends, against the official YOLOX trainer's final mAP and wall time measured in the same run.

Every variant finetunes yolox-nano from the same COCO weights on the same data as ``compare_official.py``
(BCCD train split, batch 8, input 416, the nano augmentation recipe, seed per run) and is evaluated on the
val split after **every** epoch, so the epoch where it first reaches the target is known. The time to the
target is our training time up to the end of that epoch (``TrainState.train_seconds``: data and steps,
evaluation excluded, since a real run does not evaluate every epoch); the evaluation time is printed
beside it. The official trainer runs once per seed with ``compare_official.py``'s settings (warm-up 1,
no-aug 2 epochs for a 10-epoch budget) and its final mAP50:95 is the target; its wall time includes its own
final evaluation.

Variants: ``yolox`` is our trainer with the official settings (``training.recipe=yolox``, the same warm-up
and no-aug epochs as the official side), ``finetune`` is ``training.recipe=finetune`` with nothing else set
(the recipe chooses); ``--variant NAME:key=value,key=value`` adds one with its own overrides.

    .venv/bin/python benchmarks/time_to_accuracy.py --official --seeds 0,1
    .venv/bin/python benchmarks/time_to_accuracy.py --target 55.6 --variant frozen:model.unfreeze_schedule={4:[backbone]}

Prints the CPU model and flags, the load average, then one row per run: final mAP, training seconds, time
to the target and its ratio to the official wall time. Writes ``results.json`` in ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_official import REPO_ROOT, ours_overrides, run_official  # noqa: E402
from compare_official import make_parser as official_parser
from step_profile import machine  # noqa: E402

VARIANTS: dict[str, list[str]] = {
    "yolox": ["training.recipe=yolox"],  # plus the official side's warm-up and no-aug epochs (below)
    "finetune": ["training.recipe=finetune"],
}
RECIPE_KEYS = ("training.warmup_epochs", "training.no_aug_epochs")  # left to the recipe outside "yolox"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="0", help="comma-separated")
    parser.add_argument("--variants", default="yolox,finetune", help="comma-separated names of VARIANTS")
    parser.add_argument("--variant", action="append", default=[], help="NAME:key=value,key=value")
    parser.add_argument("--official", action="store_true", help="run the official trainer (per seed)")
    parser.add_argument(
        "--target", type=float, default=None, help="mAP50:95 target (0-100) without --official"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out-dir", type=Path, default=None)
    return parser


def _variants(args: argparse.Namespace) -> dict[str, list[str]]:
    chosen = {name: VARIANTS[name] for name in args.variants.split(",") if name}
    for text in args.variant:
        name, _, overrides = text.partition(":")
        chosen[name] = [item for item in _split_overrides(overrides) if item]
    return chosen


def _split_overrides(text: str) -> list[str]:
    """``a=1,b={3:[x,y]}`` -> ``["a=1", "b={3:[x,y]}"]``: commas inside brackets stay."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{("
        depth -= char in "]})"
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return [*items, current]


def _common(
    args: argparse.Namespace, seed: int, out_dir: Path, keep_schedule: bool
) -> tuple[list[str], argparse.Namespace]:
    """``compare_official.py``'s overrides for our side, evaluating every epoch (without the warm-up and
    no-aug epochs unless ``keep_schedule``: the recipe sets them otherwise), and its arguments for the
    official side."""
    official_args = official_parser().parse_args(
        ["--epochs", str(args.epochs), "--warmup-epochs", "1", "--no-aug-epochs", "2", "--seed", str(seed)]
    )
    overrides = ours_overrides(official_args, args.device, out_dir)
    if not keep_schedule:
        overrides = [item for item in overrides if item.split("=", 1)[0] not in RECIPE_KEYS]
    return [*overrides, "evaluation.eval_interval=1", "monitoring.progress_bar=false"], official_args


def run_variant(overrides: list[str]) -> dict[str, Any]:
    """Train with ``overrides``; per epoch: cumulative training seconds, evaluation seconds, mAP50:95."""
    from yolox_sdk.config import load_config
    from yolox_sdk.engine import trainer as trainer_module

    epochs: list[dict[str, float]] = []
    original = trainer_module.Trainer._run_epoch

    def recorded(self: Any, epoch: int) -> None:
        started = time.perf_counter()
        train_before = self.state.train_seconds
        original(self, epoch)
        train_seconds = self.state.train_seconds - train_before
        epochs.append(
            {
                "epoch": epoch + 1,
                "train_seconds": self.state.train_seconds,
                "other_seconds": time.perf_counter() - started - train_seconds,
                "mAP": 100 * float(self.state.metrics.get("val/mAP", float("nan"))),
            }
        )

    trainer_module.Trainer._run_epoch = recorded
    try:
        result = trainer_module.train(load_config(None, overrides))
    finally:
        trainer_module.Trainer._run_epoch = original
    return {"epochs": epochs, "wall_seconds": float(result.wall_seconds), "run_dir": str(result.run_dir)}


def time_to(target: float | None, epochs: list[dict[str, float]]) -> float | None:
    """Training seconds at the end of the first epoch whose mAP reached ``target``; ``None`` if none did."""
    if target is None:
        return None
    for row in epochs:
        if row["mAP"] >= target - 1e-9:
            return row["train_seconds"]
    return None


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    out_dir = (
        args.out_dir or REPO_ROOT / "benchmarks" / "runs" / time.strftime("tta-%Y%m%d-%H%M%S")
    ).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    print(machine(args.device), flush=True)
    rows: list[dict[str, Any]] = []
    for seed in [int(text) for text in args.seeds.split(",")]:
        target, official_wall = args.target, None
        if args.official:
            _, official_args = _common(args, seed, out_dir, keep_schedule=True)
            official = run_official(official_args, args.device, out_dir / f"official-{seed}")
            target, official_wall = 100 * float(official["mAP"]), float(official["outer_wall_seconds"])
            rows.append(
                {"variant": "official", "seed": seed, "final_mAP": target, "wall_seconds": official_wall}
            )
            print(f"official seed {seed}: mAP50:95 {target:.2f}, wall {official_wall:.1f} s", flush=True)
        for name, extra in _variants(args).items():
            common, _ = _common(args, seed, out_dir / f"{name}-{seed}", keep_schedule=name == "yolox")
            run = run_variant([*common, *extra])
            reached = time_to(target, run["epochs"])
            row = {
                "variant": name,
                "seed": seed,
                "overrides": extra,
                "final_mAP": run["epochs"][-1]["mAP"],
                "train_seconds": run["epochs"][-1]["train_seconds"],
                "eval_seconds": sum(row["other_seconds"] for row in run["epochs"]),
                "target": target,
                "seconds_to_target": reached,
                "official_wall_seconds": official_wall,
                **run,
            }
            rows.append(row)
            curve = " ".join(f"{r['mAP']:.1f}@{r['train_seconds']:.0f}s" for r in run["epochs"])
            print(f"{name} seed {seed}: {curve}", flush=True)
    (out_dir / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{machine(args.device)}\n")
    print(
        f"{'variant':<12}{'seed':>5}{'final mAP':>11}{'train s':>9}{'eval s':>8}{'to target s':>13}{'/ official':>11}"
    )
    for row in rows:
        if row["variant"] == "official":
            print(f"{'official':<12}{row['seed']:>5}{row['final_mAP']:>11.2f}{row['wall_seconds']:>9.1f}")
            continue
        reached, wall = row["seconds_to_target"], row["official_wall_seconds"]
        ratio = f"{reached / wall:.2f}x" if reached is not None and wall else "-"
        print(
            f"{row['variant']:<12}{row['seed']:>5}{row['final_mAP']:>11.2f}{row['train_seconds']:>9.1f}"
            f"{row['eval_seconds']:>8.1f}{reached if reached is None else round(reached, 1)!s:>13}{ratio:>11}"
        )
    print(f"\nresults: {out_dir / 'results.json'}; threads {torch.get_num_threads()}, pid {os.getpid()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
