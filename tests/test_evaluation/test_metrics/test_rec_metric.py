# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import numpy as np
import pytest
import torch

from mmrefvlm.evaluation import RECMetric
from mmrefvlm.evaluation.metrics.base import OTHER_TASK
from mmrefvlm.registry import METRICS


def test_acc_matches_mmdet_bbox_overlaps(make_sample, evaluate):
    bbox_overlaps = pytest.importorskip('mmdet.structures.bbox').bbox_overlaps
    rng = np.random.default_rng(0)
    samples, ious = [], []
    for i in range(9):
        gt = torch.tensor(rng.uniform(0, 20, 2).tolist() * 2) + torch.tensor([0, 0, 10.0, 10.0])
        pred = gt + torch.tensor(rng.normal(0, 3, 4), dtype=torch.float32)
        pred[2:] = torch.maximum(pred[2:], pred[:2] + 1)
        ious.append(float(bbox_overlaps(pred[None], gt[None])[0, 0]))
        samples.append(
            make_sample(
                'rec',
                shape=(40, 40),
                idx=i,
                gt=[dict(unit='box', bbox=gt)],
                pred=[dict(unit='box', bbox=pred)],
            )
        )
    ious = np.array(ious)
    assert 0 < (ious >= 0.5).sum() < len(ious)  # the case is not trivial
    res = evaluate(RECMetric(), samples, batch_size=4)
    assert res['rec/Acc@0.5'] == pytest.approx((ious >= 0.5).mean() * 100)
    assert res['rec/mIoU'] == pytest.approx(ious.mean() * 100, rel=1e-5)


def test_missing_prediction_is_a_miss_and_other_tasks_ignored(make_sample, evaluate):
    box = [0.0, 0.0, 4.0, 4.0]
    samples = [
        make_sample('rec', gt=[dict(unit='box', bbox=box)], pred=[dict(unit='box', bbox=box)]),
        make_sample('rec', gt=[dict(unit='box', bbox=box)], pred=None, idx=1),  # no output
        make_sample('res', gt=[dict(unit='box', bbox=box)], pred=None, idx=2),  # other task
    ]
    res = evaluate(RECMetric(), samples)
    assert res['rec/Acc@0.5'] == 50.0 and res['rec/mIoU'] == 50.0
    assert res['rec/recall'] == 50.0 and res['rec/precision'] == 100.0


def test_multi_box_f1_hand_computed(make_sample, evaluate):
    a, b, c = [0.0, 0.0, 4.0, 4.0], [10.0, 10.0, 14.0, 14.0], [20.0, 0.0, 24.0, 4.0]
    samples = [
        # 2 GT, 3 predictions: a exact, b shifted by 1 px (IoU 12/20 = 0.6), one FP far away.
        make_sample(
            'rec',
            shape=(30, 30),
            gt=[dict(unit='box', bbox=a), dict(unit='box', bbox=b)],
            pred=[
                dict(unit='box', bbox=c),
                dict(unit='box', bbox=a),
                dict(unit='box', bbox=[11.0, 10.0, 15.0, 14.0]),
            ],
        ),
        # 1 GT, 1 prediction with IoU 4/28 < 0.5.
        make_sample(
            'rec',
            shape=(30, 30),
            idx=1,
            gt=[dict(unit='box', bbox=a)],
            pred=[dict(unit='box', bbox=[2.0, 2.0, 6.0, 6.0])],
        ),
    ]
    res = evaluate(RECMetric(), samples)
    # TP = 2, predictions = 4, GT = 3.
    p, r = 2 / 4, 2 / 3
    assert res['rec/precision'] == pytest.approx(p * 100)
    assert res['rec/recall'] == pytest.approx(r * 100)
    assert res['rec/F1'] == pytest.approx(2 * p * r / (p + r) * 100)
    # Sample 1 has an extra box (3 != 2) and sample 2 misses: Acc = 0.
    assert res['rec/Acc@0.5'] == 0.0
    # mIoU over the 3 GT boxes: 1, 0.6, 4/28.
    assert res['rec/mIoU'] == pytest.approx((1 + 0.6 + 4 / 28) / 3 * 100)


def test_unit_filter_and_registry(make_sample, evaluate):
    metric = METRICS.build(
        dict(type='RECMetric', tasks=('rec', 'rec_grand'), iou_thr=0.75, prefix='refcoco_val')
    )
    box = [0.0, 0.0, 4.0, 4.0]
    # A mask-unit entry with a wrong box must be ignored by the box metric.
    sample = make_sample(
        'rec_grand',
        gt=[dict(unit='box', bbox=box)],
        pred=[
            dict(unit='mask', bbox=[5.0, 5.0, 6.0, 6.0]),
            dict(unit='box', bbox=[0.0, 0.0, 4.0, 3.5]),
        ],
    )
    res = evaluate(metric, [sample])
    assert res == {
        'refcoco_val/Acc@0.75': 100.0,
        'refcoco_val/mIoU': pytest.approx(87.5),
        'refcoco_val/precision': 100.0,
        'refcoco_val/recall': 100.0,
        'refcoco_val/F1': 100.0,
    }
    with pytest.raises(ValueError, match='iou_thr'):
        RECMetric(iou_thr=0.0)
    with pytest.raises(ValueError, match='matcher'):
        RECMetric(matcher='nearest')
    with pytest.raises(ValueError, match='tasks'):
        RECMetric(tasks=())


def test_one_result_per_sample_for_distributed_collection(make_sample):
    # MMEngine's collect_results drops None entries, then truncates the gathered list to the
    # dataset size to drop the sampler's padding; that needs exactly one non-None result per
    # sample, other tasks included.
    metric = RECMetric()
    samples = [
        make_sample('vqa', gt=None),
        make_sample('rec', gt=[], pred=[]),
        make_sample('caption', gt=None),
    ]
    metric.process({}, [s.to_dict() for s in samples])
    assert len(metric.results) == 3 and all(r is not None for r in metric.results)
    assert metric.results[0] == metric.results[2] == OTHER_TASK
    # A sample with neither GT nor prediction is correct (nothing to find, nothing found).
    assert metric.compute_metrics(metric.results)['Acc@0.5'] == 100.0
