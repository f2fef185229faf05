# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import pytest

from mmrefvlm.trp import WARNING_CODES, CotEntry, CotInfo, build_answer, parse_answer, strip_trp

B1 = {'units': ['box'], 'n': 1}


def refs_of(res):
    return [(r.units, r.triplet, r.group, r.k) for r in res.refs]


def test_parse_one_to_many_positions_and_fields():
    text = 'Look: <Phrase>two capybaras</Phrase>(<Unit>box</Unit>[0]<REF>[1]<REF>), ok.'
    res = parse_answer(text)
    assert res.answer == [
        'Look: ',
        {'phrase': 'two capybaras', 'groups': [{'units': ['box'], 'n': 2}]},
        ', ok.',
    ]
    assert [r.position for r in res.refs] == [text.index('<REF>'), text.rindex('<REF>')]
    assert refs_of(res) == [(('box',), 0, 0, 0), (('box',), 0, 0, 1)]
    assert {r.phrase for r in res.refs} == {'two capybaras'}
    assert res.warnings == [] and res.cot is None


def test_parse_nested_and_multi_group_indices():
    text = (
        '<Phrase><Phrase>dog</Phrase>(<Unit>box</Unit>[0]<REF>) in <Phrase>park'
        '</Phrase></Phrase>(<Unit>box</Unit>[0]<REF>, <Unit>mask,depth</Unit>[0]<REF>'
        '[1]<REF>, <Unit>keypoint</Unit>)'
    )
    res = parse_answer(text)
    assert refs_of(res) == [
        (('box',), 0, 0, 0),
        (('box',), 1, 0, 0),
        (('mask', 'depth'), 1, 1, 0),
        (('mask', 'depth'), 1, 1, 1),
    ]
    assert [r.phrase for r in res.refs] == ['dog', 'dog in park', 'dog in park', 'dog in park']
    assert res.answer[0]['groups'][2] == {'units': ['keypoint'], 'n': 0}
    assert res.answer[0]['phrase'][2] == {'phrase': 'park', 'groups': []}
    assert not res.warnings


def test_known_units_filter_routing_but_keep_answer():
    text = '<Phrase>a</Phrase>(<Unit>box,normal</Unit>[0]<REF>, <Unit>foo</Unit>[0]<REF>)'
    res = parse_answer(text, known_units={'box', 'mask'})
    assert refs_of(res) == [(('box',), 0, 0, 0), ((), 0, 1, 0)]
    assert res.answer[0]['groups'] == [
        {'units': ['box', 'normal'], 'n': 1},
        {'units': ['foo'], 'n': 1},
    ]
    assert res.warning_codes == ['unknown_unit', 'unknown_unit']
    assert refs_of(parse_answer(text)) == [(('box', 'normal'), 0, 0, 0), (('foo',), 0, 1, 0)]


P = '<Phrase>a</Phrase>'


