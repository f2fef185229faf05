# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import torch
from mmengine.structures import InstanceData

from mmrefvlm.evaluation.baselines import trivial_prediction
from mmrefvlm.structures import RefVLMDataSample


def test_trivial_prediction_covers_targets_and_empty_groups():
    s = RefVLMDataSample(metainfo=dict(ori_shape=(30, 40), task='gres'))
    s.gt_instances = InstanceData(
        labels=['a', 'a'],
        units=['mask', 'box'],
        group_ids=torch.tensor([0, 0]),
        keypoints=torch.zeros(2, 5, 3),
    )
    s.set_field(
        [
            {'phrase': 'a', 'groups': [{'units': ['mask', 'box'], 'n': 1}]},
            ' and ',
            {'phrase': 'b', 'groups': [{'units': ['mask'], 'n': 0}]},
        ],
        'gt_answer',
    )
    p = trivial_prediction(s, mean_depth=2.5).pred_instances
    # one whole-image entry per GT (ref, unit), plus one for the zero-<REF> group "b"
    assert p.units == ['mask', 'box', 'mask'] and p.labels == ['a', 'a', 'b']
    assert p.bboxes.tolist() == [[0.0, 0.0, 40.0, 30.0]] * 3
    assert p.masks.shape == (3, 30, 40) and bool(p.masks.all())
    assert torch.equal(p.keypoints[0, 0], torch.tensor([20.0, 15.0, 1.0]))
    assert bool((p.depth == 2.5).all())
    assert 'pred_instances' not in s  # the input sample is not modified
