# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``GSVAGRESMetric``: gIoU, cIoU, N-acc and T-acc per expression slot, as GSVA defines them."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mmrefvlm.evaluation.functional import pair_inter_union, to_numpy
from mmrefvlm.evaluation.metrics.base import (
    RefVLMBaseMetric,
    TaskSpec,
    image_shape,
    ratio_or_nan,
    select_unit,
)
from mmrefvlm.registry import METRICS

MODES = ('paper', 'code')


def gt_slot_masks(sample: dict, unit: str) -> list[np.ndarray]:
    """One (H, W) bool ground-truth mask per expression slot of ``gt_answer``: a group with one
    target takes the next ``gt_instances`` mask of ``unit``, an empty group an all-zero mask."""
    shape = image_shape(sample)
    gt = select_unit(sample.get('gt_instances'), unit)
    masks = list(gt.get('masks', np.zeros((0, *shape), dtype=bool)))
    out = []
    for seg in sample.get('gt_answer') or []:
        if not isinstance(seg, dict):
            continue
        for group in seg.get('groups') or []:
            if int(group['n']) > 1:
                raise ValueError(
                    f'sample {sample.get("record_id")}: a slot with {group["n"]} targets; '
                    'GSVA scores one (union) mask per expression (UnionExpressionTargets)'
                )
            out.append(masks.pop(0).astype(bool) if int(group['n']) else np.zeros(shape, bool))
    return out


@METRICS.register_module()
class GSVAGRESMetric(RefVLMBaseMetric):
    """GRES metrics of GSVA (``solver.py::eval_gres``): one result per expression slot.

    Slot ``k`` of the prediction (``pred_slots`` of :class:`GSVARefVLM`: ``masks``,
    ``rejected``) is scored against expression ``k`` of the ground truth (its union mask; empty
    when it refers to nothing). A slot the prediction lacks counts as rejected with an empty
    mask; extra predicted slots are ignored. Per slot:

    * empty target: rejected -> N-acc hit, IoU 1, nothing added to cI / cU; accepted -> IoU 0,
      its mask's area added to cU;
    * non-empty target: rejected -> T-acc miss; accepted -> T-acc hit. Its IoU and its cI / cU
      come from an all-zero mask when rejected (``mode='paper'``: the paper's "[REJ] -> empty
      mask"), or from the decoded mask whatever the decision (``mode='code'``: the public code's
      teacher-forced ``reeval``, which decodes every slot).

    ``gIoU`` = mean slot IoU, ``cIoU`` = sum(cI) / sum(cU), ``N-acc`` = TP / (TP + FN) over empty
    targets, ``T-acc`` = TN / (TN + FP) over non-empty targets (GSVA's names: "no target" is the
    positive class). In percent.

    Args:
        tasks (Sequence[str]): Tasks evaluated. Defaults to ``('gres',)``.
        mode (str): ``'paper'`` or ``'code'``. Defaults to ``'paper'``.
        unit (str): Unit of the ground-truth masks. Defaults to ``'mask'``.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'gsva'
    default_tasks: ClassVar[tuple[str, ...]] = ('gres',)

    def __init__(
        self, tasks: TaskSpec = None, *, mode: str = 'paper', unit: str = 'mask', **kwargs
    ) -> None:
        super().__init__(tasks, **kwargs)
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        self.mode, self.unit = mode, unit

    def process_sample(self, sample: dict) -> list[tuple[bool, bool, float, float]]:  # noqa: D102
        shape = image_shape(sample)
        slots: Any = sample.get('pred_slots') or {}
        if hasattr(slots, 'to_dict'):
            slots = slots.to_dict()
        pred_masks = to_numpy(slots.get('masks', np.zeros((0, *shape))), bool)
        rejected = to_numpy(slots.get('rejected', np.zeros(0)), bool)
        out = []
        for k, gt in enumerate(gt_slot_masks(sample, self.unit)):
            rej = bool(rejected[k]) if k < len(rejected) else True
            pred = pred_masks[k] if k < len(pred_masks) else np.zeros(shape, bool)
            gt_empty = not gt.any()
            if gt_empty and rej:
                inter, union = 0.0, 0.0
            elif rej and self.mode == 'paper':
                inter, union = pair_inter_union(np.zeros(shape, bool), gt)
            else:
                inter, union = pair_inter_union(pred, gt)
            out.append((gt_empty, rej, inter, union))
        return out

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        rows = [slot for sample in results for slot in sample]
        if not rows:
            return dict.fromkeys(('gIoU', 'cIoU', 'N-acc', 'T-acc'), float('nan'))
        gt_empty = np.array([r[0] for r in rows])
        rejected = np.array([r[1] for r in rows])
        inter = np.array([r[2] for r in rows], dtype=np.float64)
        union = np.array([r[3] for r in rows], dtype=np.float64)
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        iou[gt_empty & rejected] = 1.0
        return {
            'gIoU': float(iou.mean()) * 100,
            'cIoU': ratio_or_nan(inter.sum(), union.sum()) * 100,
            'N-acc': ratio_or_nan((gt_empty & rejected).sum(), gt_empty.sum()) * 100,
            'T-acc': ratio_or_nan((~gt_empty & ~rejected).sum(), (~gt_empty).sum()) * 100,
        }
