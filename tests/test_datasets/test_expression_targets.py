# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The data hooks of methods that decode one mask per expression (LISA, GSVA, AnyRef): empty mask
targets, union targets and a replaced system turn."""

import numpy as np
import pytest

from mmrefvlm.datasets.geometry import decode_mask, encode_mask
from mmrefvlm.datasets.records import with_system_turn
from mmrefvlm.datasets.transforms import MaskTarget, TargetError, union_target_instance


def _mask(x1, y1, x2, y2, hw=(10, 12)):
    m = np.zeros(hw, dtype=bool)
    m[y1:y2, x1:x2] = True
    return m


RESULTS = dict(id='r', ori_shape=(10, 12), square_size=12)


def test_mask_target_accepts_empty_masks_only_when_asked():
    insts = [dict(mask=encode_mask(_mask(0, 0, 0, 0))), dict(mask=encode_mask(_mask(0, 0, 6, 6)))]
    with pytest.raises(TargetError, match='empty'):
        MaskTarget(size=12).build(insts, RESULTS)
    masks = MaskTarget(size=12, allow_empty=True).build(insts, RESULTS)['masks']
    assert masks.shape == (2, 12, 12)
    assert int(masks[0].sum()) == 0 and int(masks[1].sum()) == 36
    original = MaskTarget(size=12, allow_empty=True).build_original(insts, RESULTS)['masks']
    assert original.shape == (2, 10, 12) and int(original[0].sum()) == 0
    # still checked: a mask of another image size is an error, empty or not
    wrong = [dict(mask=encode_mask(np.zeros((5, 5), dtype=bool)))]
    with pytest.raises(TargetError, match='size'):
        MaskTarget(size=12, allow_empty=True).build(wrong, RESULTS)


def test_union_target_instance_is_the_or_of_its_referents():
    a, b = _mask(0, 0, 4, 4), _mask(2, 3, 9, 8)
    insts = [dict(mask=encode_mask(a)), dict(mask=encode_mask(b)), dict(bbox=[0, 0, 1, 1])]
    union = union_target_instance(insts, [0, 1], (10, 12), 'r')
    assert (decode_mask(union['mask'], 10, 12) == (a | b)).all()
    assert union['bbox'] == [0.0, 0.0, 9.0, 8.0] and union['category'] == 'union'
    nothing = union_target_instance(insts, [], (10, 12), 'r')  # "refers to nothing"
    assert not decode_mask(nothing['mask'], 10, 12).any() and nothing['bbox'] is None
    for bad in ([2], [3], [-1]):  # no mask, out of range
        with pytest.raises(TargetError, match='record r: target'):
            union_target_instance(insts, bad, (10, 12), 'r')


def test_with_system_turn_replaces_the_records_system_prompt():
    user = {'role': 'user', 'content': 'q'}
    answer = {'role': 'assistant', 'content': 'a'}
    conv = [{'role': 'system', 'content': 'old'}, user, answer]
    new = with_system_turn(conv, 'new')
    assert new == [{'role': 'system', 'content': 'new'}, user, answer]
    assert conv[0]['content'] == 'old'  # the record's list is not modified
    assert with_system_turn([user, answer], 'new')[0] == {'role': 'system', 'content': 'new'}
    kept = with_system_turn(conv, None)
    assert kept == conv and kept is not conv
