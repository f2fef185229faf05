# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Deriving a plugin unit's targets from existing records with core pieces only: the
``RemapRecordUnits`` transform and a ``GeometryTarget`` with a mapping function."""

import copy

import numpy as np
import pytest
import torch
from mmengine.dataset import Compose

from mmrefvlm.datasets import GeometryTarget, RemapRecordUnits
from mmrefvlm.datasets.transforms import (
    BuildUnitTargets,
    FormatConversation,
    LoadRecordImage,
    PackRefVLMInputs,
    PrepareImages,
    TargetError,
    build_instance_mapping,
    keypoint_xy,
)
from mmrefvlm.registry import FUNCTIONS, TASK_UTILS, TRANSFORMS

RESULTS = dict(id='r0', ori_shape=(30, 40), square_size=40)


def box_diagonal(instance, results):
    """A ``line`` unit's mapping: the box's top-left -> bottom-right diagonal, (2, 2) pixels."""
    x1, y1, x2, y2 = instance['bbox']
    return [[x1, y1], [x2, y2]]


def test_remap_rewrites_a_copy_of_units_task_and_templates(scene):
    record = copy.deepcopy(scene['record'])
    record['conversation'][0] = {'role': 'user', 'template': 'rec', 'slots': {'expr': 'x'}}
    conversation, stored = record['conversation'], copy.deepcopy(record['conversation'])
    remap = TRANSFORMS.build(
        dict(
            type='RemapRecordUnits',
            unit_map=dict(box='line', mask='box'),
            task='line',
            template_map=dict(rec='line'),
        )
    )
    out = remap(record)
    groups = [out['conversation'][1]['answer'][i]['groups'][0] for i in (0, 2)]
    assert [g['units'] for g in groups] == [['line'], ['box', 'line']]
    assert out['task'] == 'line' and out['conversation'][0]['template'] == 'line'
    assert conversation == stored  # the record's own conversation is not modified


def test_remap_merges_units_that_collide_and_checks_its_arguments(scene):
    out = RemapRecordUnits(dict(mask='box'))(copy.deepcopy(scene['record']))
    assert out['conversation'][1]['answer'][2]['groups'][0]['units'] == ['box']
    assert out['task'] == 'rec'  # task=None keeps it
    for bad in ({}, {'box': ''}, {'box': 3}):
        with pytest.raises(ValueError, match='unit_map'):
            RemapRecordUnits(bad)
    with pytest.raises(ValueError, match='task'):
        RemapRecordUnits(dict(box='point'), task='')


@pytest.mark.parametrize(
    'spec, expected',
    [
        ('box_center_xy', [9.0, 11.0]),
        ('mask_centroid_xy', [9.0, 11.0]),  # pixel centres: cols 4..13 -> 9, rows 6..15 -> 11
        (dict(type='keypoint_xy', index=1), [9.0, 6.0]),
        (dict(type=keypoint_xy), [9.0, 11.0]),
    ],
)
def test_core_mappings(scene, spec, expected):
    target = TASK_UTILS.build(dict(type='GeometryTarget', field='points', from_instance=spec))
    inst = scene['record']['instances'][0]
    out = target.build([inst, inst], RESULTS)['points']
    torch.testing.assert_close(out, torch.tensor([expected, expected]) / 40)
    torch.testing.assert_close(
        target.build_original([inst], RESULTS)['points'], torch.tensor([expected])
    )


def test_geometry_target_rejects_unusable_geometry(scene):
    inst = scene['record']['instances'][0]
    with pytest.raises(TargetError, match='not labelled'):
        GeometryTarget('points', dict(type='keypoint_xy', index=4)).build([inst], RESULTS)
    with pytest.raises(TargetError, match='image-level'):
        GeometryTarget('points', 'box_center_xy').build([None], RESULTS)
    cases = {
        'outside': lambda i, r: [41.5, 3.0],
        'non-finite': lambda i, r: [np.nan, 3.0],
        r'\(x, y\)': lambda i, r: [1.0, 2.0, 3.0],
    }
    for message, fn in cases.items():
        with pytest.raises(TargetError, match=message):
            GeometryTarget('points', fn).build([inst], RESULTS)
    lengths = iter([[[0, 0]], [[0, 0], [1, 1]]])
    with pytest.raises(TargetError, match='differ'):
        GeometryTarget('lines', lambda i, r: next(lengths)).build([inst, inst], RESULTS)
    within = GeometryTarget('points', lambda i, r: [40.6, -0.4]).build_original([inst], RESULTS)
    assert within['points'].tolist() == [[40.0, 0.0]]  # 1 px slack, clipped to the image
    with pytest.raises(KeyError, match='not_registered'):
        build_instance_mapping('not_registered')
    with pytest.raises(ValueError, match='field'):
        GeometryTarget('two words', 'box_center_xy')


def test_a_new_unit_from_existing_records_with_core_pieces_only(scene):
    """A ``line`` unit (two endpoints per ``<REF>``) trained from ``rec`` records: the plugin
    supplies only ``box_diagonal``; no project is imported."""
    pipeline = Compose(
        [
            dict(type='RemapRecordUnits', unit_map=dict(box='line')),
            LoadRecordImage(),
            PrepareImages(sizes=dict(vit=16, pyramid=32)),
            FormatConversation(
                dict(source='demo'), chat_template='plain', num_image_tokens=4, cot=False
            ),
            BuildUnitTargets(
                dict(
                    line=dict(type=GeometryTarget, field='lines', from_instance=box_diagonal),
                    mask=dict(type='MaskTarget', size=20),
                )
            ),
            PackRefVLMInputs(),
        ]
    )
    record = dict(copy.deepcopy(scene['record']), data_root=scene['root'], sample_idx=0)
    sample = pipeline(record)['data_samples']
    # '<REF>' order: the 'two squares' group (targets 1, 0), then 'the red one' (target 0)
    expected = torch.tensor(
        [[[20, 10], [36, 26]], [[4, 6], [14, 16]], [[4, 6], [14, 16]]], dtype=torch.float32
    )
    torch.testing.assert_close(sample.gt_units.line.lines, expected / 40)
    assert sample.gt_units.line.group_ids.tolist() == [0, 0, 1]
    assert 'box' not in sample.gt_units
    gt = sample.gt_instances
    assert gt.units.count('line') == 3 and gt.lines.shape == (4, 2, 2)
    assert FUNCTIONS.get('box_center_xy') is not None
