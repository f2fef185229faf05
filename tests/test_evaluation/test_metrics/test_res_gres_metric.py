# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import numpy as np
import pytest
import torch

from mmrefvlm.evaluation import GRESMetric, RESMetric


def _random_masks(rng, n, shape=(12, 10), p=0.3):
    return torch.from_numpy(rng.random((n, *shape)) < p)


def test_res_equals_mmdet_refseg_metric(make_sample, evaluate):
    pytest.importorskip('mmdet.evaluation')
    from mmdet.evaluation.metrics import RefSegMetric
    from mmdet.structures.mask import BitmapMasks

    rng = np.random.default_rng(0)
    ours, theirs = [], []
    for i in range(6):
        gt = _random_masks(rng, 1 + i % 2)
        pred = _random_masks(rng, 1 + (i + 1) % 3, p=0.4)
        ours.append(
            make_sample(
                'res',
                shape=(12, 10),
                idx=i,
                gt=[dict(unit='mask', mask=m) for m in gt],
                pred=[dict(unit='mask', mask=m) for m in pred],
            )
        )
        # mmdet scores one predicted mask against one GT mask per sample: give it the unions.
        theirs.append(
            dict(
                pred_instances=dict(masks=pred.any(0, keepdim=True)),
                gt_masks=BitmapMasks(gt.any(0, keepdim=True).numpy(), 12, 10),
            )
        )
    ref = RefSegMetric()
    ref.process({}, theirs)
    expected = ref.compute_metrics(ref.results)
    res = evaluate(RESMetric(), ours, batch_size=4)
    assert res['res/cIoU'] == pytest.approx(float(expected['cIoU']), rel=1e-6)
    assert res['res/mIoU'] == pytest.approx(float(expected['mIoU']), rel=1e-6)


def test_res_missing_prediction_counts(make_sample, evaluate, rect):
    gt = rect((8, 8), (0, 0, 4, 4))  # 16 px
    samples = [
        make_sample(
            'res',
            gt=[dict(unit='mask', mask=gt)],
            pred=[dict(unit='mask', mask=rect((8, 8), (0, 0, 4, 2)))],
        ),
        make_sample('res', idx=1, gt=[dict(unit='mask', mask=gt)], pred=None),
    ]
    res = evaluate(RESMetric(), samples)
    # Sample 1: I = 8, U = 16; sample 2 (no output, the authors skipped it): I = 0, U = 16.
    assert res['res/cIoU'] == pytest.approx(8 / 32 * 100)
    assert res['res/mIoU'] == pytest.approx(0.25 * 100)


def _gres_samples(make_sample, rect):
    s = (10, 10)
    gt_a = rect(s, (0, 0, 4, 4))  # 16 px
    return [
        # non-empty target, prediction 8 of 16 px: I = 8, U = 16.
        make_sample(
            'gres',
            shape=s,
            gt=[dict(unit='mask', mask=gt_a)],
            pred=[dict(unit='mask', mask=rect(s, (0, 0, 4, 2)))],
        ),
        # empty target, correctly rejected (zero-<REF> group -> no mask).
        make_sample('gres', shape=s, idx=1, gt=[], pred=[]),
        # empty target, wrongly predicted a 6 px mask: I = 0, U = 6.
        make_sample(
            'gres', shape=s, idx=2, gt=[], pred=[dict(unit='mask', mask=rect(s, (0, 0, 3, 2)))]
        ),
        # non-empty target (two referents, union 16 + 4 = 20 px) wrongly rejected: I = 0, U = 20.
        make_sample(
            'gres',
            shape=s,
            idx=3,
            gt=[dict(unit='mask', mask=gt_a), dict(unit='mask', mask=rect(s, (8, 8, 10, 10)))],
            pred=[],
        ),
        # no prediction field at all on an empty target: counts as rejected (empty).
        make_sample('gres', shape=s, idx=4, gt=[], pred=None),
    ]


def test_gres_hand_computed(make_sample, evaluate, rect):
    res = evaluate(GRESMetric(), _gres_samples(make_sample, rect), batch_size=3)
    # gIoU: per-sample IoU 0.5, 1 (correct empty), 0 (wrong empty), 0, 1 -> 2.5 / 5.
    assert res['gres/gIoU'] == pytest.approx(50.0)
    # cIoU: correct empties skipped; I = 8, U = 16 + 6 + 20 = 42.
    assert res['gres/cIoU'] == pytest.approx(8 / 42 * 100)
    # N-acc: 2 of 3 empty targets predicted empty; T-acc: 1 of 2 non-empty predicted non-empty.
    assert res['gres/N-acc'] == pytest.approx(200 / 3)
    assert res['gres/T-acc'] == pytest.approx(50.0)


def test_gres_pixel_rule(make_sample, evaluate, rect):
    samples = _gres_samples(make_sample, rect)
    res = evaluate(GRESMetric(empty_rule='pixels', empty_pixels=7), samples)
    # With < 7 px as empty: sample 3's 6 px prediction is now a correct rejection, sample 1's
    # 8 px prediction still counts. gIoU = (0.5 + 1 + 1 + 0 + 1) / 5; cIoU = 8 / (16 + 20).
    assert res['gres/gIoU'] == pytest.approx(70.0)
    assert res['gres/cIoU'] == pytest.approx(8 / 36 * 100)
    assert res['gres/N-acc'] == pytest.approx(100.0)
    # A 6 px prediction on a non-empty target is zeroed (classified empty) -> IoU 0, T-acc miss.
    s = (10, 10)
    one = make_sample(
        'gres',
        shape=s,
        gt=[dict(unit='mask', mask=rect(s, (0, 0, 3, 2)))],
        pred=[dict(unit='mask', mask=rect(s, (0, 0, 3, 2)))],
    )
    res = evaluate(GRESMetric(empty_rule='pixels', empty_pixels=7), [one])
    assert res['gres/gIoU'] == 0.0 and res['gres/T-acc'] == 0.0
    with pytest.raises(ValueError, match='empty_rule'):
        GRESMetric(empty_rule='area')


def test_plain_dicts_with_numpy_arrays():
    # The Evaluator hands metrics dicts; numpy arrays work as well as tensors.
    gt = np.zeros((1, 4, 4), bool)
    gt[0, :2] = True  # 8 px
    pred = np.zeros((1, 4, 4), bool)
    pred[0, :1] = True  # 4 px inside the GT
    sample = dict(
        task='res',
        ori_shape=(4, 4),
        gt_instances=dict(masks=gt, units=['mask'], labels=['x']),
        pred_instances=dict(masks=pred, units=['mask'], labels=['x']),
    )
    metric = RESMetric()
    metric.process({}, [sample])
    assert metric.compute_metrics(metric.results) == {'cIoU': 50.0, 'mIoU': 50.0}
    with pytest.raises(TypeError, match='dict or BaseDataElement'):
        metric.process({}, ['not a sample'])
