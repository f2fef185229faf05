# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""AnyRef's metrics beyond the core ones: AVS mIoU / F-score, and REG captions without the
method's special tokens."""

from __future__ import annotations

import re
from typing import ClassVar

import numpy as np

from mmrefvlm.evaluation.functional import strip_trp, union_mask
from mmrefvlm.evaluation.metrics import CaptionMetric
from mmrefvlm.evaluation.metrics.base import RefVLMBaseMetric, TaskSpec, image_shape, select_unit
from mmrefvlm.evaluation.metrics.caption_metric import caption_references
from mmrefvlm.registry import METRICS

_SPECIAL = re.compile(r'</?(?:obj|img_ref|img_feat|aud_ref|aud_feat)>')


@METRICS.register_module()
class AVSMetric(RefVLMBaseMetric):
    """Audio-visual segmentation, AVSBench's measures on binary masks (percent).

    Per sample the prediction is the union of the predicted masks of ``unit`` (none: empty).
    ``mIoU``: the mean per-sample IoU ("region similarity"; an empty GT with an empty
    prediction counts 1). ``F``: the mean per-sample F-score ("contour accuracy" in AVSBench's
    naming, computed on the masks) ``(1 + b2) P R / (b2 P + R)`` with ``b2 = 0.3`` (0 when
    ``P = R = 0``). AVSBench sweeps a threshold over probability maps and keeps the best F;
    predictions here are binary, so there is one threshold.

    Args:
        tasks (Sequence[str]): Defaults to ``('audio_ref_seg',)``.
        unit (str): Defaults to ``'mask'``.
        beta2 (float): Defaults to 0.3.
    """

    default_prefix: ClassVar[str] = 'avs'
    default_tasks: ClassVar[tuple[str, ...]] = ('audio_ref_seg',)

    def __init__(self, tasks: TaskSpec = None, *, unit: str = 'mask', beta2: float = 0.3, **kwargs):
        super().__init__(tasks, **kwargs)
        self.unit, self.beta2 = unit, beta2

    def process_sample(self, sample: dict) -> tuple[float, float]:  # noqa: D102
        shape = image_shape(sample)
        gt = union_mask(select_unit(sample.get('gt_instances'), self.unit).get('masks'), shape)
        pred = union_mask(select_unit(sample.get('pred_instances'), self.unit).get('masks'), shape)
        inter, union = float((gt & pred).sum()), float((gt | pred).sum())
        iou = inter / union if union else 1.0
        p = inter / pred.sum() if pred.sum() else 0.0
        r = inter / gt.sum() if gt.sum() else 0.0
        f = (1 + self.beta2) * p * r / (self.beta2 * p + r) if p + r > 0 else 0.0
        return iou, f

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        if not results:
            return {'mIoU': float('nan'), 'F': float('nan')}
        arr = np.asarray(results, dtype=np.float64)
        return {'mIoU': float(arr[:, 0].mean()) * 100, 'F': float(arr[:, 1].mean()) * 100}


@METRICS.register_module()
class AnyRefCaptionMetric(CaptionMetric):
    """:class:`CaptionMetric` on the text before ``<obj>`` (AnyRef's REG answers are
    ``"a red circle<obj>."``): the special tokens are removed from candidates and references."""

    default_prefix: ClassVar[str] = 'reg'
    default_tasks: ClassVar[tuple[str, ...]] = ('reg',)

    def process_sample(self, sample: dict) -> tuple[str, list[str]]:  # noqa: D102
        pred = _SPECIAL.sub('', strip_trp(sample.get('pred_text')))
        return pred, [_SPECIAL.sub('', r) for r in caption_references(sample)]
