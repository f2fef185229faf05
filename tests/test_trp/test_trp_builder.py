# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import pytest

from mmrefvlm.trp import (
    MAX_DEPTH,
    answer_text,
    build_answer,
    iter_groups,
    normalize_answer,
    parse_answer,
)


def box(n, **extra):
    return {'units': ['box'], 'n': n, **extra}


# Expected strings written by hand from the grammar in DESIGN §3.
@pytest.mark.parametrize(
    'answer, expected',
    [
        (
            [{'phrase': 'two capybaras', 'groups': [box(2)]}],
            '<Phrase>two capybaras</Phrase>(<Unit>box</Unit>[0]<REF>[1]<REF>)',
        ),
        (
            [
                {'phrase': 'a big one', 'groups': [box(1)]},
                ' and ',
                {'phrase': 'a small one', 'groups': [box(1)]},
            ],
            '<Phrase>a big one</Phrase>(<Unit>box</Unit>[0]<REF>) and '
            '<Phrase>a small one</Phrase>(<Unit>box</Unit>[0]<REF>)',
        ),
        (
            [{'phrase': 'it', 'groups': [box(1), {'units': ['mask'], 'n': 1}]}],
            '<Phrase>it</Phrase>(<Unit>box</Unit>[0]<REF>, <Unit>mask</Unit>[0]<REF>)',
        ),
        (
            [{'phrase': 'a blue star', 'groups': [{'units': ['mask'], 'n': 0}]}],
            '<Phrase>a blue star</Phrase>(<Unit>mask</Unit>)',
        ),
        (
            [
                {
                    'phrase': [{'phrase': 'dog', 'groups': [box(1)]}, ' in ', {'phrase': 'park'}],
                    'groups': [{'units': ['box', 'mask'], 'n': 1}],
                }
            ],
            '<Phrase><Phrase>dog</Phrase>(<Unit>box</Unit>[0]<REF>) in '
            '<Phrase>park</Phrase></Phrase>'
            '(<Unit>box,mask</Unit>[0]<REF>)',
        ),
        ('just text (with) [brackets] 3', 'just text (with) [brackets] 3'),
        ([], ''),
    ],
)
def test_build_examples(answer, expected):
    assert build_answer(answer) == expected


def test_build_cot_true_lines_in_render_order():
    answer = [
        {
            'phrase': [{'phrase': 'dog', 'groups': [box(2)]}, '\n in  ', {'phrase': 'park'}],
            'groups': [box(1), {'units': ['mask', 'depth'], 'n': 0}],
        },
        '.',
    ]
    expected = (
        '<Task>\nUnit decode (True). Class name, target unit and number:\n'
        '- Name: dog Unit: box Num: 2\n'
        '- Name: dog in park Unit: box Num: 1\n'
        '- Name: dog in park Unit: mask,depth Num: 0\n'
        '</Task>\n'
    )
    out = build_answer(answer, cot=True)
    assert out == expected + build_answer(answer)


@pytest.mark.parametrize('answer', ['a caption', [], ['text only']])
def test_build_cot_false(answer):
    body = build_answer(answer)
    assert build_answer(answer, cot=True) == '<Task>\nUnit decode (False).\n</Task>\n' + body


def test_extra_keys_ignored_and_iter_groups_aligns_targets():
    answer = [
        {
            'phrase': [{'phrase': 'a', 'groups': [box(1, targets=[7])]}, ' b'],
            'groups': [box(2, targets=[3, 4])],
            'note': 'x',
        },
        ' then ',
        {'phrase': 'c', 'groups': [box(0, targets=[])]},
    ]
    text = build_answer(answer)
    assert 'targets' not in text and 'note' not in text
    got = [(t, g, grp['targets']) for t, g, _, grp in iter_groups(answer)]
    assert got == [(0, 0, [7]), (1, 0, [3, 4]), (2, 0, [])]
    # The parser's (triplet, group, k) of each <REF> picks the right target.
    refs = parse_answer(text).refs
    table = {(t, g): grp['targets'] for t, g, _, grp in iter_groups(answer)}
    assert [table[r.triplet, r.group][r.k] for r in refs] == [7, 3, 4]


