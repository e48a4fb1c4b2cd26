"""How many planted label errors ``yolox-sdk data audit`` finds on BCCD.

The benchmark copies a BCCD split (default: train, 205 images) into a work folder in VOC, plants a fixed,
seeded set of label errors into the copy, trains yolox-nano on the corrupted copy as ``yolox-sdk run`` would
(COCO-pretrained weights, YOLOX-Nano's augmentation recipe, evaluated on BCCD's clean val split), audits the
corrupted copy with the trained checkpoint and prints, for the top-K suggestions (K = 1x and 2x the number
planted), the precision and recall of the planted errors, overall and per kind, with the CPU it ran on.

Planted errors (``--per-kind`` of each, 25 by default; each on a different box):

| kind | what is changed in the copy | found when the audit suggests |
|---|---|---|
| deleted | a box is removed | ``missing`` with a suggested box of IoU >= 0.5 with the removed box |
| swapped | a box's class is changed to another class | ``wrong_class`` for a label box of IoU >= 0.5 with it (the suggested class is checked separately) |
| shifted | a box is moved by half its width and half its height (random signs; the other way where the image ends) | ``badly_placed`` for a label box of IoU >= 0.5 with the shifted box |
| invented | a box of a random class, with the size of a real box of that class, where no label overlaps it by more than IoU 0.1 | ``spurious`` for a label box of IoU >= 0.5 with it |

A suggestion "hits" when it finds a planted error as above; precision@K is hits among the top K / K,
recall@K the planted errors found among the top K / the number planted. BCCD's own labels miss many red cells,
so some suggestions that are not hits are real errors of the dataset: precision here is a lower bound.

    nice -n 10 .venv/bin/python benchmarks/label_audit.py --epochs 15 --input-size 416
    .venv/bin/python benchmarks/label_audit.py --checkpoint runs/label_audit/.../best.pt   # audit only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
KINDS = {"deleted": "missing", "swapped": "wrong_class", "shifted": "badly_placed", "invented": "spurious"}
FOUND_IOU = 0.5
INVENTED_MAX_IOU = 0.1

log = logging.getLogger("label_audit")


def make_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="train", help="BCCD split to corrupt and audit")
    parser.add_argument("--per-kind", type=int, default=25, help="planted errors of each kind")
    parser.add_argument("--seed", type=int, default=0, help="seed of the planted errors")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--input-size", type=int, default=416)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="audit with this checkpoint, no training"
    )
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "benchmarks" / "runs" / "label_audit")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    return parser


@attrs.frozen
class PlantedError:
    """One planted error: its kind, the image (record index and id), the box as planted (the removed box
    for ``deleted``) and, for ``swapped``, the original class."""

    kind: str
    image: int
    image_id: str
    box: tuple[float, float, float, float]
    original_class: str | None = None


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    from yolox_sdk.evaluation.matches import box_iou

    return box_iou(np.asarray(box).reshape(1, 4), np.asarray(others).reshape(-1, 4))[0]


def _shifted(box: np.ndarray, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """``box`` moved by half its size in a random diagonal direction, turned back where the image ends."""
    size = box[2:] - box[:2]
    step = size / 2 * rng.choice([-1.0, 1.0], size=2)
    limits = np.array([width, height], dtype=np.float64)
    for axis in range(2):
        low, high = box[axis] + step[axis], box[axis + 2] + step[axis]
        if low < 0 or high > limits[axis]:
            step[axis] = -step[axis]
    moved = box + np.concatenate([step, step])
    return np.clip(moved, 0, np.concatenate([limits, limits]))


def _invented(record: Any, sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """A box of one of ``sizes`` (w, h) placed where no label of ``record`` overlaps it by IoU > 0.1."""
    for _ in range(200):
        width, height = sizes[rng.integers(len(sizes))]
        if width >= record.width or height >= record.height:
            continue
        x = rng.uniform(0, record.width - width)
        y = rng.uniform(0, record.height - height)
        box = np.array([x, y, x + width, y + height])
        if not len(record.boxes) or _iou(box, record.boxes).max() <= INVENTED_MAX_IOU:
            return box
    return None


def plant_errors(dataset: Any, per_kind: int, seed: int) -> tuple[Any, list[PlantedError]]:
    """A copy of ``dataset`` with ``per_kind`` errors of each kind (module docstring), and the list of them."""
    rng = np.random.default_rng(seed)
    records = [attrs.evolve(r, boxes=r.boxes.copy(), labels=r.labels.copy()) for r in dataset.records]
    positions = [(i, j) for i, record in enumerate(records) for j in range(len(record.boxes))]
    chosen = rng.choice(len(positions), size=3 * per_kind, replace=False)
    planted: list[PlantedError] = []
    removed: dict[int, list[int]] = {}
    names = dataset.class_names
    for order, position in enumerate(chosen):
        i, j = positions[position]
        record = records[i]
        kind = ("deleted", "swapped", "shifted")[order // per_kind]
        box = record.boxes[j].astype(np.float64)
        if kind == "deleted":
            removed.setdefault(i, []).append(j)
            planted.append(PlantedError(kind, i, record.image_id, tuple(box.tolist())))
        elif kind == "swapped":
            original = int(record.labels[j])
            others = [c for c in range(len(names)) if c != original]
            record.labels[j] = int(rng.choice(others))
            planted.append(PlantedError(kind, i, record.image_id, tuple(box.tolist()), names[original]))
        else:
            record.boxes[j] = _shifted(box, record.width, record.height, rng)
            planted.append(PlantedError(kind, i, record.image_id, tuple(record.boxes[j].tolist())))
    for i, indices in removed.items():
        keep = np.setdiff1d(np.arange(len(records[i].boxes)), indices)
        records[i] = attrs.evolve(records[i], boxes=records[i].boxes[keep], labels=records[i].labels[keep])
    all_boxes = np.concatenate([r.boxes for r in dataset.records])
    all_labels = np.concatenate([r.labels for r in dataset.records])
    added = 0
    while added < per_kind:
        i = int(rng.integers(len(records)))
        label = int(rng.integers(len(names)))
        of_class = all_boxes[all_labels == label]
        box = _invented(records[i], of_class[:, 2:] - of_class[:, :2], rng)
        if box is None:
            continue
        records[i] = attrs.evolve(
            records[i],
            boxes=np.concatenate([records[i].boxes, box.reshape(1, 4).astype(np.float32)]),
            labels=np.concatenate([records[i].labels, [label]]),
        )
        planted.append(PlantedError("invented", i, records[i].image_id, tuple(box.tolist())))
        added += 1
    return attrs.evolve(dataset, records=records), planted


def write_corrupted(split: str, per_kind: int, seed: int, out_dir: Path) -> list[PlantedError]:
    """Read BCCD's ``split``, plant the errors and write the copy to ``out_dir`` (VOC, same split name)."""
    from yolox_sdk.data.conversion import empty_folder, save_dataset
    from yolox_sdk.data.formats import load_dataset

    clean = load_dataset("bccd", split=split, format="voc")
    corrupted, planted = plant_errors(clean, per_kind, seed)
    if out_dir.is_dir():
        empty_folder(out_dir)
    save_dataset(corrupted, "voc", out_dir, split=split)
    return planted


