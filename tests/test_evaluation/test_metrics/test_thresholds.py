# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Every documented metric threshold and rule, tested exactly at the threshold (docs/metrics.md).

The hand-computed metric tests use values on either side of each threshold (IoU 0.6 and 0.14, a
6 px mask against a 7 px rule); a ``>`` written for a ``>=`` passes them. The values here are
exactly representable (IoU 8/16, ratio 1.25, cosine 0.5), so the comparison decides.
"""

import numpy as np
import pytest
import torch

from mmrefvlm.evaluation import GCGMetric, GRESMetric, RECMetric
from mmrefvlm.evaluation.functional import depth_errors, match_one_to_one, vqa_accuracy


@pytest.mark.parametrize('method', ['hungarian', 'greedy'])
def test_match_keeps_a_pair_exactly_at_the_threshold(method):
    # docs: pairs with IoU >= iou_thr.
    assert match_one_to_one(np.array([[0.5]]), 0.5, method) == [(0, 0)]
    assert match_one_to_one(np.array([[np.nextafter(0.5, 0)]]), 0.5, method) == []
    # With two candidates for one target, only the one at the threshold is kept.
    iou = np.array([[0.5, 0.0], [np.nextafter(0.5, 0), 0.0]])
    assert match_one_to_one(iou, 0.5, method) == [(0, 0)]


def _rec(make_sample, pred_box, idx=0):
    return make_sample(
        'rec',
        shape=(8, 8),
        idx=idx,
        gt=[dict(unit='box', bbox=[0.0, 0.0, 4.0, 4.0])],
        pred=[dict(unit='box', bbox=pred_box)],
    )


def test_rec_box_at_iou_exactly_half_is_correct(make_sample, evaluate):
    # [0, 0, 4, 2] inside [0, 0, 4, 4]: IoU = 8 / 16 = 0.5 exactly (mmdet RefExpMetric: >= 0.5).
    res = evaluate(RECMetric(), [_rec(make_sample, [0.0, 0.0, 4.0, 2.0])])
    assert res['rec/Acc@0.5'] == 100.0 and res['rec/precision'] == 100.0
    assert res['rec/mIoU'] == 50.0
    # 0.5 px less height: IoU 7 / 16 < 0.5.
    res = evaluate(RECMetric(), [_rec(make_sample, [0.0, 0.0, 4.0, 1.75])])
    assert res['rec/Acc@0.5'] == 0.0 and res['rec/recall'] == 0.0


def test_rec_iou_thr_one_is_allowed_and_needs_an_exact_box(make_sample, evaluate):
    samples = [_rec(make_sample, [0.0, 0.0, 4.0, 4.0]), _rec(make_sample, [0.0, 0.0, 4.0, 3.9], 1)]
    assert evaluate(RECMetric(iou_thr=1.0), samples)['rec/Acc@1'] == 50.0


@pytest.mark.parametrize('pixels, empty', [(49, True), (50, False)])
def test_gres_pixel_rule_at_its_default_threshold(make_sample, evaluate, pixels, empty):
    # docs: empty when the predicted union has *fewer than* empty_pixels (default 50) pixels.
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask.view(-1)[:pixels] = True
    sample = make_sample(
        'gres', shape=(10, 10), gt=[], pred=[dict(unit='mask', mask=mask)]
    )  # empty target
    res = evaluate(GRESMetric(empty_rule='pixels'), [sample])
    assert res['gres/N-acc'] == (100.0 if empty else 0.0)
    assert res['gres/gIoU'] == (100.0 if empty else 0.0)


class _Vectors:
    """Text encoder with fixed unit vectors: cosine('a', 'half') = 0.5 exactly."""

    TABLE = {
        'a': [1.0, 0.0, 0.0, 0.0],
        'half': [0.5, 0.5, 0.5, 0.5],
        'other': [0.0, 1.0, 0.0, 0.0],
    }

    def encode(self, texts):
        return torch.tensor([self.TABLE[t] for t in texts])


def test_gcg_recall_needs_iou_and_similarity_strictly_above_their_thresholds(
    make_sample, evaluate, rect
):
    # docs: a GT counts when IoU > 0.5 (iou_thr) and phrase similarity > 0.5 (text_thr).
    s = (10, 10)
    gt_a, gt_b, gt_c = (0, 0, 4, 4), (5, 0, 9, 4), (0, 5, 4, 9)  # 16 px each
    gts = [dict(unit='mask', label='a', mask=rect(s, box)) for box in (gt_a, gt_b, gt_c)]
    preds = [
        dict(unit='mask', label='a', mask=rect(s, (0, 0, 4, 2))),  # IoU 0.5 exactly, text 1
        dict(unit='mask', label='half', mask=rect(s, gt_b)),  # IoU 1, text 0.5 exactly
        dict(unit='mask', label='a', mask=rect(s, (0, 5, 4, 8))),  # IoU 12 / 16, text 1: a hit
    ]
    sample = make_sample('gcg_mask', shape=s, gt=gts, pred=preds, gt_captions=['x'])
    res = evaluate(GCGMetric(text_encoder=_Vectors()), [sample])
    assert res['gcg/recall'] == pytest.approx(100 / 3)
    # mIoU pairs every positive IoU: (0.5 + 1 + 0.75) / 3.
    assert res['gcg/mIoU'] == pytest.approx(75.0)


def test_depth_delta1_is_strictly_below_1_25():
    # docs: percentage of pixels with max(p/g, g/p) < 1.25.
    err = depth_errors(np.array([1.25, 1.0, 2.5, 1.5]), np.array([1.0, 1.0, 2.0, 1.25]))
    # ratios 1.25, 1, 1.25, 1.2: only the two below 1.25 count.
    assert err['delta1'] == 0.5


def test_depth_gt_equal_to_max_depth_is_valid():
    # docs: valid pixels have gt <= max_depth; the prediction is clamped to [min_depth, max_depth].
    err = depth_errors(np.array([20.0, 1.0, 1.0]), np.array([10.0, 10.5, 0.0]), max_depth=10.0)
    assert err['num_valid'] == 1
    assert err['abs_rel'] == 0.0 and err['delta1'] == 1.0  # 20 clamped to 10 = GT


def test_vqa_ten_answers_switches_to_consensus_exactly_at_ten():
    # 10 human answers: min(#matches / 3, 1) over leave-one-out subsets; any other count: exact.
    nine = ['dog'] + ['cat'] * 8
    assert vqa_accuracy('dog', nine) == 1.0
    assert vqa_accuracy('dog', nine + ['cat']) == pytest.approx((9 * 1 / 3 + 0) / 10)
    assert vqa_accuracy('dog', nine + ['cat', 'cat']) == 1.0