def test_normalize_merges_and_canonicalises():
    raw = [
        'a',
        '',
        'b',
        {'phrase': ['x', 'y'], 'groups': [{'units': ('box',), 'n': 1, 'targets': [0]}], 'k': 1},
        {'phrase': [{'phrase': ['in'], 'groups': None}, ''], 'groups': [box(0)]},
    ]
    assert normalize_answer(raw) == [
        'ab',
        {'phrase': 'xy', 'groups': [{'units': ['box'], 'n': 1}]},
        {'phrase': [{'phrase': 'in', 'groups': []}], 'groups': [{'units': ['box'], 'n': 0}]},
    ]
    assert normalize_answer('') == [] and normalize_answer('t') == ['t']
    assert raw[3]['groups'][0]['targets'] == [0]  # input not modified


def test_answer_text():
    answer = [
        {
            'phrase': [{'phrase': 'A man', 'groups': [box(1)]}, ' on ', {'phrase': 'a horse'}],
            'groups': [box(1)],
        },
        ' rides.',
    ]
    assert answer_text(answer) == 'A man on a horse rides.'
    assert answer_text('plain') == 'plain'


def _nested(depth):
    seg = {'phrase': 'x'}
    for _ in range(depth - 1):
        seg = {'phrase': [seg]}
    seg['groups'] = [box(1)]
    return [seg]


@pytest.mark.parametrize(
    'answer, where',
    [
        ([{'phrase': 'a', 'groups': []}], r'answer\[0\]\.groups'),
        ([{'phrase': 'a'}], r'answer\[0\]\.groups'),
        (
            ['ok', {'phrase': 'a', 'groups': [{'units': ['bo x'], 'n': 1}]}],
            r'answer\[1\]\.groups\[0\]\.units\[0\]',
        ),
        ([{'phrase': 'a', 'groups': [{'units': [''], 'n': 1}]}], r'units\[0\]'),
        ([{'phrase': 'a', 'groups': [{'units': ['a,b'], 'n': 1}]}], r'units\[0\]'),
        ([{'phrase': 'a', 'groups': [{'units': ['<box>'], 'n': 1}]}], r'units\[0\]'),
        ([{'phrase': 'a', 'groups': [{'units': ['b[0]'], 'n': 1}]}], r'units\[0\]'),
        ([{'phrase': 'a', 'groups': [{'units': 'box', 'n': 1}]}], r'\.units'),
        ([{'phrase': 'a', 'groups': [{'units': [], 'n': 1}]}], r'\.units'),
        ([{'phrase': 'a', 'groups': [{'units': ['box', 'box'], 'n': 1}]}], r'\.units'),
        ([{'phrase': 'a', 'groups': [{'units': ['box'], 'n': -1}]}], r'\.n'),
        ([{'phrase': 'a', 'groups': [{'units': ['box'], 'n': 1.0}]}], r'\.n'),
        ([{'phrase': 'a', 'groups': [{'units': ['box'], 'n': True}]}], r'\.n'),
        ([{'phrase': 'a', 'groups': [{'units': ['box']}]}], r'\.n'),
        ([{'phrase': 'a', 'groups': {'units': ['box'], 'n': 1}}], r'\.groups'),
        (['see <REF> here'], r'answer\[0\]'),
        ([{'phrase': 'a [VPT]', 'groups': [box(1)]}], r'answer\[0\]\.phrase'),
        (
            [{'phrase': ['x', {'phrase': 'in<Phrase>'}], 'groups': [box(1)]}],
            r'answer\[0\]\.phrase\[1\]\.phrase',
        ),
        ('a <image> b', r'answer'),
        ('[PAD]', r'answer'),
        ([3], r'answer\[0\]'),
        ([{'groups': [box(1)]}], r'answer\[0\]'),
        (None, r'answer'),
        (_nested(MAX_DEPTH + 1), 'deeper'),
    ],
)
def test_validation_names_bad_segment(answer, where):
    with pytest.raises(ValueError, match=where):
        build_answer(answer)


def test_max_depth_is_allowed():
    text = build_answer(_nested(MAX_DEPTH))
    assert text.count('<Phrase>') == MAX_DEPTH
    assert parse_answer(text).answer == normalize_answer(_nested(MAX_DEPTH))


def test_data_format_doc_example():
    # The rendering shown in docs/data_format.md for a record's assistant answer.
    answer = [
        {'phrase': 'two red circles', 'groups': [{'units': ['box'], 'n': 2, 'targets': [3, 5]}]},
        '.',
    ]
    assert build_answer(answer, cot=True) == (
        '<Task>\nUnit decode (True). Class name, target unit and number:\n'
        '- Name: two red circles Unit: box Num: 2\n</Task>\n'
        '<Phrase>two red circles</Phrase>(<Unit>box</Unit>[0]<REF>[1]<REF>).'
    )
