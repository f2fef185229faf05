# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Metrics with the defaults users get (the hand-computed tests set identity values).

KeypointMetric's tests all pass ``area_scale=1.0`` and their own sigmas, so the default
``area_scale`` (0.53) and the default COCO sigmas were never exercised: dropping or inverting the
scale passed them.
"""

import math

import numpy as np
import pytest

from mmrefvlm.evaluation import KeypointMetric

pytest.importorskip('pycocotools')


def test_keypoint_oks_ap_with_default_area_scale_and_coco_sigmas(make_sample, evaluate):
    from pycocotools.cocoeval import Params

    sigmas = Params(iouType='keypoints').kpt_oks_sigmas  # pycocotools' own 17 COCO sigmas
    # OKS term of keypoint i: exp(-d_i^2 / (2 * area * (2 sigma_i)^2)), area = 0.53 * 20 * 20.
    area = 0.53 * 20 * 20
    shifts = np.sqrt(-2 * area * (2 * sigmas) ** 2 * math.log(0.77))  # every term 0.77
    gt = np.zeros((17, 3))
    gt[:, 0] = np.linspace(2, 18, 17)
    gt[:, 1] = np.linspace(18, 2, 17)
    gt[:, 2] = 2
    pred = gt.copy()
    pred[:, 0] += shifts
    sample = make_sample(
        'keypoint',
        shape=(30, 30),
        gt=[dict(unit='keypoint', keypoints=gt, bbox=[0.0, 0.0, 20.0, 20.0])],
        pred=[dict(unit='keypoint', keypoints=pred, score=0.9)],
    )
    res = evaluate(KeypointMetric(), [sample])
    # OKS = 0.77 matches at thresholds .50 ... .75 (6 of 10). Without the 0.53 scale OKS would be
    # 0.77 ** 0.53 = 0.87 (AP 80); with the scale inverted, 0.93 (AP 90).
    assert res['keypoint/AP'] == pytest.approx(60.0)
    assert res['keypoint/AP75'] == pytest.approx(100.0)
