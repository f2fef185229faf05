# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""PointMetric on hand-computed toy samples."""

import math

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmrefvlm.registry import METRICS
from projects.example_unit.point_unit import PointMetric, points_in_masks


def _masks(*boxes, shape=(10, 20)):
    out = np.zeros((len(boxes), *shape), dtype=bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        out[i, y1:y2, x1:x2] = True
    return torch.from_numpy(out)


def _sample(gt_points, masks, pred_points, pred_units=None, task='point'):
    gt = InstanceData(
        points=torch.tensor(gt_points, dtype=torch.float32),
        masks=masks,
        units=['point'] * len(gt_points),
        labels=['x'] * len(gt_points),
    )
    pred = InstanceData(
        points=torch.tensor(pred_points, dtype=torch.float32).reshape(-1, 2),
        units=pred_units or ['point'] * len(pred_points),
        labels=['x'] * len(pred_points),
    )
    return {'task': task, 'ori_shape': (10, 20), 'gt_instances': gt, 'pred_instances': pred}


def test_points_in_masks_uses_the_pixel_holding_the_point():
    masks = _masks((2, 2, 4, 4), (2, 2, 4, 4), (2, 2, 4, 4), (2, 2, 4, 4)).numpy()
    pts = np.array([[2.0, 2.0], [3.99, 3.99], [4.0, 3.0], [np.nan, 3.0]])
    assert points_in_masks(pts, masks).tolist() == [True, True, False, False]


def test_metric_values_by_hand():
    diag = math.hypot(10, 20)
    metric = PointMetric()
    samples = [
        # hit, distance 1 px; the centre (10, 5) lies outside the mask
        _sample([[3.0, 3.0]], _masks((2, 2, 5, 5)), [[3.0, 4.0]]),
        # two GT points matched crosswise (Hungarian on distance): both hit, distances 0 and 2
        _sample(
            [[15.0, 5.0], [1.0, 1.0]],
            _masks((14, 4, 18, 8), (0, 0, 3, 3)),
            [[1.0, 1.0], [15.0, 7.0]],
        ),
        # no prediction of the `point` unit (a box entry): miss, distance = diagonal
        _sample([[10.0, 5.0]], _masks((9, 4, 12, 7)), [[10.0, 5.0]], pred_units=['box']),
        # another task: ignored
        _sample([[0.0, 0.0]], _masks((0, 0, 1, 1)), [[9.0, 9.0]], task='rec'),
    ]
    metric.process(None, samples)
    res = metric.compute_metrics(metric.results)
    assert res['acc'] == pytest.approx(3 / 4 * 100)
    assert res['mean_dist'] == pytest.approx((1 + 0 + 2 + diag) / diag / 4 * 100)
    # baseline (10, 5) for every GT point: only the last sample's mask holds it
    c_dist = [math.hypot(7, 2), math.hypot(5, 0), math.hypot(9, 4), 0.0]
    assert res['center_acc'] == pytest.approx(1 / 4 * 100)
    assert res['center_mean_dist'] == pytest.approx(sum(c_dist) / diag / 4 * 100)
    assert res['num_points'] == 4


def test_registered_with_prefix():
    metric = METRICS.build(dict(type='PointMetric'))
    assert metric.prefix == 'point'
