# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""LISA's data side: the answer format, union targets, empty targets, and a record through the
whole training pipeline to the token the router reads."""

import copy

import numpy as np
import pytest
import torch

from mmrefvlm.datasets.geometry import decode_mask, encode_mask
from mmrefvlm.datasets.transforms import TargetError
from mmrefvlm.models import SpecialTokenRefParser
from mmrefvlm.tokenization import build_tokenizer
from projects.lisa.lisa_seg import SlotAnswerFormat, UnionExpressionTargets

LISA_FORMAT = SlotAnswerFormat('[SEG]', prefix='Sure, it is ', slot='{token}')
GSVA_FORMAT = SlotAnswerFormat('[SEG]', reject_token='[REJ]')


def _mask(rect, hw=(10, 12)):
    m = np.zeros(hw, bool)
    y0, x0, y1, x1 = rect
    m[y0:y1, x0:x1] = True
    return m


def _record(groups, masks):
    return dict(
        id='r0',
        task='gres',
        image=dict(path='x.png', width=12, height=10),
        instances=[dict(bbox=[0, 0, 1, 1], mask=encode_mask(m)) for m in masks],
        conversation=[
            dict(role='user', template='gres', slots=dict(expr='e')),
            dict(role='assistant', answer=[*groups, '.']),
        ],
    )


def _phrase(text, n, targets, unit='mask'):
    return dict(phrase=text, groups=[dict(units=[unit], n=n, targets=targets)])


def test_slot_formats_render_the_methods_answers():
    one = [_phrase('the red circle', 1, [0]), '.']
    assert LISA_FORMAT(one) == 'Sure, it is [SEG].'
    two = [_phrase('a', 1, [0]), ' and ', _phrase('b', 0, []), '.']
    assert GSVA_FORMAT(two, cot=True) == 'Sure, a:[SEG], b:[REJ].'
    with pytest.raises(ValueError, match='no target'):
        LISA_FORMAT(two)
    with pytest.raises(ValueError, match='union them'):
        GSVA_FORMAT([_phrase('both', 2, [0, 1])])
    with pytest.raises(ValueError, match='no phrase group'):
        GSVA_FORMAT('Plain text.')


def test_union_targets_multi_single_and_empty():
    a, b = _mask((0, 0, 2, 3)), _mask((5, 6, 8, 10))
    rec = _record(
        [_phrase('both', 2, [0, 1]), _phrase('one', 1, [1], unit='box'), _phrase('none', 0, [])],
        [a, b],
    )
    stored = copy.deepcopy(rec)
    out = UnionExpressionTargets(empty='target', template='lisa_seg', system='S')(dict(rec))
    assert rec == stored  # the dataset's record is not modified
    conv = out['conversation']
    assert conv[0] == dict(role='system', content='S') and conv[1]['template'] == 'lisa_seg'
    groups = [seg['groups'] for seg in conv[2]['answer'] if isinstance(seg, dict)]
    assert groups[1] == [dict(units=['mask'], n=1, targets=[1])]  # single target kept, box->mask
    union = decode_mask(out['instances'][groups[0][0]['targets'][0]]['mask'], 10, 12)
    assert np.array_equal(union, a | b) and int(union.sum()) == 6 + 12
    assert out['instances'][groups[0][0]['targets'][0]]['bbox'] == [0.0, 0.0, 10.0, 8.0]
    empty = out['instances'][groups[2][0]['targets'][0]]
    assert groups[2][0]['n'] == 1 and not decode_mask(empty['mask'], 10, 12).any()
    rejected = UnionExpressionTargets(empty='reject')(dict(rec))
    last = [s for s in rejected['conversation'][1]['answer'] if isinstance(s, dict)][-1]
    assert last['groups'] == [dict(units=['mask'], n=0, targets=[])]
    assert len(rejected['instances']) == 3  # only the union was added


def test_union_targets_need_instance_masks():
    rec = _record([_phrase('both', 2, [0, 1])], [_mask((0, 0, 2, 2)), _mask((3, 3, 5, 5))])
    del rec['instances'][1]['mask']
    with pytest.raises(TargetError, match='no instance mask'):
        UnionExpressionTargets()(rec)
    with pytest.raises(ValueError, match='empty must be'):
        UnionExpressionTargets(empty='skip')


def test_rendered_answer_parses_back_to_its_slots():
    tok = build_tokenizer('demo', extra_tokens=('[SEG]', '[REJ]'))
    answer = [
        _phrase('the red circle', 1, [0]),
        _phrase('all squares', 0, []),
        _phrase('x y', 1, [1]),
    ]
    text = GSVA_FORMAT(answer)
    ids = torch.tensor(tok.encode(text))
    parser = SpecialTokenRefParser(
        {'[SEG]': 'mask'},
        {'[REJ]': 'mask'},
        phrase_pattern=r'(?:^|,)\s*(?:Sure,\s*)?(?P<phrase>[^,:]*?)\s*:\s*$',
    )
    refs, warns, (res,) = parser(ids, tok, known_units={'mask'})
    assert not warns
    assert [ids[p].item() for p, *_ in refs] == [tok.ids['[SEG]']] * 2
    assert [(r[1], r[2][1], r[3]) for r in refs] == [
        (('mask',), 0, 'the red circle'),
        (('mask',), 2, 'x y'),
    ]
    slots = [(s['phrase'], s['groups'][0]['n']) for s in res.answer if isinstance(s, dict)]
    assert slots == [('the red circle', 1), ('all squares', 0), ('x y', 1)]
