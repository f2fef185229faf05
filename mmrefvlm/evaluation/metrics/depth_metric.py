# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Monocular depth: AbsRel, RMSE, delta < 1.25."""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
from mmengine.logging import print_log

from mmrefvlm.registry import METRICS

from ..functional import depth_errors, to_numpy
from .base import RefVLMBaseMetric, TaskSpec, mean_or_nan


@METRICS.register_module()
class DepthMetric(RefVLMBaseMetric):
    """Depth errors of the predicted against the GT depth map ((H, W) float metres, original size).

    Prediction: the sample's ``pred_depth``, else the first ``pred_instances`` entry of ``unit``
    (field ``depth``, what ``DepthUnitDecoder.predict`` writes). GT: ``gt_depth``.

    Per image over valid GT pixels (``gt > 0``, finite, ``<= max_depth`` when set), then averaged
    over images (the NYU / KITTI protocol). Predictions are clamped to ``[min_depth, max_depth]``.
    A sample without ``pred_depth`` is scored as an all-``min_depth`` prediction (a miss, not a
    skip). Samples without ``gt_depth`` or without a valid GT pixel have no defined error: they are
    counted and reported in a warning.

    Keys: ``AbsRel`` (ratio), ``RMSE`` (metres), ``delta1`` (percent of pixels with
    ``max(pred/gt, gt/pred) < 1.25``).

    Args:
        tasks (Sequence[str]): Defaults to ``('depth',)``.
        unit (str): Unit of the per-instance prediction. Defaults to ``'depth'``.
        min_depth (float): Lower clamp of predictions. Defaults to 1e-3.
        max_depth (float, optional): Upper clamp and GT validity cap.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'depth'
    default_tasks: ClassVar[tuple[str, ...]] = ('depth',)

    def __init__(
        self,
        tasks: TaskSpec = None,
        *,
        unit: str = 'depth',
        min_depth: float = 1e-3,
        max_depth: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(tasks, **kwargs)
        if min_depth <= 0 or (max_depth is not None and max_depth <= min_depth):
            raise ValueError(f'need 0 < min_depth < max_depth, got {min_depth}, {max_depth}')
        self.unit = unit
        self.min_depth = min_depth
        self.max_depth = max_depth

    def _prediction(self, sample: dict) -> np.ndarray | None:
        if sample.get('pred_depth') is not None:
            return self.prediction_array(sample['pred_depth'])
        maps = self.predictions(sample, self.unit, ('depth',)).get('depth')
        return None if maps is None or len(maps) == 0 else to_numpy(maps[0], np.float64)

    def process_sample(self, sample: dict) -> dict:  # noqa: D102
        gt = sample.get('gt_depth')
        if gt is None:
            return dict(errors=None, record_id=sample.get('record_id'))
        gt = to_numpy(gt, np.float64)
        pred = self._prediction(sample)
        pred = np.zeros_like(gt) if pred is None else pred
        errors = depth_errors(
            pred.reshape(gt.shape) if pred.size == gt.size else pred,
            gt,
            self.min_depth,
            self.max_depth,
        )
        return dict(errors=errors, record_id=sample.get('record_id'))

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        valid = [r['errors'] for r in results if r['errors'] is not None]
        undefined = [r['record_id'] for r in results if r['errors'] is None]
        if undefined:
            print_log(
                f'{type(self).__name__}: {len(undefined)} of {len(results)} depth samples '
                f'have no valid GT pixel and no defined error (e.g. {undefined[:3]})',
                logger='current',
                level=logging.WARNING,
            )
        return {
            'AbsRel': mean_or_nan(e['abs_rel'] for e in valid),
            'RMSE': mean_or_nan(e['rmse'] for e in valid),
            'delta1': mean_or_nan(e['delta1'] for e in valid) * 100,
        }
