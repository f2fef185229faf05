# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""PCK of the keypoint metric on hand-computed cases."""

import numpy as np

from mmrefvlm.evaluation.metrics.keypoint_metric import pck_counts


def test_pck_hand_computed():
    gt = np.array(
        [
            [[10, 10, 2], [20, 10, 2], [0, 0, 0]],  # box 20 x 10 -> scale 20
            [[50, 50, 2], [60, 60, 1], [70, 70, 2]],
        ],
        float,
    )  # box 20 x 20 -> scale 20
    boxes = [[5, 5, 20, 10], [50, 50, 20, 20]]
    # predictions in the other order: matching must pair them back
    pred = np.array(
        [
            [[50, 53, 1], [60, 60, 1], [90, 90, 1]],  # errors 3, 0, 28.3
            [[11, 10, 1], [20, 15, 1], [99, 99, 1]],
        ],
        float,
    )  # errors 1, 5, (unlabelled)
    counts = pck_counts(gt, boxes, pred, (0.1, 0.2))
    # labelled GT points: 2 + 3 = 5; thr 0.1 -> 2 px: {1, 0} -> 2; thr 0.2 -> 4 px: {1, 3, 0} -> 3
    assert counts == [(2, 5), (3, 5)]


def test_pck_missing_predictions_are_misses():
    gt = np.array([[[10, 10, 2], [20, 10, 2]]], float)
    assert pck_counts(gt, [[0, 0, 10, 10]], np.zeros((0, 2, 3)), (0.1,)) == [(0, 2)]
    two_gt = np.concatenate([gt, gt + [50, 0, 0]])
    one_pred = gt.copy()
    assert pck_counts(two_gt, [[0, 0, 10, 10]] * 2, one_pred, (0.1,)) == [(2, 4)]
