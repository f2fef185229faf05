# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""GRES: gIoU, cIoU, N-acc and T-acc with the ReLA / GSVA empty-target conventions."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mmrefvlm.registry import METRICS

from ..functional import pair_inter_union, union_mask
from .base import RefVLMBaseMetric, TaskSpec, image_shape, ratio_or_nan, select_unit

EMPTY_RULES = ('ref', 'pixels')


@METRICS.register_module()
class GRESMetric(RefVLMBaseMetric):
    """Generalised referring expression segmentation (targets may be empty).

    Per sample: GT = union of the GT masks of ``unit``; the target is *empty* when that union has
    no positive pixel. The prediction is *empty*:

    * ``empty_rule='ref'`` (default): when the model predicted no mask of ``unit`` (it answered
      with a zero-``<REF>`` group, or produced nothing);
    * ``empty_rule='pixels'``: when the union of its masks has fewer than ``empty_pixels``
      positive pixels (ReLA/LISA rule for models without a rejection token).

    A prediction classified empty scores as an all-zero mask. A prediction with a non-finite
    mask value is a miss: classified empty for a non-empty target, non-empty for an empty one.

    Keys (percent):

    * ``gIoU``: mean over all samples of the per-sample IoU; an empty target correctly predicted
      empty counts 1, wrongly predicted non-empty 0;
    * ``cIoU``: ``sum(I) / sum(U)``; correctly predicted empty targets add nothing, wrongly
      predicted empty targets add their predicted area to the union;
    * ``N-acc``: empty targets predicted empty / empty targets;
    * ``T-acc``: non-empty targets predicted non-empty / non-empty targets.

    Args:
        tasks (Sequence[str]): Tasks evaluated. Defaults to ``('gres',)``.
        unit (str): Unit whose masks are evaluated. Defaults to ``'mask'``.
        empty_rule (str): ``'ref'`` or ``'pixels'``. Defaults to ``'ref'``.
        empty_pixels (int): Pixel threshold of ``'pixels'``. Defaults to 50.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'gres'
    default_tasks: ClassVar[tuple[str, ...]] = ('gres',)

    def __init__(
        self,
        tasks: TaskSpec = None,
        *,
        unit: str = 'mask',
        empty_rule: str = 'ref',
        empty_pixels: int = 50,
        **kwargs,
    ) -> None:
        super().__init__(tasks, **kwargs)
        if empty_rule not in EMPTY_RULES:
            raise ValueError(f'empty_rule must be one of {EMPTY_RULES}, got {empty_rule!r}')
        if empty_pixels < 0:
            raise ValueError(f'empty_pixels must be >= 0, got {empty_pixels}')
        self.unit = unit
        self.empty_rule = empty_rule
        self.empty_pixels = empty_pixels

    def process_sample(self, sample: dict) -> tuple[bool, bool, float, float]:  # noqa: D102
        shape = image_shape(sample)
        gt = union_mask(select_unit(sample.get('gt_instances'), self.unit).get('masks'), shape)
        pred_sel = self.predictions(sample, self.unit, ('masks',))
        pred = union_mask(pred_sel.get('masks'), shape)
        if self.empty_rule == 'ref':
            pred_empty = pred_sel['num'] == 0
        else:
            pred_empty = int(pred.sum()) < self.empty_pixels
        if pred_sel['num_invalid']:  # a non-finite mask: a miss, whichever the target
            pred_empty = bool(gt.sum() > 0)
        if pred_empty:
            pred = np.zeros_like(gt)
        inter, union = pair_inter_union(pred, gt)
        return bool(gt.sum() < 1), bool(pred_empty), inter, union

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        if not results:
            return dict.fromkeys(('gIoU', 'cIoU', 'N-acc', 'T-acc'), float('nan'))
        gt_empty = np.array([r[0] for r in results])
        pred_empty = np.array([r[1] for r in results])
        inter = np.array([r[2] for r in results], dtype=np.float64)
        union = np.array([r[3] for r in results], dtype=np.float64)
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        correct_empty = gt_empty & pred_empty
        iou[correct_empty] = 1.0  # wrong empties: I = 0, U = predicted area > 0 -> IoU 0
        # cIoU: correct empties have I = U = 0, so they drop out of both sums on their own.
        return {
            'gIoU': float(iou.mean()) * 100,
            'cIoU': ratio_or_nan(inter.sum(), union.sum()) * 100,
            'N-acc': ratio_or_nan(correct_empty.sum(), gt_empty.sum()) * 100,
            'T-acc': ratio_or_nan((~gt_empty & ~pred_empty).sum(), (~gt_empty).sum()) * 100,
        }
