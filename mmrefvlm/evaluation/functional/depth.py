# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Monocular depth errors over valid ground-truth pixels."""

from __future__ import annotations

from typing import Any

import numpy as np

from .geometry import to_numpy


def depth_errors(
    pred: Any, gt: Any, min_depth: float = 1e-3, max_depth: float | None = None
) -> dict[str, float] | None:
    """AbsRel, RMSE and delta < 1.25 of one depth map.

    Valid pixels: ``gt > 0``, finite, and ``gt <= max_depth`` when given. The prediction is clamped
    to ``[min_depth, max_depth]`` first (so a zero prediction cannot divide by zero); a NaN
    prediction counts as ``min_depth``, +inf as ``max_depth`` (or the float32 maximum).

    * ``abs_rel = mean(|pred - gt| / gt)``
    * ``rmse = sqrt(mean((pred - gt)^2))`` (metres)
    * ``delta1 = mean(max(pred / gt, gt / pred) < 1.25)``

    Args:
        pred (array-like): (H, W) float metres.
        gt (array-like): (H, W) float metres, 0 (or non-finite) for invalid pixels.
        min_depth (float): Lower clamp of the prediction. Defaults to 1e-3.
        max_depth (float, optional): Upper clamp of the prediction and validity cap of the GT.

    Returns:
        dict[str, float] | None: ``abs_rel``, ``rmse``, ``delta1`` and ``num_valid``; None when
        no GT pixel is valid.

    Raises:
        ValueError: If the shapes differ.
    """
    p = to_numpy(pred, np.float64)
    g = to_numpy(gt, np.float64)
    if p.shape != g.shape:
        raise ValueError(f'depth prediction {p.shape} and GT {g.shape} differ in size')
    valid = np.isfinite(g) & (g > 0)
    if max_depth is not None:
        valid &= g <= max_depth
    if not valid.any():
        return None
    big = float(np.finfo(np.float32).max) if max_depth is None else max_depth
    p = np.nan_to_num(p[valid], nan=min_depth, posinf=big, neginf=min_depth)
    p = np.clip(p, min_depth, max_depth)
    g = g[valid]
    ratio = np.maximum(p / g, g / p)
    return dict(
        abs_rel=float(np.mean(np.abs(p - g) / g)),
        rmse=float(np.sqrt(np.mean((p - g) ** 2))),
        delta1=float(np.mean(ratio < 1.25)),
        num_valid=int(valid.sum()),
    )
