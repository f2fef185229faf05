# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The SAM-prompt text codec: hand cases, round trip, and 10,000 fuzzed strings."""

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projects.sam4mllm.sam4mllm_seg.prompt_text import (
    PROMPT_WARNING_CODES,
    PromptCodec,
    PromptGroup,
)

NUM_FUZZ = 10_000


def test_format_and_bins():
    codec = PromptCodec(1000)
    assert codec.box_bins([0, 0, 64, 48], (48, 64)) == (0, 0, 999, 999)
    assert codec.box_bins([16, 12, 32, 24], (48, 64)) == (250, 250, 499, 499)
    group = PromptGroup((250, 250, 499, 499), ((300, 310, 1), (5, 6, 0)))
    assert codec.format_groups([group]) == '[250,250,499,499] (300,310,1) (005,006,0)'
    assert codec.format_groups([group], with_points=False) == '[250,250,499,499]'
    assert codec.format_groups([]) == 'No object found.'
    box, pts = codec.to_pixels(group, (48, 64))
    assert box == pytest.approx([16, 12, 32, 24])  # bin edges give the box back
    assert pts[0] == pytest.approx((64 * 300.5 / 1000, 48 * 310.5 / 1000, 1))
    assert PromptCodec(100).format_point(3, 45, 1) == '(03,45,1)'


def test_hand_cases():
    codec = PromptCodec(100, max_groups=2, max_points=2)
    res = codec.parse('No object found.')
    assert res.no_object and not res.groups and not res.warnings
    res = codec.parse('(1,2,1) [10,20,5,30] (3,4) (5,6,7) (1,1,0) [0,0,1,1]')
    assert res.warning_codes == [
        'orphan_point',
        'inverted_box',
        'unlabelled_point',
        'bad_label',
        'too_many_points',
    ]
    assert res.groups == [
        PromptGroup((5, 20, 10, 30), ((3, 4, 1), (5, 6, 1))),
        PromptGroup((0, 0, 1, 1)),
    ]
    res = codec.parse('[1,1,2,2] [3,3,4,4] [5,5,6,6] (7,7,1) [ 150 , 2,3,4]')
    assert [g.box for g in res.groups] == [(1, 1, 2, 2), (3, 3, 4, 4)]
    assert res.warning_codes == ['too_many_groups']  # the dropped boxes' points and ranges too
    res = codec.parse('[1,2,3 garbage (9,9,1) no object')
    assert not res.groups and res.no_object and res.warning_codes == ['orphan_point', 'malformed']
    res = codec.parse('[1,1,200,2] but also no OBJECT')
    assert res.groups[0].box == (1, 1, 99, 2)
    assert res.warning_codes == ['out_of_range', 'conflict'] and not res.no_object
    res = codec.parse('the red circle')
    assert res.warning_codes == ['no_prompt'] and not res.groups and not res.no_object
    assert codec.parse(None).warning_codes == ['no_prompt']  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PromptCodec(100, no_object_text='Nothing [0].')


def _random_groups(rng, codec, max_groups=4):
    groups = []
    for _ in range(rng.randint(0, max_groups)):
        x1, x2 = sorted(rng.randrange(codec.num_bins) for _ in range(2))
        y1, y2 = sorted(rng.randrange(codec.num_bins) for _ in range(2))
        pts = tuple(
            (rng.randrange(codec.num_bins), rng.randrange(codec.num_bins), rng.randint(0, 1))
            for _ in range(rng.randint(0, 4))
        )
        groups.append(PromptGroup((x1, y1, x2, y2), pts))
    return groups


@pytest.mark.parametrize('num_bins', [100, 1000])
def test_round_trip(num_bins):
    rng, codec = random.Random(num_bins), PromptCodec(num_bins)
    for _ in range(500):
        groups = _random_groups(rng, codec)
        for with_points in (True, False):
            text = codec.format_groups(groups, with_points=with_points)
            res = codec.parse(text)
            want = groups if with_points else [PromptGroup(g.box) for g in groups]
            assert res.groups == want and not res.warnings
            assert res.no_object == (not groups)


PIECES = ['[', ']', '(', ')', ',', ' ', '0', '7', '99', '1000', '12345678', '-', 'No object', '\n']
PIECES += ['found', '.', 'Yes', 'ünï', '日本', '٣', '[1,2,3,4]', '(5,6,1)', '(5,6)', '\x00', '\t']


def _mutate(rng, text):
    seq = list(text)
    for _ in range(rng.randint(1, 5)):
        i = rng.randint(0, len(seq))
        j = min(len(seq), i + rng.randint(1, 6))
        op = rng.random()
        if op < 0.25:
            del seq[i:j]
        elif op < 0.55:
            seq[i:i] = [rng.choice(PIECES) for _ in range(rng.randint(1, 3))]
        elif op < 0.7:
            seq[i:i] = seq[i:j]
        elif op < 0.8:
            seq = seq[:i]
        elif op < 0.9:  # runaway repetition, as a model at max_new_tokens does
            seq[i:i] = (seq[i:j] or [rng.choice(PIECES)]) * rng.randint(10, 80)
        else:
            seq[i:j] = [rng.choice('0123456789')] * (j - i)
    return ''.join(seq)


def check_invariants(codec, text, res):
    assert all(w.code in PROMPT_WARNING_CODES for w in res.warnings)
    assert all(0 <= w.position <= len(text) for w in res.warnings)
    assert len(res.groups) <= codec.max_groups
    for g in res.groups:
        x1, y1, x2, y2 = g.box
        assert 0 <= x1 <= x2 < codec.num_bins and 0 <= y1 <= y2 < codec.num_bins
        assert len(g.points) <= codec.max_points
        for x, y, lab in g.points:
            assert 0 <= x < codec.num_bins and 0 <= y < codec.num_bins and lab in (0, 1)
    assert not (res.no_object and res.groups)
    if '[' not in text:
        assert not res.groups
    if not res.groups and not res.no_object:
        assert 'no_prompt' in res.warning_codes
    # Re-writing what was recovered parses back to the same prompts, warning-free.
    again = codec.parse(codec.format_groups(res.groups))
    assert again.groups == res.groups and not again.warnings


def test_fuzz_never_raises():
    """10,000 mutated answers (cut, repeated, spliced with brackets, digits, unicode)."""
    rng = random.Random(0)
    codec = PromptCodec(1000, max_groups=8, max_points=6)
    warned = 0
    for it in range(NUM_FUZZ):
        if it % 4 == 0:
            base = codec.format_groups(_random_groups(rng, codec, 5), with_points=it % 8 == 0)
        text = _mutate(rng, base)
        res = codec.parse(text)
        check_invariants(codec, text, res)
        warned += bool(res.warnings)
    assert warned > NUM_FUZZ // 2  # the mutations do break answers


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text(text):
    codec = PromptCodec(100)
    check_invariants(codec, text, codec.parse(text))


def test_linear_time():
    codec = PromptCodec(1000)
    text = '[1,2,3,4] (5,6,1) ' * 20_000 + '[' * 50_000 + '(1,' * 50_000
    start = time.perf_counter()
    res = codec.parse(text)
    assert time.perf_counter() - start < 5.0
    assert len(res.groups) == codec.max_groups
    assert set(res.warning_codes) == {'too_many_groups', 'malformed'}
