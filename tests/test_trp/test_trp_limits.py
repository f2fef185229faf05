# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The parser's documented limits (docs/trp.md, recovery table), each tested exactly at the limit.

The other parser tests sit far from the limits (7 and 40 repeats, 500 refs, 200 levels); an
off-by-one (``>=`` for ``>``) passes them. Here every limit is tried at the value it allows and at
the first value it refuses.
"""

from mmrefvlm.trp import MAX_DEPTH, build_answer, parse_answer
from mmrefvlm.trp.parser import MAX_GROUP_REFS, REPEAT_TRIPLETS


def test_documented_values():
    # docs/trp.md: "more than 100 <REF>", "8 or more times in a row", "at most MAX_DEPTH (32)".
    assert (MAX_GROUP_REFS, REPEAT_TRIPLETS, MAX_DEPTH) == (100, 8, 32)


def _group_of(n):
    return '<Phrase>dogs</Phrase>(<Unit>box</Unit>' + ''.join(f'[{k}]<REF>' for k in range(n)) + ')'


def test_group_size_at_the_limit_is_not_repetition():
    res = parse_answer(_group_of(MAX_GROUP_REFS))
    assert res.warning_codes == []
    assert len(res.refs) == MAX_GROUP_REFS and res.answer[0]['groups'][0]['n'] == MAX_GROUP_REFS


def test_group_size_one_over_the_limit_warns_at_that_ref():
    res = parse_answer(_group_of(MAX_GROUP_REFS + 1))
    assert res.warning_codes == ['repetition']
    # Everything is kept; the warning points at the first <REF> beyond the limit.
    assert len(res.refs) == MAX_GROUP_REFS + 1
    assert res.warnings[0].position == res.refs[MAX_GROUP_REFS].position


ONE = '<Phrase>dog</Phrase>(<Unit>box</Unit>[0]<REF>), '


def test_triplet_repeated_one_time_less_than_the_limit_is_fine():
    assert parse_answer(ONE * (REPEAT_TRIPLETS - 1)).warning_codes == []


def test_triplet_repeated_exactly_the_limit_warns_once_at_the_last():
    text = ONE * REPEAT_TRIPLETS
    res = parse_answer(text)
    assert res.warning_codes == ['repetition']
    assert res.warnings[0].position == len(ONE) * (REPEAT_TRIPLETS - 1)  # the 8th <Phrase>
    assert len(res.refs) == REPEAT_TRIPLETS  # kept


def test_repeat_run_counts_phrase_and_units_only():
    # The key is (phrase, units): a different count of <REF> still repeats the triplet ...
    two = '<Phrase>dog</Phrase>(<Unit>box</Unit>[0]<REF>[1]<REF>), '
    half = REPEAT_TRIPLETS // 2
    assert parse_answer((ONE * half) + (two * (REPEAT_TRIPLETS - half))).warning_codes == [
        'repetition'
    ]
    # ... while another unit or phrase breaks the run, which then starts again from 1.
    for other in ('<Phrase>dog</Phrase>(<Unit>mask</Unit>[0]<REF>), ', ONE.replace('dog', 'cat')):
        broken = ONE * (REPEAT_TRIPLETS - 1) + other + ONE * (REPEAT_TRIPLETS - 1)
        assert parse_answer(broken).warning_codes == [], other


def _nested(levels):
    return '<Phrase>' * levels + 'x' + '</Phrase>' * levels + '(<Unit>box</Unit>[0]<REF>)'


def test_nesting_exactly_max_depth_is_kept_whole():
    res = parse_answer(_nested(MAX_DEPTH))
    assert res.warning_codes == []
    assert build_answer(res.answer).count('<Phrase>') == MAX_DEPTH
    assert len(res.refs) == 1 and res.refs[0].units == ('box',)


def test_nesting_one_over_max_depth_drops_one_level():
    res = parse_answer(_nested(MAX_DEPTH + 1))
    assert res.warning_codes == ['too_deep']
    assert build_answer(res.answer).count('<Phrase>') == MAX_DEPTH
    assert len(res.refs) == 1 and res.refs[0].units == ('box',)
