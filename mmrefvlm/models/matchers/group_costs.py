# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Group cost builders: all triplet groups' cost matrices in one padded, batched op.

Each builder takes batch-flattened predictions and targets (M each, aligned item by item: item ``i``
is the ``i``-th real ``<REF>`` of the batch and its target in ``<REF>`` order) plus a per-item group
key, pads both into ``(G, N, ...)`` with :func:`pad_by_group` and evaluates the pairwise cost of
:mod:`.pairwise_costs` once on the padded tensors. Entries outside a group's ``sizes[g] x sizes[g]``
block are set to 0 and are ignored by :func:`grouped_assignment`. Builders run under
``torch.no_grad()``: the costs only choose the assignment, the losses carry the gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .group_layout import GroupSlots, group_slots, scatter_rows, scatter_to_slots
from .pairwise_costs import (
    mask_costs_from_rows,
    mask_pred_terms,
    mask_target_rows,
    pairwise_box_costs,
    pairwise_point_costs,
)


@dataclass(frozen=True)
class GroupedCosts:
    """Padded per-group cost matrices and the layout that maps them back to items.

    Attributes:
        costs (Tensor): (G, N, N) float32, ``costs[g, a, b]`` = cost of prediction in slot ``a`` of
            group ``g`` against the target in slot ``b``; 0 outside the valid block.
        sizes (Tensor): (G,) long, number of items of each group.
        slot_inds (Tensor): (M,) long, flat slot (``g * N + a``) of each item (see
            :class:`GroupPadding`).
    """

    costs: Tensor
    sizes: Tensor
    slot_inds: Tensor

    def __add__(self, other: GroupedCosts) -> GroupedCosts:
        """Sum two cost terms built on the same items and group keys (e.g. box + keypoint)."""
        if not isinstance(other, GroupedCosts):
            return NotImplemented
        if self.costs.shape != other.costs.shape or self.slot_inds.shape != other.slot_inds.shape:
            raise ValueError(
                'GroupedCosts built on different layouts: costs '
                f'{tuple(self.costs.shape)} vs {tuple(other.costs.shape)}'
            )
        return GroupedCosts(self.costs + other.costs, self.sizes, self.slot_inds)


def _check_aligned(
    preds: Tensor, targets: Tensor, group_index: Tensor | GroupSlots, what: str
) -> None:
    index = group_index.slot_inds if isinstance(group_index, GroupSlots) else group_index
    if preds.shape[0] != targets.shape[0] or index.shape != (preds.shape[0],):
        raise ValueError(
            f'{what}: predictions, targets and group_index must have the same length '
            f'M, got {tuple(preds.shape)}, {tuple(targets.shape)}, '
            f'{tuple(index.shape)}'
        )


def layout_of(group_index: Tensor | GroupSlots, device: torch.device) -> GroupSlots:
    """The group layout of the items: given (a :class:`GroupSlots` known in advance, e.g. built
    on the host, which costs no device synchronisation) or computed from group keys."""
    if isinstance(group_index, GroupSlots):
        return group_index
    return group_slots(group_index.to(device))


def _finish(costs: Tensor, slots: GroupSlots) -> GroupedCosts:
    """Zero the entries outside every group's valid block."""
    positions = torch.arange(costs.shape[-1], device=costs.device)
    real = positions[None, :] < slots.sizes[:, None]  # (G, N)
    costs = costs.masked_fill(~(real[:, :, None] & real[:, None, :]), 0.0)
    return GroupedCosts(costs, slots.sizes, slots.slot_inds)


@torch.no_grad()
def box_group_costs(
    pred_boxes: Tensor,
    tgt_boxes: Tensor,
    group_index: Tensor | GroupSlots,
    *,
    l1_weight: float = 5.0,
    giou_weight: float = 2.0,
) -> GroupedCosts:
    """Box costs of every group: ``l1_weight * L1(cxcywh) - giou_weight * GIoU(xyxy)``.

    Args:
        pred_boxes (Tensor): (M, 4) float, predicted boxes, normalised cxcywh.
        tgt_boxes (Tensor): (M, 4) float, target boxes, normalised cxcywh, same item order.
        group_index (Tensor | GroupSlots): (M,) integer, group key of each item (see
            :func:`pad_by_group`), or the items' layout when known in advance.
        l1_weight (float): Weight of the L1 term. Defaults to 5.
        giou_weight (float): Weight of the ``-GIoU`` term. Defaults to 2.

    Returns:
        GroupedCosts: ``costs`` (G, N, N) float32 with layout ``sizes``, ``slot_inds``.
    """
    _check_aligned(pred_boxes, tgt_boxes, group_index, 'box_group_costs')
    slots = layout_of(group_index, pred_boxes.device)
    costs = pairwise_box_costs(
        scatter_to_slots(pred_boxes, slots),
        scatter_to_slots(tgt_boxes, slots),
        l1_weight=l1_weight,
        giou_weight=giou_weight,
    )
    return _finish(costs, slots)


