# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``PromptIoUMetric``: how well the SAM fine-tuned alone segments from box + point prompts."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from mmengine.evaluator import BaseMetric

from mmrefvlm.registry import METRICS


@METRICS.register_module()
class PromptIoUMetric(BaseMetric):
    """mIoU and cIoU (percent) of ``pred_mask`` against ``gt_mask`` (both over SAM's square
    frame), the validation metric of :class:`SamPromptSegmentor`; also the box-only baseline
    (the prompt box filled), which the fine-tuned SAM must beat."""

    default_prefix: ClassVar[str] = 'sam'

    def process(self, data_batch, data_samples) -> None:  # noqa: D102
        for s in data_samples:
            pred = np.asarray(s['pred_mask'].cpu(), dtype=bool)
            gt = np.asarray(s['gt_mask'].cpu(), dtype=bool)
            size, frame = gt.shape[-1], s['sam_image'].shape[-1]
            x1, y1, x2, y2 = (float(v) * size / frame for v in s['prompt_box'])
            yy, xx = np.mgrid[0:size, 0:size] + 0.5
            boxed = (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)
            self.results.append(
                [(pred & gt).sum(), (pred | gt).sum(), (boxed & gt).sum(), (boxed | gt).sum()]
            )

    def compute_metrics(self, results: list) -> dict[str, float]:  # noqa: D102
        arr = np.asarray(results, dtype=np.float64).reshape(-1, 4)
        out = {}
        for name, (i, u) in (('', (0, 1)), ('box_only_', (2, 3))):
            iou = np.divide(arr[:, i], arr[:, u], out=np.zeros(len(arr)), where=arr[:, u] > 0)
            out[f'{name}mIoU'] = float(iou.mean()) * 100 if len(arr) else float('nan')
            out[f'{name}cIoU'] = float(arr[:, i].sum() / max(arr[:, u].sum(), 1)) * 100
        return out
