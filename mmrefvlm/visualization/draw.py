# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Draw predictions and ground truth (boxes, masks, keypoints, depth) on an image (numpy + cv2)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
]


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def depth_to_rgb(depth: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Colour-map a depth map (near = warm); invalid pixels black."""
    d = np.nan_to_num(depth.astype(np.float32))
    valid = (d > 0) if valid is None else valid & (d > 0)
    if not valid.any():
        return np.zeros((*d.shape, 3), np.uint8)
    lo, hi = np.percentile(d[valid], 2), np.percentile(d[valid], 98)
    norm = np.clip((d - lo) / max(float(hi - lo), 1e-6), 0, 1)
    rgb = cv2.applyColorMap(((1 - norm) * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    rgb[~valid] = 0
    return np.ascontiguousarray(rgb)


def draw_instances(
    img: np.ndarray,
    inst: dict,
    scale: int = 4,
    colors: Sequence[tuple[int, int, int]] | None = None,
) -> np.ndarray:
    """Overlay ``bboxes`` / ``masks`` / ``keypoints`` (original pixels) and ``labels`` on ``img``.

    Args:
        img (np.ndarray): (H, W, 3) uint8 RGB.
        inst (dict): InstanceData-like mapping; entries may be NaN for units without the field.
        scale (int): Upscale factor before drawing (small demo images).
        colors (Sequence[tuple[int, int, int]], optional): RGB colour of each entry (default:
            the palette, one colour per entry index).

    Returns:
        np.ndarray: (H * scale, W * scale, 3) uint8 RGB.
    """
    h, w = img.shape[:2]
    out = cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST).astype(
        np.float32
    )
    labels = list(inst.get('labels', []) or [])
    n = len(labels) if labels else len(_np(inst.get('bboxes', np.zeros((0, 4)))))
    if colors is None:
        colors = [PALETTE[i % len(PALETTE)] for i in range(n)]
    masks = inst.get('masks')
    if masks is not None:
        m = _np(masks).astype(bool)
        for i in range(min(n, len(m))):
            big = cv2.resize(
                m[i].astype(np.uint8), (w * scale, h * scale), interpolation=cv2.INTER_NEAREST
            ).astype(bool)
            out[big] = 0.5 * out[big] + 0.5 * np.array(colors[i])
            contours, _ = cv2.findContours(
                big.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
            )
            cv2.drawContours(
                out, contours, -1, (255, 255, 255), 1
            )  # outline: visible on any colour
    out = out.astype(np.uint8)
    boxes = _np(inst['bboxes']) if inst.get('bboxes') is not None else np.zeros((0, 4))
    for i, b in enumerate(boxes[:n]):
        if not np.isfinite(b).all():
            continue
        p = tuple(int(v * scale) for v in b)
        cv2.rectangle(out, p[:2], p[2:], colors[i], 2)
        if labels and labels[i]:
            cv2.putText(
                out,
                str(labels[i])[:24],
                (p[0], max(p[1] - 3, 10)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.35,
                colors[i],
                1,
            )
    kps = inst.get('keypoints')
    if kps is not None:
        for i, k in enumerate(_np(kps)[:n]):
            for x, y, v in k:
                if np.isfinite(x) and v > 0:
                    cv2.circle(out, (int(x * scale), int(y * scale)), 3, colors[i], -1)
    return out


def side_by_side(panels: Sequence[np.ndarray], titles: Sequence[str]) -> np.ndarray:
    """Stack panels horizontally with a title bar each (all resized to the first's height)."""
    h = panels[0].shape[0]
    cols = []
    for p, t in zip(panels, titles, strict=False):
        p = cv2.resize(p, (int(p.shape[1] * h / p.shape[0]), h), interpolation=cv2.INTER_NEAREST)
        bar = np.full((18, p.shape[1], 3), 255, np.uint8)
        cv2.putText(bar, t[:40], (2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        cols.append(np.concatenate([bar, p], 0))
    return np.concatenate(cols, 1)
