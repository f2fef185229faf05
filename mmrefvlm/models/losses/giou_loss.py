# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""GIoU loss with mmdet's numbers and no host->device copy per call."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmrefvlm.registry import MODELS


def aligned_giou(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """GIoU of aligned pairs, as mmdet's ``bbox_overlaps(mode='giou', is_aligned=True)``.

    mmdet builds ``eps`` with ``union.new_tensor([eps])`` on every call, a blocking host->device
    copy on an accelerator; here it is a Python float (``clamp``), same values.

    Args:
        pred (Tensor): (..., 4) float, xyxy.
        target (Tensor): (..., 4) float, xyxy.
        eps (float): Lower bound of the union and enclosing areas. Defaults to 1e-6.

    Returns:
        Tensor: (...) GIoU in [-1, 1].
    """
    area1 = (pred[..., 2] - pred[..., 0]) * (pred[..., 3] - pred[..., 1])
    area2 = (target[..., 2] - target[..., 0]) * (target[..., 3] - target[..., 1])
    lt = torch.max(pred[..., :2], target[..., :2])
    rb = torch.min(pred[..., 2:], target[..., 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = (area1 + area2 - overlap).clamp(min=eps)
    enclose_wh = (
        torch.max(pred[..., 2:], target[..., 2:]) - torch.min(pred[..., :2], target[..., :2])
    ).clamp(min=0)
    enclose_area = (enclose_wh[..., 0] * enclose_wh[..., 1]).clamp(min=eps)
    return overlap / union - (enclose_area - union) / enclose_area


@MODELS.register_module()
class GIoULoss(nn.Module):
    """``loss_weight * (1 - GIoU)`` of aligned box pairs: ``mmdet.GIoULoss`` without its
    per-call host->device copy (same values; the box decoders' default).

    Args:
        eps (float): Lower bound of the union and enclosing areas. Defaults to 1e-6.
        reduction (str): ``'mean'``, ``'sum'`` or ``'none'``. Defaults to ``'mean'``.
        loss_weight (float): Defaults to 1.
    """

    def __init__(self, eps: float = 1e-6, reduction: str = 'mean', loss_weight: float = 1.0):
        super().__init__()
        if reduction not in ('mean', 'sum', 'none'):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.eps, self.reduction, self.loss_weight = eps, reduction, loss_weight

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        weight: Tensor | None = None,
        avg_factor: float | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        """Loss of (n, 4) xyxy predictions against (n, 4) targets.

        Args:
            pred (Tensor): (n, 4) float, xyxy.
            target (Tensor): (n, 4) float, xyxy.
            weight (Tensor, optional): (n,) or (n, 4) (averaged over the 4) per-pair weights.
            avg_factor (float, optional): With ``'mean'``: divide the sum by it instead.
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            Tensor: Scalar, or (n,) with ``'none'``.
        """
        reduction = reduction_override or self.reduction
        half = pred.dtype == torch.float16  # as mmdet: compute in float32
        loss = 1 - aligned_giou(pred.float() if half else pred, target, self.eps)
        if half:
            loss = loss.half()
        if weight is not None:
            loss = loss * (weight.mean(-1) if weight.dim() > 1 else weight)
        if avg_factor is not None and reduction == 'mean':
            loss = loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)
        elif reduction == 'mean':
            loss = loss.mean()
        elif reduction == 'sum':
            if avg_factor is not None:
                raise ValueError('avg_factor can not be used with reduction="sum"')
            loss = loss.sum()
        return self.loss_weight * loss
