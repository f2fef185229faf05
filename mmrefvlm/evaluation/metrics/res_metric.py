# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""RES: cumulative IoU and mean IoU, with mmdet ``RefSegMetric`` semantics."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mmrefvlm.registry import METRICS

from ..functional import pair_inter_union, union_mask
from .base import RefVLMBaseMetric, TaskSpec, image_shape, ratio_or_nan, select_unit


@METRICS.register_module()
class RESMetric(RefVLMBaseMetric):
    """Referring expression segmentation.

    Per sample (one expression): the prediction is the union of the predicted masks of ``unit``
    and the GT the union of the GT masks; a sample without prediction has an empty predicted mask
    (IoU 0, its GT area added to the union) and is never skipped.

    Keys (percent), as mmdet's ``RefSegMetric`` computes them on one mask per sample:
    ``cIoU = sum(I) / sum(U)`` over the split; ``mIoU`` = mean per-sample ``I / U`` (0 when U = 0).

    Args:
        tasks (Sequence[str]): Tasks evaluated. Defaults to ``('res',)``.
        unit (str): Unit whose masks are evaluated. Defaults to ``'mask'``.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'res'
    default_tasks: ClassVar[tuple[str, ...]] = ('res',)

    def __init__(self, tasks: TaskSpec = None, *, unit: str = 'mask', **kwargs) -> None:
        super().__init__(tasks, **kwargs)
        self.unit = unit

    def process_sample(self, sample: dict) -> tuple[float, float]:  # noqa: D102
        shape = image_shape(sample)
        gt = union_mask(select_unit(sample.get('gt_instances'), self.unit).get('masks'), shape)
        pred = union_mask(self.predictions(sample, self.unit, ('masks',)).get('masks'), shape)
        return pair_inter_union(pred, gt)

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        arr = np.array(results, dtype=np.float64).reshape(-1, 2)
        inter, union = arr[:, 0], arr[:, 1]
        ious = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        return {
            'cIoU': ratio_or_nan(inter.sum(), union.sum()) * 100,
            'mIoU': (float(ious.mean()) if len(ious) else float('nan')) * 100,
        }
