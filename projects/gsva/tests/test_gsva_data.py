# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""GroupedExpressionDataset and SampleExpressions: several expressions of one image per sample."""

import json

import pytest

from mmrefvlm.trp import iter_groups
from projects.gsva.gsva_seg import GroupedExpressionDataset, SampleExpressions

INST_A = [dict(bbox=[0, 0, 2, 2], category='circle'), dict(bbox=[4, 4, 6, 6], category='square')]
INST_B = [dict(bbox=[1, 1, 3, 3], category='cross')]


def _rec(rid, path, expr, n, targets, instances, unit='mask'):
    return dict(
        id=rid,
        task='res',
        image=dict(path=path, width=8, height=8),
        instances=instances,
        conversation=[
            dict(role='user', template='res', slots=dict(expr=expr)),
            dict(
                role='assistant',
                answer=[dict(phrase=expr, groups=[dict(units=[unit], n=n, targets=targets)]), '.'],
            ),
        ],
    )


def _write(path, records):
    path.write_text('\n'.join(json.dumps(r) for r in records) + '\n')


@pytest.fixture
def files(tmp_path):
    _write(
        tmp_path / 'a.jsonl',
        [
            _rec('a0', 'img/0.png', 'the circle', 1, [0], INST_A, unit='box'),
            _rec('a1', 'img/1.png', 'the cross', 1, [0], INST_B),
        ],
    )
    _write(
        tmp_path / 'b.jsonl',
        [
            _rec('b0', 'img/0.png', 'the square', 1, [1], INST_A),
            _rec('b1', 'img/0.png', 'the circle', 1, [0], INST_A),  # repeated expression
            _rec('b2', 'img/0.png', 'all diamonds', 0, [], INST_A),
            # same image, different instance list: re-indexed after the first one
            _rec('b3', 'img/0.png', 'the other', 1, [0], INST_B),
        ],
    )
    return tmp_path


def test_records_of_one_image_are_merged(files):
    ds = GroupedExpressionDataset(['a.jsonl', 'b.jsonl'], data_root=str(files), lazy_init=False)
    assert len(ds) == 2
    rec = ds.get_data_info(0)
    assert rec['image']['path'] == 'img/0.png' and rec['task'] == 'gres'
    user, assistant = rec['conversation']
    assert user['slots']['expr'] == 'the circle, the square, all diamonds, the other'
    groups = [
        (pg['phrase'], g['n'], g['targets']) for _, _, pg, g in iter_groups(assistant['answer'])
    ]
    assert groups == [
        ('the circle', 1, [0]),
        ('the square', 1, [1]),
        ('all diamonds', 0, []),
        ('the other', 1, [2]),
    ]
    assert rec['instances'] == INST_A + INST_B
    assert sorted(rec['meta']['grouped_ids']) == ['a0', 'b0', 'b1', 'b2', 'b3']


def test_max_expressions_splits_an_image(files):
    ds = GroupedExpressionDataset(
        ['a.jsonl', 'b.jsonl'], data_root=str(files), max_expressions=3, lazy_init=False
    )
    sizes = [len(ds.get_data_info(i)['conversation'][1]['answer']) for i in range(len(ds))]
    # image 0 -> 3 + 1 expressions, image 1 -> 1 (phrase groups, ', ' separators, '.')
    assert sizes == [6, 2, 2]
    with pytest.raises(ValueError, match='non-empty list'):
        GroupedExpressionDataset('a.jsonl', data_root=str(files))


def test_sample_expressions_keeps_question_and_answer_consistent(files):
    ds = GroupedExpressionDataset(['a.jsonl', 'b.jsonl'], data_root=str(files), lazy_init=False)
    base = ds.get_data_info(0)
    seen = set()
    for idx in range(40):
        out = SampleExpressions(seed=1)(dict(base, sample_idx=idx))
        phrases = [pg['phrase'] for _, _, pg, _ in iter_groups(out['conversation'][1]['answer'])]
        assert out['conversation'][0]['slots']['expr'] == ', '.join(phrases)
        assert 1 <= len(phrases) <= 4 and len(set(phrases)) == len(phrases)
        seen.add(tuple(phrases))
        again = SampleExpressions(seed=1)(dict(base, sample_idx=idx))
        assert again['conversation'] == out['conversation']  # a pure function of the index
    assert len(seen) > 10  # subsets and orders vary
    assert base['conversation'][0]['slots']['expr'].count(',') == 3  # the record is untouched