@torch.no_grad()
def mask_group_costs(
    pred_logits: Tensor,
    tgt_masks: Tensor,
    group_index: Tensor | GroupSlots,
    *,
    focal_weight: float = 20.0,
    dice_weight: float = 1.0,
    valid: Tensor | None = None,
    alpha: float = 0.25,
    gamma: float = 2.0,
    dice_eps: float = 1.0,
) -> GroupedCosts:
    """Mask costs of every group: ``focal_weight * focal + dice_weight * dice``.

    Predictions and targets must share one resolution (resize the logits or the targets first;
    REF-VLM matches at the logits' resolution).

    Args:
        pred_logits (Tensor): (M, H, W) or (M, P) float, mask logits.
        tgt_masks (Tensor): (M, H, W) or (M, P) bool or {0, 1} float, binary targets.
        group_index (Tensor | GroupSlots): (M,) integer, group key of each item, or the
            items' layout when known in advance.
        focal_weight (float): Weight of the sigmoid focal term. Defaults to 20.
        dice_weight (float): Weight of the dice term. Defaults to 1.
        valid (Tensor, optional): (M, H, W) or (M, P) bool, valid (unpadded) pixels of each
            target's image; the cost of a pair is computed on the target's valid pixels.
            Defaults to None (all valid).
        alpha (float): Focal alpha. Defaults to 0.25.
        gamma (float): Focal gamma. Defaults to 2.
        dice_eps (float): Dice smoothing. Defaults to 1.

    Returns:
        GroupedCosts: ``costs`` (G, N, N) float32 with layout ``sizes``, ``slot_inds``.
    """
    _check_aligned(pred_logits, tgt_masks, group_index, 'mask_group_costs')
    if pred_logits.shape[1:].numel() != tgt_masks.shape[1:].numel():
        raise ValueError(
            f'mask_group_costs: predictions {tuple(pred_logits.shape)} and targets '
            f'{tuple(tgt_masks.shape)} must have the same number of pixels'
        )
    num = pred_logits.shape[0]
    if valid is not None and (
        valid.shape[0] != num or valid.shape[1:].numel() != tgt_masks.shape[1:].numel()
    ):
        raise ValueError(
            f'mask_group_costs: valid must be (M, pixels) like the targets, got '
            f'{tuple(valid.shape)}'
        )
    slots = layout_of(group_index, pred_logits.device)
    # Elementwise passes on the M real items; padding only enters at the matmul.
    pred_rows = scatter_rows(
        mask_pred_terms(pred_logits.reshape(num, -1), alpha=alpha, gamma=gamma), slots
    )  # (G, 3, N, P)
    tgt_rows = scatter_rows(
        mask_target_rows(
            tgt_masks.reshape(num, -1), None if valid is None else valid.reshape(num, -1)
        ),
        slots,
    )
    costs = mask_costs_from_rows(
        pred_rows, tgt_rows, focal_weight=focal_weight, dice_weight=dice_weight, dice_eps=dice_eps
    )
    return _finish(costs, slots)


@torch.no_grad()
def point_group_costs(
    pred_points: Tensor,
    tgt_points: Tensor,
    group_index: Tensor | GroupSlots,
    *,
    tgt_visible: Tensor | None = None,
    weight: float = 1.0,
) -> GroupedCosts:
    """Keypoint costs of every group: mean L1 over each target's visible keypoints.

    Args:
        pred_points (Tensor): (M, J, 2) float, predicted keypoints, normalised xy.
        tgt_points (Tensor): (M, J, 2) float, target keypoints, normalised xy.
        group_index (Tensor | GroupSlots): (M,) integer, group key of each item, or the
            items' layout when known in advance.
        tgt_visible (Tensor, optional): (M, J) bool or float, labelled keypoints (``v > 0``).
            Defaults to None (all labelled).
        weight (float): Weight of the cost. Defaults to 1.

    Returns:
        GroupedCosts: ``costs`` (G, N, N) float32 with layout ``sizes``, ``slot_inds``.
    """
    _check_aligned(pred_points, tgt_points, group_index, 'point_group_costs')
    slots = layout_of(group_index, pred_points.device)
    visible = None
    if tgt_visible is not None:
        if tgt_visible.shape != tgt_points.shape[:2]:
            raise ValueError(
                f'point_group_costs: tgt_visible must be {tuple(tgt_points.shape[:2])}'
                f', got {tuple(tgt_visible.shape)}'
            )
        visible = scatter_to_slots(tgt_visible, slots)
    costs = pairwise_point_costs(
        scatter_to_slots(pred_points, slots),
        scatter_to_slots(tgt_points, slots),
        visible,
        weight=weight,
    )
    return _finish(costs, slots)
