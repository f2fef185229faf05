# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Pure IoU helpers for boxes and masks (numpy in, numpy out; tensors accepted).

All boxes are xyxy in pixels of the original image; all masks are boolean ``(H, W)`` or
``(N, H, W)`` arrays. Areas are continuous (``(x2 - x1) * (y2 - y1)``, no ``+1``), the mmdet 3.x
convention.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """Convert a tensor, array, list or scalar to a numpy array (on CPU, detached).

    Args:
        x (Tensor | np.ndarray | list | float): The input.
        dtype (np.dtype, optional): Cast to this dtype.

    Returns:
        np.ndarray: The array.
    """
    if hasattr(x, 'detach'):  # torch.Tensor without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    return arr.astype(dtype, copy=False) if dtype is not None else arr


def box_area(boxes: Any) -> np.ndarray:
    """Areas of boxes.

    Args:
        boxes (array-like): (N, 4) float xyxy.

    Returns:
        np.ndarray: (N,) float64 areas (0 for degenerate boxes).
    """
    b = to_numpy(boxes, np.float64).reshape(-1, 4)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def box_inter_union(boxes1: Any, boxes2: Any) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise intersection and union areas of two box sets.

    Args:
        boxes1 (array-like): (N, 4) float xyxy.
        boxes2 (array-like): (M, 4) float xyxy.

    Returns:
        tuple[np.ndarray, np.ndarray]: (N, M) float64 intersections and unions.
    """
    a = to_numpy(boxes1, np.float64).reshape(-1, 4)
    b = to_numpy(boxes2, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter, union


def box_iou(boxes1: Any, boxes2: Any) -> np.ndarray:
    """Pairwise IoU of two box sets (0 where the union is 0).

    Args:
        boxes1 (array-like): (N, 4) float xyxy.
        boxes2 (array-like): (M, 4) float xyxy.

    Returns:
        np.ndarray: (N, M) float64 IoU.
    """
    inter, union = box_inter_union(boxes1, boxes2)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def mask_inter_union(masks1: Any, masks2: Any) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise intersection and union pixel counts of two mask sets.

    Args:
        masks1 (array-like): (N, H, W) bool.
        masks2 (array-like): (M, H, W) bool, same H, W.

    Returns:
        tuple[np.ndarray, np.ndarray]: (N, M) float64 intersections and unions.

    Raises:
        ValueError: If the spatial sizes differ.
    """
    a = to_numpy(masks1, bool)
    b = to_numpy(masks2, bool)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f'mask sizes differ: {a.shape[1:]} vs {b.shape[1:]}')
    fa = a.reshape(len(a), -1).astype(np.float64)
    fb = b.reshape(len(b), -1).astype(np.float64)
    inter = fa @ fb.T  # one matmul instead of a Python loop over pairs
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return inter, union


def mask_iou(masks1: Any, masks2: Any) -> np.ndarray:
    """Pairwise IoU of two mask sets (0 where the union is 0).

    Args:
        masks1 (array-like): (N, H, W) bool.
        masks2 (array-like): (M, H, W) bool.

    Returns:
        np.ndarray: (N, M) float64 IoU.
    """
    inter, union = mask_inter_union(masks1, masks2)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def union_mask(masks: Any, shape: tuple[int, int]) -> np.ndarray:
    """Union of a mask set; an empty set gives an all-False mask of ``shape``.

    Args:
        masks (array-like | None): (N, H, W) bool, N may be 0.
        shape (tuple[int, int]): (H, W) used when ``masks`` is None or empty.

    Returns:
        np.ndarray: (H, W) bool.
    """
    if masks is None:
        return np.zeros(shape, dtype=bool)
    m = to_numpy(masks, bool)
    if m.ndim == 2:
        return m
    if len(m) == 0:
        return np.zeros(m.shape[1:] if m.shape[1:] else shape, dtype=bool)
    return np.asarray(m.any(axis=0))  # (N, H, W) -> (H, W): always an array, never a scalar


def pair_inter_union(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Intersection and union pixel counts of two single masks.

    Args:
        pred (np.ndarray): (H, W) bool.
        gt (np.ndarray): (H, W) bool.

    Returns:
        tuple[float, float]: Intersection and union counts.

    Raises:
        ValueError: If the shapes differ.
    """
    if pred.shape != gt.shape:
        raise ValueError(f'predicted mask {pred.shape} and GT mask {gt.shape} differ in size')
    return float(np.logical_and(pred, gt).sum()), float(np.logical_or(pred, gt).sum())