def train_on(data_dir: Path, split: str, args: argparse.Namespace, runs: Path) -> Path:
    """yolox-nano finetuned from COCO weights on the corrupted copy, as ``yolox-sdk run`` trains; best.pt."""
    from yolox_sdk.config.loader import load_config
    from yolox_sdk.engine.trainer import train

    overrides = [
        "model.name=yolox-nano",
        "model.pretrained=true",
        f"model.input_size=[{args.input_size},{args.input_size}]",
        f"data.train_path={data_dir}",
        f"data.train_split={split}",
        "data.val_path=bccd",
        "data.val_split=val",
        "data.format=voc",
        f"data.batch_size={args.batch_size}",
        "data.num_workers=0",
        "augmentation.mosaic_prob=0.5",
        "augmentation.mixup=false",
        "augmentation.scale=[0.5,1.5]",
        f"training.epochs={args.epochs}",
        "training.warmup_epochs=2",
        f"training.no_aug_epochs={max(1, args.epochs // 5)}",
        f"evaluation.eval_interval={args.epochs}",
        "monitoring.progress_bar=false",
        f"monitoring.output_dir={runs}",
        "monitoring.run_name=label_audit",
        f"device.type={args.device}",
    ]
    return Path(train(load_config(None, overrides)).best_checkpoint)


def hits(suggestion: Any, error: PlantedError) -> bool:
    """Whether ``suggestion`` finds ``error`` (the table of the module docstring)."""
    if suggestion.kind != KINDS[error.kind] or suggestion.image_id != error.image_id:
        return False
    box = suggestion.suggested_box if error.kind == "deleted" else suggestion.label_box
    return box is not None and float(_iou(np.asarray(error.box), np.asarray(box))[0]) >= FOUND_IOU


