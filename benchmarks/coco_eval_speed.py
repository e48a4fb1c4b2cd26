"""What faster-coco-eval saves: COCO metrics with pycocotools against faster-coco-eval on the same real
detections, and a whole per-epoch evaluation with each backend.

The detections are made once (their time is left out of the first two tables): a yolox-nano on a BCCD
split, either a trained checkpoint (``--checkpoint``) or the COCO-pretrained weights with a new 3-class
head (the default, reproducible from ``../shared/assets``; its objectness is real, its class scores are
near the 0.01 prior, hence the lower default ``--conf``). Then, median of ``--repeats`` runs, the two
backends alternating so that load on a shared machine hits both alike:

| row | what is timed |
|---|---|
| COCOeval | evaluate + accumulate + summarize, with building the two COCO objects each backend needs |
| evaluate_detections | the SDK's whole metric step (result dicts, per-class AP, summary) |
| evaluator on first read | pycocotools' ``COCOeval`` the fast path defers (``EvalResult.evaluator``) |
| epoch evaluation | ``evaluation.runner.evaluate_model`` as training calls it: detection + metrics |

"pycocotools" is the SDK's own fallback path (what it ran before faster-coco-eval), selected by making
``coco_backend.faster_coco_eval_module`` return ``None``; the metrics of both are checked equal (1e-12).

    nice .venv/bin/python benchmarks/coco_eval_speed.py                      # BCCD val, nano 416
    nice .venv/bin/python benchmarks/coco_eval_speed.py --checkpoint runs/x/best.pt --conf 0.01  # its size

Prints the CPU model, flags and load average, the detection count, then the table (seconds, and the
pycocotools/faster-coco-eval ratio measured in the same run).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="bccd", help="Dataset path or catalog name.")
    parser.add_argument("--format", default="voc")
    parser.add_argument("--split", default="val")
    parser.add_argument("--max-images", type=int, default=None, help="Only the first N images of the split.")
    parser.add_argument("--checkpoint", type=Path, default=None, help="A trained checkpoint of the dataset.")
    parser.add_argument("--input-size", type=int, default=None, help="Default: the checkpoint's, else 416.")
    parser.add_argument("--conf", type=float, default=0.001, help="Confidence threshold of the detections.")
    parser.add_argument("--device", default="cpu", help="Where the model runs (the metrics run on the CPU).")
    parser.add_argument("--repeats", type=int, default=5, help="Timed runs of each metric row per backend.")
    parser.add_argument("--epoch-repeats", type=int, default=3, help="Timed epoch evaluations per backend.")
    return parser.parse_args(argv)


def machine(device: str) -> str:
    """CPU model, flags, cores and load average (and the GPU): on a shared machine the ratios are what
    carries over."""
    from yolox_sdk.benchmarking.measure import cpu_description

    cpu = cpu_description()
    flags = " ".join(
        flag for flag in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if flag in cpu["flags"]
    )
    load = ", ".join(f"{value:.2f}" for value in cpu["load_average_1_5_15"] or [])
    text = f"CPU: {cpu['model']} ({cpu['cores']} cores; {flags}); torch threads {torch.get_num_threads()}"
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f"; GPU: {torch.cuda.get_device_name(torch.device(device))}"
    return f"{text}; load average {load}"


def load_parts(arguments: argparse.Namespace) -> tuple[Any, torch.nn.Module]:
    """The dataset and the model whose detections are evaluated."""
    from yolox_sdk.data.formats import load_dataset
    from yolox_sdk.data.records import DetectionDataset
    from yolox_sdk.models.factory import create_model

    dataset = load_dataset(arguments.data, split=arguments.split, format=arguments.format)
    if arguments.max_images is not None:
        dataset = DetectionDataset(
            dataset.records[: arguments.max_images], dataset.class_names, dataset.category_ids, dataset.source
        )
    if arguments.checkpoint is not None:
        from yolox_sdk.checkpoints.format import load_checkpoint
        from yolox_sdk.models.factory import model_from_checkpoint

        checkpoint = load_checkpoint(arguments.checkpoint)
        arguments.input_size = arguments.input_size or int(checkpoint.spec.input_size[0])
        model = model_from_checkpoint(checkpoint)
    else:
        arguments.input_size = arguments.input_size or 416
        size = (arguments.input_size, arguments.input_size)
        torch.manual_seed(0)
        model, _, _ = create_model("yolox-nano", dataset.num_classes, pretrained=True, input_size=size)
    return dataset, model.eval()


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Run the SDK's evaluation with ``name`` (``faster-coco-eval`` or ``pycocotools``)."""
    from yolox_sdk.evaluation import coco_backend

    if name == "faster-coco-eval":
        yield
        return
    original = coco_backend.faster_coco_eval_module
    coco_backend.faster_coco_eval_module = lambda: None  # type: ignore[assignment]
    try:
        yield
    finally:
        coco_backend.faster_coco_eval_module = original  # type: ignore[assignment]


