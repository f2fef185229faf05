# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import pytest

from mmrefvlm.evaluation import BagOfWordsTextEncoder, GCGMetric
from mmrefvlm.evaluation.functional import caption_tokenize, cider_d

pytest.importorskip('pycocotools')

CAPTIONS = ['A man rides a horse.', 'A dog sleeps.', 'A cat sits.']
PRED_TEXTS = [
    '<Phrase>man</Phrase>(<Unit>box</Unit>[0]<REF>) on <Phrase>the zebra</Phrase>'
    '(<Unit>box</Unit>[0]<REF>) near a <Phrase>tree</Phrase>(<Unit>box</Unit>[0]<REF>).',
    'A <Phrase>dog</Phrase>(<Unit>box</Unit>[0]<REF>) sleeps.',
    None,
]


def _samples(make_sample, rect, unit):
    def entry(label, box, score=None):
        e = dict(unit=unit, label=label)
        if unit == 'box':
            e['bbox'] = [float(v) for v in box]
        else:
            e['mask'] = rect((40, 40), box)
        if score is not None:
            e['score'] = score
        return e

    task = f'gcg_{unit}'
    gts = [
        [entry('a man', (0, 0, 10, 10)), entry('a horse', (20, 20, 30, 30))],
        [entry('a dog', (5, 5, 15, 15))],
        [entry('a cat', (0, 0, 10, 10))],
    ]
    preds = [
        [
            entry('man', (0, 0, 10, 10), 0.9),
            entry('the zebra', (20, 20, 30, 26), 0.8),
            entry('tree', (0, 30, 5, 35), 0.7),
        ],
        [entry('dog', (5, 5, 15, 14), 0.6)],
        None,
    ]
    out = []
    for i in range(3):
        fields = dict(gt_captions=[CAPTIONS[i]])
        if PRED_TEXTS[i] is not None:
            fields['pred_text'] = PRED_TEXTS[i]
        out.append(make_sample(task, shape=(40, 40), idx=i, gt=gts[i], pred=preds[i], **fields))
    return out


@pytest.mark.parametrize('unit', ['box', 'mask'])
def test_gcg_hand_computed(make_sample, evaluate, rect, unit):
    metric = GCGMetric(unit=unit, text_encoder=BagOfWordsTextEncoder())
    res = evaluate(metric, _samples(make_sample, rect, unit))
    # mIoU: image 1 pairs IoU 1 (man) and 0.6 (zebra on the horse) -> 0.8; image 2: 0.9;
    # image 3 has no prediction -> 0. Mean over images.
    assert res['gcg/mIoU'] == pytest.approx((0.8 + 0.9 + 0.0) / 3 * 100, rel=1e-5)
    # Recall: man (IoU 1, cos('man', 'a man') = 0.71) and dog (IoU 0.9, 0.71) count; the zebra
    # box overlaps the horse (0.6) but cos('the zebra', 'a horse') = 0 is not > 0.5; cat missed.
    assert res['gcg/recall'] == pytest.approx(50.0)
    # AP50 by score: TP (0.9), TP (0.8), FP (0.7), TP (0.6) over 4 GT. Interpolated precision is
    # 1 up to recall 0.5 (51 of COCO's 101 recall points) and 0.75 up to 0.75 (25 points).
    assert res['gcg/AP50'] == pytest.approx((51 + 25 * 0.75) / 101 * 100)
    cands = [
        caption_tokenize('man on the zebra near a tree.'),
        caption_tokenize('A dog sleeps.'),
        '',
    ]
    expected = cider_d(cands, [[caption_tokenize(c)] for c in CAPTIONS])[0] * 100
    assert res['gcg/CIDEr'] == pytest.approx(expected)


def test_gcg_validation():
    with pytest.raises(ValueError, match='units'):
        GCGMetric(unit='keypoint', text_encoder=BagOfWordsTextEncoder())
    with pytest.raises(TypeError, match='text_encoder'):
        GCGMetric(text_encoder=3)
