# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""GSVAGRESMetric against hand-computed values, against the core GRESMetric where the two
conventions agree (one expression per sample, paper semantics), and where they differ."""

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData

from mmrefvlm.evaluation import GRESMetric
from mmrefvlm.structures import RefVLMDataSample
from projects.gsva.gsva_seg import GSVAGRESMetric

S = (10, 10)


def _rect(y0, x0, y1, x1):
    m = torch.zeros(S, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def _sample(slots, idx=0, task='gres'):
    """``slots``: per expression ``(gt mask or None, rejected, predicted mask or None)``."""
    answer, gt_masks = [], []
    for k, (gt, _, _) in enumerate(slots):
        answer.append(dict(phrase=f'e{k}', groups=[dict(units=['mask'], n=int(gt is not None))]))
        if gt is not None:
            gt_masks.append(gt)
    s = RefVLMDataSample(metainfo=dict(task=task, ori_shape=S, record_id=f'r{idx}'))
    s.gt_answer = answer
    n = len(gt_masks)
    s.gt_instances = InstanceData(
        labels=['e'] * n,
        units=['mask'] * n,
        masks=torch.stack(gt_masks) if n else torch.zeros(0, *S, dtype=torch.bool),
    )
    masks = [p if p is not None else torch.zeros(S, dtype=torch.bool) for _, _, p in slots]
    rejected = [r for _, r, _ in slots]
    s.pred_slots = InstanceData(
        masks=torch.stack(masks),
        rejected=torch.tensor(rejected),
        decoded=torch.tensor([True] * len(slots)),
    )
    # what the core metrics see: the accepted slots' masks only (paper semantics)
    keep = [i for i, r in enumerate(rejected) if not r]
    s.pred_instances = InstanceData(
        labels=['e'] * len(keep),
        units=['mask'] * len(keep),
        masks=torch.stack([masks[i] for i in keep])
        if keep
        else torch.zeros(0, *S, dtype=torch.bool),
    )
    return s


def _run(metric, samples):
    ev = Evaluator([metric])
    ev.process(samples)
    return ev.evaluate(len(samples))


def test_hand_computed_paper_and_code_modes():
    gt = _rect(0, 0, 4, 4)  # 16 px
    sample = _sample(
        [
            (gt, False, _rect(0, 0, 4, 2)),  # non-empty, accepted: I 8, U 16
            (None, True, _rect(5, 5, 9, 9)),  # empty, rejected: IoU 1, nothing added
            (None, False, _rect(5, 5, 7, 8)),  # empty, accepted (6 px): IoU 0, U += 6
            (gt, True, _rect(0, 0, 4, 4)),  # non-empty, rejected; its decoded mask is perfect
        ]
    )
    paper = _run(GSVAGRESMetric(mode='paper'), [sample])
    assert paper['gsva/gIoU'] == pytest.approx((0.5 + 1 + 0 + 0) / 4 * 100)
    assert paper['gsva/cIoU'] == pytest.approx(8 / (16 + 6 + 16) * 100)
    assert paper['gsva/N-acc'] == pytest.approx(50.0)
    assert paper['gsva/T-acc'] == pytest.approx(50.0)
    code = _run(GSVAGRESMetric(mode='code', prefix='c'), [sample])
    # the rejected non-empty slot scores its decoded mask: IoU 1, I 16, U 16
    assert code['c/gIoU'] == pytest.approx((0.5 + 1 + 0 + 1) / 4 * 100)
    assert code['c/cIoU'] == pytest.approx((8 + 16) / (16 + 6 + 16) * 100)
    assert code['c/N-acc'] == paper['gsva/N-acc'] and code['c/T-acc'] == paper['gsva/T-acc']


def test_missing_slots_are_rejected_and_extra_slots_ignored():
    gt = _rect(0, 0, 4, 4)
    short = _sample([(gt, False, gt)])
    short.gt_answer = short.gt_answer + [dict(phrase='e1', groups=[dict(units=['mask'], n=0)])]
    extra = _sample([(gt, False, gt), (None, False, _rect(5, 5, 9, 9))], idx=1)
    extra.gt_answer = extra.gt_answer[:1]
    res = _run(GSVAGRESMetric(), [short, extra])
    # short: slot 1 (empty target) missing -> rejected -> correct; extra: slot 1 ignored
    assert res['gsva/gIoU'] == pytest.approx(100.0) and res['gsva/N-acc'] == pytest.approx(100.0)
    assert res['gsva/cIoU'] == pytest.approx(100.0)


def test_equals_core_gres_metric_on_single_expression_samples():
    rng = np.random.default_rng(0)
    samples = []
    for i in range(24):
        gt = torch.from_numpy(rng.random(S) < 0.3) if i % 3 else None
        rejected = bool(rng.random() < 0.4)
        pred = torch.from_numpy(rng.random(S) < 0.3) if i % 5 else torch.zeros(S, dtype=torch.bool)
        samples.append(_sample([(gt, rejected, pred)], idx=i))
    ours = _run(GSVAGRESMetric(mode='paper'), samples)
    core = _run(GRESMetric(), samples)
    for key in ('gIoU', 'cIoU', 'N-acc', 'T-acc'):
        assert ours[f'gsva/{key}'] == pytest.approx(core[f'gres/{key}'], rel=1e-9), key


def test_multi_target_slots_are_an_error_and_mode_is_checked():
    bad = _sample([(_rect(0, 0, 2, 2), False, None)])
    bad.gt_answer[0]['groups'][0]['n'] = 2
    with pytest.raises(ValueError, match='union'):
        GSVAGRESMetric().process_sample(bad.to_dict())
    with pytest.raises(ValueError, match='mode'):
        GSVAGRESMetric(mode='both')
