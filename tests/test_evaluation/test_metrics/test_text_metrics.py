# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import logging
import math
import sys

import pytest

from mmrefvlm.evaluation import CaptionMetric, POPEMetric, VQAMetric, meteor_score
from mmrefvlm.evaluation.functional import caption_tokenize

REFS = [
    ['A man riding a horse on a beach.', 'A person rides a brown horse.'],
    ['Two dogs playing with a ball.', 'Dogs chase a red ball in the park.'],
    ['A plate of food with rice and vegetables.'],
    ['A cat sleeping on a sofa.', 'A cat is asleep on the couch.'],
]
PREDS = [
    '<Phrase>A man</Phrase>(<Unit>box</Unit>[0]<REF>) rides a horse on the beach.',
    'Two dogs chase a ball.',
    None,
    'A dog on a sofa.',
]


def _caption_samples(make_sample):
    out = []
    for i, (refs, pred) in enumerate(zip(REFS, PREDS, strict=True)):
        fields = dict(gt_captions=refs)
        if pred is not None:
            fields['pred_text'] = pred
        out.append(make_sample('caption', gt=None, idx=i, **fields))
    out.append(make_sample('vqa', gt=None, idx=9, pred_text='x', gt_vqa_answers=['x']))
    return out


def test_caption_cider_equals_pycocoevalcap(make_sample, evaluate):
    cider_mod = pytest.importorskip('pycocoevalcap.cider.cider')
    res = evaluate(CaptionMetric(), _caption_samples(make_sample), batch_size=3)
    # Reference: pycocoevalcap's Cider on the same tokenisation, TRP stripped, a missing
    # prediction as an empty caption, the VQA sample excluded.
    cands = ['a man rides a horse on the beach', 'two dogs chase a ball', '', 'a dog on a sofa']
    gts = {i: [caption_tokenize(r) for r in refs] for i, refs in enumerate(REFS)}
    expected, _ = cider_mod.Cider().compute_score(gts, {i: [c] for i, c in enumerate(cands)})
    assert res == {'caption/CIDEr': pytest.approx(expected * 100, rel=1e-12)}


def test_caption_references_fall_back_to_gt_text(make_sample, evaluate):
    sample = make_sample(
        'caption',
        gt=None,
        pred_text='a big red car',
        gt_text='<Phrase>A big red car</Phrase>(<Unit>box</Unit>[0]<REF>)',
    )
    other = make_sample(
        'caption',
        gt=None,
        idx=1,
        pred_text='two small brown dogs',
        gt_captions=['two small brown dogs'],
    )
    # Identical captions whose n-grams are unique to their image: CIDEr-D = 10 (x100).
    assert evaluate(CaptionMetric(), [sample, other])['caption/CIDEr'] == pytest.approx(1000.0)
    with pytest.raises(ValueError, match='no reference caption'):
        evaluate(CaptionMetric(), [make_sample('caption', gt=None, pred_text='x')])


def test_meteor_unavailable_is_reported_not_zero(monkeypatch, make_sample, evaluate, caplog):
    # Simulate a machine without pycocoevalcap: METEOR is left out with a warning.
    monkeypatch.setitem(sys.modules, 'pycocoevalcap.meteor.meteor', None)
    with caplog.at_level(logging.WARNING):
        assert meteor_score(['a b'], [['a b']]) is None
    res = evaluate(CaptionMetric(meteor=True), _caption_samples(make_sample))
    assert set(res) == {'caption/CIDEr'}


@pytest.mark.slow
def test_meteor_through_pycocoevalcap(make_sample, evaluate):
    pytest.importorskip('pycocoevalcap.meteor.meteor')
    res = evaluate(CaptionMetric(meteor=True), _caption_samples(make_sample))
    assert 0 < res['caption/METEOR'] < 100
    # An exact copy of the only reference scores close to 1 (METEOR's fragmentation penalty
    # keeps it just below).
    assert meteor_score(['a cat on a mat'], [['a cat on a mat']]) > 0.9


def test_vqa_accuracy_metric(make_sample, evaluate):
    ten = ['two', '2', 'three', 'three', 'three', 'four', 'four', 'five', 'six', 'seven']
    samples = [
        make_sample('vqa', gt=None, pred_text='2', gt_vqa_answers=ten),
        make_sample('vqa', gt=None, idx=1, pred_text='The Dog.', gt_vqa_answers=['dog']),
        make_sample('vqa', gt=None, idx=2, gt_vqa_answers=['cat']),  # no prediction
        make_sample('pope', gt=None, idx=3, pred_text='yes', gt_vqa_answers=['no']),
    ]
    res = evaluate(VQAMetric(), samples)
    assert res == {'vqa/accuracy': pytest.approx((0.6 + 1 + 0) / 3 * 100)}


def test_pope_hand_computed(make_sample, evaluate):
    pairs = [
        ('yes', 'Yes, there is.'),
        ('yes', 'No.'),
        ('yes', None),
        ('no', 'There is no cat.'),
        ('no', 'Yes'),
        ('no', 'no'),
        ('yes', 'yes'),
    ]
    samples = []
    for i, (gt, pred) in enumerate(pairs):
        fields = dict(gt_vqa_answers=[gt])
        if pred is not None:
            fields['pred_text'] = pred
        samples.append(make_sample('pope', gt=None, idx=i, **fields))
    res = evaluate(POPEMetric(), samples, batch_size=3)
    # Predicted yes: samples 0, 4, 6 (TP 0, 6; FP 4). GT yes: 0, 1, 2, 6. Correct: 0, 3, 5, 6.
    p, r = 2 / 3, 2 / 4
    assert res['pope/accuracy'] == pytest.approx(4 / 7 * 100)
    assert res['pope/precision'] == pytest.approx(p * 100)
    assert res['pope/recall'] == pytest.approx(r * 100)
    assert res['pope/F1'] == pytest.approx(2 * p * r / (p + r) * 100)
    assert res['pope/yes_ratio'] == pytest.approx(3 / 7 * 100)
    assert not math.isnan(res['pope/F1'])
