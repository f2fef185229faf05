# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""RoIAlign in plain PyTorch (no mmcv / torchvision compiled op), and the pooling of a reference
image's CLIP grid to 4 x 4."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def bilinear_at(features: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Bilinear samples of one (C, H, W) map at points (x, y) in pixel-index coordinates
    (the centre of cell (i, j) is (j, i)), with RoIAlign's border rule: a point more than one
    cell outside the map is 0, a point in ``[-1, 0)`` is read at 0, one past the last index at the
    last index.

    Args:
        features (Tensor): (C, H, W).
        x (Tensor): (...,) float.
        y (Tensor): (...,) float, same shape.

    Returns:
        Tensor: (C, ...) float.
    """
    _, h, w = features.shape
    outside = (y < -1.0) | (y > h) | (x < -1.0) | (x > w)
    y, x = y.clamp(min=0), x.clamp(min=0)
    y0, x0 = y.floor().long().clamp(max=h - 1), x.floor().long().clamp(max=w - 1)
    y = torch.where(y0 >= h - 1, y0.to(y.dtype), y)
    x = torch.where(x0 >= w - 1, x0.to(x.dtype), x)
    y1, x1 = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
    ly, lx = y - y0, x - x0
    hy, hx = 1 - ly, 1 - lx
    val = (
        features[:, y0, x0] * (hy * hx)
        + features[:, y0, x1] * (hy * lx)
        + features[:, y1, x0] * (ly * hx)
        + features[:, y1, x1] * (ly * lx)
    )
    return val * (~outside).to(val.dtype)


def roi_align(
    features: Tensor,
    boxes: Tensor,
    output_size: int | tuple[int, int] = 4,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = True,
) -> Tensor:
    """RoIAlign (He et al., Mask R-CNN), with torchvision's ``roi_align`` conventions.

    Each output bin ``(i, j)`` of a box is the mean of ``g_h x g_w`` bilinear samples at the
    centres of a regular sub-grid of the bin. With ``aligned=True`` the box is shifted by half
    a pixel (``-0.5`` after scaling), so a box in continuous coordinates maps exactly onto cell
    centres; ``sampling_ratio <= 0`` uses ``ceil(bin size)`` samples per bin side.

    Args:
        features (Tensor): (B, C, H, W) float.
        boxes (Tensor): (K, 5) float rows ``(batch index, x1, y1, x2, y2)`` in input
            coordinates (multiplied by ``spatial_scale`` to reach the feature grid).
        output_size (int | tuple[int, int]): Bins ``(h, w)``. Defaults to 4 (AnyRef's 4 x 4).
        spatial_scale (float): Input -> feature-grid scale. Defaults to 1.
        sampling_ratio (int): Samples per bin side; ``<= 0``: adaptive. Defaults to -1.
        aligned (bool): The half-pixel correction. Defaults to True.

    Returns:
        Tensor: (K, C, h, w) float.
    """
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    out = features.new_zeros(len(boxes), features.shape[1], oh, ow)
    offset = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(boxes.tolist()):
        x1, y1 = x1 * spatial_scale - offset, y1 * spatial_scale - offset
        x2, y2 = x2 * spatial_scale - offset, y2 * spatial_scale - offset
        bw, bh = x2 - x1, y2 - y1
        if not aligned:  # the legacy op forces a box of at least one cell
            bw, bh = max(bw, 1.0), max(bh, 1.0)
        bin_h, bin_w = bh / oh, bw / ow
        gh = sampling_ratio if sampling_ratio > 0 else max(math.ceil(bin_h), 1)
        gw = sampling_ratio if sampling_ratio > 0 else max(math.ceil(bin_w), 1)
        dev, dt = features.device, features.dtype
        iy = torch.arange(oh, device=dev, dtype=dt)[:, None] * bin_h
        iy = (iy + (torch.arange(gh, device=dev, dtype=dt)[None] + 0.5) * bin_h / gh + y1).flatten()
        ix = torch.arange(ow, device=dev, dtype=dt)[:, None] * bin_w
        ix = (ix + (torch.arange(gw, device=dev, dtype=dt)[None] + 0.5) * bin_w / gw + x1).flatten()
        yy, xx = torch.meshgrid(iy, ix, indexing='ij')  # (oh*gh, ow*gw)
        vals = bilinear_at(features[int(b)], xx, yy)  # (C, oh*gh, ow*gw)
        out[k] = vals.view(-1, oh, gh, ow, gw).mean((2, 4))
    return out


POOLINGS = ('2d', 'row')


def pool_grid(grid: Tensor, size: int = 4, mode: str = '2d') -> Tensor:
    """Pool a reference image's CLIP grid to ``size * size`` tokens.

    Args:
        grid (Tensor): (N, C, h, w) float.
        size (int): Tokens per side. Defaults to 4 (16 tokens, the paper's "4 x 4").
        mode (str): ``'2d'`` (default): adaptive average pooling to a ``size x size`` grid (the
            paper's words). ``'row'``: the public code's reading: the ``h * w`` tokens in raster
            order are averaged in ``size * size`` consecutive groups (one row of a 16 x 16 grid
            each), which mixes a whole row's columns into one token.

    Returns:
        Tensor: (N, size * size, C) float, raster order.
    """
    if mode not in POOLINGS:
        raise ValueError(f'mode must be one of {POOLINGS}, got {mode!r}')
    n, c, h, w = grid.shape
    if mode == '2d':
        return F.adaptive_avg_pool2d(grid, size).flatten(2).transpose(1, 2)
    tokens = grid.flatten(2).transpose(1, 2)  # (N, h*w, C)
    groups = size * size
    if (h * w) % groups:
        raise ValueError(f"'row' pooling needs h*w ({h * w}) divisible by {groups}")
    return tokens.view(n, groups, (h * w) // groups, c).mean(2)
