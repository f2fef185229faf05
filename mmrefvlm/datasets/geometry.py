# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Mask and box helpers for records (docs/data_format.md): RLE / polygon decode and encode, checks.

Masks in records are COCO compressed RLE ``{"size": [h, w], "counts": str}`` or polygon lists
``[[x1, y1, x2, y2, ...], ...]``. Boxes are ``[x1, y1, x2, y2]`` float pixels of the original image.

``pycocotools`` is imported lazily (it is an optional dependency of the core). RLE counts are parsed
and checked in Python (:mod:`mmrefvlm.datasets.rle`) before pycocotools decodes them.

The ``check_*`` functions return an error message (None when valid). They are the one check per
field shared by the record validator (``records.validate_record``) and the data pipeline, which
raises their message with the record id; so a record the validator passes always loads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeGuard

import numpy as np

from .files import check_depth_file
from .rle import check_rle, rle_counts_from_string

__all__ = [
    'rle_counts_from_string',
    'check_rle',
    'check_polygons',
    'check_mask',
    'check_bbox',
    'decode_mask',
    'encode_mask',
    'mask_area',
    'mask_bbox',
    'xywh_to_xyxy',
    'clip_bbox',
    'clean_polygons',
    'is_number',
    'check_keypoints',
    'check_visual_prompt_geometry',
    'check_depth_file',
]

#: Slack (pixels) for float boxes that end a rounding error outside the image.
BBOX_EPS = 1e-3
#: Polygon vertices may lie this many image sizes (max(H, W)) outside the image.
POLYGON_MARGIN = 4


def _mask_utils():
    try:
        from pycocotools import mask as mask_utils
    except ImportError as err:  # pragma: no cover - pycocotools is in requirements/runtime.txt
        raise ImportError('mask handling needs pycocotools (pip install pycocotools)') from err
    return mask_utils