def score_ranking(suggestions: list[Any], planted: list[PlantedError], k: int) -> dict[str, Any]:
    """Precision and recall of the planted errors among the top ``k`` suggestions, overall and per kind."""
    top = suggestions[:k]
    found = [any(hits(s, e) for s in top) for e in planted]
    useful = [any(hits(s, e) for e in planted) for s in top]
    figures: dict[str, Any] = {
        "k": k,
        "precision": sum(useful) / max(1, len(top)),
        "recall": sum(found) / max(1, len(planted)),
    }
    for kind, suggested in KINDS.items():
        of_kind = [e for e, f in zip(planted, found, strict=True) if e.kind == kind]
        top_of_kind = [s for s in top if s.kind == suggested]
        correct = sum(any(hits(s, e) for e in planted) for s in top_of_kind)
        figures[kind] = {
            "suggested": len(top_of_kind),
            "precision": correct / len(top_of_kind) if top_of_kind else None,
            "recall": sum(f for e, f in zip(planted, found, strict=True) if e.kind == kind)
            / max(1, len(of_kind)),
        }
    swaps = [e for e in planted if e.kind == "swapped"]
    right_class = sum(any(hits(s, e) and s.suggested_class == e.original_class for s in top) for e in swaps)
    figures["swapped"]["right_class"] = right_class
    return figures


def cpu_description() -> str:
    """CPU model, cores and torch's threads and instruction set, for the record."""
    name = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{name} ({os.cpu_count()} cores, {torch.get_num_threads()} threads, torch CPU capability {capability})"


def cpu_flags() -> str:
    """The vector-instruction flags of /proc/cpuinfo that matter for torch on CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                wanted = (
                    "avx",
                    "avx2",
                    "fma",
                    "avx512f",
                    "avx512_bf16",
                    "avx512_vnni",
                    "amx_bf16",
                    "amx_tile",
                )
                return " ".join(flag for flag in wanted if flag in flags)
    except OSError:
        pass
    return "unknown"


def format_figures(figures: dict[str, Any]) -> str:
    """The table printed for one K."""
    lines = [f"top {figures['k']}: precision {figures['precision']:.2f}, recall {figures['recall']:.2f}"]
    for kind, suggested in KINDS.items():
        row = figures[kind]
        precision = "n/a" if row["precision"] is None else f"{row['precision']:.2f}"
        extra = f", right class {row['right_class']}" if kind == "swapped" else ""
        lines.append(
            f"  {kind:<9} as {suggested:<13} recall {row['recall']:.2f}  "
            f"precision {precision} of {row['suggested']} suggested{extra}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Plant, train (unless --checkpoint), audit, score."""
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("YOLOX_SDK_ASSETS", str((REPO_ROOT.parent / "shared" / "assets").resolve()))
    data_dir = args.work_dir / "corrupted"
    started = time.perf_counter()
    planted = write_corrupted(args.split, args.per_kind, args.seed, data_dir)
    print(f"Planted {len(planted)} errors into a copy of BCCD {args.split} at {data_dir}")
    train_seconds = 0.0
    checkpoint = args.checkpoint
    if checkpoint is None:
        train_started = time.perf_counter()
        checkpoint = train_on(data_dir, args.split, args, args.work_dir / "runs")
        train_seconds = time.perf_counter() - train_started
        print(f"Trained {checkpoint} in {train_seconds:.0f} s")
    from yolox_sdk.data.audit import audit_labels

    audit_started = time.perf_counter()
    result = audit_labels(data_dir, checkpoint, split=args.split, format_name="voc", device=args.device)
    audit_seconds = time.perf_counter() - audit_started
    for line in result.summary_lines():
        print(line)
    figures = [score_ranking(result.suggestions, planted, k * len(planted)) for k in (1, 2)]
    for row in figures:
        print(format_figures(row))
    environment = {
        "cpu": cpu_description(),
        "cpu_flags": cpu_flags(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    print(f"CPU: {environment['cpu']}; flags: {environment['cpu_flags']}")
    print(
        f"Training {train_seconds:.0f} s, audit {audit_seconds:.0f} s, total {time.perf_counter() - started:.0f} s"
    )
    out = args.json or args.work_dir / f"label_audit-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {key: str(value) for key, value in vars(args).items()}
    payload = {
        "environment": environment,
        "settings": settings,
        "checkpoint": str(checkpoint),
        "seconds": {"train": train_seconds, "audit": audit_seconds},
        "suggestions": len(result.suggestions),
        "figures": figures,
        "planted": [attrs.asdict(error) for error in planted],
    }
    out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
