# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Rasterise visual prompts (point / box / scribble / mask) to masks in the square frame."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform

from mmrefvlm.datasets.geometry import check_visual_prompt_geometry
from mmrefvlm.registry import TRANSFORMS

from .targets import decode_record_mask, record_error

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel accurate drawing at small sizes
_ONE = 1 << _SHIFT


def _fx(v: float) -> int:
    """Continuous coordinate (pixel i spans [i, i+1)) -> cv2 fixed point (pixel i centred at i)."""
    return int(round((v - 0.5) * _ONE))


def _span(lo: float, hi: float, size: int) -> tuple[int, int]:
    a = min(max(int(np.ceil(lo - 0.5)), 0), size - 1)
    b = min(max(int(np.ceil(hi - 0.5)), a + 1), size)
    return a, b


def _fx_pts(pts: np.ndarray) -> np.ndarray:
    return np.round((pts - 0.5) * _ONE).astype(np.int32)


@TRANSFORMS.register_module()
class RasterizeVisualPrompts(BaseTransform):
    """Turn ``results['visual_prompts']`` into ``prompt_masks`` ((P, size, size) bool).

    Geometry is in original pixels; the mask covers the square frame (image top-left). A point is a
    disc of ``point_radius`` original pixels, a box is filled, a scribble is a polyline of
    ``scribble_width`` original pixels, a mask is decoded and area-resized (any coverage counts, so
    thin prompts survive downscaling). Radii are at least one output pixel.

    Args:
        size (int): Output side (e.g. the CLIP input size).
        point_radius (float): Disc radius in original pixels. Default 10 (REF-VLM).
        scribble_width (float): Polyline width in original pixels. Default 5.
    """

    def __init__(self, size: int, point_radius: float = 10.0, scribble_width: float = 5.0) -> None:
        if size <= 0 or point_radius <= 0 or scribble_width <= 0:
            raise ValueError('size, point_radius and scribble_width must be positive')
        self.size = size
        self.point_radius = point_radius
        self.scribble_width = scribble_width

    def _one(self, prompt: dict, h: int, w: int, scale: float, rid: str, field: str) -> np.ndarray:
        canvas = np.zeros((self.size, self.size), dtype=np.uint8)
        kind = prompt.get('type') if isinstance(prompt, dict) else None
        if kind not in ('point', 'box', 'scribble', 'mask'):
            raise record_error(
                rid,
                field,
                f'unknown visual prompt type {kind!r} '
                "(expected 'point', 'box', 'scribble' or 'mask')",
            )
        # the validator's check: finite, inside the image (never clipped to a border pixel)
        err = check_visual_prompt_geometry(kind, prompt.get(kind), w, h)
        if err is not None:
            raise record_error(rid, f'{field}.{kind}', err)
        if kind == 'point':
            x, y = prompt['point']
            r = max(self.point_radius * scale, 1.0)
            cv2.circle(
                canvas,
                (_fx(x * scale), _fx(y * scale)),
                int(round(r * _ONE)),
                1,
                -1,
                cv2.LINE_8,
                _SHIFT,
            )
        elif kind == 'box':
            x1, y1, x2, y2 = prompt['box']
            # pixel i is inside when its centre i + 0.5 lies in [x1, x2); at least one pixel
            c0, c1 = _span(x1 * scale, x2 * scale, self.size)
            r0, r1 = _span(y1 * scale, y2 * scale, self.size)
            canvas[r0:r1, c0:c1] = 1
        elif kind == 'scribble':
            pts = np.asarray(prompt['scribble'], dtype=np.float64) * scale
            t = max(int(round(self.scribble_width * scale)), 1)
            cv2.polylines(canvas, [_fx_pts(pts)], False, 1, t, cv2.LINE_8, _SHIFT)
        else:
            m = decode_record_mask(prompt['mask'], h, w, rid, f'{field}.mask').astype(np.float32)
            s = max(h, w)
            full = np.zeros((s, s), np.float32)
            full[:h, :w] = m
            canvas = (
                cv2.resize(full, (self.size, self.size), interpolation=cv2.INTER_AREA) > 0
            ).astype(np.uint8)
        if not canvas.any():
            raise record_error(rid, field, f'{kind} prompt rasterises to an empty mask')
        return canvas.astype(bool)

    def transform(self, results: dict) -> dict:  # noqa: D102
        prompts = results.get('visual_prompts') or []
        rid = results.get('id', '?')
        if not isinstance(prompts, list):
            raise record_error(rid, 'visual_prompts', 'must be a list')
        if prompts and results.get('img') is None:
            raise record_error(rid, 'visual_prompts', 'visual prompts need an image')
        if not prompts:
            results['prompt_masks'] = torch.zeros(0, self.size, self.size, dtype=torch.bool)
            return results
        h, w = results['ori_shape']
        scale = self.size / max(h, w)
        masks = [
            self._one(p, h, w, scale, rid, f'visual_prompts[{i}]') for i, p in enumerate(prompts)
        ]
        results['prompt_masks'] = torch.from_numpy(np.stack(masks))
        return results
