# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``MMDetRefSegMetric``: mmdet's ``RefSegMetric`` (RES cIoU / mIoU) on mmrefvlm samples."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from mmrefvlm.evaluation.functional import union_mask
from mmrefvlm.evaluation.metrics.base import RefVLMBaseMetric, TaskSpec, image_shape, select_unit
from mmrefvlm.registry import METRICS


@METRICS.register_module()
class MMDetRefSegMetric(RefVLMBaseMetric):
    """RES metrics computed by mmdet's ``RefSegMetric`` itself.

    Per sample, mmdet gets one predicted mask (the union of the predicted masks of ``unit``; an
    all-zero mask when there is none, so a missing prediction is a miss) against one ground-truth
    mask (the union of the sample's GT masks, as ``BitmapMasks``). Keys (percent): ``cIoU``
    (sum of intersections / sum of unions) and ``mIoU`` (mean per-sample IoU, mmdet's; it is
    LISA's RES ``gIoU``: every RES target is non-empty), and ``gIoU``, the same number under
    LISA's name.

    Args:
        tasks (Sequence[str]): Tasks evaluated. Defaults to ``('res',)``.
        unit (str): Unit whose masks are evaluated. Defaults to ``'mask'``.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'res'
    default_tasks: ClassVar[tuple[str, ...]] = ('res',)

    def __init__(self, tasks: TaskSpec = None, *, unit: str = 'mask', **kwargs) -> None:
        super().__init__(tasks, **kwargs)
        from mmdet.evaluation.metrics import RefSegMetric

        self.unit = unit
        self._mmdet = RefSegMetric()

    def process_sample(self, sample: dict) -> tuple[Any, ...]:  # noqa: D102
        from mmdet.structures.mask import BitmapMasks

        h, w = image_shape(sample)
        gt = union_mask(select_unit(sample.get('gt_instances'), self.unit).get('masks'), (h, w))
        pred = union_mask(select_unit(sample.get('pred_instances'), self.unit).get('masks'), (h, w))
        self._mmdet.results = []
        self._mmdet.process(
            {},
            [
                dict(
                    pred_instances=dict(masks=torch.from_numpy(pred[None]).bool()),
                    gt_masks=BitmapMasks(gt[None].astype('uint8'), h, w),
                )
            ],
        )
        return tuple(float(v) for v in self._mmdet.results.pop())

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        if not results:
            return dict.fromkeys(('cIoU', 'mIoU', 'gIoU'), float('nan'))
        out = self._mmdet.compute_metrics([tuple(torch.tensor(v) for v in r) for r in results])
        metrics = {k: float(v) for k, v in out.items()}
        metrics['gIoU'] = metrics['mIoU']
        return metrics
