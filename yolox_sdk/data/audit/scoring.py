"""Which labels of one image a model disagrees with, and how strongly: our own box matching.

Every label gets at most one issue (the kind with the highest score) and every prediction explains at most
one issue, so one planted error never shows up as three suggestions. Scores are in ``[0, 1]``:

* ``wrong_class``: a label overlapped (IoU >= 0.5) by a prediction of another class scoring ``s``, with
  ``support`` the best same-class prediction at IoU >= 0.5: ``s * (1 - support)``.
* ``badly_placed``: the best same-class prediction ``p`` that overlaps the label only partly
  (``MIN_OVERLAP <= IoU < GOOD_IOU``) and explains no other label (IoU < 0.5 with all others):
  ``s_p * (1 - IoU) * (1 - good)``, ``good`` the best same-class prediction at IoU >= ``GOOD_IOU``.
* ``spurious``: no prediction sees an object there: ``recall * (1 - evidence) * (1 - s_p)``, where
  ``evidence`` is the best ``min(1, s / DETECTED_SCORE) * min(1, IoU / 0.5)`` over all predictions (a
  prediction that would count the label as found in ``recall`` is full evidence), ``s_p`` the badly-placed
  candidate's score (a shifted box is placed badly, not invented) and ``recall`` the share of this class's
  labels the model finds in the whole dataset (a model that finds nothing makes no label suspicious).
* ``missing``: a prediction no label explains (IoU < 0.5 with every label), not already the target of a
  ``badly_placed`` issue: ``s * (1 - max IoU with a label)``; overlapping candidates keep the best one.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from yolox_sdk.evaluation.matches import box_iou

MISSING = "missing"
WRONG_CLASS = "wrong_class"
BADLY_PLACED = "badly_placed"
SPURIOUS = "spurious"
KINDS = (MISSING, WRONG_CLASS, BADLY_PLACED, SPURIOUS)

MATCH_IOU = 0.5  # a prediction at this IoU or more, same class, explains a label
GOOD_IOU = 0.7  # a same-class prediction this close says the label is placed well
MIN_OVERLAP = 0.05  # below this a prediction is somewhere else, not a correction of the label
DETECTED_SCORE = 0.3  # a label counts as found by the model (for its class recall) at this score
MIN_ISSUE_SCORE = 0.1  # issues scoring less are not suggested


@attrs.frozen
class Boxes:
    """Boxes of one image as arrays: ``(N, 4)`` absolute xyxy, ``(N,)`` class indices, ``(N,)`` scores
    (ones for labels)."""

    boxes: np.ndarray = attrs.field(converter=lambda v: np.asarray(v, np.float64).reshape(-1, 4))
    labels: np.ndarray = attrs.field(converter=lambda v: np.asarray(v, np.int64).reshape(-1))
    scores: np.ndarray = attrs.field(
        default=None, converter=lambda v: None if v is None else np.asarray(v, np.float64).reshape(-1)
    )

    def __attrs_post_init__(self) -> None:
        if self.scores is None:
            object.__setattr__(self, "scores", np.ones(len(self.labels)))

    def __len__(self) -> int:
        return len(self.labels)


@attrs.frozen
class BoxIssue:
    """One issue of one image.

    Attributes:
        kind: one of ``KINDS``.
        score: how likely the label is wrong, in ``[0, 1]``.
        label_index: the label's position in the image's labels (``None`` for ``missing``).
        prediction_index: the prediction behind the issue (``None`` for ``spurious``).
        suggested_label: the class to add or change to (``None`` for ``badly_placed`` and ``spurious``).
        iou: IoU of the label and the prediction (``None`` when there is only one of them).
    """

    kind: str
    score: float
    label_index: int | None
    prediction_index: int | None
    suggested_label: int | None = None
    iou: float | None = None


def class_recall(labels: Sequence[Boxes], predictions: Sequence[Boxes], num_classes: int) -> np.ndarray:
    """Per class, the share of its labels a same-class prediction scoring ``DETECTED_SCORE`` or more
    overlaps at ``MATCH_IOU``; 0 for a class without labels."""
    found = np.zeros(num_classes)
    total = np.zeros(num_classes)
    for truth, predicted in zip(labels, predictions, strict=True):
        if not len(truth):
            continue
        iou = box_iou(truth.boxes, predicted.boxes)
        hit = (
            (iou >= MATCH_IOU)
            & (truth.labels[:, None] == predicted.labels[None, :])
            & (predicted.scores[None, :] >= DETECTED_SCORE)
        )
        total += np.bincount(truth.labels, minlength=num_classes)
        found += np.bincount(truth.labels[hit.any(axis=1)], minlength=num_classes)
    return np.divide(found, total, out=np.zeros(num_classes), where=total > 0)


def _best(scores: np.ndarray, mask: np.ndarray) -> tuple[float, int | None]:
    """The highest score where ``mask`` holds, and its index; ``(0.0, None)`` when nothing does."""
    if not mask.any():
        return 0.0, None
    masked = np.where(mask, scores, -1.0)
    index = int(np.argmax(masked))
    return float(masked[index]), index


def _label_issue(
    g: int, truth: Boxes, predicted: Boxes, iou: np.ndarray, explains_other: np.ndarray, recall: np.ndarray
) -> BoxIssue | None:
    """The strongest issue of label ``g``, or ``None`` when the model agrees with it."""
    scores = predicted.scores
    same = predicted.labels == truth.labels[g]
    overlap = iou[g]
    support, _ = _best(scores, same & (overlap >= MATCH_IOU))
    good, _ = _best(scores, same & (overlap >= GOOD_IOU))
    other, other_index = _best(scores, ~same & (overlap >= MATCH_IOU))
    candidates = []
    if other_index is not None:
        candidates.append(
            BoxIssue(
                WRONG_CLASS,
                other * (1 - support),
                g,
                other_index,
                int(predicted.labels[other_index]),
                float(overlap[other_index]),
            )
        )
    partial = same & (overlap >= MIN_OVERLAP) & (overlap < GOOD_IOU) & ~explains_other[g]
    weights = np.where(partial, scores * (1 - overlap), -1.0)
    placed_score = 0.0
    if partial.any():
        p = int(np.argmax(weights))
        placed_score = float(scores[p])
        candidates.append(
            BoxIssue(BADLY_PLACED, float(weights[p]) * (1 - good), g, p, None, float(overlap[p]))
        )
    seen = np.minimum(1.0, scores / DETECTED_SCORE) * np.minimum(1.0, overlap / MATCH_IOU)
    evidence = float(np.max(seen, initial=0.0))
    unseen = float(recall[truth.labels[g]]) * (1 - evidence) * (1 - placed_score)
    candidates.append(BoxIssue(SPURIOUS, unseen, g, None))
    best = max(candidates, key=lambda issue: issue.score)
    return best if best.score >= MIN_ISSUE_SCORE else None


def _missing_issues(truth: Boxes, predicted: Boxes, iou: np.ndarray, claimed: set[int]) -> list[BoxIssue]:
    """``missing`` issues: confident predictions no label explains, overlapping ones merged (best kept)."""
    nearest = iou.max(axis=0) if len(truth) else np.zeros(len(predicted))
    weights = predicted.scores * (1 - nearest)
    order = [
        int(p)
        for p in np.argsort(-weights, kind="stable")
        if nearest[p] < MATCH_IOU and int(p) not in claimed and weights[p] >= MIN_ISSUE_SCORE
    ]
    kept: list[int] = []
    for p in order:
        if kept and box_iou(predicted.boxes[p], predicted.boxes[kept]).max() >= MATCH_IOU:
            continue
        if claimed and box_iou(predicted.boxes[p], predicted.boxes[sorted(claimed)]).max() >= MATCH_IOU:
            continue  # another class's box on the object a badly placed label is moved to
        kept.append(p)
    return [
        BoxIssue(MISSING, float(weights[p]), None, p, int(predicted.labels[p]), float(nearest[p]))
        for p in kept
    ]


def image_issues(truth: Boxes, predicted: Boxes, recall: np.ndarray) -> list[BoxIssue]:
    """Every issue of one image (module docstring), strongest first.

    Args:
        truth: the image's labels.
        predicted: the model's predictions on it (scores in ``[0, 1]``).
        recall: ``class_recall`` of the model on the whole dataset.
    """
    iou = box_iou(truth.boxes, predicted.boxes)
    # explains_other[g, p]: prediction p matches some label other than g, so it is that label's prediction.
    matches = iou >= MATCH_IOU
    explains_other = (matches.sum(axis=0)[None, :] - matches) > 0
    issues = [
        issue
        for g in range(len(truth))
        if (issue := _label_issue(g, truth, predicted, iou, explains_other, recall)) is not None
    ]
    claimed = {
        issue.prediction_index
        for issue in issues
        if issue.kind == BADLY_PLACED and issue.prediction_index is not None
    }
    issues += _missing_issues(truth, predicted, iou, claimed)
    return sorted(issues, key=lambda issue: -issue.score)
