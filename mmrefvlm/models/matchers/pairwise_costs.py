# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Pairwise matching costs between predictions and targets, batched over leading dimensions.

Every function maps ``(..., N, *)`` predictions and ``(..., K, *)`` targets to a ``(..., N, K)``
cost matrix, so the same code serves one group ``(N, *)`` or all groups of a batch ``(G, N, *)``.
Costs are computed in float32 whatever the input dtype. Conventions (App. C.1, Eq. 4-8):

* box: ``l1_weight * L1(cxcywh) + giou_weight * (-GIoU(xyxy))`` on normalised boxes; mmdet's
  ``BBoxL1Cost(box_format='xywh')`` + ``IoUCost(iou_mode='giou')`` on pixel xyxy boxes divided by
  the image size give the same numbers.
* mask: ``focal_weight * focal + dice_weight * dice``; focal is the sigmoid focal loss (alpha,
  gamma) averaged over (valid) pixels, dice is ``1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)``.
  Equal to mmdet's ``FocalLossCost(binary_input=True)`` (which adds ``1e-12`` inside its logs) and
  ``DiceCost(pred_act=True, naive_dice=True, eps=dice_eps)``; mmdet's default dice eps is 1e-3, we
  default to 1 as the Mask2Former / REF-VLM matchers do.
* point: mean L1 distance over the target's visible keypoints.
"""

from __future__ import annotations

import torch
from torch import Tensor


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) ``(cx, cy, w, h)`` -> (..., 4) ``(x1, y1, x2, y2)``."""
    cxcy, wh = boxes[..., :2], boxes[..., 2:]
    return torch.cat([cxcy - wh / 2, cxcy + wh / 2], dim=-1)


def pairwise_giou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Generalised IoU of every pair.

    Args:
        boxes1 (Tensor): (..., N, 4) float, xyxy.
        boxes2 (Tensor): (..., K, 4) float, xyxy.
        eps (float): Lower bound of union and enclosing areas (degenerate boxes give finite values).

    Returns:
        Tensor: (..., N, K) float, GIoU in [-1, 1].
    """
    b1, b2 = boxes1[..., :, None, :], boxes2[..., None, :, :]
    area1 = (b1[..., 2] - b1[..., 0]).clamp(min=0) * (b1[..., 3] - b1[..., 1]).clamp(min=0)
    area2 = (b2[..., 2] - b2[..., 0]).clamp(min=0) * (b2[..., 3] - b2[..., 1]).clamp(min=0)
    inter_wh = (
        torch.minimum(b1[..., 2:], b2[..., 2:]) - torch.maximum(b1[..., :2], b2[..., :2])
    ).clamp(min=0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = (area1 + area2 - inter).clamp(min=eps)
    hull_wh = (
        torch.maximum(b1[..., 2:], b2[..., 2:]) - torch.minimum(b1[..., :2], b2[..., :2])
    ).clamp(min=0)
    hull = (hull_wh[..., 0] * hull_wh[..., 1]).clamp(min=eps)
    return inter / union - (hull - union) / hull


def pairwise_box_costs(
    pred_boxes: Tensor, tgt_boxes: Tensor, *, l1_weight: float = 5.0, giou_weight: float = 2.0
) -> Tensor:
    """DETR box cost: weighted L1 on cxcywh plus weighted negative GIoU on xyxy.

    Args:
        pred_boxes (Tensor): (..., N, 4) float, normalised cxcywh.
        tgt_boxes (Tensor): (..., K, 4) float, normalised cxcywh.
        l1_weight (float): Weight of the L1 term. Defaults to 5.
        giou_weight (float): Weight of the ``-GIoU`` term. Defaults to 2.

    Returns:
        Tensor: (..., N, K) float32.
    """
    pred, tgt = pred_boxes.float(), tgt_boxes.float()
    l1 = (pred[..., :, None, :] - tgt[..., None, :, :]).abs().sum(-1)
    giou = pairwise_giou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(tgt))
    return l1_weight * l1 - giou_weight * giou


def mask_pred_terms(
    pred_logits: Tensor, *, alpha: float = 0.25, gamma: float = 2.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pixel terms of the mask cost that depend on the prediction only.

    For logits ``x`` and ``p = sigmoid(x)``, the sigmoid focal loss of a pixel is ``pos`` against
    target 1 and ``neg`` against target 0, with ``pos = alpha (1 - p)^gamma (-log p)`` and
    ``neg = (1 - alpha) p^gamma (-log(1 - p))``; for a binary target ``t`` it is
    ``(pos - neg) t + neg``. Computed with one ``softplus`` and one ``exp`` (``-log(1 - p) =
    -log p + x``) and in-place updates: this elementwise pass dominates the mask cost on CPU.
    Because of the in-place updates it is not meant for autograd (matching runs under no_grad).

    Args:
        pred_logits (Tensor): (..., N, P) float, mask logits.
        alpha (float): Focal alpha. Defaults to 0.25.
        gamma (float): Focal gamma. Defaults to 2.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``(pos - neg, p, neg)``, each (..., N, P) float32.
    """
    logits = pred_logits.float()
    neg_log_p = torch.nn.functional.softplus(-logits)  # -log p, stable
    prob = torch.exp(-neg_log_p)
    pos = (1 - prob).pow_(gamma).mul_(neg_log_p).mul_(alpha)
    neg = prob.pow(gamma).mul_(neg_log_p.add_(logits)).mul_(1 - alpha)
    return pos.sub_(neg), prob, neg


