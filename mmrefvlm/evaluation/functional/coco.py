# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Build in-memory COCO ground truth / detections and run pycocotools ``COCOeval`` quietly."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from .geometry import to_numpy

# COCOeval.stats layout for bbox / segm (12 numbers) and keypoints (10 numbers).
DET_STAT_NAMES = (
    'mAP',
    'mAP_50',
    'mAP_75',
    'mAP_s',
    'mAP_m',
    'mAP_l',
    'AR_1',
    'AR_10',
    'AR_100',
    'AR_s',
    'AR_m',
    'AR_l',
)
KPT_STAT_NAMES = ('AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm', 'ARl')
COCO_KEYPOINT_SIGMAS = (
    np.array(
        [
            0.26,
            0.25,
            0.25,
            0.35,
            0.35,
            0.79,
            0.79,
            0.72,
            0.72,
            0.62,
            0.62,
            1.07,
            1.07,
            0.87,
            0.87,
            0.89,
            0.89,
        ]
    )
    / 10.0
)


def encode_mask(mask: Any) -> dict:
    """COCO RLE of one mask (``counts`` kept as bytes: small and picklable).

    Args:
        mask (array-like): (H, W) bool.

    Returns:
        dict: ``{'size': [H, W], 'counts': bytes}``.
    """
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(to_numpy(mask, np.uint8)))


def xyxy_to_xywh(box: Any) -> list[float]:
    """[x1, y1, x2, y2] -> COCO [x, y, w, h] as Python floats."""
    x1, y1, x2, y2 = (float(v) for v in to_numpy(box, np.float64).reshape(4))
    return [x1, y1, x2 - x1, y2 - y1]


def build_coco_gt(
    images: Sequence[dict], annotations: Sequence[dict], categories: Sequence[dict]
) -> Any:
    """An in-memory ``pycocotools.coco.COCO`` ground truth.

    Args:
        images (Sequence[dict]): ``{'id', 'height', 'width'}`` per image; images without any
            annotation are kept (their detections are false positives).
        annotations (Sequence[dict]): COCO annotations without ``id`` (assigned 1..A here);
            ``iscrowd`` defaults to 0.
        categories (Sequence[dict]): ``{'id', 'name'}`` (plus ``keypoints`` for keypoints).

    Returns:
        pycocotools.coco.COCO: The indexed ground truth.
    """
    from pycocotools.coco import COCO

    anns = [dict(ann, id=i + 1, iscrowd=ann.get('iscrowd', 0)) for i, ann in enumerate(annotations)]
    coco = COCO()
    coco.dataset = dict(images=list(images), annotations=anns, categories=list(categories))
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def run_coco_eval(
    coco_gt: Any,
    detections: Sequence[dict],
    iou_type: str,
    kpt_sigmas: np.ndarray | None = None,
    use_cats: bool = True,
) -> tuple[np.ndarray, str]:
    """Run ``COCOeval`` over every image of ``coco_gt`` and return its stats.

    Args:
        coco_gt (COCO): Ground truth from :func:`build_coco_gt`.
        detections (Sequence[dict]): COCO results (``image_id``, ``category_id``, ``score`` and
            ``bbox`` / ``segmentation`` / ``keypoints``).
        iou_type (str): ``'bbox'``, ``'segm'`` or ``'keypoints'``.
        kpt_sigmas (np.ndarray, optional): (K,) per-keypoint sigmas for ``'keypoints'``.
        use_cats (bool): Evaluate per category (False: class-agnostic). Defaults to True.

    Returns:
        tuple[np.ndarray, str]: ``COCOeval.stats`` (fractions, -1 where undefined) and the
        printed summary. With no detections every stat is 0 (or -1 when there is no GT).
    """
    from pycocotools.cocoeval import COCOeval

    num_stats = 10 if iou_type == 'keypoints' else 12
    if len(detections) == 0:
        fill = 0.0 if len(coco_gt.getAnnIds()) else -1.0
        return np.full(num_stats, fill), 'no detections'
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco_dt = coco_gt.loadRes([dict(d) for d in detections])
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.imgIds = sorted(coco_gt.getImgIds())  # the whole split, never a subset
        ev.params.useCats = int(use_cats)
        if kpt_sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(kpt_sigmas, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, dtype=np.float64), buf.getvalue()
