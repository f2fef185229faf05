# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Interactive grounding: mIoU / cIoU per visual-prompt type, for box and mask units."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from mmrefvlm.registry import METRICS

from ..functional import box_inter_union, pair_inter_union, union_mask
from .base import RefVLMBaseMetric, TaskSpec, image_shape, ratio_or_nan, select_unit

SUPPORTED_UNITS = ('box', 'mask')


def prompt_type_of(sample: dict) -> str:
    """The sample's prompt type: the common type of its ``prompt_types``, ``'mixed'`` when they
    differ, ``'none'`` without prompts."""
    types = set(sample.get('prompt_types') or ())
    if not types:
        return 'none'
    return types.pop() if len(types) == 1 else 'mixed'


def _box_terms(pred: dict, gt: dict) -> tuple[float, float, float]:
    """Sum of I, sum of U and mean IoU of GT box i against predicted box i (REF order); a GT
    without a prediction adds I = 0 and U = its area; extra predictions are ignored."""
    g = np.asarray(gt['bboxes'], dtype=np.float64).reshape(-1, 4)
    p = np.asarray(pred.get('bboxes', np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)[: len(g)]
    inter, union = np.zeros(len(g)), (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    if len(p):
        i, u = box_inter_union(p, g[: len(p)])
        inter[: len(p)], union[: len(p)] = np.diag(i), np.diag(u)
    ious = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return float(inter.sum()), float(union.sum()), float(ious.mean())


@METRICS.register_module()
class InteractiveGroundingMetric(RefVLMBaseMetric):
    """Grounding from a visual prompt (point / box / scribble / mask, from ``prompt_types``).

    Per sample and unit with GT: boxes are compared in ``<REF>`` order (IoU of GT box i with
    predicted box i; a missing prediction is IoU 0), masks as the union of the predicted masks
    against the union of the GT masks. Prompt types are whatever the data says (no fixed list).

    Keys (percent), for each unit u and prompt type t seen in the split:
    ``{u}_{t}_mIoU`` (mean per-sample IoU), ``{u}_{t}_cIoU`` (sum I / sum U), and over all prompt
    types ``{u}_mIoU``, ``{u}_cIoU``.

    Args:
        tasks (Sequence[str]): Defaults to ``('ig_box', 'ig_mask')``.
        units (Sequence[str]): Units evaluated, among ``('box', 'mask')``. Defaults to both.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'ig'
    default_tasks: ClassVar[tuple[str, ...]] = ('ig_box', 'ig_mask')

    def __init__(
        self, tasks: TaskSpec = None, *, units: Sequence[str] = SUPPORTED_UNITS, **kwargs
    ) -> None:
        super().__init__(tasks, **kwargs)
        bad = [u for u in units if u not in SUPPORTED_UNITS]
        if bad or not units:
            raise ValueError(f'units must be a non-empty subset of {SUPPORTED_UNITS}, got {units}')
        self.units = tuple(units)

    def process_sample(self, sample: dict) -> dict:  # noqa: D102
        out: dict[str, Any] = dict(prompt_type=prompt_type_of(sample), terms={})
        for unit in self.units:
            gt = select_unit(sample.get('gt_instances'), unit)
            if gt['num'] == 0:
                continue
            pred = self.predictions(sample, unit, ('bboxes',) if unit == 'box' else ('masks',))
            if unit == 'box':
                out['terms'][unit] = _box_terms(pred, gt)
            else:
                shape = image_shape(sample)
                inter, union = pair_inter_union(
                    union_mask(pred.get('masks'), shape), union_mask(gt['masks'], shape)
                )
                out['terms'][unit] = (inter, union, inter / union if union else 0.0)
        return out

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        metrics: dict[str, float] = {}
        for unit in self.units:
            rows = [(r['prompt_type'], *r['terms'][unit]) for r in results if unit in r['terms']]
            groups = {'': rows}
            for ptype in sorted({row[0] for row in rows}):
                groups[f'_{ptype}'] = [row for row in rows if row[0] == ptype]
            for suffix, group in groups.items():
                inter = sum(row[1] for row in group)
                union = sum(row[2] for row in group)
                metrics[f'{unit}{suffix}_mIoU'] = (
                    ratio_or_nan(sum(row[3] for row in group), len(group)) * 100
                )
                metrics[f'{unit}{suffix}_cIoU'] = ratio_or_nan(inter, union) * 100
        return metrics