def is_number(value: Any) -> TypeGuard[int | float]:
    """True for a finite int or float (bool excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_polygons(
    polygons: Any, height: int | None = None, width: int | None = None
) -> str | None:
    """Check a polygon list: non-empty, each ≥ 3 points of finite numbers. None if valid.

    With the image size, every vertex must also lie within :data:`POLYGON_MARGIN` image sizes
    of the image (vertices outside are clipped; pycocotools' rasteriser takes time proportional
    to the perimeter, so a vertex at 1e8 would hang it).
    """
    if not isinstance(polygons, list) or not polygons:
        return 'polygons must be a non-empty list of [x1, y1, x2, y2, ...] lists'
    for k, poly in enumerate(polygons):
        if not isinstance(poly, list) or not all(is_number(v) for v in poly):
            return f'polygon {k} must be a list of finite numbers'
        if len(poly) % 2:
            return f'polygon {k} has an odd number of coordinates ({len(poly)})'
        if len(poly) < 6:
            return f'polygon {k} has {len(poly) // 2} points; a polygon needs at least 3'
        if height is not None and width is not None:
            far = POLYGON_MARGIN * max(height, width)
            for x, y in zip(poly[::2], poly[1::2], strict=True):
                if not (-far <= x <= width + far and -far <= y <= height + far):
                    return (
                        f'polygon {k} has a vertex ({x}, {y}) far outside the image (width '
                        f'{width}, height {height}; at most {POLYGON_MARGIN} image sizes '
                        'outside it)'
                    )
    return None


def check_mask(mask: Any, height: int | None, width: int | None) -> str | None:
    """Check a record mask (compressed RLE or polygons): well formed, of the image size, non-empty.

    Args:
        mask (Any): The mask field.
        height (int, optional): Image height; without it, size and emptiness of polygons are not
            checked.
        width (int, optional): Image width.

    Returns:
        str | None: The error message, or None if the mask is valid.
    """
    if isinstance(mask, dict):
        err, area = check_rle(mask, height, width)
        if err is None and area == 0:
            err = 'mask is empty (0 foreground pixels)'
        return err
    err = check_polygons(mask, height, width)
    if err is None and height is not None and width is not None:
        if mask_area(mask, height, width) == 0:
            err = 'mask is empty (the polygons cover no pixel of the image)'
    return err


def check_bbox(
    bbox: Any, width: int | None, height: int | None, eps: float = BBOX_EPS
) -> str | None:
    """Check an ``[x1, y1, x2, y2]`` box: numbers, finite, not inverted, inside the image (±
    ``eps`` pixels, for float rounding)."""
    if (
        not isinstance(bbox, (list, tuple))
        or len(bbox) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    ):
        return f'bbox must be [x1, y1, x2, y2] finite numbers, got {bbox!r}'
    if not all(map(math.isfinite, bbox)):
        return f'bbox {list(bbox)} is not finite'
    x1, y1, x2, y2 = bbox
    if not (x1 < x2 and y1 < y2):
        return f'bbox {list(bbox)} is inverted or empty (needs x1 < x2 and y1 < y2)'
    if (
        width is not None
        and height is not None
        and (x1 < -eps or y1 < -eps or x2 > width + eps or y2 > height + eps)
    ):
        return f'bbox {list(bbox)} is outside the image (width {width}, height {height})'
    return None


def _to_coco_rle(mask: Any, height: int, width: int) -> dict:
    """One pycocotools RLE (bytes counts) of a record mask, size-checked first."""
    mask_utils = _mask_utils()
    if isinstance(mask, dict):
        err, _ = check_rle(mask, height, width, allow_uncompressed=True)
        if err is not None:
            raise ValueError(err)
        if isinstance(mask['counts'], list):
            return mask_utils.frPyObjects(mask, height, width)
        counts = mask['counts']
        return {
            'size': [height, width],
            'counts': counts.encode('ascii') if isinstance(counts, str) else counts,
        }
    err = check_polygons(mask, height, width)
    if err is not None:
        raise ValueError(err)
    return mask_utils.merge(mask_utils.frPyObjects(mask, height, width))


def check_and_decode_mask(
    mask: Any, height: int, width: int, allow_empty: bool = False
) -> tuple[str | None, np.ndarray]:
    """:func:`check_mask` and :func:`decode_mask` in one pass (each RLE parsed, each polygon set
    rasterised once): ``(error message or None, (height, width) bool)``, the messages those of
    :func:`check_mask`; with ``allow_empty`` a well-formed mask without foreground is no error
    (an expression's target that is "nothing"). pycocotools' own decoding errors still raise
    ``ValueError``."""
    empty = np.zeros((height, width), dtype=bool)
    if isinstance(mask, dict):
        err, area = check_rle(mask, height, width)
        if err is None and area == 0 and not allow_empty:
            err = 'mask is empty (0 foreground pixels)'
        if err is not None:
            return err, empty
        counts = mask['counts']
        rle = {
            'size': [height, width],
            'counts': counts.encode('ascii') if isinstance(counts, str) else counts,
        }
        return None, _mask_utils().decode(rle).astype(bool)
    err = check_polygons(mask, height, width)
    if err is not None:
        return err, empty
    mask_utils = _mask_utils()
    decoded = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(mask, height, width)))
    if not decoded.any() and not allow_empty:
        return 'mask is empty (the polygons cover no pixel of the image)', empty
    return None, decoded.astype(bool)


def decode_mask(mask: Any, height: int, width: int) -> np.ndarray:
    """Decode a record mask to a binary image.

    Args:
        mask (dict | list): Compressed (or uncompressed) COCO RLE, or polygons.
        height (int): Image height.
        width (int): Image width.

    Returns:
        np.ndarray: (height, width) bool.

    Raises:
        ValueError: Malformed mask or RLE size different from ``(height, width)``.
    """
    return _mask_utils().decode(_to_coco_rle(mask, height, width)).astype(bool)


def encode_mask(mask: np.ndarray) -> dict:
    """Compressed RLE of a binary mask, JSON-ready.

    Args:
        mask (np.ndarray): (H, W) bool or {0, 1} integers.

    Returns:
        dict: ``{"size": [H, W], "counts": str}``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f'encode_mask expects an (H, W) array, got shape {mask.shape}')
    rle = _mask_utils().encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(v) for v in rle['size']], 'counts': rle['counts'].decode('ascii')}


def mask_area(mask: Any, height: int, width: int) -> int:
    """Number of foreground pixels of a record mask (polygons rasterised as pycocotools does)."""
    return int(_mask_utils().area(_to_coco_rle(mask, height, width)))


