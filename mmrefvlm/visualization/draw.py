# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Draw predictions and ground truth on an image (numpy + cv2) through the per-unit drawers of
``UNIT_DRAWERS`` (:mod:`.drawers`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from .drawers import entry_values, plan_drawing

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
_FONT = cv2.FONT_HERSHEY_SIMPLEX


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
    inst: Mapping,
    scale: int = 4,
    colors: Sequence[tuple[int, int, int]] | None = None,
) -> np.ndarray:
    """Overlay every instance field (original pixels) and the ``labels`` on ``img``.

    Each field is drawn by its unit's drawer in ``UNIT_DRAWERS`` (:mod:`.drawers`: masks, boxes,
    keypoints of the core units; plugins register theirs). Labels go at the first anchor a drawer
    gives (a box's corner, a point). A field no drawer claims is listed on the overlay as
    "not drawn: <field>"; panel fields (depth) are left to :func:`draw_panels`.

    Args:
        img (np.ndarray): (H, W, 3) uint8 RGB.
        inst (Mapping): ``InstanceData``-like mapping; entries may be NaN / False for units
            without the field (``units`` / ``unit_fields`` tell which entry is whose).
        scale (int): Upscale factor before drawing (small demo images).
        colors (Sequence[tuple[int, int, int]], optional): RGB colour of each entry (default:
            the palette, one colour per entry index).

    Returns:
        np.ndarray: (H * scale, W * scale, 3) uint8 RGB.
    """
    h, w = img.shape[:2]
    canvas = np.ascontiguousarray(
        cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST), dtype=np.uint8
    )
    plan = plan_drawing(inst)
    if colors is None:
        colors = [PALETTE[i % len(PALETTE)] for i in range(plan.num)]
    anchors: list[np.ndarray | None] = [None] * plan.num
    for drawer, entries in plan.groups:
        if drawer.panel:
            continue
        idx, values = entry_values(inst, entries)
        drawer.draw(canvas, values, [colors[i] for i in idx], scale)
        points = drawer.anchors(values)
        for i, point in zip(idx, points if points is not None else [], strict=False):
            if anchors[i] is None and np.isfinite(point).all():
                anchors[i] = point
    labels = list(inst.get('labels', []) or [])
    for i, point in enumerate(anchors):
        if point is not None and i < len(labels) and labels[i]:
            org = (int(point[0] * scale), max(int(point[1] * scale) - 3, 10))
            cv2.putText(canvas, str(labels[i])[:24], org, _FONT, 0.35, colors[i], 1)
    _note_undrawn(canvas, plan.undrawn)
    return canvas


def _note_undrawn(canvas: np.ndarray, undrawn: Mapping[str, Sequence[str]]) -> None:
    """Write "not drawn: <field>" lines on white boxes at the bottom-left of the canvas."""
    for row, name in enumerate(sorted(undrawn, reverse=True)):
        text = f'not drawn: {name}'
        (tw, th), _ = cv2.getTextSize(text, _FONT, 0.3, 1)
        y = canvas.shape[0] - (row + 1) * (th + 6)
        cv2.rectangle(canvas, (0, y), (tw + 4, y + th + 4), (255, 255, 255), -1)
        cv2.putText(canvas, text, (2, y + th + 1), _FONT, 0.3, (200, 0, 0), 1, cv2.LINE_AA)


def draw_panels(inst: Mapping | None, prefix: str = '') -> list[tuple[str, np.ndarray]]:
    """The panels of the panel drawers (depth maps): ``(title, (h, w, 3) uint8 RGB)`` each,
    titled ``<prefix><unit>: <label>``."""
    if inst is None:
        return []
    plan = plan_drawing(inst)
    units = list(inst.get('units') or [''] * plan.num)
    labels = list(inst.get('labels') or [''] * plan.num)
    out = []
    for drawer, entries in plan.groups:
        if drawer.panel:
            idx, values = entry_values(inst, entries)
            titles = [f'{prefix}{units[i]}: {labels[i]}' for i in idx]
            out += drawer.panels(values, titles)
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
