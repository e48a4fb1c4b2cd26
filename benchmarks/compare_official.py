"""Benchmark our trainer against the official YOLOX trainer, in one process on one machine.

Both finetune yolox-nano from the same COCO weights on BCCD (train split, 205 images) and are evaluated on the
val split (87 images) with the same image size, batch, epoch budget, schedule and augmentation recipe (the nano
recipe: mosaic 0.5, mosaic scale 0.5-1.5, no mixup). Printed: wall time, train images/s end to end (data loading
included, evaluation excluded), final mAP50:95 and mAP50 of each, and the ratios ours/official.

It then evaluates one checkpoint (the official trainer's final EMA weights) with both evaluators, the official
``CocoEvaluator`` and ``yolox_sdk.evaluation.coco_eval.evaluate``, and checks that their mAP50:95 and mAP50 agree
within 0.1 AP points (0.001 on pycocotools' 0-1 scale) once both use the same conventions for zero-area
ground truth and predictions outside the image. The exit status is 1 when they do not.

    .venv/bin/python benchmarks/compare_official.py --epochs 10
    .venv/bin/python benchmarks/compare_official.py --skip-ours            # the official side alone
    .venv/bin/python benchmarks/compare_official.py --official-checkpoint X --skip-ours --skip-official
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from official_yolox import BCCD_CLASSES, evaluate_official, resolve_device, train_official  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
AGREEMENT_TOLERANCE_POINTS = 0.1  # AP points on the 0-100 scale


def _assets_dir() -> Path:
    return Path(os.environ.get("YOLOX_SDK_ASSETS") or REPO_ROOT.parent / "shared" / "assets").resolve()


def make_parser() -> argparse.ArgumentParser:
    """The command line; every setting is shared by both trainers."""
    assets = _assets_dir()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=assets / "datasets" / "bccd" / "BCCD", help="VOC folder")
    parser.add_argument(
        "--weights",
        type=Path,
        default=assets / "weights" / "yolox_nano_coco_from_onnx.pth",
        help="COCO yolox-nano weights, official format",
    )
    parser.add_argument("--model", default="yolox-nano", choices=["yolox-nano"])
    parser.add_argument("--input-size", type=int, default=416)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--warmup-epochs", type=int, default=1, help="the nano recipe's 5 is meant for 300 epochs"
    )
    parser.add_argument(
        "--no-aug-epochs", type=int, default=2, help="closing epochs without mosaic (recipe: 15 of 300)"
    )
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads for both trainers (default: torch's own; use 1 on a CPU shared with other jobs)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--out-dir", type=Path, default=None, help="default: benchmarks/runs/compare-<time>")
    parser.add_argument("--order", choices=["official-first", "ours-first"], default="official-first")
    parser.add_argument("--skip-ours", action="store_true", help="run only the official trainer")
    parser.add_argument("--skip-official", action="store_true", help="run only our trainer")
    parser.add_argument(
        "--official-checkpoint",
        type=Path,
        default=None,
        help="checkpoint for the evaluator check (default: the official trainer's final EMA weights)",
    )
    parser.add_argument("--skip-eval-check", action="store_true")
    parser.add_argument(
        "--ours-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra config override for our trainer only, e.g. training.channels_last=true",
    )
    return parser


# --------------------------------------------------------------------------------------------------------------
# The two trainers
# --------------------------------------------------------------------------------------------------------------
def ours_overrides(args: argparse.Namespace, device: str, output_dir: Path) -> list[str]:
    """Our config as ``section.key=value`` overrides: the same settings the official side gets."""
    size = args.input_size
    return [
        f"model.name={args.model}",
        f"model.pretrained={args.weights}",
        f"model.input_size=[{size},{size}]",
        f"data.train_path={args.data}",
        f"data.train_split={args.train_split}",
        f"data.val_path={args.data}",
        f"data.val_split={args.val_split}",
        "data.format=voc",
        # The official config's class order, so either trainer's checkpoint can be read by either evaluator.
        f"data.format_options={{class_names: [{', '.join(BCCD_CLASSES)}]}}",
        f"data.batch_size={args.batch_size}",
        f"data.num_workers={args.workers}",
        # The nano recipe (yolox.config.YoloxNano).
        "augmentation.mosaic_prob=0.5",
        "augmentation.scale=[0.5,1.5]",
        "augmentation.mixup=false",
        f"training.epochs={args.epochs}",
        f"training.warmup_epochs={args.warmup_epochs}",
        f"training.no_aug_epochs={args.no_aug_epochs}",
        "training.multiscale_range=0",
        f"training.seed={args.seed}",
        f"evaluation.eval_interval={args.epochs}",
        f"device.type={device}",
        f"monitoring.output_dir={output_dir}",
        *args.ours_override,
    ]


def _metric(metrics: dict[str, float], name: str) -> float:
    """A validation metric from ``TrainResult.metrics`` (logged as ``val/<name>``)."""
    for key in (name, f"val/{name}"):
        if key in metrics:
            return float(metrics[key])
    raise KeyError(f"{name} not in our trainer's metrics {sorted(metrics)}")


def run_ours(args: argparse.Namespace, device: str, out_dir: Path) -> dict[str, Any]:
    """Train with ``yolox_sdk.engine.trainer.train`` and return the same fields as ``train_official``."""
    try:
        from yolox_sdk.config import load_config
        from yolox_sdk.engine.trainer import train
    except ImportError as error:
        raise SystemExit(
            f"Our trainer is not importable yet ({error}); run with --skip-ours to benchmark the official side."
        ) from error
    config = load_config(None, ours_overrides(args, device, out_dir / "ours"))
    start = time.perf_counter()
    result = train(config)
    if device == "cuda":
        torch.cuda.synchronize()
    outer_seconds = time.perf_counter() - start
    return {
        "trainer": "ours",
        "device": device,
        "wall_seconds": float(result.wall_seconds),
        "outer_wall_seconds": outer_seconds,
        "train_images_per_second": float(result.train_images_per_second),
        "mAP": _metric(result.metrics, "mAP"),
        "mAP50": _metric(result.metrics, "mAP50"),
        "metrics": {key: float(value) for key, value in result.metrics.items()},
        "checkpoint": str(result.last_checkpoint),
        "run_dir": str(result.run_dir),
    }


def run_official(args: argparse.Namespace, device: str, out_dir: Path) -> dict[str, Any]:
    """Train with the official ``yolox.core.Trainer`` (see ``official_yolox.train_official``)."""
    start = time.perf_counter()
    result = train_official(
        args.data,
        args.weights,
        epochs=args.epochs,
        batch_size=args.batch_size,
        input_size=args.input_size,
        num_workers=args.workers,
        device=device,
        out_dir=out_dir / "official",
        seed=args.seed,
        train_split=args.train_split,
        val_split=args.val_split,
        warmup_epochs=args.warmup_epochs,
        no_aug_epochs=args.no_aug_epochs,
    )
    result["outer_wall_seconds"] = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------------------------------------------
# One checkpoint, both evaluators
# --------------------------------------------------------------------------------------------------------------
def evaluate_ours(checkpoint: Path, args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Evaluate an official-format checkpoint with ``yolox_sdk.evaluation.coco_eval.evaluate``."""
    try:
        from yolox_sdk.data.formats import load_dataset
        from yolox_sdk.evaluation.coco_eval import evaluate
    except ImportError as error:
        return {"error": f"our evaluator is not importable yet: {error}"}
    from yolox.config import YoloxNano

    config = YoloxNano()
    config.num_classes = len(BCCD_CLASSES)
    model = config.get_model()
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
    model.eval()
    # The official config's class order (our VOC reader sorts names unless told).
    dataset = load_dataset(args.data, args.val_split, "voc", options={"class_names": list(BCCD_CLASSES)})
    start = time.perf_counter()
    result = evaluate(
        model,
        dataset,
        (args.input_size, args.input_size),
        batch_size=args.batch_size,
        conf_threshold=0.01,
        nms_threshold=0.65,
        class_agnostic=False,
        device=device,
    )
    return {
        "mAP": float(result.metrics["mAP"]),
        "mAP50": float(result.metrics["mAP50"]),
        "seconds": time.perf_counter() - start,
        "settings": result.settings,
    }


