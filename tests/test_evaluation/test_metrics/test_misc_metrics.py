# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import math

import numpy as np
import pytest
import torch

from mmrefvlm.evaluation import DepthMetric, InteractiveGroundingMetric, TRPParseMetric
from mmrefvlm.evaluation.metrics.trp_metric import is_error_warning


def test_interactive_per_prompt_type(make_sample, evaluate, rect):
    s = (10, 10)
    samples = [
        # point prompt, box unit: IoU 8/16 = 0.5 (I 8, U 16).
        make_sample(
            'ig_box',
            shape=s,
            prompt_types=['point'],
            gt=[dict(unit='box', bbox=[0.0, 0.0, 4.0, 4.0])],
            pred=[dict(unit='box', bbox=[0.0, 0.0, 4.0, 2.0])],
        ),
        # box prompt, box unit, no prediction: IoU 0 (I 0, U 4).
        make_sample(
            'ig_box',
            shape=s,
            idx=1,
            prompt_types=['box'],
            gt=[dict(unit='box', bbox=[0.0, 0.0, 2.0, 2.0])],
            pred=None,
        ),
        # point prompt, mask unit: I 4, U 16 -> 0.25.
        make_sample(
            'ig_mask',
            shape=s,
            idx=2,
            prompt_types=['point'],
            gt=[dict(unit='mask', mask=rect(s, (0, 0, 4, 4)))],
            pred=[dict(unit='mask', mask=rect(s, (0, 0, 2, 2)))],
        ),
        # scribble prompt, mask unit: perfect.
        make_sample(
            'ig_mask',
            shape=s,
            idx=3,
            prompt_types=['scribble'],
            gt=[dict(unit='mask', mask=rect(s, (5, 5, 7, 7)))],
            pred=[dict(unit='mask', mask=rect(s, (5, 5, 7, 7)))],
        ),
    ]
    res = evaluate(InteractiveGroundingMetric(), samples)
    assert res['ig/box_point_mIoU'] == pytest.approx(50.0)
    assert res['ig/box_box_mIoU'] == 0.0
    assert res['ig/box_mIoU'] == pytest.approx(25.0)
    assert res['ig/box_cIoU'] == pytest.approx(8 / 20 * 100)
    assert res['ig/mask_point_cIoU'] == pytest.approx(25.0)
    assert res['ig/mask_scribble_mIoU'] == pytest.approx(100.0)
    assert res['ig/mask_cIoU'] == pytest.approx((4 + 4) / (16 + 4) * 100)
    assert res['ig/mask_mIoU'] == pytest.approx((0.25 + 1) / 2 * 100)
    assert 'ig/mask_box_mIoU' not in res  # only prompt types that occur
    with pytest.raises(ValueError, match='units'):
        InteractiveGroundingMetric(units=('keypoint',))


def test_depth_hand_computed(make_sample, evaluate):
    gt1 = torch.tensor([[1.0, 2.0], [4.0, 0.0]])
    pred1 = torch.tensor([[1.1, 2.0], [2.0, 7.0]])
    gt2 = torch.tensor([[2.0, 2.0]])
    samples = [
        make_sample('depth', shape=(2, 2), gt=None, gt_depth=gt1, pred_depth=pred1),
        # The same prediction as the depth decoder writes it (a 'depth' unit entry).
        make_sample(
            'depth',
            shape=(2, 2),
            gt=None,
            idx=3,
            gt_depth=gt1,
            pred=[dict(unit='depth', depth=pred1)],
        ),
        # No prediction: every pixel is min_depth = 1 -> |1-2|/2 = 0.5, RMSE 1, delta 0.
        make_sample('depth', shape=(1, 2), gt=None, idx=1, gt_depth=gt2),
        # No valid GT pixel: no defined error, reported in a warning, not averaged.
        make_sample(
            'depth',
            shape=(1, 1),
            gt=None,
            idx=2,
            gt_depth=torch.zeros(1, 1),
            pred_depth=torch.ones(1, 1),
        ),
    ]
    res = evaluate(DepthMetric(min_depth=1.0), samples)
    assert res['depth/AbsRel'] == pytest.approx((0.2 + 0.2 + 0.5) / 3)
    assert res['depth/RMSE'] == pytest.approx((2 * math.sqrt(4.01 / 3) + 1.0) / 3)
    assert res['depth/delta1'] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3 * 100)
    with pytest.raises(ValueError, match='min_depth'):
        DepthMetric(min_depth=0.0)