def timed(function: Callable[[], Any]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def alternating(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, run in turn ``repeats`` times (after one untimed run each)."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(repeats + 1):
        for name, function in runs.items():
            elapsed = timed(function)
            if repeat:
                seconds[name].append(elapsed)
    return {name: statistics.median(values) for name, values in seconds.items()}


def measure(arguments: argparse.Namespace) -> dict[str, Any]:
    """Every row of the table, in seconds per backend, with the detection count."""
    from yolox_sdk.config.schema import EvaluationConfig
    from yolox_sdk.evaluation import coco_backend, coco_eval
    from yolox_sdk.evaluation.runner import evaluate_model

    dataset, model = load_parts(arguments)
    size = (arguments.input_size, arguments.input_size)
    detections = coco_eval.detect_dataset(
        model, dataset, size, conf_threshold=arguments.conf, device=arguments.device
    )
    ground_truth = coco_eval._ground_truth_content(dataset)
    results = coco_eval.coco_results(dataset, detections)
    as_content = coco_eval._results_content(ground_truth, results)

    def pycocotools_coco_eval() -> None:
        evaluator = coco_eval.accumulated_evaluator(coco_eval._indexed_coco(ground_truth), results)
        coco_eval._summary_text(evaluator)

    def sdk(name: str) -> Callable[[], Any]:
        def run() -> Any:
            with backend(name):
                return coco_eval.evaluate_detections(dataset, detections)

        return run

    check = {name: sdk(name)() for name in ("faster-coco-eval", "pycocotools")}
    for metric, value in check["pycocotools"].metrics.items():
        other = check["faster-coco-eval"].metrics[metric]
        assert (math.isnan(value) and math.isnan(other)) or abs(value - other) <= 1e-12, metric

    rows = {
        "COCOeval": alternating(
            {
                "faster-coco-eval": lambda: coco_backend.faster_headline(ground_truth, as_content),
                "pycocotools": pycocotools_coco_eval,
            },
            arguments.repeats,
        ),
        "evaluate_detections": alternating(
            {name: sdk(name) for name in ("faster-coco-eval", "pycocotools")}, arguments.repeats
        ),
    }
    first_reads = []
    for _ in range(arguments.repeats):
        deferred = sdk("faster-coco-eval")()
        first_reads.append(timed(lambda: deferred.evaluator))  # noqa: B023 (called at once)
    # with pycocotools the evaluator is what computed the metrics: inside its evaluate_detections row
    rows["evaluator on first read"] = {
        "faster-coco-eval": statistics.median(first_reads),
        "pycocotools": None,
    }
    settings = EvaluationConfig(conf_threshold=arguments.conf)

    def epoch(name: str) -> Callable[[], Any]:
        def run() -> Any:
            with backend(name):
                return evaluate_model(model, dataset, size, settings, arguments.device)

        return run

    rows["epoch evaluation"] = alternating(
        {name: epoch(name) for name in ("faster-coco-eval", "pycocotools")}, arguments.epoch_repeats
    )
    return {
        "images": len(dataset),
        "gt_boxes": dataset.num_boxes(),
        "detections": len(results),
        "mAP": check["faster-coco-eval"].metrics["mAP"],
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{'':<24} {'pycocotools s':>13} {'faster-coco-eval s':>18} {'ratio':>6}",
    ]
    for name, seconds in result["rows"].items():
        slow, fast = seconds["pycocotools"], seconds["faster-coco-eval"]
        if slow is None:
            lines.append(f"{name:<24} {'(in the row above)':>13} {fast:>18.4f} {'-':>6}")
        else:
            lines.append(f"{name:<24} {slow:>13.4f} {fast:>18.4f} {slow / fast:>5.1f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    print(machine(arguments.device), flush=True)
    result = measure(arguments)
    source = arguments.checkpoint or "pretrained yolox-nano, new head"
    print(
        f"{source} at {arguments.input_size} px on {arguments.data} {arguments.split}: {result['images']} images, "
        f"{result['gt_boxes']} boxes, {result['detections']} detections (conf {arguments.conf}), "
        f"mAP {result['mAP']:.4f}; median of {arguments.repeats} ({arguments.epoch_repeats} for the epoch)"
    )
    print(table(result), flush=True)
    return result


if __name__ == "__main__":
    main()
