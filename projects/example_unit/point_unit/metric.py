# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``PointMetric``: hit rate and normalised distance of predicted points, with the image-centre
baseline computed on the same samples."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.optimize import linear_sum_assignment

from mmrefvlm.evaluation.metrics.base import (
    RefVLMBaseMetric,
    TaskSpec,
    image_shape,
    mean_or_nan,
    ratio_or_nan,
    select_unit,
)
from mmrefvlm.registry import METRICS


def points_in_masks(points: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Whether point ``i`` lies on mask ``i`` (the pixel holding it is set).

    Args:
        points (np.ndarray): (N, 2) float ``(x, y)`` pixels (continuous: pixel (c, r) covers
            [c, c+1) x [r, r+1)).
        masks (np.ndarray): (N, H, W) bool.

    Returns:
        np.ndarray: (N,) bool; False for points outside the image or NaN.
    """
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    height, width = masks.shape[-2:]
    finite = np.isfinite(points).all(1)
    safe = np.where(finite[:, None], points, -1.0)
    cols, rows = np.floor(safe[:, 0]).astype(int), np.floor(safe[:, 1]).astype(int)
    inside = finite & (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    hit = np.zeros(len(points), dtype=bool)
    idx = np.nonzero(inside)[0]
    hit[idx] = masks[idx, rows[idx], cols[idx]]
    return hit


def match_points(pred: np.ndarray, gt: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one (pred, gt) pairs minimising the total Euclidean distance (Hungarian)."""
    if len(pred) == 0 or len(gt) == 0:
        return []
    dist = np.linalg.norm(pred[:, None] - gt[None], axis=-1)
    dist = np.where(np.isfinite(dist), dist, 1e9)
    rows, cols = linear_sum_assignment(dist)
    return sorted(zip(rows.tolist(), cols.tolist(), strict=True), key=lambda pair: pair[1])


@METRICS.register_module()
class PointMetric(RefVLMBaseMetric):
    """Point accuracy of the ``point`` unit.

    Per sample, predicted points of ``unit`` are matched one-to-one to the GT points (Hungarian on
    distance). Keys:

    * ``acc`` (percent): GT points whose matched prediction lies on the GT instance mask
      (``gt_instances.masks``, from ``PointTarget(with_masks=True)``); unmatched GT points miss.
    * ``mean_dist`` (percent of the image diagonal): mean over GT points of the distance to the
      matched prediction; an unmatched GT point counts as the full diagonal (100).
    * ``center_acc`` / ``center_mean_dist``: the same for the trivial baseline that answers the
      image centre for every GT point (independent of the model; reported on the same samples).

    Args:
        tasks (Sequence[str]): Tasks evaluated. Defaults to ``('point',)``.
        unit (str): Unit whose points are evaluated. Defaults to ``'point'``.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'point'
    default_tasks: ClassVar[tuple[str, ...]] = ('point',)

    def __init__(self, tasks: TaskSpec = None, *, unit: str = 'point', **kwargs) -> None:
        super().__init__(tasks, **kwargs)
        self.unit = unit

    @staticmethod
    def _score(
        pred: np.ndarray, gt: np.ndarray, masks: np.ndarray | None, diag: float
    ) -> tuple[int, float]:
        """(hits, sum of normalised distances) of one sample's predictions."""
        pairs = match_points(pred, gt)
        dist = np.ones(len(gt))
        hit = np.zeros(len(gt), dtype=bool)
        if pairs:
            p_idx, g_idx = (np.array(v) for v in zip(*pairs, strict=True))
            dist[g_idx] = np.minimum(np.linalg.norm(pred[p_idx] - gt[g_idx], axis=1) / diag, 1.0)
            if masks is not None:
                hit[g_idx] = points_in_masks(pred[p_idx], masks[g_idx])
        return int(hit.sum()), float(dist.sum())

    def process_sample(self, sample: dict) -> tuple:  # noqa: D102
        gt = select_unit(sample.get('gt_instances'), self.unit)
        pred = self.predictions(sample, self.unit, ('points',))  # non-finite: counted misses
        height, width = image_shape(sample)
        diag = float(np.hypot(height, width))
        gt_pts = np.asarray(gt.get('points', np.zeros((0, 2))), dtype=np.float64).reshape(-1, 2)
        masks = gt.get('masks')
        masks = None if masks is None else np.asarray(masks, dtype=bool)
        pred_pts = np.asarray(pred.get('points', np.zeros((0, 2))), dtype=np.float64)
        hits, dist = self._score(pred_pts.reshape(-1, 2), gt_pts, masks, diag)
        centre = np.tile([[width / 2, height / 2]], (len(gt_pts), 1))
        c_hits, c_dist = self._score(centre, gt_pts, masks, diag)
        return len(gt_pts), hits, dist, c_hits, c_dist, masks is not None

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        num = sum(r[0] for r in results)
        with_masks = [r for r in results if r[5]]
        num_masked = sum(r[0] for r in with_masks)
        return {
            'acc': ratio_or_nan(sum(r[1] for r in with_masks), num_masked) * 100,
            'mean_dist': ratio_or_nan(sum(r[2] for r in results), num) * 100,
            'center_acc': ratio_or_nan(sum(r[3] for r in with_masks), num_masked) * 100,
            'center_mean_dist': ratio_or_nan(sum(r[4] for r in results), num) * 100,
            'num_points': float(num) if results else mean_or_nan([]),
        }