@pytest.mark.parametrize(
    'text, answer, refs, codes',
    [
        # <REF> outside a group: kept with units=(), its "[k]" removed from the text.
        ('see [0]<REF> here', ['see  here'], [((), None, None, None)], {'ref_outside_group'}),
        # stray tags and parentheses in plain text.
        ('x</Phrase> y</Unit>z</Task>', ['x yz'], [], {'stray_tag'}),
        ('a ) b ( c [2] d', ['a ) b ( c [2] d'], [], set()),
        # truncated anywhere.
        ('<Phrase>two dogs', ['two dogs'], [], {'unclosed_phrase', 'truncated'}),
        (
            P + '(<Unit>box</Unit>[0]<REF>[1]',
            [{'phrase': 'a', 'groups': [B1]}],
            [(('box',), 0, 0, 0)],
            {'truncated'},
        ),
        (P + '(<Unit>bo', ['a'], [], {'truncated', 'phrase_without_groups'}),
        (P + '(', ['a'], [], {'truncated', 'phrase_without_groups'}),
        (
            '<Phrase>x <Phrase>dog</Phrase>(<Unit>box</Unit>[0]<REF>) in',
            ['x ', {'phrase': 'dog', 'groups': [B1]}, ' in'],
            [(('box',), 0, 0, 0)],
            {'unclosed_phrase', 'truncated'},
        ),
        # missing or wrong [k]: ranks are counted, one warning per group.
        (
            P + '(<Unit>box</Unit><REF>[5]<REF>[7]<REF>)',
            [{'phrase': 'a', 'groups': [{'units': ['box'], 'n': 3}]}],
            [(('box',), 0, 0, k) for k in range(3)],
            {'index_mismatch'},
        ),
        # <Unit> without </Unit>.
        (
            P + '(<Unit>box[0]<REF>) b',
            [{'phrase': 'a', 'groups': [B1]}, ' b'],
            [(('box',), 0, 0, 0)],
            {'unclosed_unit'},
        ),
        # empty / invalid unit names: a group left without units is dropped, its refs unrouted.
        (
            P + '(<Unit></Unit>[0]<REF>) x',
            ['a x'],
            [((), None, None, None)],
            {'empty_unit', 'phrase_without_groups'},
        ),
        (
            P + '(<Unit> box , ,bo x</Unit>[0]<REF>)',
            [{'phrase': 'a', 'groups': [B1]}],
            [(('box',), 0, 0, 0)],
            {'empty_unit', 'invalid_unit'},
        ),
        # missing "(" / "," / ")".
        (
            P + '<Unit>box</Unit>[0]<REF>) b',
            [{'phrase': 'a', 'groups': [B1]}, ' b'],
            [(('box',), 0, 0, 0)],
            {'missing_paren'},
        ),
        (
            P + '(<Unit>box</Unit>[0]<REF><Unit>mask</Unit>)',
            [{'phrase': 'a', 'groups': [B1, {'units': ['mask'], 'n': 0}]}],
            [(('box',), 0, 0, 0)],
            {'malformed_group'},
        ),
        (
            P + '(<Unit>box</Unit>[0]<REF> and <Phrase>b</Phrase>(<Unit>box</Unit>[0]<REF>)',
            [{'phrase': 'a', 'groups': [B1]}, ' and ', {'phrase': 'b', 'groups': [B1]}],
            [(('box',), 0, 0, 0), (('box',), 1, 0, 0)],
            {'unclosed_group'},
        ),
        (
            P + '(<Unit>box</Unit>[0]<REF> junk) tail',
            [{'phrase': 'a', 'groups': [B1]}, ' tail'],
            [(('box',), 0, 0, 0)],
            {'malformed_group'},
        ),
        # a group without phrase: kept under phrase "", its "(" removed from the text.
        (
            'the dog (<Unit>box</Unit>[0]<REF>) runs',
            ['the dog ', {'phrase': '', 'groups': [B1]}, ' runs'],
            [(('box',), 0, 0, 0)],
            {'orphan_group'},
        ),
        # a top-level phrase without groups becomes text (nested ones inside it too).
        (
            '<Phrase><Phrase>dog</Phrase> in park</Phrase> is here',
            ['dog in park is here'],
            [],
            {'phrase_without_groups'},
        ),
        # <image> / [VPT] in an answer are dropped.
        (
            '<Phrase>a<image></Phrase>(<Unit>box</Unit>[0]<REF>[VPT])',
            [{'phrase': 'a', 'groups': [B1]}],
            [(('box',), 0, 0, 0)],
            {'unexpected_token'},
        ),
        # non-ASCII text everywhere.
        (
            '<Phrase>日本の 猫 ünï</Phrase>(<Unit>box</Unit>[0]<REF>) — ok ✓',
            [{'phrase': '日本の 猫 ünï', 'groups': [B1]}, ' — ok ✓'],
            [(('box',), 0, 0, 0)],
            set(),
        ),
    ],
)
def test_recovery(text, answer, refs, codes):
    res = parse_answer(text)
    assert res.answer == answer
    assert refs_of(res) == refs
    assert set(res.warning_codes) == codes
    assert set(res.warning_codes) <= set(WARNING_CODES)
    assert all(text.startswith('<REF>', r.position) for r in res.refs)
    build_answer(res.answer)  # recovered answers are always buildable


