# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""A diverged model scores as misses in every metric, never as perfect (issue 17, class 1).

Every prediction is NaN or +-inf (text metrics: garbage, or a non-text ``pred_text``), with the
right count and labels, so only the numbers are broken. Every score must be that of a model
that hits nothing, and ``invalid_preds`` counts the broken predictions. Before: NaN boxes gave
COCO mAP 100 (pycocotools' ``iou < thr`` is False for NaN), all-NaN keypoints OKS AP = AR = 100,
NaN float masks covered the whole image, interactive grounding's cIoU was NaN, NaN scores were
read as 1.0, a NaN ``pred_text`` crashed the text metrics, and POPE read garbage as "yes".
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmrefvlm.evaluation import (
    BagOfWordsTextEncoder,
    CaptionMetric,
    DepthMetric,
    GCGMetric,
    GRESMetric,
    InteractiveGroundingMetric,
    KeypointMetric,
    OpenVocabMetric,
    POPEMetric,
    RECMetric,
    RESMetric,
    TRPParseMetric,
    VQAMetric,
)
from projects.example_unit.point_unit import PointMetric

SHAPE = (40, 40)
BOXES = [[2.0, 2.0, 12.0, 12.0], [20.0, 20.0, 34.0, 30.0]]
BAD = {'nan': float('nan'), 'inf': float('inf'), '-inf': float('-inf')}
#: What a diverged LLM writes: one token repeated until max_new_tokens.
GARBAGE = ['!!!!!!!!!!!!!!!!', '<unk> <unk> <unk> <unk>', 'qzx vwk qzx vwk', float('nan')]


def _box_entries(unit, bad=None, labels=('dog', 'cat'), rect=None):
    out = []
    for box, label in zip(BOXES, labels, strict=True):
        e = dict(unit=unit, label=label)
        if unit in ('box', 'keypoint') or rect is None:
            e['bbox'] = [bad] * 4 if bad is not None else box
        if rect is not None and unit == 'mask':
            m = rect(SHAPE, [int(v) for v in box]).float()
            e['mask'] = torch.full(SHAPE, bad) if bad is not None else m
        out.append(e)
    return out


def _assert_all_zero(res, keys, num_invalid):
    for key in keys:
        assert res[key] == 0, (key, res)
    invalid = [k for k in res if k.endswith('/invalid_preds')]
    assert len(invalid) == 1 and res[invalid[0]] == num_invalid, res


@pytest.mark.parametrize('bad', BAD)
def test_rec(make_sample, evaluate, bad):
    samples = [
        make_sample('rec', shape=SHAPE, gt=_box_entries('box'), pred=_box_entries('box', BAD[bad]))
    ]
    res = evaluate(RECMetric(), samples)
    _assert_all_zero(res, ['rec/Acc@0.5', 'rec/mIoU', 'rec/recall', 'rec/F1'], 2)


@pytest.mark.parametrize('bad', BAD)
@pytest.mark.parametrize('metric,task', [(RESMetric, 'res'), (GRESMetric, 'gres')])
def test_res_gres(make_sample, evaluate, rect, bad, metric, task):
    samples = [
        make_sample(
            task,
            shape=SHAPE,
            gt=_box_entries('mask', rect=rect),
            pred=_box_entries('mask', BAD[bad], rect=rect),
        )
    ]
    if task == 'gres':  # plus a sample without target: a NaN mask must not count as rejection
        samples.append(
            make_sample(
                'gres', shape=SHAPE, idx=1, gt=[], pred=_box_entries('mask', BAD[bad], rect=rect)
            )
        )
    res = evaluate(metric(), samples)
    keys = ['cIoU', 'mIoU'] if task == 'res' else ['gIoU', 'cIoU', 'N-acc', 'T-acc']
    _assert_all_zero(res, [f'{task}/{k}' for k in keys], 2 * len(samples))


@pytest.mark.parametrize('bad', BAD)
def test_interactive_grounding(make_sample, evaluate, rect, bad):
    samples = [
        make_sample(
            'ig_box',
            shape=SHAPE,
            gt=_box_entries('box')[:1],
            pred=_box_entries('box', BAD[bad])[:1],
            prompt_types=['point'],
        ),
        make_sample(
            'ig_mask',
            shape=SHAPE,
            idx=1,
            gt=_box_entries('mask', rect=rect)[:1],
            pred=_box_entries('mask', BAD[bad], rect=rect)[:1],
            prompt_types=['box'],
        ),
    ]
    res = evaluate(InteractiveGroundingMetric(), samples)
    keys = [f'ig/{u}_{s}' for u in ('box', 'mask') for s in ('mIoU', 'cIoU')]
    _assert_all_zero(res, keys, 2)


@pytest.mark.parametrize('bad', BAD)
@pytest.mark.parametrize('iou_type', ['bbox', 'segm'])
def test_open_vocab_map(make_sample, evaluate, rect, bad, iou_type):
    unit, task = ('box', 'ovd') if iou_type == 'bbox' else ('mask', 'ovs')
    samples = [
        make_sample(
            task,
            shape=SHAPE,
            gt=_box_entries(unit, rect=rect),
            pred=_box_entries(unit, BAD[bad], rect=rect),
        )
    ]
    metric = OpenVocabMetric(iou_type=iou_type, text_encoder=BagOfWordsTextEncoder())
    res = evaluate(metric, samples)
    _assert_all_zero(res, [f'{task}/mAP', f'{task}/mAP_50', f'{task}/mAP_75'], 2)


@pytest.mark.parametrize('bad', BAD)
@pytest.mark.parametrize('unit', ['box', 'mask'])
def test_gcg(make_sample, evaluate, rect, bad, unit):
    pred = _box_entries(unit, BAD[bad], rect=rect)
    for e in pred:
        e['score'] = BAD[bad]  # read as 1.0 before
    samples = [
        make_sample(
            'gcg_box' if unit == 'box' else 'gcg_mask',
            shape=SHAPE,
            gt=_box_entries(unit, rect=rect),
            pred=pred,
            pred_text='!!!!!!!!!!!!',
            gt_captions=['a dog next to a cat'],
        )
    ]
    res = evaluate(GCGMetric(unit=unit, text_encoder=BagOfWordsTextEncoder()), samples)
    _assert_all_zero(res, ['gcg/AP50', 'gcg/mIoU', 'gcg/recall', 'gcg/CIDEr'], 2)


@pytest.mark.parametrize('bad', BAD)
def test_keypoint_oks_ap_and_pck(make_sample, evaluate, bad):
    def entry(kpts, box, score=None):
        e = dict(unit='keypoint', keypoints=kpts, bbox=box)
        if score is not None:
            e['score'] = score
        return e

    gt_kpts = torch.tensor([[4.0, 4.0, 2], [8.0, 6.0, 2], [10.0, 10.0, 2]])
    pred_kpts = torch.full((3, 3), BAD[bad])
    samples = [
        make_sample(
            'keypoint',
            shape=SHAPE,
            gt=[entry(gt_kpts, BOXES[0])],
            pred=[entry(pred_kpts, [BAD[bad]] * 4, score=BAD[bad])],
        )
    ]
    res = evaluate(KeypointMetric(sigmas=0.1), samples)
    keys = ['AP', 'AP50', 'AP75', 'AR', 'PCK@0.1', 'PCK@0.2']
    _assert_all_zero(res, [f'keypoint/{k}' for k in keys], 1)


@pytest.mark.parametrize('bad', BAD)
@pytest.mark.parametrize('where', ['pred_depth', 'pred_instances'])
def test_depth(make_sample, evaluate, bad, where):
    gt = torch.full(SHAPE, 3.0)
    broken = torch.full(SHAPE, BAD[bad])
    if where == 'pred_depth':
        sample = make_sample('depth', shape=SHAPE, gt=None, gt_depth=gt, pred_depth=broken)
    else:
        pred = [dict(unit='depth', depth=broken)]
        sample = make_sample('depth', shape=SHAPE, gt=None, gt_depth=gt, pred=pred)
    res = evaluate(DepthMetric(), [sample])
    assert res['depth/delta1'] == 0 and res['depth/invalid_preds'] == 1
    assert res['depth/AbsRel'] == pytest.approx(1.0, abs=1e-3)  # as bad as predicting nothing


def _text_samples(make_sample, task, **gt):
    return [
        make_sample(task, gt=None, idx=i, pred_text=text, **gt) for i, text in enumerate(GARBAGE)
    ]


def test_caption(make_sample, evaluate):
    samples = _text_samples(make_sample, 'caption', gt_captions=['a red square and a circle'])
    res = evaluate(CaptionMetric(), samples)
    assert res['caption/CIDEr'] == 0 and res['caption/invalid_preds'] == 1  # the NaN text


def test_vqa(make_sample, evaluate):
    samples = _text_samples(make_sample, 'vqa', gt_vqa_answers=['two'])
    res = evaluate(VQAMetric(), samples)
    assert res['vqa/accuracy'] == 0 and res['vqa/invalid_preds'] == 1


def test_pope(make_sample, evaluate):
    samples = [
        make_sample('pope', gt=None, idx=i, pred_text=text, gt_vqa_answers=[gt])
        for i, text in enumerate(GARBAGE)
        for gt in ('yes', 'no')
    ]
    res = evaluate(POPEMetric(), samples)
    for key in ('accuracy', 'recall', 'F1', 'yes_ratio'):
        assert res[f'pope/{key}'] == 0, res
    assert math.isnan(res['pope/precision'])  # no "yes" predicted at all
    # the official rule reads any wordy text without a negation as "yes": the two garbage
    # strings made of words are "yes", so a diverged model gets recall 50 there
    official = evaluate(POPEMetric(answer_rule='pope'), samples)
    assert official['pope/recall'] == 50


def test_trp_parse(make_sample, evaluate):
    answer = [{'phrase': 'a dog', 'groups': [{'units': ['box'], 'n': 1}]}]
    samples = [
        make_sample(
            'rec',
            gt=None,
            idx=i,
            pred_text=text,
            gt_answer=answer,
            warnings=['generation stopped at max_new_tokens=64'],
        )
        for i, text in enumerate(GARBAGE)
    ]
    res = evaluate(TRPParseMetric(), samples)
    _assert_all_zero(res, ['trp/parse_success', 'trp/count_match'], 1)


@pytest.mark.parametrize('bad', BAD)
def test_project_point_metric(bad):
    from mmengine.structures import InstanceData

    gt = InstanceData(
        points=torch.tensor([[5.0, 5.0]]),
        masks=torch.ones(1, 10, 20, dtype=torch.bool),
        units=['point'],
        labels=['x'],
    )
    pred = InstanceData(points=torch.full((1, 2), BAD[bad]), units=['point'], labels=['x'])
    metric = PointMetric()
    metric.process(
        {}, [dict(task='point', ori_shape=(10, 20), gt_instances=gt, pred_instances=pred)]
    )
    res = metric.compute_metrics(metric.results)
    assert res['acc'] == 0 and res['mean_dist'] == 100 and res['invalid_preds'] == 1
    assert np.isfinite(res['mean_dist'])


def test_padding_of_a_field_another_unit_produced_is_not_a_miss():
    """Merged predictions pad a field one unit does not produce with NaN (``unit_fields`` says
    which entries own it): that is an absent score (1.0), not a diverged prediction; a NaN in a
    field the entry's own unit produced still is."""
    from mmrefvlm.evaluation.metrics.base import sanitize_predictions, select_unit

    instances = dict(
        units=['box', 'mask', 'box'],
        unit_fields=[('bboxes',), ('masks', 'scores'), ('bboxes', 'scores')],
        bboxes=np.array([[1, 1, 5, 5], [np.nan] * 4, [2, 2, 6, 6]], dtype=np.float32),
        scores=np.array([np.nan, 0.9, np.nan], dtype=np.float32),
    )
    out, invalid = sanitize_predictions(select_unit(instances, 'box'), ('bboxes', 'scores'))
    assert invalid == 1  # the second box entry's own score is NaN
    np.testing.assert_array_equal(out['bboxes'], [[1, 1, 5, 5], [0, 0, 0, 0]])
    np.testing.assert_array_equal(out['scores'], [1.0, 0.0])
