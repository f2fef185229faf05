# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Property: parse(build(x)) == normalize(x), from text and from demo-tokenizer ids."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmrefvlm.tokenization import build_tokenizer
from mmrefvlm.trp import (
    answer_text,
    build_answer,
    iter_groups,
    normalize_answer,
    parse_answer,
    parse_token_ids,
    strip_trp,
)
from mmrefvlm.trp.builder import BANNED_IN_TEXT

TOK = build_tokenizer('demo')
# Text that the tokenizer would read as its own special tokens (e.g. "</s>") is excluded: the
# data pipeline must not produce it (see docs/trp.md).
_BANNED = tuple(BANNED_IN_TEXT) + tuple(TOK.hf.all_special_tokens)

_PIECES = st.sampled_from(
    ['Unit: ', 'Num: ', '- Name: ', '<Phr', 'Unit decode (True)', '[0]', ')(', ', ', ' (', '\n']
)
_CHARS = st.text(
    st.one_of(
        st.sampled_from('()[],.<>:-_0123456789 \n\t'), st.characters(exclude_categories=('Cs',))
    ),
    max_size=5,
)
TEXT = (
    st.lists(st.one_of(_CHARS, _PIECES), max_size=3)
    .map(''.join)
    .filter(lambda s: not any(b in s for b in _BANNED))
)
UNIT = st.one_of(
    st.sampled_from(['box', 'mask', 'keypoint', 'depth', 'ünït', 'a.b-c:1']),
    st.from_regex(r'[^\s,\[\]()<>]{1,6}', fullmatch=True),
)
GROUP = st.fixed_dictionaries(
    {'units': st.lists(UNIT, min_size=1, max_size=3, unique=True), 'n': st.integers(0, 3)},
    optional={'targets': st.just([0])},
)


def segments(depth: int, nested: bool, min_size: int = 0) -> st.SearchStrategy:
    if depth == 0:
        return st.lists(TEXT, max_size=2)
    # Phrase groups listed twice: about two thirds of the segments are phrase groups.
    group = phrase_group(depth, nested)
    return st.lists(st.one_of(group, TEXT, group), min_size=min_size, max_size=4)


def phrase_group(depth: int, nested: bool) -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {
            'phrase': st.one_of(TEXT, segments(depth - 1, nested=True, min_size=1)),
            'groups': st.lists(GROUP, min_size=0 if nested else 1, max_size=3),
        }
    )


_TOP = segments(3, nested=False, min_size=1)
ANSWERS = st.one_of(_TOP, TEXT, _TOP, _TOP)  # plain-text answers a quarter of the time
SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def expected_refs(answer):
    return [(t, g, k) for t, g, _, grp in iter_groups(answer) for k in range(grp['n'])]


def check(res, x, cot):
    canon = normalize_answer(x)
    assert res.answer == canon
    assert res.warnings == []
    assert [(r.triplet, r.group, r.k) for r in res.refs] == expected_refs(canon)
    assert [r.units for r in res.refs] == [
        tuple(grp['units']) for _, _, _, grp in iter_groups(canon) for _ in range(grp['n'])
    ]
    if cot:
        assert res.cot.decode == bool(list(iter_groups(canon)))
        assert [e.num for e in res.cot.entries] == [g['n'] for *_, g in iter_groups(canon)]
    else:
        assert res.cot is None


@SETTINGS
@given(x=ANSWERS, cot=st.booleans())
def test_roundtrip_text(x, cot):
    text = build_answer(x, cot=cot)
    res = parse_answer(text)
    check(res, x, cot)
    assert all(text.startswith('<REF>', r.position) for r in res.refs)
    canon = normalize_answer(x)
    assert build_answer(canon, cot=cot) == text  # canonical form renders the same string
    assert strip_trp(text) == answer_text(x)


@SETTINGS
@given(x=ANSWERS, cot=st.booleans())
def test_roundtrip_token_ids(x, cot):
    ids = TOK.encode(build_answer(x, cot=cot)) + [TOK.ids.eos, TOK.ids.pad]
    res = parse_token_ids(ids, TOK)
    check(res, x, cot)
    assert all(ids[r.position] == TOK.ids.ref for r in res.refs)
