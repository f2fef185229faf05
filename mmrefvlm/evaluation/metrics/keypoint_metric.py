# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Keypoint OKS-AP through pycocotools ``COCOeval(iouType='keypoints')``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from mmengine.logging import print_log

from mmrefvlm.registry import METRICS

from ..functional import (
    COCO_KEYPOINT_SIGMAS,
    KPT_STAT_NAMES,
    build_coco_gt,
    run_coco_eval,
    to_numpy,
)
from .base import RefVLMBaseMetric, TaskSpec, image_shape, select_unit


def _gt_box(kpts: np.ndarray, box: np.ndarray | None) -> list[float]:
    """xywh of the GT box, or of the labelled keypoints' extent when the box is absent/NaN."""
    if box is not None and np.isfinite(box).all():
        return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]
    pts = kpts[kpts[:, 2] > 0, :2]
    if len(pts) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    (x1, y1), (x2, y2) = pts.min(0), pts.max(0)
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


@METRICS.register_module()
class KeypointMetric(RefVLMBaseMetric):
    """Object keypoint similarity AP (COCO keypoint protocol, class-agnostic).

    GT: entries of ``unit`` with ``keypoints`` (N, K, 3) (x, y, v in original pixels) and their
    ``bboxes`` (else the extent of the labelled keypoints). The OKS object scale is
    ``area_scale * box area`` (0.53 by default: the mean segment / box area ratio of COCO people,
    mmpose's convention for datasets without segment areas). GT entries without labelled keypoints
    are ignored by COCOeval. Predictions: ``keypoints`` (N, K, 3) (third column unused) and
    ``scores`` (N,) (1.0 when absent). A prediction with a non-finite keypoint or score is a
    miss (moved off the image, score 0), counted in ``invalid_preds``.

    Sigmas: ``sigmas`` (a float for uniform sigmas, or K values); None uses the 17 COCO sigmas
    and requires K = 17 (otherwise a ``ValueError`` at the first sample).

    Keys (percent): ``AP`` (OKS .50:.95), ``AP50``, ``AP75``, ``APm``, ``APl``, ``AR``, and
    ``PCK@a`` for each ``a`` of ``pck_thrs``: predicted instances are matched one-to-one to GT
    instances (Hungarian on the mean keypoint distance), and a labelled GT keypoint counts as
    correct when its matched prediction lies within ``a * max(box w, box h)``; GT instances without
    a match count as misses. PCK shows progress where OKS-AP, strict on small objects, is still ~0.

    Args:
        tasks (Sequence[str]): Defaults to ``('keypoint',)``.
        unit (str): Defaults to ``'keypoint'``.
        sigmas (float | Sequence[float], optional): Per-keypoint sigmas.
        area_scale (float): OKS area = area_scale * GT box area. Defaults to 0.53.
        pck_thrs (Sequence[float]): PCK thresholds (fractions of the GT box size). Defaults to
            (0.1, 0.2).
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'keypoint'
    default_tasks: ClassVar[tuple[str, ...]] = ('keypoint',)

    def __init__(
        self,
        tasks: TaskSpec = None,
        *,
        unit: str = 'keypoint',
        sigmas: float | Sequence[float] | None = None,
        area_scale: float = 0.53,
        pck_thrs: Sequence[float] = (0.1, 0.2),
        **kwargs,
    ) -> None:
        super().__init__(tasks, **kwargs)
        self.pck_thrs = tuple(float(t) for t in pck_thrs)
        if area_scale <= 0:
            raise ValueError(f'area_scale must be positive, got {area_scale}')
        if sigmas is not None and np.any(np.asarray(sigmas, dtype=np.float64) <= 0):
            raise ValueError(f'sigmas must be positive, got {sigmas}')
        self.unit = unit
        self.sigmas = sigmas
        self.area_scale = area_scale

    def sigmas_for(self, num_keypoints: int) -> np.ndarray:
        """(K,) float64 sigmas for K keypoints.

        Raises:
            ValueError: If no sigmas fit K.
        """
        if self.sigmas is None:
            if num_keypoints != 17:
                raise ValueError(
                    f'{num_keypoints} keypoints: the COCO sigmas need 17; set '
                    '`sigmas` (a float for uniform sigmas or one per keypoint)'
                )
            return COCO_KEYPOINT_SIGMAS
        sig = np.asarray(self.sigmas, dtype=np.float64)
        if sig.ndim == 0:
            return np.full(num_keypoints, float(sig))
        if len(sig) != num_keypoints:
            raise ValueError(f'{len(sig)} sigmas for {num_keypoints} keypoints')
        return sig

    def process_sample(self, sample: dict) -> dict:  # noqa: D102
        gt = select_unit(sample.get('gt_instances'), self.unit)
        pred = self.predictions(sample, self.unit, ('keypoints', 'scores'))
        gt_kpts = to_numpy(gt.get('keypoints', np.zeros((0, 0, 3))), np.float64)
        pred_kpts = to_numpy(pred.get('keypoints', np.zeros((0, 0, 3))), np.float64)
        for k in {a.shape[1] for a in (gt_kpts, pred_kpts) if len(a)}:
            self.sigmas_for(k)  # fail at the first sample, not after the whole split
        boxes = gt.get('bboxes')
        gts = []
        for i, kpts in enumerate(gt_kpts):
            box = _gt_box(kpts, None if boxes is None else to_numpy(boxes[i], np.float64))
            gts.append(
                dict(
                    keypoints=kpts.reshape(-1).tolist(),
                    bbox=box,
                    num_keypoints=int((kpts[:, 2] > 0).sum()),
                    area=self.area_scale * box[2] * box[3],
                )
            )
        scores = to_numpy(pred.get('scores', np.ones(len(pred_kpts))), np.float64).reshape(-1)
        preds = [
            dict(keypoints=k.reshape(-1).tolist(), score=float(s))
            for k, s in zip(pred_kpts, scores, strict=False)
        ]
        pck = pck_counts(gt_kpts, [g['bbox'] for g in gts], pred_kpts, self.pck_thrs)
        return dict(shape=image_shape(sample), gts=gts, preds=preds, pck=pck)

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        lengths = {len(a['keypoints']) // 3 for r in results for a in r['gts'] + r['preds']}
        if len(lengths) > 1:
            raise ValueError(f'keypoint counts differ across the split: {sorted(lengths)}')
        names = ('AP', 'AP50', 'AP75', 'APm', 'APl', 'AR')
        pck = {}
        for i, thr in enumerate(self.pck_thrs):
            hits = sum(r['pck'][i][0] for r in results)
            total = sum(r['pck'][i][1] for r in results)
            pck[f'PCK@{thr:g}'] = 100.0 * hits / total if total else float('nan')
        if not lengths:
            return {**dict.fromkeys(names, float('nan')), **pck}
        num_kpts = lengths.pop()
        images, anns, dets = [], [], []
        for img_id, r in enumerate(results, start=1):
            images.append(dict(id=img_id, height=r['shape'][0], width=r['shape'][1]))
            anns += [dict(g, image_id=img_id, category_id=1) for g in r['gts']]
            dets += [dict(d, image_id=img_id, category_id=1) for d in r['preds']]
        category = dict(
            id=1, name='object', keypoints=[str(i) for i in range(num_kpts)], skeleton=[]
        )
        stats, summary = run_coco_eval(
            build_coco_gt(images, anns, [category]),
            dets,
            'keypoints',
            kpt_sigmas=self.sigmas_for(num_kpts),
        )
        print_log(
            f'{type(self).__name__}: {len(anns)} GT, {len(dets)} detections\n{summary}',
            logger='current',
            level=logging.INFO,
        )
        by_name = dict(zip(KPT_STAT_NAMES, stats, strict=False))
        out = {n: (float(by_name[n]) * 100 if by_name[n] >= 0 else float('nan')) for n in names}
        return {**out, **pck}


def pck_counts(
    gt: np.ndarray, gt_boxes: list, pred: np.ndarray, thrs: Sequence[float]
) -> list[tuple[int, int]]:
    """(correct, labelled) GT keypoint counts per threshold for one sample (see ``KeypointMetric``).

    Args:
        gt (np.ndarray): (N, K, 3) GT keypoints (x, y, v) in pixels.
        gt_boxes (list): N GT boxes as xywh.
        pred (np.ndarray): (M, K, >=2) predicted keypoints in pixels.
        thrs (Sequence[float]): Fractions of ``max(w, h)`` of each GT box.
    """
    from scipy.optimize import linear_sum_assignment

    labelled = gt[..., 2] > 0 if len(gt) else np.zeros((0, 0), bool)
    totals = [int(labelled.sum())] * len(thrs)
    if not len(gt) or not len(pred):
        return [(0, t) for t in totals]
    dist = np.linalg.norm(gt[:, None, :, :2] - pred[None, :, :, :2], axis=-1)  # (N, M, K)
    weights = labelled[:, None].astype(np.float64)
    cost = (np.nan_to_num(dist, nan=1e9) * weights).sum(-1) / np.maximum(weights.sum(-1), 1)
    rows, cols = linear_sum_assignment(cost)
    scale = np.array([max(b[2], b[3], 1e-6) for b in gt_boxes])
    out = []
    for thr in thrs:
        ok = dist[rows, cols] <= thr * scale[rows, None]  # (P, K)
        out.append((int((ok & labelled[rows]).sum()), totals[0]))
    return out