def _answer(units, n):
    return [{'phrase': 'x', 'groups': [{'units': units, 'n': n}]}]


def test_trp_parse_success_and_count_match(make_sample, evaluate):
    gt = _answer(['box'], 2)
    samples = [
        # clean parse, same counts.
        make_sample(
            'rec', gt=None, idx=0, pred_text='t', pred_answer=gt, gt_answer=gt, warnings=[]
        ),
        # recovered-without-loss warning, wrong count: parse ok, count mismatch.
        make_sample(
            'rec',
            gt=None,
            idx=1,
            pred_text='t',
            pred_answer=_answer(['box'], 1),
            gt_answer=gt,
            warnings=['index_mismatch: [3] before <REF> 1'],
        ),
        # error-level parser code.
        make_sample(
            'rec',
            gt=None,
            idx=2,
            pred_text='t',
            pred_answer=gt,
            gt_answer=gt,
            warnings=['truncated: the input ends inside a group list'],
        ),
        # no prediction at all.
        make_sample('rec', gt=None, idx=3, gt_answer=gt),
        # generation cut by max_new_tokens (the model's own warning) -> error.
        make_sample(
            'gres',
            gt=None,
            idx=4,
            pred_text='t',
            pred_answer=gt,
            gt_answer=gt,
            warnings=['generation stopped at max_new_tokens=64'],
        ),
        # GT from gt_instances.units when gt_answer is absent: 2 box + 2 mask (multi-unit group).
        make_sample(
            'gres',
            idx=5,
            gt=[dict(unit='box'), dict(unit='box'), dict(unit='mask'), dict(unit='mask')],
            pred_text='t',
            pred_answer=_answer(['box', 'mask'], 2),
        ),
    ]
    res = evaluate(TRPParseMetric(), samples, batch_size=4)
    assert res['trp/parse_success'] == pytest.approx(3 / 6 * 100)
    assert res['trp/count_match'] == pytest.approx(2 / 6 * 100)
    # Only some tasks.
    res = evaluate(TRPParseMetric(tasks=('gres',), prefix='trp_gres'), samples)
    assert res == {'trp_gres/parse_success': 50.0, 'trp_gres/count_match': 50.0}


def test_is_error_warning_forms():
    from mmrefvlm.trp import ParseWarning

    assert is_error_warning(ParseWarning('unclosed_group', 'x', 0))
    assert not is_error_warning(ParseWarning('cot_mismatch', 'x', 0))
    assert is_error_warning({'level': 'error', 'msg': 'x'})
    assert not is_error_warning({'code': 'stray_tag'})
    assert is_error_warning('ERROR: bad') and not is_error_warning('stray_tag: </Phrase>')


def test_trp_metric_on_real_parser_output(make_sample, evaluate):
    parse_answer = pytest.importorskip('mmrefvlm.trp').parse_answer
    good = parse_answer('<Phrase>two dogs</Phrase>(<Unit>box</Unit>[0]<REF>[1]<REF>).')
    cut = parse_answer('<Phrase>two dogs</Phrase>(<Unit>box</Unit>[0]<REF>')
    gt = _answer(['box'], 2)
    samples = [
        make_sample(
            'rec',
            gt=None,
            idx=i,
            pred_text='t',
            pred_answer=r.answer,
            gt_answer=gt,
            warnings=[f'{w.code}: {w.message}' for w in r.warnings],
        )
        for i, r in enumerate((good, cut))
    ]
    res = evaluate(TRPParseMetric(), samples)
    assert res == {'trp/parse_success': 50.0, 'trp/count_match': 50.0}
    assert np.isnan(evaluate(TRPParseMetric(tasks=('vqa',)), samples)['trp/parse_success'])
