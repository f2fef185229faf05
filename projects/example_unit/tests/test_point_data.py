# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The point plugin's data side: target builder, record rewriting, templates, full pipeline."""

import copy

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from mmrefvlm.datasets import (
    BuildUnitTargets,
    FormatConversation,
    LoadRecordImage,
    PackRefVLMInputs,
    PrepareImages,
    RemapRecordUnits,
)
from mmrefvlm.datasets.transforms import BoxTarget, TargetError
from mmrefvlm.registry import TASK_UTILS, TRANSFORMS
from projects.example_unit import point_unit
from projects.example_unit.point_unit import POINT_TEMPLATE_DIR, PointTarget


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': rle['size'], 'counts': rle['counts'].decode()}


def _instance():
    mask = np.zeros((20, 40), dtype=bool)
    mask[4:10, 6:16] = True  # rows 4..9, cols 6..15
    return {
        'bbox': [6.0, 4.0, 16.0, 10.0],
        'mask': _rle(mask),
        'category': 'square',
        'keypoints': [11.0, 7.0, 2.0, 6.0, 4.0, 0.0],
    }


def _results():
    return {'id': 'r0', 'ori_shape': (20, 40), 'square_size': 40}


@pytest.mark.parametrize(
    'source, expected',
    [
        ('keypoint', (11.0, 7.0)),
        ('mask_centroid', (11.0, 7.0)),  # mean of pixel centres: cols 6..15 -> 11, rows 4..9 -> 7
        ('box_center', (11.0, 7.0)),
    ],
)
def test_point_sources(source, expected):
    out = PointTarget(source=source).build([_instance()], _results())
    torch.testing.assert_close(out['points'], torch.tensor([expected]) / 40)
    orig = PointTarget(source=source).build_original([_instance()], _results())
    torch.testing.assert_close(orig['points'], torch.tensor([expected]))
    assert orig['masks'].shape == (1, 20, 40) and int(orig['masks'].sum()) == 60


def test_unlabelled_keypoint_and_bad_sources_are_errors():
    with pytest.raises(TargetError, match='not labelled'):
        PointTarget(keypoint_index=1).build([_instance()], _results())
    with pytest.raises(TargetError, match='image-level'):
        PointTarget().build([None], _results())
    with pytest.raises(ValueError, match='source'):
        PointTarget(source='centre')
    assert TASK_UTILS.get('PointTarget') is PointTarget


def _record():
    return {
        'id': 'demo-rec-0',
        'task': 'rec',
        'instances': [_instance()],
        'conversation': [
            {'role': 'user', 'template': 'rec', 'slots': {'expr': 'the square'}},
            {
                'role': 'assistant',
                'answer': [
                    {
                        'phrase': 'the square',
                        'groups': [{'units': ['box', 'mask'], 'n': 1, 'targets': [0]}],
                    },
                    '.',
                ],
            },
        ],
    }


def test_remap_units_rewrites_a_copy():
    record = _record()
    original = copy.deepcopy(record)
    out = RemapRecordUnits(dict(box='point'), task='point', template_map=dict(rec='point'))(
        dict(record)
    )
    assert out['task'] == 'point'
    assert out['conversation'][0]['template'] == 'point'
    assert out['conversation'][1]['answer'][0]['groups'][0]['units'] == ['point', 'mask']
    assert record == original  # the stored record is untouched
    assert TRANSFORMS.get('RemapRecordUnits') is RemapRecordUnits  # the core transform
    assert point_unit.RemapRecordUnits is RemapRecordUnits  # first-release import path
    with pytest.raises(ValueError, match='unit_map'):
        RemapRecordUnits({})


def test_pipeline_builds_point_targets_aligned_with_ref_tokens(tmp_path):
    """Record -> image -> plugin templates + TRP tokens -> gt_units.point, end to end."""
    import cv2

    from mmrefvlm.tokenization import build_tokenizer

    tok = build_tokenizer('demo')
    img = np.zeros((20, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'a.png'), img)
    record = dict(
        _record(),
        image={'path': 'a.png', 'width': 40, 'height': 20},
        data_root=str(tmp_path),
        sample_idx=3,
    )
    record['conversation'][1]['answer'][0]['groups'][0]['units'] = ['box']
    pipeline = [
        RemapRecordUnits(dict(box='point'), task='point', template_map=dict(rec='point')),
        LoadRecordImage(),
        PrepareImages(sizes=dict(vit=16, pyramid=16)),
        FormatConversation(
            tok,
            chat_template='plain',
            num_image_tokens=4,
            cot=False,
            extra_template_dirs=[POINT_TEMPLATE_DIR],
        ),
        BuildUnitTargets(dict(point=PointTarget(), box=BoxTarget())),
        PackRefVLMInputs(),
    ]
    results = record
    for t in pipeline:
        results = t(results)
    sample = results['data_samples']
    text = tok.decode(results['inputs']['input_ids'].tolist())
    assert '<Unit>point</Unit>[0]<REF>' in text
    assert 'referring point' in text  # the plugin's system command
    torch.testing.assert_close(sample.gt_units.point.points, torch.tensor([[11.0, 7.0]]) / 40)
    assert sample.metainfo['task'] == 'point'
    assert 'box' not in sample.gt_units
