# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Trivial baselines for the demo report: the same metrics on predictions that ignore the input.

For every ground-truth (``<REF>``, unit) entry, and once for every phrase group the answer declares
with zero ``<REF>`` (a "no such object" answer, which the baseline does not know about), the
baseline predicts the whole image as the box and the mask, the image centre for every keypoint and
a constant depth (``mean_depth``). Its text is empty, so text metrics are not meaningful for it and
are left out of the report.
"""

from __future__ import annotations

import torch
from mmengine.structures import InstanceData

from mmrefvlm.structures import RefVLMDataSample
from mmrefvlm.trp import iter_groups, phrase_text


def trivial_prediction(sample: RefVLMDataSample, mean_depth: float = 3.0) -> RefVLMDataSample:
    """A copy of ``sample`` with baseline ``pred_*`` fields (see module docstring)."""
    out = sample.new()  # same metainfo and data, its own field set (copy.copy would share it)
    h, w = sample.metainfo['ori_shape']
    gt = sample.get('gt_instances', InstanceData(labels=[], units=[]))
    labels, units = list(gt.labels), list(gt.units)
    answer = sample.get('gt_answer')
    if answer is not None and not isinstance(answer, str):
        for _, _, phrase_group, group in iter_groups(answer):
            if int(group['n']) == 0:
                labels += [phrase_text(phrase_group)] * len(group['units'])
                units += list(group['units'])
    n = len(units)
    pred = InstanceData(labels=labels, units=units, group_ids=torch.zeros(n, dtype=torch.long))
    pred.scores = torch.ones(n)
    pred.bboxes = torch.tensor([[0.0, 0.0, float(w), float(h)]]).repeat(n, 1)
    pred.masks = torch.ones(n, h, w, dtype=torch.bool)
    if 'keypoints' in gt:
        k = gt.keypoints.shape[1]
        centre = torch.tensor([w / 2, h / 2, 1.0])
        pred.keypoints = centre.repeat(n, k, 1)
    pred.depth = torch.full((n, h, w), float(mean_depth))
    out.pred_instances = pred
    out.pred_text = ''
    out.pred_answer = []
    out.warnings = []
    return out
