"""SimOTA label assignment for a whole batch at once, as tensor operations without per-image loops.

The ``yolox`` head assigns labels image by image, with several host synchronisations per image, which
stalls a GPU for most of a training step. This module computes the same assignment (YOLOX paper, section
2.2, "SimOTA") for every image of a batch together. Ground truths are padded to the batch's largest count
and carried with a validity mask; anchors are narrowed to each image's candidates (see below), padded to
the batch's largest candidate count, so the costs are ``[batch, gts, candidates]`` tensors.

The rules, and where they reproduce the per-image code's behaviour at the edges:

* **Centre prior.** An anchor is in a ground truth's centre region when its centre lies strictly within
  ``CENTER_RADIUS`` strides of the box centre, in x and in y. Only anchors inside the region of at least
  one ground truth of their image are candidates at all; a candidate outside a given ground truth's own
  region costs ``OUTSIDE_CENTER_COST`` more for it, so it is chosen only when that ground truth wants more
  anchors than its region holds (a box whose centre is near or outside the image edge).
* **Cost.** Binary cross-entropy of ``sqrt(sigmoid(cls) * sigmoid(obj))`` against the ground truth's
  one-hot class, summed over classes, plus ``IOU_COST_WEIGHT * -log(IoU + 1e-8)``.
* **Dynamic k.** Each ground truth takes ``max(1, int(sum of its DYNAMIC_K_CANDIDATES best IoUs))``
  anchors, the IoUs being over its image's candidates only; it takes its ``k`` cheapest candidates.
* **Conflicts.** An anchor taken by several ground truths goes to the ground truth of lowest cost for it
  among all of its image's ground truths (as the per-image code does).
* Images without ground truths, or whose ground truths have no candidate anchor, get no foreground.

Everything runs in float32 with autocast off: the assignment decides the targets, and half-precision
costs would change which anchors win.

Two known differences from the per-image code, both at the level of rounding: the class cost is summed
as "all classes negative, then the ground truth's class swapped to positive" (so no
``[gts, anchors, classes]`` tensor is built), which can differ from a direct sum in the last bits; and
exactly equal costs are ranked by one ``torch.topk`` of the ``DYNAMIC_K_CANDIDATES`` cheapest per ground
truth rather than one of its own ``k``, so such ties may be broken differently (the package's own choice
there depends on the device's sort). On the real batches of ``tests/test_assignment.py`` the assignments
are identical and the losses equal to the last bit.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

CENTER_RADIUS = 1.5
IOU_COST_WEIGHT = 3.0
OUTSIDE_CENTER_COST = 1e6
DYNAMIC_K_CANDIDATES = 10
LOG_EPS = 1e-8


@attrs.frozen
class Assignment:
    """Which anchors are foreground and what they are matched to, per image of a batch.

    Attributes:
        foreground: ``[batch, anchors]`` bool.
        matched_gt: ``[batch, anchors]`` int64 index of the matched ground truth (0 on background).
        matched_class: ``[batch, anchors]`` int64 class of the matched ground truth (0 on background).
        matched_iou: ``[batch, anchors]`` float32 IoU of the prediction with its ground truth (0 on
            background).
    """

    foreground: torch.Tensor
    matched_gt: torch.Tensor
    matched_class: torch.Tensor
    matched_iou: torch.Tensor


def valid_ground_truths(labels: torch.Tensor) -> torch.Tensor:
    """``[batch, gts]`` mask of the real rows of YOLOX's zero-padded targets.

    The ``yolox`` head counts rows with a non-zero sum and then uses that many rows from the top; the
    mask follows the same rule (not "this row is non-zero"), so both read the same boxes.
    """
    count = (labels.sum(dim=2) > 0).sum(dim=1)
    rows = torch.arange(labels.shape[1], device=labels.device)
    return rows.unsqueeze(0) < count.unsqueeze(1)


def centre_prior(
    gt_boxes: torch.Tensor,
    x_shifts: torch.Tensor,
    y_shifts: torch.Tensor,
    strides: torch.Tensor,
) -> torch.Tensor:
    """``[batch, gts, anchors]``: the anchor's centre lies strictly inside the box's centre region.

    Args:
        gt_boxes: ``[batch, gts, 4]`` ground truths as ``cx, cy, w, h`` in input pixels.
        x_shifts, y_shifts: ``[anchors]`` grid cell of each anchor (column, row) at its own level.
        strides: ``[anchors]`` stride of each anchor's level.
    """
    anchor_x = (x_shifts + 0.5) * strides
    anchor_y = (y_shifts + 0.5) * strides
    radius = strides * CENTER_RADIUS
    centre_x = gt_boxes[..., 0:1]
    centre_y = gt_boxes[..., 1:2]
    # Written as distances to the region's four sides, so boundary anchors fall the same way as in yolox.
    inside_x = (anchor_x - (centre_x - radius) > 0.0) & ((centre_x + radius) - anchor_x > 0.0)
    inside_y = (anchor_y - (centre_y - radius) > 0.0) & ((centre_y + radius) - anchor_y > 0.0)
    return inside_x & inside_y


def pairwise_iou(gt_boxes: torch.Tensor, pred_boxes: torch.Tensor) -> torch.Tensor:
    """``[batch, gts, anchors]`` IoU of every ground truth with every predicted box of its image.

    Args:
        gt_boxes: ``[batch, gts, 4]`` as ``cx, cy, w, h``.
        pred_boxes: ``[batch, anchors, 4]`` as ``cx, cy, w, h``.
    """
    gt = gt_boxes.unsqueeze(2)
    pred = pred_boxes.unsqueeze(1)
    top_left = torch.max(gt[..., :2] - gt[..., 2:] / 2, pred[..., :2] - pred[..., 2:] / 2)
    bottom_right = torch.min(gt[..., :2] + gt[..., 2:] / 2, pred[..., :2] + pred[..., 2:] / 2)
    overlap = (bottom_right - top_left).clamp(min=0)
    intersection = overlap[..., 0] * overlap[..., 1]
    gt_area = gt[..., 2] * gt[..., 3]
    pred_area = pred[..., 2] * pred[..., 3]
    return intersection / (gt_area + pred_area - intersection)


def class_cost(cls_logits: torch.Tensor, obj_logits: torch.Tensor, gt_classes: torch.Tensor) -> torch.Tensor:
    """``[batch, gts, anchors]`` class cost: BCE of the joint score against the ground truth's one-hot class.

    The joint score is ``sqrt(sigmoid(cls) * sigmoid(obj))``. Against a one-hot target the summed BCE is
    the sum of every class's negative term with the target class's negative term replaced by its
    positive one; computing it that way needs ``[batch, anchors, classes]`` memory, not
    ``[batch, gts, anchors, classes]``.

    Args:
        cls_logits: ``[batch, anchors, classes]``.
        obj_logits: ``[batch, anchors, 1]``.
        gt_classes: ``[batch, gts]`` int64.
    """
    scores = (cls_logits.sigmoid() * obj_logits.sigmoid()).sqrt()
    # F.binary_cross_entropy gives the same clamped log terms as the per-image pairwise BCE.
    all_negative = F.binary_cross_entropy(scores, torch.zeros_like(scores), reduction="none").sum(-1)
    index = gt_classes.unsqueeze(1).expand(-1, scores.shape[1], -1)
    target_scores = scores.gather(2, index).transpose(1, 2)  # [batch, gts, anchors]
    negative = F.binary_cross_entropy(target_scores, torch.zeros_like(target_scores), reduction="none")
    positive = F.binary_cross_entropy(target_scores, torch.ones_like(target_scores), reduction="none")
    return all_negative.unsqueeze(1) - negative + positive


def dynamic_k(ious: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """``[batch, gts]`` anchors each ground truth takes: ``max(1, int(sum of its best IoUs))``.

    Only candidate anchors count (``candidates``: ``[batch, anchors]``); filling the others with 0
    leaves the sum of the best ``DYNAMIC_K_CANDIDATES`` exactly what it is over the candidates alone.
    """
    candidate_ious = ious.masked_fill(~candidates.unsqueeze(1), 0.0)
    best = candidate_ious.topk(min(DYNAMIC_K_CANDIDATES, ious.shape[-1]), dim=-1).values
    return best.sum(-1).int().clamp(min=1)


def match(cost: torch.Tensor, ks: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """``[batch, anchors]`` matched ground truth, ``-1`` where none: each gt's ``k`` cheapest anchors.

    Args:
        cost: ``[batch, gts, anchors]`` (anchors here are candidate slots), infinite where a slot is
            padding or a gt is padding.
        ks: ``[batch, gts]`` anchors per ground truth (never more than its image's candidates).
        wanted: ``[batch, gts]`` the ground truths that take anchors at all.
    """
    rank_limit = min(DYNAMIC_K_CANDIDATES, cost.shape[-1])
    cheapest = cost.topk(rank_limit, dim=-1, largest=False).indices
    ranks = torch.arange(rank_limit, device=cost.device)
    taken = (ranks < ks.unsqueeze(-1)) & wanted.unsqueeze(-1)  # [batch, gts, rank_limit]
    # Claims are counted and owners recorded per anchor straight from the chosen indices, without a
    # dense [batch, gts, anchors] matching matrix; an owner is only read where there is one claim.
    batch, gts = ks.shape
    anchors = cheapest.reshape(batch, -1)
    claims = torch.zeros(batch, cost.shape[-1], dtype=torch.long, device=cost.device)
    claims.scatter_add_(1, anchors, taken.reshape(batch, -1).long())
    gt_index = torch.arange(gts, device=cost.device).view(1, gts, 1).expand_as(cheapest)
    claimant = torch.where(taken, gt_index, -1).reshape(batch, -1)
    owner = torch.full_like(claims, -1).scatter_reduce_(1, anchors, claimant, reduce="amax")
    lowest_cost = cost.argmin(dim=1)  # first minimum on ties, as torch.min in the per-image code
    winner = torch.where(claims > 1, lowest_cost, owner)
    return torch.where(claims > 0, winner, torch.full_like(winner, -1))


def candidate_anchors(candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's candidate anchors, ascending, padded to the batch's largest count.

    Returns ``[batch, width]`` anchor indices (candidates first, then other anchors as padding) and the
    mask of the real slots. The host synchronisation here sizes ``width``; working on these columns
    instead of all anchors makes every later ``[batch, gts, ...]`` tensor several times smaller.
    """
    count = candidates.sum(dim=1)
    width = max(int(count.max()), 1)
    order = torch.sort(candidates.to(torch.uint8), dim=1, descending=True, stable=True).indices[:, :width]
    slots = torch.arange(width, device=candidates.device).unsqueeze(0) < count.unsqueeze(1)
    return order, slots


def _gather_anchors(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``values[b, order[b]]`` for ``[batch, anchors, channels]`` values."""
    return values.gather(1, order.unsqueeze(-1).expand(-1, -1, values.shape[-1]))


@torch.no_grad()
def simota_assign(
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    valid: torch.Tensor,
    pred_boxes: torch.Tensor,
    cls_logits: torch.Tensor,
    obj_logits: torch.Tensor,
    x_shifts: torch.Tensor,
    y_shifts: torch.Tensor,
    strides: torch.Tensor,
) -> Assignment:
    """SimOTA for a batch: foreground anchors and their ground truths, classes and IoUs.

    Args:
        gt_boxes: ``[batch, gts, 4]`` ``cx, cy, w, h`` in input pixels (padding rows are ignored).
        gt_classes: ``[batch, gts]`` class indices.
        valid: ``[batch, gts]`` bool, the real ground truths (see ``valid_ground_truths``).
        pred_boxes: ``[batch, anchors, 4]`` decoded predictions, ``cx, cy, w, h`` in input pixels.
        cls_logits: ``[batch, anchors, classes]`` class logits.
        obj_logits: ``[batch, anchors, 1]`` objectness logits.
        x_shifts, y_shifts, strides: ``[anchors]`` grid cell and stride of each anchor.

    Returns:
        The ``Assignment``. One host synchronisation, in ``candidate_anchors``.
    """
    with torch.autocast(device_type=pred_boxes.device.type, enabled=False):
        gt_boxes = gt_boxes.float()
        gt_classes = gt_classes.long()
        in_centre = centre_prior(gt_boxes, x_shifts.float(), y_shifts.float(), strides.float())
        in_centre &= valid.unsqueeze(-1)
        order, slots = candidate_anchors(in_centre.any(dim=1))
        in_centre = in_centre.gather(2, order.unsqueeze(1).expand(-1, in_centre.shape[1], -1))
        ious = pairwise_iou(gt_boxes, _gather_anchors(pred_boxes.float(), order))
        cost = (
            class_cost(
                _gather_anchors(cls_logits.float(), order),
                _gather_anchors(obj_logits.float(), order),
                gt_classes,
            )
            + IOU_COST_WEIGHT * -torch.log(ious + LOG_EPS)
            + OUTSIDE_CENTER_COST * (~in_centre).float()
        )
        cost = cost.masked_fill(~(slots.unsqueeze(1) & valid.unsqueeze(-1)), float("inf"))
        wanted = valid & slots.any(dim=1, keepdim=True)
        matched = match(cost, dynamic_k(ious, slots), wanted)  # per slot
        matched_iou = ious.gather(1, matched.clamp(min=0).unsqueeze(1)).squeeze(1)
        # Back from candidate slots to anchors: ``order`` is a permutation prefix, so no index repeats.
        anchors = pred_boxes.shape[1]
        matched = torch.full((len(order), anchors), -1, device=order.device).scatter_(1, order, matched)
        matched_iou = torch.zeros(len(order), anchors, device=order.device).scatter_(1, order, matched_iou)
        foreground = matched >= 0
        matched_gt = matched.clamp(min=0)
        return Assignment(
            foreground=foreground,
            matched_gt=matched_gt,
            matched_class=torch.where(foreground, gt_classes.gather(1, matched_gt), 0),
            matched_iou=torch.where(foreground, matched_iou, 0.0),
        )
