"""YOLOX's head with batched SimOTA (``yolox_sdk.models.assignment``) in its training loss.

``BatchedSimotaHead`` is the ``yolox`` package's ``YoloxHead`` with only ``get_losses`` replaced: same
layers, parameters and state-dict keys, same eval-mode forward (export, predict and pruning see no
difference), and the package's own loss modules (``iou_loss``, ``bcewithlog_loss``, ``l1_loss``) and L1
target encoding. What changes is how the targets are found: for the whole batch at once instead of
image by image, with three host synchronisations per batch instead of several per image.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from yolox.models import YoloxHead

from yolox_sdk.models.assignment import Assignment, simota_assign, valid_ground_truths

REG_WEIGHT = 5.0  # YOLOX weighs the IoU loss 5x against objectness and class


class BatchedSimotaHead(YoloxHead):
    """``YoloxHead`` whose training loss assigns labels to all images of a batch together.

    The loss and its returned tuple are those of ``YoloxHead.get_losses``: ``(loss, 5 * iou_loss,
    obj_loss, cls_loss, l1_loss, num_fg / max(num_gts, 1))``, each term normalised by the batch's
    foreground count (at least 1).
    """

    def assign_batch(
        self,
        labels: torch.Tensor,
        valid: torch.Tensor,
        outputs: torch.Tensor,
        x_shifts: torch.Tensor,
        y_shifts: torch.Tensor,
        strides: torch.Tensor,
    ) -> Assignment:
        """SimOTA for every image of the batch (a method so profilers can time it on an instance).

        Args:
            labels: ``[batch, gts, 5]`` targets ``class, cx, cy, w, h``.
            valid: ``[batch, gts]`` real rows of ``labels``.
            outputs: ``[batch, anchors, 5 + classes]`` decoded training outputs.
            x_shifts, y_shifts, strides: ``[anchors]`` grid cell and stride of each anchor.
        """
        return simota_assign(
            labels[..., 1:5],
            labels[..., 0].long(),
            valid,
            outputs[..., :4],
            outputs[..., 5:],
            outputs[..., 4:5],
            x_shifts,
            y_shifts,
            strides,
        )

    def get_losses(
        self,
        imgs: torch.Tensor | None,
        x_shifts: list[torch.Tensor],
        y_shifts: list[torch.Tensor],
        expanded_strides: list[torch.Tensor],
        labels: torch.Tensor,
        outputs: torch.Tensor,
        origin_preds: list[torch.Tensor],
        dtype: torch.dtype,
    ) -> tuple[Any, ...]:
        """YOLOX's training loss with batched SimOTA; same arguments and result as the package's.

        Three host synchronisations per batch, against several per image in the package: the batch's
        largest ground-truth count (read with the total count for the returned ratio) and its largest
        candidate-anchor count size the padded tensors, and the foreground indices size the gathered
        loss inputs. The first two are worth their wait: on the 2-core CPU (yolox-nano, 416 px, BCCD
        batch of 16) padding to the targets' fixed 120 rows made the assignment 3-4x slower, and on all
        3549 anchors instead of the candidates it was about 2x slower than the package's per-image
        loop, where on the candidates it is about as fast (``benchmarks/README.md``, "Batched SimOTA").
        Gathering only foreground predictions (rather than masking dense losses) keeps a background
        anchor's overflowed box out of the gradients, as in the package's loss.
        """
        bbox_preds = outputs[:, :, :4]
        obj_preds = outputs[:, :, 4:5]
        cls_preds = outputs[:, :, 5:]
        num_anchors = outputs.shape[1]
        x_shifts_all = torch.cat(x_shifts, 1)[0]
        y_shifts_all = torch.cat(y_shifts, 1)[0]
        strides = torch.cat(expanded_strides, 1)[0]

        valid = valid_ground_truths(labels)
        counts = valid.sum(dim=1)
        most, num_gts = (int(value) for value in torch.stack([counts.max(), counts.sum()]).tolist())
        labels = labels[:, : max(most, 1)]
        valid = valid[:, : max(most, 1)]

        assignment = self.assign_batch(labels, valid, outputs, x_shifts_all, y_shifts_all, strides)
        foreground = assignment.foreground.reshape(-1).nonzero().squeeze(1)
        num_fg = max(int(foreground.numel()), 1)
        image_index = foreground // num_anchors
        anchor_index = foreground % num_anchors
        matched_gt = assignment.matched_gt.reshape(-1)[foreground]

        reg_targets = labels[image_index, matched_gt, 1:5]
        cls_targets = F.one_hot(
            assignment.matched_class.reshape(-1)[foreground], self.num_classes
        ) * assignment.matched_iou.reshape(-1)[foreground].unsqueeze(-1)
        obj_targets = assignment.foreground.reshape(-1, 1).to(dtype)

        loss_iou = self.iou_loss(bbox_preds.reshape(-1, 4)[foreground], reg_targets).sum() / num_fg
        loss_obj = self.bcewithlog_loss(obj_preds.reshape(-1, 1), obj_targets).sum() / num_fg
        loss_cls = (
            self.bcewithlog_loss(cls_preds.reshape(-1, self.num_classes)[foreground], cls_targets).sum()
            / num_fg
        )
        loss_l1: Any = 0.0
        if self.use_l1:
            l1_targets = self.get_l1_target(
                outputs.new_zeros((foreground.numel(), 4)),
                reg_targets,
                strides[anchor_index],
                x_shifts=x_shifts_all[anchor_index],
                y_shifts=y_shifts_all[anchor_index],
            )
            origin = torch.cat(origin_preds, 1).reshape(-1, 4)[foreground]
            loss_l1 = self.l1_loss(origin, l1_targets).sum() / num_fg

        loss = REG_WEIGHT * loss_iou + loss_obj + loss_cls + loss_l1
        return loss, REG_WEIGHT * loss_iou, loss_obj, loss_cls, loss_l1, num_fg / max(num_gts, 1)
