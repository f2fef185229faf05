# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import math

import numpy as np
import pytest

from mmrefvlm.evaluation.functional import (
    caption_tokenize,
    cider_d,
    count_answer_refs,
    normalize_vqa_answer,
    pope_yes_no,
    strip_trp,
    vqa_accuracy,
)
from mmrefvlm.evaluation.functional.text import _fallback_strip_trp


@pytest.mark.parametrize(
    'raw, norm',
    [
        ('Two', '2'),
        ('the dog.', 'dog'),
        ('A red, white car', 'red white car'),
        ('1,000', '1000'),
        ('3.5 meters', '3.5 meters'),
        ('yes!', 'yes'),
        ('Dont know', "don't know"),
        ('left-hand side', 'left hand side'),
        ('(none)', '0'),
    ],
)
def test_normalize_vqa_answer(raw, norm):
    assert normalize_vqa_answer(raw) == norm


def test_vqa_accuracy_ten_answers_hand_computed():
    answers = ['two', '2', 'three', 'three', 'three', 'four', 'four', 'five', 'six', 'seven']
    # pred '2' matches 2 answers. Leaving out one of those 2: 1 match -> 1/3 (2 subsets);
    # leaving out any of the other 8: 2 matches -> 2/3. Mean = (2/3 + 16/3) / 10 = 0.6.
    assert vqa_accuracy('2', answers) == pytest.approx(0.6)
    # 'three' said 3 times: leaving one of them out -> 2/3 (3 subsets), else 1 (7) -> 0.9.
    assert vqa_accuracy('Three.', answers) == pytest.approx((3 * 2 / 3 + 7) / 10)
    assert vqa_accuracy('eight', answers) == 0.0
    assert vqa_accuracy('a cat', ['cat']) == 1.0 and vqa_accuracy('dog', ['cat', 'cow']) == 0.0


def test_pope_yes_no():
    assert pope_yes_no('Yes, there is a dog.') == 'yes'
    assert pope_yes_no('No, there is not.') == 'no'
    assert pope_yes_no('There is not a dog in the image.') == 'no'
    assert pope_yes_no('I see a dog. No cat.') == 'yes'  # only the first sentence counts
    assert pope_yes_no('') is None and pope_yes_no(None) is None


def test_caption_tokenize():
    assert caption_tokenize("A man's dog, running -- fast!") == "a man 's dog running fast"
    assert caption_tokenize("Don't (x) well-known.") == "do n't x well-known"


def test_strip_trp_fallback_removes_cot_units_and_tags():
    text = (
        '<Task>\nUnit decode (True). Class name, target unit and number:\n- Name: dog Unit: '
        'box Num: 2\n</Task>\nTwo <Phrase>dogs</Phrase>(<Unit>box</Unit>[0]<REF>[1]<REF>) '
        'play with <Phrase>a ball</Phrase>(<Unit>mask</Unit>[0]<REF>).'
    )
    assert _fallback_strip_trp(text) == 'Two dogs play with a ball.'
    # mmrefvlm.trp.strip_trp when present, else the fallback: same plain text.
    assert strip_trp(text) == 'Two dogs play with a ball.'
    assert _fallback_strip_trp('a <Phrase>b</Phrase>(<Unit>box</Unit>[0]<REF>) .') == 'a b.'
    assert strip_trp(None) == ''


def test_count_answer_refs_nested_and_multi_unit():
    answer = [
        {
            'phrase': [
                'the ',
                {'phrase': 'cup', 'groups': [{'units': ['box'], 'n': 1}]},
                ' on a table',
            ],
            'groups': [{'units': ['box', 'mask'], 'n': 2}],
        },
        ' and ',
        {'phrase': 'no cat', 'groups': [{'units': ['mask'], 'n': 0}]},
    ]
    assert count_answer_refs(answer) == {'box': 3, 'mask': 2}
    assert count_answer_refs('plain text') == {} and count_answer_refs(None) == {}
    with pytest.raises(TypeError, match='segment'):
        count_answer_refs([3])


def test_cider_identical_caption_scores_ten():
    # Each image's n-grams appear only in its own references (df = 1), so both vectors are
    # proportional to the same counts: cosine 1 for n = 1..4, no length penalty -> 10.
    score, per = cider_d(
        ['a big red car', 'two small brown dogs'], [['a big red car'], ['two small brown dogs']]
    )
    assert per == pytest.approx([10.0, 10.0]) and score == pytest.approx(10.0)
    # Three words have no 4-gram: s_4 = 0, so the score is 10 * 3 / 4.
    assert cider_d(['a red car', 'x y z'], [['a red car'], ['p q']])[1][0] == pytest.approx(7.5)
    # A caption sharing no n-gram scores 0.
    assert cider_d(['blue sky', 'x'], [['a red car'], ['y z']])[1][0] == 0.0


def test_cider_length_penalty_hand_computed():
    # Image 1: candidate 'a b' vs reference 'a b c' (3 tokens). All n-grams have df = 1 in a
    # 2-image corpus, so every weight is tf * log 2 and:
    #   n=1: (a, b) vs (a, b, c): dot = 2 w^2, norms sqrt(2) w and sqrt(3) w -> 2 / sqrt(6)
    #   n=2: (ab) vs (ab, bc): 1 / sqrt(2); n=3, n=4: candidate has none -> 0.
    # Length penalty exp(-1 / 72); score = 10 * mean_n * penalty.
    _, per = cider_d(['a b', 'q'], [['a b c'], ['r']])
    expected = 10 * (2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4 * math.exp(-1 / 72)
    assert per[0] == pytest.approx(expected)


def test_cider_equals_pycocoevalcap():
    cider_mod = pytest.importorskip('pycocoevalcap.cider.cider')
    refs = [
        [
            'a man riding a horse on a beach',
            'a person rides a brown horse',
            'man on horse near the ocean',
        ],
        ['two dogs playing with a ball', 'dogs chase a red ball in the park'],
        ['a plate of food with rice and vegetables', 'rice and vegetables on a plate'],
        ['a cat sleeping on a sofa', 'a cat is asleep on the couch', 'sleeping cat'],
    ]
    cands = [
        'a man rides a horse on the beach',
        'two dogs chase a ball',
        'a plate with rice',
        'a dog on a sofa',
    ]
    ours, per = cider_d(cands, refs)
    ref_score, ref_per = cider_mod.Cider().compute_score(
        {i: r for i, r in enumerate(refs)}, {i: [c] for i, c in enumerate(cands)}
    )
    assert ours == pytest.approx(ref_score, rel=1e-12)
    np.testing.assert_allclose(per, ref_per, rtol=1e-12)