def test_runaway_ref_repetition():
    text = P + '(<Unit>box</Unit>' + ''.join(f'[{k}]<REF>' for k in range(500))
    res = parse_answer(text)
    assert len(res.refs) == 500 and res.refs[-1].k == 499
    assert res.answer[0]['groups'][0]['n'] == 500
    assert set(res.warning_codes) == {'repetition', 'truncated'}
    res = parse_answer(P + '(<Unit>box</Unit>' + '[0]<REF>' * 500 + ')')
    assert res.warning_codes.count('index_mismatch') == 1 and len(res.refs) == 500


def test_runaway_phrase_repetition():
    one = '<Phrase>dog</Phrase>(<Unit>box</Unit>[0]<REF>), '
    res = parse_answer(one * 40 + '<Phrase>do')
    assert len(res.refs) == 40 and [r.triplet for r in res.refs] == list(range(40))
    assert res.warning_codes.count('repetition') == 1
    assert 'truncated' in res.warning_codes
    assert 'repetition' not in parse_answer(one * 7).warning_codes


def test_too_deep_nesting_is_ignored_not_fatal():
    text = '<Phrase>' * 200 + 'x' + '</Phrase>' * 200 + '(<Unit>box</Unit>[0]<REF>)'
    res = parse_answer(text)
    assert 'too_deep' in res.warning_codes
    assert refs_of(res) == [(('box',), 0, 0, 0)]
    assert build_answer(res.answer).count('<Phrase>') == 32


COT_T = (
    '<Task>\nUnit decode (True). Class name, target unit and number:\n'
    '- Name: two dogs Unit: box,mask Num: 2\n</Task>\n'
)
BODY = '<Phrase>two dogs</Phrase>(<Unit>box,mask</Unit>[0]<REF>[1]<REF>)'


def test_cot_read_and_checked():
    res = parse_answer(COT_T + BODY)
    assert res.cot == CotInfo(True, (CotEntry('two dogs', ('box', 'mask'), 2),))
    assert res.warnings == [] and res.refs[0].position == len(COT_T) + BODY.index('<REF>')
    res = parse_answer(COT_T + BODY.replace('[1]<REF>', ''))
    assert res.warning_codes == ['cot_mismatch']
    res = parse_answer('<Task>\nUnit decode (False).\n</Task>\n' + BODY)
    assert res.cot == CotInfo(False, ()) and res.warning_codes == ['cot_mismatch']
    res = parse_answer('<Task>\nUnit decode (False).\n</Task>\nplain\n')
    assert res.answer == ['plain\n'] and res.warnings == []


@pytest.mark.parametrize(
    'text, codes, answer',
    [
        ('<Task>\nUnit decode (True).\n- Name: x Unit box\n</Task>\nhi', {'cot_malformed'}, ['hi']),
        (
            '<Task>\nUnit decode (True).\n- Name: x Unit: box Num: 1\n</Task>\nhi',
            {'cot_mismatch'},
            ['hi'],
        ),
        (
            '<Task>\nUnit decode (False).\n' + BODY,
            {'unclosed_task', 'cot_mismatch'},
            [{'phrase': 'two dogs', 'groups': [{'units': ['box', 'mask'], 'n': 2}]}],
        ),
        ('<Task>\nUnit decode (Tr', {'truncated', 'cot_malformed'}, []),
        (
            'hi ' + COT_T + BODY,
            {'misplaced_cot'},
            ['hi ', {'phrase': 'two dogs', 'groups': [{'units': ['box', 'mask'], 'n': 2}]}],
        ),
    ],
)
def test_cot_recovery(text, codes, answer):
    res = parse_answer(text)
    assert set(res.warning_codes) == codes
    assert res.answer == answer


def test_strip_trp():
    text = COT_T + (
        '<Phrase>A man</Phrase>(<Unit>box</Unit>[0]<REF>) rides <Phrase>a horse'
        '</Phrase>(<Unit>mask</Unit>).'
    )
    assert strip_trp(text) == 'A man rides a horse.'
    assert strip_trp('plain (text) [1]') == 'plain (text) [1]'
    assert strip_trp('') == ''


def test_parse_rejects_non_text():
    with pytest.raises(TypeError):
        parse_answer(b'<REF>')
    with pytest.raises(TypeError):
        parse_answer('x', known_units='box')