def mask_target_rows(tgt_masks: Tensor, valid: Tensor | None = None) -> list[Tensor]:
    """Per-pixel target rows of the mask cost: ``[t]``, or ``[t * v, v]`` with a valid mask.

    Args:
        tgt_masks (Tensor): (..., K, P) bool or {0, 1} float, binary targets.
        valid (Tensor, optional): (..., K, P) bool, valid pixels of each target.

    Returns:
        list[Tensor]: R = 1 or 2 tensors (..., K, P) float32.
    """
    if valid is None:
        return [tgt_masks.float()]
    valid = valid.float()
    return [tgt_masks.to(torch.float32, copy=True).mul_(valid), valid]


def mask_costs_from_rows(
    pred_rows: Tensor,
    tgt_rows: Tensor,
    *,
    focal_weight: float = 20.0,
    dice_weight: float = 1.0,
    dice_eps: float = 1.0,
) -> Tensor:
    """Pairwise mask costs from stacked per-pixel rows; one matmul gives every pixel sum.

    Args:
        pred_rows (Tensor): (..., 3, N, P) float32, the rows ``(pos - neg, p, neg)`` of
            :func:`mask_pred_terms` stacked on dim -3.
        tgt_rows (Tensor): (..., R, K, P) float32, the rows of :func:`mask_target_rows` stacked
            on dim -3 (R = 2 means the second row is the valid mask).
        focal_weight (float): Weight of the focal term. Defaults to 20.
        dice_weight (float): Weight of the dice term. Defaults to 1.
        dice_eps (float): Smoothing of the dice ratio. Defaults to 1.

    Returns:
        Tensor: (..., N, K) float32.
    """
    num_preds, num_pixels = pred_rows.shape[-2], pred_rows.shape[-1]
    num_rows, num_tgts = tgt_rows.shape[-3], tgt_rows.shape[-2]
    # (..., 3N, P) @ (..., P, RK): every sum_p pred_row * tgt_row in one (batched) matmul.
    sums = pred_rows.flatten(-3, -2) @ tgt_rows.flatten(-3, -2).transpose(-1, -2)
    sums = sums.unflatten(-1, (num_rows, num_tgts)).unflatten(-3, (3, num_preds))  # .,3,N,R,K
    tgt_sum = tgt_rows[..., 0, :, :].sum(-1).unsqueeze(-2)  # (..., 1, K)
    inter = sums[..., 1, :, 0, :]  # sum p t v
    if num_rows == 1:  # every pixel valid: sum (pos - neg) t + sum neg, over P pixels
        neg_sum = pred_rows[..., 2, :, :].sum(-1, keepdim=True)
        focal = (sums[..., 0, :, 0, :] + neg_sum) / max(num_pixels, 1)
        prob_sum = pred_rows[..., 1, :, :].sum(-1, keepdim=True)
    else:  # sum (pos - neg) t v + sum neg v, over the target's valid pixels
        num_valid = tgt_rows[..., 1, :, :].sum(-1).clamp(min=1).unsqueeze(-2)
        focal = (sums[..., 0, :, 0, :] + sums[..., 2, :, 1, :]) / num_valid
        prob_sum = sums[..., 1, :, 1, :]
    dice = 1 - (2 * inter + dice_eps) / (prob_sum + tgt_sum + dice_eps)
    return focal_weight * focal + dice_weight * dice


