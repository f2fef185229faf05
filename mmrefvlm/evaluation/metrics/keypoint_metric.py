# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Keypoint OKS-AP through pycocotools ``COCOeval(iouType='keypoints')``."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from mmengine.logging import print_log

from mmrefvlm.registry import METRICS

from ..functional import (COCO_KEYPOINT_SIGMAS, KPT_STAT_NAMES, build_coco_gt, run_coco_eval,
                          to_numpy)
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
    ``scores`` (N,) (1.0 when absent or NaN).

    Sigmas: ``sigmas`` (a float for uniform sigmas, or K values); None uses the 17 COCO sigmas
    and requires K = 17 (otherwise a ``ValueError`` at the first sample).

    Keys (percent): ``AP`` (OKS .50:.95), ``AP50``, ``AP75``, ``APm``, ``APl``, ``AR``.

    Args:
        tasks (Sequence[str]): Defaults to ``('keypoint',)``.
        unit (str): Defaults to ``'keypoint'``.
        sigmas (float | Sequence[float], optional): Per-keypoint sigmas.
        area_scale (float): OKS area = area_scale * GT box area. Defaults to 0.53.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'keypoint'
    default_tasks: ClassVar[tuple[str, ...]] = ('keypoint',)

    def __init__(self, tasks: TaskSpec = None, *, unit: str = 'keypoint',
                 sigmas: float | Sequence[float] | None = None, area_scale: float = 0.53,
                 **kwargs) -> None:
        super().__init__(tasks, **kwargs)
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
                raise ValueError(f'{num_keypoints} keypoints: the COCO sigmas need 17; set '
                                 '`sigmas` (a float for uniform sigmas or one per keypoint)')
            return COCO_KEYPOINT_SIGMAS
        sig = np.asarray(self.sigmas, dtype=np.float64)
        if sig.ndim == 0:
            return np.full(num_keypoints, float(sig))
        if len(sig) != num_keypoints:
            raise ValueError(f'{len(sig)} sigmas for {num_keypoints} keypoints')
        return sig

    def process_sample(self, sample: dict) -> dict:  # noqa: D102
        gt = select_unit(sample.get('gt_instances'), self.unit)
        pred = select_unit(sample.get('pred_instances'), self.unit)
        gt_kpts = to_numpy(gt.get('keypoints', np.zeros((0, 0, 3))), np.float64)
        pred_kpts = to_numpy(pred.get('keypoints', np.zeros((0, 0, 3))), np.float64)
        for k in {a.shape[1] for a in (gt_kpts, pred_kpts) if len(a)}:
            self.sigmas_for(k)  # fail at the first sample, not after the whole split
        boxes = gt.get('bboxes')
        gts = []
        for i, kpts in enumerate(gt_kpts):
            box = _gt_box(kpts, None if boxes is None else to_numpy(boxes[i], np.float64))
            gts.append(dict(keypoints=kpts.reshape(-1).tolist(), bbox=box,
                            num_keypoints=int((kpts[:, 2] > 0).sum()),
                            area=self.area_scale * box[2] * box[3]))
        scores = np.nan_to_num(to_numpy(pred.get('scores', np.ones(len(pred_kpts))), np.float64)
                               .reshape(-1), nan=1.0)  # NaN: a unit without scores
        preds = [dict(keypoints=k.reshape(-1).tolist(), score=float(s))
                 for k, s in zip(pred_kpts, scores)]
        return dict(shape=image_shape(sample), gts=gts, preds=preds)

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        lengths = {len(a['keypoints']) // 3 for r in results for a in r['gts'] + r['preds']}
        if len(lengths) > 1:
            raise ValueError(f'keypoint counts differ across the split: {sorted(lengths)}')
        names = ('AP', 'AP50', 'AP75', 'APm', 'APl', 'AR')
        if not lengths:
            return dict.fromkeys(names, float('nan'))
        num_kpts = lengths.pop()
        images, anns, dets = [], [], []
        for img_id, r in enumerate(results, start=1):
            images.append(dict(id=img_id, height=r['shape'][0], width=r['shape'][1]))
            anns += [dict(g, image_id=img_id, category_id=1) for g in r['gts']]
            dets += [dict(d, image_id=img_id, category_id=1) for d in r['preds']]
        category = dict(id=1, name='object', keypoints=[str(i) for i in range(num_kpts)],
                        skeleton=[])
        stats, summary = run_coco_eval(build_coco_gt(images, anns, [category]), dets, 'keypoints',
                                       kpt_sigmas=self.sigmas_for(num_kpts))
        print_log(f'{type(self).__name__}: {len(anns)} GT, {len(dets)} detections\n{summary}',
                  logger='current', level=logging.INFO)
        by_name = dict(zip(KPT_STAT_NAMES, stats))
        return {n: (float(by_name[n]) * 100 if by_name[n] >= 0 else float('nan')) for n in names}
