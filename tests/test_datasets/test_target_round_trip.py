# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Record -> targets round trips keep every attribute of what they encode.

The pipeline encodes each record instance twice: for the losses (``gt_units``, square frame,
normalised) and for the metrics (``gt_instances``, original pixels). Both must give back the
record's geometry exactly, entry by entry, with the entry's unit, phrase, group and instance,
not only the right number of entries.
"""

import copy

import numpy as np
import torch

from mmrefvlm.datasets.geometry import decode_mask

from .test_pipeline import run

ANSWER = [
    {'phrase': 'two squares', 'groups': [{'units': ['box'], 'n': 2, 'targets': [1, 0]}]},
    ' and ',
    {'phrase': 'the red one', 'groups': [{'units': ['mask', 'keypoint'], 'n': 1, 'targets': [0]}]},
    '.',
]


def _record(scene):
    rec = copy.deepcopy(scene['record'])
    rec['conversation'][1]['answer'] = copy.deepcopy(ANSWER)
    return rec


def _keypoints(inst):
    k = np.asarray(inst['keypoints'], dtype=np.float32).reshape(-1, 3)
    k[k[:, 2] == 0, :2] = 0  # documented: unlabelled points carry coordinates 0
    return torch.from_numpy(k)


def test_metric_ground_truth_is_the_record_geometry(scene):
    rec = _record(scene)
    insts = rec['instances']
    h, w = rec['image']['height'], rec['image']['width']
    gt = run(scene, rec, predict=True)['data_samples'].gt_instances
    # grouped by unit in order of first use, <REF> order inside a unit
    assert gt.units == ['box', 'box', 'mask', 'keypoint']
    assert gt.labels == ['two squares', 'two squares', 'the red one', 'the red one']
    assert gt.group_ids.tolist() == [0, 0, 1, 1]
    assert gt.bboxes.dtype == torch.float32
    for row, target in ((0, 1), (1, 0), (3, 0)):  # the keypoint entry carries its box too
        assert gt.bboxes[row].tolist() == insts[target]['bbox'], row
    assert torch.isnan(gt.bboxes[2]).all()  # the mask entry has no box
    assert gt.masks.dtype == torch.bool and gt.masks.shape == (4, h, w)
    assert np.array_equal(gt.masks[2].numpy(), decode_mask(insts[0]['mask'], h, w))
    assert not gt.masks[[0, 1, 3]].any()
    assert gt.keypoints.shape == (4, 5, 3)
    torch.testing.assert_close(gt.keypoints[3], _keypoints(insts[0]), rtol=0, atol=0)
    assert torch.isnan(gt.keypoints[:3]).all()


def test_loss_targets_times_the_square_side_are_the_record_geometry(scene):
    rec = _record(scene)
    insts = rec['instances']
    out = run(scene, rec)
    units, side = out['data_samples'].gt_units, out['data_samples'].metainfo['square_size']
    assert side == max(rec['image']['width'], rec['image']['height'])
    assert units.box.instance_ids.tolist() == [1, 0] and units.box.group_ids.tolist() == [0, 0]
    for row, target in enumerate((1, 0)):
        assert (units.box.bboxes[row] * side).tolist() == insts[target]['bbox']
    kp = units.keypoint
    assert kp.instance_ids.tolist() == [0] and kp.group_ids.tolist() == [1]
    assert (kp.bboxes[0] * side).tolist() == insts[0]['bbox']
    scaled = kp.keypoints[0].clone()
    scaled[:, :2] *= side
    torch.testing.assert_close(scaled, _keypoints(insts[0]), rtol=0, atol=1e-5)
    assert units.mask.instance_ids.tolist() == [0] and units.mask.group_ids.tolist() == [1]
