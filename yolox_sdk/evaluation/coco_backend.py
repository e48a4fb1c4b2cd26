"""The headline COCO bbox metrics computed by faster-coco-eval, pycocotools' C++ reimplementation.

Evaluation runs after every epoch of the no-augmentation phase, so its cost is paid many times in a short
finetune. faster-coco-eval (``COCOeval_faster``) gives the same 12 stats and the same ``precision`` array
as pycocotools (checked against pycocotools on real detections in ``tests/test_coco_eval_backend.py``)
several times faster; ``benchmarks/coco_eval_speed.py`` measures by how much.

What it does not give is pycocotools' per-image matches: ``COCOeval_faster.evaluate`` leaves ``evalImgs``
empty (its C++ side keeps them in a structure Python cannot read, with or without ``separate_eval``), and
its ``eval["matched"]`` holds only detection/ground-truth id pairs, not the per-image, per-area,
per-threshold layout the curves, confusion matrix, error analysis and bootstrap read. So this module only
answers what per-epoch evaluation, the best-checkpoint metric and ``EvalResult.metrics``/``per_class``
need; ``coco_eval`` builds a pycocotools ``COCOeval`` on demand for everything that reads matches.

faster-coco-eval is a declared dependency; when it cannot be imported anyway (a broken wheel, a platform
without one), ``faster_headline`` returns ``None`` and the caller uses pycocotools, after one debug line.
It never prints: its progress and summary lines go to a function we pass (its default is ``logger.info``,
which would flood the training log), and the summary lines are kept as pycocotools would have printed them.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import attrs
import numpy as np

log = logging.getLogger(__name__)

# pycocotools' bbox summary has 12 stats; faster-coco-eval prints two more lines (AR at IoU 0.5 and 0.75)
# after them, which are left out of ``stats`` and of the summary text.
NUM_STATS = 12


@attrs.frozen(eq=False)
class Headline:
    """What an accumulated COCO bbox evaluation says, from either backend.

    Attributes:
        stats: ``COCOeval.stats`` (12 values, -1 where nothing can be measured).
        precision: ``COCOeval.eval["precision"]``, shape [IoU thresholds, recall points, categories,
            area ranges, max detections].
        category_order: the category id of each category column of ``precision``.
        summary: the 12 lines ``COCOeval.summarize()`` prints, newline-terminated.
        backend: ``"faster-coco-eval"`` or ``"pycocotools"``.
    """

    stats: np.ndarray
    precision: np.ndarray
    category_order: tuple[int, ...]
    summary: str
    backend: str


def headline_of(evaluator: Any, summary: str, backend: str) -> Headline:
    """The ``Headline`` of a summarized evaluator: pycocotools' ``COCOeval`` and faster-coco-eval's
    ``COCOeval_faster`` keep the results under the same attribute names."""
    return Headline(
        stats=np.asarray(evaluator.stats, dtype=np.float64)[:NUM_STATS],
        precision=np.asarray(evaluator.eval["precision"]),
        category_order=tuple(int(category_id) for category_id in evaluator.params.catIds),
        summary=summary,
        backend=backend,
    )


@functools.cache
def faster_coco_eval_module() -> Any | None:
    """The ``faster_coco_eval`` module, or ``None`` (logged once per process) when it cannot be imported."""
    try:
        import faster_coco_eval
    except ImportError as error:
        log.debug("faster-coco-eval is not importable (%s); computing COCO metrics with pycocotools.", error)
        return None
    return faster_coco_eval


def faster_headline(ground_truth: dict[str, Any], detections: dict[str, Any]) -> Headline | None:
    """COCO bbox metrics of ``detections`` against ``ground_truth`` with faster-coco-eval, or ``None``
    when it is not importable.

    Args:
        ground_truth: COCO dataset content (``images``, ``annotations``, ``categories``); left unchanged.
        detections: the same for the results: every annotation with ``id``, ``area``, ``iscrowd`` and
            ``score`` (what ``COCO.loadRes`` would add); left unchanged.
    """
    backend = faster_coco_eval_module()
    if backend is None:
        return None
    lines: list[str] = []
    evaluator = backend.COCOeval_faster(
        _coco(backend, ground_truth), _coco(backend, detections), "bbox", print_function=_silent
    )
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.print_function = lines.append
    evaluator.summarize()
    summary = "".join(f"{line}\n" for line in lines[:NUM_STATS])
    return headline_of(evaluator, summary, "faster-coco-eval")


def _coco(backend: Any, content: dict[str, Any]) -> Any:
    # faster-coco-eval writes into the annotation dicts it is given ("ignore"), and the caller may still
    # build pycocotools' evaluator from the same content: hand it copies.
    copied = {**content, "annotations": [dict(annotation) for annotation in content["annotations"]]}
    return backend.COCO(copied, print_function=_silent)


def _silent(*_: Any, **__: Any) -> None:
    """A ``print_function`` that drops faster-coco-eval's progress lines."""
