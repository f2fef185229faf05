# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""REC: Acc@0.5, mean IoU and multi-box precision / recall / F1."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mmrefvlm.registry import METRICS

from ..functional import box_iou, match_one_to_one
from .base import RefVLMBaseMetric, TaskSpec, ratio_or_nan, select_unit


@METRICS.register_module()
class RECMetric(RefVLMBaseMetric):
    """Referring expression comprehension with one or several boxes per expression.

    Per sample, the predicted boxes of ``unit`` are matched one-to-one with the GT boxes
    (``matcher``: Hungarian or greedy, pairs with IoU >= ``iou_thr``).

    Keys (percent): ``Acc@<thr>``: fraction of samples whose prediction has exactly as many boxes
    as the GT and every GT box matched (for one box: IoU(pred, gt) >= thr, the mmdet
    ``RefExpMetric`` rule; a sample without GT is correct iff nothing is predicted); ``mIoU``:
    mean over GT boxes of the IoU of the best one-to-one assignment (0 when unmatched);
    ``precision`` / ``recall`` / ``F1``: matched pairs over all predicted / GT boxes of the split
    (micro-averaged). A sample without predictions counts as a miss.

    Args:
        tasks (Sequence[str]): Tasks evaluated. Defaults to ``('rec',)``.
        unit (str): Unit whose boxes are evaluated. Defaults to ``'box'``.
        iou_thr (float): Match threshold. Defaults to 0.5.
        matcher (str): ``'hungarian'`` or ``'greedy'``. Defaults to ``'hungarian'``.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'rec'
    default_tasks: ClassVar[tuple[str, ...]] = ('rec',)

    def __init__(
        self,
        tasks: TaskSpec = None,
        *,
        unit: str = 'box',
        iou_thr: float = 0.5,
        matcher: str = 'hungarian',
        **kwargs,
    ) -> None:
        super().__init__(tasks, **kwargs)
        if not 0.0 < iou_thr <= 1.0:
            raise ValueError(f'iou_thr must be in (0, 1], got {iou_thr}')
        match_one_to_one(np.zeros((0, 0)), method=matcher)  # validates the name now
        self.unit = unit
        self.iou_thr = iou_thr
        self.matcher = matcher

    def process_sample(self, sample: dict) -> tuple[int, int, int, float, bool]:  # noqa: D102
        gt = select_unit(sample.get('gt_instances'), self.unit)
        pred = self.predictions(sample, self.unit, ('bboxes',))
        num_gt, num_pred = gt['num'], pred['num']
        if num_gt and num_pred:
            iou = box_iou(pred['bboxes'], gt['bboxes'])  # (P, G)
            tp = len(match_one_to_one(iou, self.iou_thr, self.matcher))
            best = match_one_to_one(iou, 0.0, 'hungarian')
            sum_iou = float(sum(iou[p, g] for p, g in best))
        else:
            tp, sum_iou = 0, 0.0
        correct = num_pred == num_gt and tp == num_gt
        return num_gt, num_pred, tp, sum_iou, bool(correct)

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        arr = np.array([r[:4] for r in results], dtype=np.float64).reshape(-1, 4)
        num_gt, num_pred, tp, sum_iou = arr.sum(0)
        precision = ratio_or_nan(tp, num_pred)
        recall = ratio_or_nan(tp, num_gt)
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision + recall > 0
            else (0.0 if num_gt + num_pred else float('nan'))
        )
        acc = ratio_or_nan(sum(r[4] for r in results), len(results))
        return {
            f'Acc@{self.iou_thr:g}': acc * 100,
            'mIoU': ratio_or_nan(sum_iou, num_gt) * 100,
            'precision': precision * 100,
            'recall': recall * 100,
            'F1': f1 * 100,
        }