def mask_bbox(mask: Any, height: int, width: int) -> list[float] | None:
    """Tight ``[x1, y1, x2, y2]`` pixel box of a record mask, None if it is empty."""
    rle = _to_coco_rle(mask, height, width)
    mask_utils = _mask_utils()
    if int(mask_utils.area(rle)) == 0:
        return None
    x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
    return [x, y, x + w, y + h]


def xywh_to_xyxy(box: Sequence[float]) -> list[float]:
    """``[x, y, w, h]`` (COCO) to ``[x1, y1, x2, y2]``."""
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def clip_bbox(box: Sequence[float], width: int, height: int) -> list[float] | None:
    """Clip an xyxy box to the image; None when nothing of it is left (zero width or height)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = min(max(x1, 0.0), float(width)), min(max(x2, 0.0), float(width))
    y1, y2 = min(max(y1, 0.0), float(height)), min(max(y2, 0.0), float(height))
    if x2 <= x1 or y2 <= y1:
        return None
    return [x1, y1, x2, y2]


def clean_polygons(polygons: Any) -> list[list[float]]:
    """Keep the polygons with ≥ 3 points and finite coordinates (COCO has degenerate ones)."""
    if not isinstance(polygons, list):
        return []
    return [
        [float(v) for v in poly]
        for poly in polygons
        if isinstance(poly, list)
        and len(poly) >= 6
        and len(poly) % 2 == 0
        and all(is_number(v) for v in poly)
    ]


def check_keypoints(
    keypoints: Any,
    width: int | None = None,
    height: int | None = None,
    eps: float = BBOX_EPS,
) -> str | None:
    """Check ``[x, y, v] * K``: a non-empty multiple of 3 finite numbers, v in {0, 1, 2}, and with
    the image size, labelled points (v > 0) inside the image (± ``eps`` pixels)."""
    if (
        not isinstance(keypoints, list)
        or not keypoints
        or len(keypoints) % 3
        or not all(is_number(v) for v in keypoints)
    ):
        size = len(keypoints) if isinstance(keypoints, list) else type(keypoints).__name__
        return f'keypoints must be a non-empty list of 3K finite numbers [x, y, v, ...], got {size}'
    bad = [k for k, v in enumerate(keypoints[2::3]) if v not in (0, 1, 2)]
    if bad:
        return (
            f'visibility must be 0, 1 or 2; keypoint {bad[0]} has v={keypoints[3 * bad[0] + 2]!r}'
        )
    if width is not None and height is not None:
        for k in range(len(keypoints) // 3):
            x, y, v = keypoints[3 * k : 3 * k + 3]
            if v > 0 and not (-eps <= x <= width + eps and -eps <= y <= height + eps):
                return (
                    f'labelled keypoint {k} at ({x}, {y}) is outside the image (width {width}, '
                    f'height {height}); unlabelled points have v=0'
                )
    return None


def check_visual_prompt_geometry(
    kind: str, geometry: Any, width: int | None, height: int | None
) -> str | None:
    """Check the geometry of a ``point`` / ``box`` / ``scribble`` / ``mask`` visual prompt: well
    formed, finite and, with the image size, inside the image (a prompt outside it would be
    clipped to a pixel of the border)."""
    if kind == 'point':
        if not (
            isinstance(geometry, list) and len(geometry) == 2 and all(map(is_number, geometry))
        ):
            return f'point must be [x, y] finite numbers, got {geometry!r}'
        if (
            width is not None
            and height is not None
            and not (0 <= geometry[0] <= width and 0 <= geometry[1] <= height)
        ):
            return f'point {geometry} is outside the image ({width}x{height})'
        return None
    if kind == 'box':
        return check_bbox(geometry, width, height)
    if kind == 'scribble':
        ok = (
            isinstance(geometry, list)
            and len(geometry) >= 2
            and all(
                isinstance(p, list) and len(p) == 2 and all(map(is_number, p)) for p in geometry
            )
        )
        if not ok:
            return 'scribble must be a list of >= 2 [x, y] finite points'
        if width is not None and height is not None:
            for x, y in geometry:
                if not (0 <= x <= width and 0 <= y <= height):
                    return f'scribble point {[x, y]} is outside the image ({width}x{height})'
        return None
    if kind == 'mask':
        return check_mask(geometry, height, width)
    return f'unknown visual prompt type {kind!r}'
