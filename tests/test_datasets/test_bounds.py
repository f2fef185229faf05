# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Validator and loader bounds, each tested at the value it allows and at the first it refuses.

The rule tests in test_records.py use values well past each bound (a box 1 px outside, index 2 of
2); an off-by-one in a comparison passes them.
"""

import copy

import numpy as np
import pytest

from mmrefvlm.datasets.geometry import BBOX_EPS, check_bbox, check_keypoints
from mmrefvlm.datasets.record_schema import MAX_NESTING as _MAX_NESTING
from mmrefvlm.datasets.records import validate_record
from mmrefvlm.datasets.transforms import FormatConversation
from mmrefvlm.datasets.transforms.loading import SampleLoadError
from mmrefvlm.datasets.transforms.targets import TargetError
from mmrefvlm.datasets.transforms.targets import check_bbox as loader_check_bbox

W, H = 40, 30


@pytest.mark.parametrize(
    'box',
    [
        [0, 0, W, H],  # the whole image
        [-BBOX_EPS, -BBOX_EPS, W + BBOX_EPS, H + BBOX_EPS],  # float slack, exactly
        [0, 0, 1e-9, 1e-9],  # tiny but not empty
    ],
)
def test_validator_box_at_the_bounds_is_accepted(box):
    assert check_bbox(box, W, H) is None


@pytest.mark.parametrize(
    'box, message',
    [
        ([0, 0, W + 2 * BBOX_EPS, H], 'outside'),
        ([0, -2 * BBOX_EPS, W, H], 'outside'),
        ([5, 5, 5, 9], 'inverted or empty'),  # zero width
        ([5, 5, 9, 5], 'inverted or empty'),  # zero height
    ],
)
def test_validator_box_past_the_bounds_is_refused(box, message):
    assert message in check_bbox(box, W, H)


def test_loader_box_bounds_are_the_validators_and_clip():
    # One check per field (issue 17): the loader accepts exactly the validator's boxes (float
    # slack BBOX_EPS, clipped to the image); before, it allowed 1 px and disagreed with it.
    out = loader_check_bbox([-BBOX_EPS, -BBOX_EPS, W + BBOX_EPS, H + BBOX_EPS], H, W, 'r')
    assert out.tolist() == [0.0, 0.0, W, H]
    for bad in ([-2 * BBOX_EPS, 0, 5, 5], [0, 0, W + 2 * BBOX_EPS, 5], [0, 0, 5, H + 1.0]):
        with pytest.raises(TargetError, match='outside'):
            loader_check_bbox(bad, H, W, 'r')
    for empty in ([3, 3, 3, 8], [3, 3, 8, 3]):
        with pytest.raises(TargetError, match='inverted or empty'):
            loader_check_bbox(empty, H, W, 'r')


def test_keypoint_visibility_bounds():
    assert check_keypoints([1, 1, 0, 2, 2, 1, 3, 3, 2]) is None
    for v in (-1, 3):
        assert 'visibility' in check_keypoints([1, 1, v])


def _record(**changes):
    rec = {
        'id': 'r',
        'task': 'rec',
        'image': {'path': 'a.png', 'width': W, 'height': H},
        'instances': [{'bbox': [0, 0, 4, 4]}, {'bbox': [5, 5, 9, 9]}],
        'visual_prompts': [],
        'conversation': [
            {'role': 'user', 'content': 'where?'},
            {
                'role': 'assistant',
                'answer': [
                    {'phrase': 'it', 'groups': [{'units': ['box'], 'n': 1, 'targets': [1]}]}
                ],
            },
        ],
    }
    rec.update(changes)
    return rec


def _fields(rec):
    return [e.field for e in validate_record(rec)]


def test_target_index_bounds():
    assert _fields(_record()) == []  # the last instance, index len - 1
    for bad in (2, -1):
        rec = _record()
        rec['conversation'][1]['answer'][0]['groups'][0]['targets'] = [bad]
        assert _fields(rec) == ['conversation[1].answer[0].groups[0].targets[0]'], bad


def test_point_prompt_on_the_image_border_is_inside():
    def with_point(point):
        rec = _record(visual_prompts=[{'type': 'point', 'point': point, 'instance': 1}])
        rec['conversation'][0]['content'] = 'what is at [VPT]?'
        return rec

    for point in ([0, 0], [W, H], [W, 0]):
        assert _fields(with_point(point)) == [], point
    for point in ([W + 0.5, 0], [0, H + 0.5], [-0.5, 3]):
        assert _fields(with_point(point)) == ['visual_prompts[0].point'], point
    rec = with_point([1, 1])
    rec['visual_prompts'][0]['instance'] = 2  # one past the last instance
    assert _fields(rec) == ['visual_prompts[0].instance']


def _nested(levels):
    """An answer whose phrases nest ``levels`` deep (every level a triplet)."""
    group = {'units': ['box'], 'n': 1, 'targets': [0]}
    seg = {'phrase': 'x', 'groups': [group]}
    for _ in range(levels - 1):
        seg = {'phrase': [seg], 'groups': [copy.deepcopy(group)]}
    return [seg]


def test_validator_nesting_limit_is_exact():
    # The message says "phrases nested deeper than 16": 16 levels pass, 17 do not.
    ok = _record()
    ok['conversation'][1]['answer'] = _nested(_MAX_NESTING)
    assert _fields(ok) == []
    deep = _record()
    deep['conversation'][1]['answer'] = _nested(_MAX_NESTING + 1)
    errors = validate_record(deep)
    assert len(errors) == 1 and f'deeper than {_MAX_NESTING}' in errors[0].message


def test_max_length_is_the_longest_sample_allowed(demo_tokenizer):
    def transform(max_length):
        fmt = FormatConversation(
            demo_tokenizer, chat_template='plain', num_image_tokens=4, max_length=max_length
        )
        rec = _record()
        rec.update(img=None, sample_idx=0)
        return fmt(copy.deepcopy(rec))

    length = len(transform(10_000)['input_ids'])
    assert np.array_equal(transform(length)['input_ids'], transform(10_000)['input_ids'])
    with pytest.raises(SampleLoadError, match=f'{length} tokens exceed max_length={length - 1}'):
        transform(length - 1)