def pairwise_mask_costs(
    pred_logits: Tensor,
    tgt_masks: Tensor,
    *,
    focal_weight: float = 20.0,
    dice_weight: float = 1.0,
    valid: Tensor | None = None,
    alpha: float = 0.25,
    gamma: float = 2.0,
    dice_eps: float = 1.0,
) -> Tensor:
    """Mask cost: weighted pairwise sigmoid focal loss plus weighted pairwise dice loss.

    With ``valid``, the pair ``(i, j)`` is scored on target ``j``'s valid pixels only: the focal
    term is the mean over those pixels and both dice sums are restricted to them. A matching
    cost, not a loss: call it under ``torch.no_grad()`` (it updates temporaries in place).

    Args:
        pred_logits (Tensor): (..., N, P) float, mask logits flattened over the P pixels.
        tgt_masks (Tensor): (..., K, P) bool or {0, 1} float, flattened binary targets.
        focal_weight (float): Weight of the focal term. Defaults to 20.
        dice_weight (float): Weight of the dice term. Defaults to 1.
        valid (Tensor, optional): (..., K, P) bool, valid (unpadded) pixels of each target.
            Defaults to None (all pixels valid).
        alpha (float): Focal alpha (weight of positive pixels). Defaults to 0.25.
        gamma (float): Focal gamma. Defaults to 2.
        dice_eps (float): Smoothing of the dice ratio. Defaults to 1.

    Returns:
        Tensor: (..., N, K) float32.
    """
    pred_rows = torch.stack(mask_pred_terms(pred_logits, alpha=alpha, gamma=gamma), dim=-3)
    tgt_rows = torch.stack(mask_target_rows(tgt_masks, valid), dim=-3)
    return mask_costs_from_rows(
        pred_rows, tgt_rows, focal_weight=focal_weight, dice_weight=dice_weight, dice_eps=dice_eps
    )


def pairwise_point_costs(
    pred_points: Tensor,
    tgt_points: Tensor,
    tgt_visible: Tensor | None = None,
    *,
    weight: float = 1.0,
) -> Tensor:
    """Keypoint cost: mean L1 distance over the target's visible keypoints.

    Args:
        pred_points (Tensor): (..., N, J, 2) float, normalised xy of J keypoints.
        tgt_points (Tensor): (..., K, J, 2) float, normalised xy.
        tgt_visible (Tensor, optional): (..., K, J) bool or float, True (> 0) for labelled
            keypoints (COCO ``v > 0``). Defaults to None (all labelled). A target with no labelled
            keypoint costs 0 against every prediction.
        weight (float): Weight of the cost. Defaults to 1.

    Returns:
        Tensor: (..., N, K) float32.
    """
    pred, tgt = pred_points.float(), tgt_points.float()
    dist = (pred[..., :, None, :, :] - tgt[..., None, :, :, :]).abs().sum(-1)  # (..., N, K, J)
    if tgt_visible is None:
        return weight * dist.mean(-1)
    vis = (tgt_visible > 0).float().unsqueeze(-3)  # (..., 1, K, J)
    return weight * (dist * vis).sum(-1) / vis.sum(-1).clamp(min=1)