def compare_evaluators(checkpoint: Path, args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Both evaluators on one checkpoint; ``agree`` when both APs differ by at most 0.1 AP points.

    A third row, ``official_matched``, is the official evaluator with our two conventions adopted (zero-area ground
    truth boxes dropped, predictions clipped to the image): when it equals ours, any difference in the first
    comparison is made of those conventions alone.
    """
    common = {
        "split": args.val_split,
        "input_size": args.input_size,
        "batch_size": args.batch_size,
        "device": device,
    }
    official = evaluate_official(checkpoint, args.data, **common)
    matched = evaluate_official(
        checkpoint, args.data, drop_zero_area_boxes=True, clip_to_image=True, **common
    )
    for result in (official, matched):
        result.pop("summary", None)
    ours = evaluate_ours(checkpoint, args, device)
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "official": official,
        "official_matched": matched,
        "ours": ours,
        "tolerance_points": AGREEMENT_TOLERANCE_POINTS,
    }
    if "error" not in ours:
        for name, reference in (("", official), ("_matched", matched)):
            difference = {key: 100.0 * (ours[key] - reference[key]) for key in ("mAP", "mAP50")}
            report[f"difference_points{name}"] = difference
            report[f"agree{name}"] = all(
                abs(value) <= AGREEMENT_TOLERANCE_POINTS for value in difference.values()
            )
    return report


# --------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------
def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or denominator == 0 or math.isnan(denominator):
        return "-"
    return f"{numerator / denominator:.2f}x"


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


CEILING_STEPS, CEILING_WARMUP = 20, 3


def measure_ceiling(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """The model-only ceiling: images/s of yolox-nano's bare training step (forward with YOLOX's loss on
    random images with 10 boxes each, backward, an SGD step), no data loading, EMA, logging or evaluation,
    fp32 channels-last, at the benchmark's batch and input size. Neither trainer can beat it on this
    machine; the table prints each trainer's share of it."""
    from yolox_sdk.models.factory import create_model

    model = create_model(
        args.model, num_classes=len(BCCD_CLASSES), pretrained=False, input_size=(args.input_size,) * 2
    )[0]
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, nesterov=True, foreach=True)
    generator = torch.Generator().manual_seed(args.seed)
    size, batch = args.input_size, args.batch_size
    images = torch.rand(batch, 3, size, size, generator=generator).mul(255).to(device)
    images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.zeros(batch, 120, 5, device=device)
    centres = torch.rand(batch, 10, 2, generator=generator) * (size * 0.8) + size * 0.1
    sides = torch.rand(batch, 10, 2, generator=generator) * (size * 0.2) + 16
    targets[:, :10, 0] = (
        torch.randint(0, len(BCCD_CLASSES), (batch, 10), generator=generator).float().to(device)
    )
    targets[:, :10, 1:3], targets[:, :10, 3:5] = centres.to(device), sides.to(device)

    def step() -> None:
        loss = model(images, targets)["total_loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(CEILING_WARMUP):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(CEILING_STEPS):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"trainer": "model-only ceiling", "train_images_per_second": CEILING_STEPS * batch / seconds}


def format_training_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per trainer and a ratio row (ours/official)."""
    header = (
        f"{'trainer':<16} {'wall s':>8} {'train s':>8} {'eval s':>7} {'train img/s':>11} "
        f"{'mAP50:95':>9} {'mAP50':>7}"
    )
    lines = [header, "-" * len(header)]
    for name in ("ours", "official"):
        row = results.get(name)
        if row is None:
            continue
        ceiling = results.get("ceiling", {}).get("train_images_per_second")
        share = f" ({row['train_images_per_second'] / ceiling:.0%} of the ceiling)" if ceiling else ""
        lines.append(
            f"{name:<16} {_cell(row.get('wall_seconds'), '8.1f')} {_cell(row.get('train_seconds'), '8.1f')} "
            f"{_cell(row.get('eval_seconds'), '7.1f')} {_cell(row.get('train_images_per_second'), '11.2f')} "
            f"{_cell(100 * row['mAP'], '9.2f')} {_cell(100 * row['mAP50'], '7.2f')}{share}"
        )
    if "ceiling" in results:
        lines.append(
            f"{'model-only':<16} {'':>8} {'':>8} {'':>7} "
            f"{results['ceiling']['train_images_per_second']:>11.2f}   (bare step: no data, EMA, logging)"
        )
    if "ours" in results and "official" in results:
        ours, official = results["ours"], results["official"]
        lines.append(
            f"{'ours/official':<16} {_ratio(ours['wall_seconds'], official['wall_seconds']):>8} {'':>8} {'':>7} "
            f"{_ratio(ours['train_images_per_second'], official['train_images_per_second']):>11} "
            f"{_ratio(ours['mAP'], official['mAP']):>9} {_ratio(ours['mAP50'], official['mAP50']):>7}"
        )
        lines.append(
            f"{'ours-official':<16} {'':>8} {'':>8} {'':>7} {'':>11} "
            f"{100 * (ours['mAP'] - official['mAP']):>+9.2f} {100 * (ours['mAP50'] - official['mAP50']):>+7.2f}"
        )
    return "\n".join(lines)


def format_evaluator_table(report: dict[str, Any]) -> str:
    """Both evaluators' APs on one checkpoint, in AP points, and whether they agree."""
    lines = [f"checkpoint: {report['checkpoint']}", f"{'evaluator':<26} {'mAP50:95':>9} {'mAP50':>7}"]
    rows = (
        ("official", report["official"]),
        ("official, our conventions", report["official_matched"]),
    )
    for name, row in rows:
        lines.append(f"{name:<26} {100 * row['mAP']:>9.3f} {100 * row['mAP50']:>7.3f}")
    ours = report["ours"]
    if "error" in ours:
        lines.append(f"{'ours':<26} {ours['error']}")
        return "\n".join(lines)
    lines.append(f"{'ours':<26} {100 * ours['mAP']:>9.3f} {100 * ours['mAP50']:>7.3f}")
    tolerance = report["tolerance_points"]
    for label, suffix in (("ours-official", ""), ("ours-official (matched)", "_matched")):
        diff = report[f"difference_points{suffix}"]
        verdict = "agree" if report[f"agree{suffix}"] else "DISAGREE"
        lines.append(
            f"{label:<26} {diff['mAP']:>+9.3f} {diff['mAP50']:>+7.3f}   ({verdict}: tolerance {tolerance} AP points)"
        )
    lines.append(
        "our conventions: zero-area ground-truth boxes dropped, predicted boxes clipped to the image; the exit "
        "status uses the matched difference (same conventions, so any gap would be an evaluator bug); the as-is "
        "difference is those two conventions alone (see benchmarks/README.md)"
    )
    return "\n".join(lines)


def _build_official_cocoeval_op() -> None:
    """JIT-build the official evaluator's C++ COCOeval now (tens of seconds, once per machine), not in a timed run."""
    try:
        from yolox.layers import FastCocoEvalOp

        FastCocoEvalOp().load()
    except Exception as error:  # the official evaluator then falls back to pycocotools by itself
        print(
            f"fast COCOeval op not built ({error}); the official evaluator will use pycocotools",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 1 when a trainer fails or the evaluators disagree, else 0."""
    args = make_parser().parse_args(argv)
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out_dir = (
        args.out_dir or REPO_ROOT / "benchmarks" / "runs" / time.strftime("compare-%Y%m%d-%H%M%S")
    ).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    if not args.skip_official:
        _build_official_cocoeval_op()
    runners = {"official": run_official, "ours": run_ours}
    order = ["official", "ours"] if args.order == "official-first" else ["ours", "official"]
    skipped = {"official": args.skip_official, "ours": args.skip_ours}
    results: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    for name in order:
        if skipped[name]:
            continue
        try:
            results[name] = runners[name](args, device, out_dir)
        except Exception as error:  # one side failing must not lose the other side's figures
            traceback.print_exc()
            failures[name] = f"{type(error).__name__}: {error}"

    if not (args.skip_ours and args.skip_official):
        results["ceiling"] = measure_ceiling(args, device)  # after both: the same warm machine
    checkpoint = args.official_checkpoint or (
        Path(results["official"]["checkpoint"]) if "official" in results else None
    )
    evaluator_report = None
    if checkpoint is not None and not args.skip_eval_check:
        evaluator_report = compare_evaluators(checkpoint, args, device)

    settings = {
        key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()
    } | {"device": device}
    summary = {
        "settings": settings,
        "training": results,
        "failures": failures,
        "evaluators": evaluator_report,
    }
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")

    print()
    print(
        f"yolox-nano on BCCD: {args.epochs} epochs, batch {args.batch_size}, input {args.input_size}, "
        f"workers {args.workers}, threads {torch.get_num_threads()}, warmup {args.warmup_epochs}, no-aug {args.no_aug_epochs}, seed {args.seed}, "
        f"device {device} ({results.get('official', {}).get('device_name', device)})"
    )
    if results:
        print(format_training_table(results))
    for name, message in failures.items():
        print(f"{name}: FAILED: {message}")
    if evaluator_report is not None:
        print()
        print(format_evaluator_table(evaluator_report))
    print(f"\nresults: {out_dir / 'results.json'}")
    if failures or (evaluator_report is not None and evaluator_report.get("agree_matched") is False):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
