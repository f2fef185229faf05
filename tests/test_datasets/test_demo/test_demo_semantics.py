# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Demo answers are true: an independent interpreter re-derives every target and text answer
from the record's instances and attributes (not from the generator's code)."""

import json
import os.path as osp
import re
from collections import Counter

import numpy as np
import pytest

from mmrefvlm.datasets.demo import generate_demo_dataset

COLOURS = ('red', 'green', 'blue', 'yellow', 'magenta', 'cyan')
SHAPES = ('circle', 'square', 'triangle', 'diamond', 'cross')
PLURAL = {
    'circles': 'circle',
    'squares': 'square',
    'triangles': 'triangle',
    'diamonds': 'diamond',
    'crosses': 'cross',
}
NUMBERS = ('zero', 'one', 'two', 'three', 'four')
NUM_IMAGES = 150


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo_sem'))
    generate_demo_dataset(root, seed=11, num_train_images=NUM_IMAGES, num_val_images=0)
    return root


def _read(root, task):
    with open(osp.join(root, 'annotations', f'train_{task}.jsonl'), encoding='utf-8') as f:
        return [json.loads(line) for line in f]


def _objects(rec):
    out = []
    for inst, (colour, shape, size) in zip(
        rec['instances'], rec['meta']['attributes'], strict=True
    ):
        x1, y1, x2, y2 = inst['bbox']
        assert inst['category'] == shape
        out.append(dict(colour=colour, shape=shape, size=size, cx=(x1 + x2) / 2, cy=(y1 + y2) / 2))
    return out


def _where(objs, **attrs):
    return [i for i, o in enumerate(objs) if all(o[k] == v for k, v in attrs.items())]


def interpret(expr, objs):
    """Indices of the objects ``expr`` denotes (sorted), by a small hand-written grammar."""
    col, shp = '|'.join(COLOURS), '|'.join(SHAPES)
    if m := re.fullmatch(rf'the ({col}) ({shp})', expr):
        return _where(objs, colour=m[1], shape=m[2])
    if m := re.fullmatch(rf'the ({col}) objects?', expr):
        return _where(objs, colour=m[1])
    if m := re.fullmatch(rf'the ({shp})', expr):
        return _where(objs, shape=m[1])
    if m := re.fullmatch(rf'the (small|large) ({shp})', expr):
        return _where(objs, size=m[1], shape=m[2])
    if m := re.fullmatch(r'the (small|large) objects', expr):
        return _where(objs, size=m[1])
    if m := re.fullmatch(r'all (\w+)', expr):
        return list(range(len(objs))) if m[1] == 'objects' else _where(objs, shape=PLURAL[m[1]])
    if m := re.fullmatch(rf'the ({shp}) (on the left|on the right|at the top|at the bottom)', expr):
        cand = _where(objs, shape=m[1])
        key = {
            'on the left': lambda i: objs[i]['cx'],
            'on the right': lambda i: -objs[i]['cx'],
            'at the top': lambda i: objs[i]['cy'],
            'at the bottom': lambda i: -objs[i]['cy'],
        }[m[2]]
        return [min(cand, key=key)]
    if m := re.fullmatch(r'the (leftmost|rightmost|topmost|bottommost) object', expr):
        key = {
            'leftmost': lambda i: objs[i]['cx'],
            'rightmost': lambda i: -objs[i]['cx'],
            'topmost': lambda i: objs[i]['cy'],
            'bottommost': lambda i: -objs[i]['cy'],
        }[m[1]]
        return [min(range(len(objs)), key=key)]
    if m := re.fullmatch(
        rf'the object (to the left of|to the right of|above|below) the ({col}) '
        rf'({shp})',
        expr,
    ):
        (a,) = _where(objs, colour=m[2], shape=m[3])
        test = {
            'to the left of': lambda o: o['cx'] < objs[a]['cx'],
            'to the right of': lambda o: o['cx'] > objs[a]['cx'],
            'above': lambda o: o['cy'] < objs[a]['cy'],
            'below': lambda o: o['cy'] > objs[a]['cy'],
        }[m[1]]
        return [i for i, o in enumerate(objs) if i != a and test(o)]
    raise AssertionError(f'unparsed expression {expr!r}')


def _single_group(rec):
    answer = rec['conversation'][1]['answer']
    assert answer[1:] == ['.'] and len(answer[0]['groups']) == 1
    return answer[0]['phrase'], answer[0]['groups'][0]


def _ltr(objs, inds):
    return sorted(inds, key=lambda i: (objs[i]['cx'], objs[i]['cy'], i))


@pytest.mark.parametrize('task, unit', [('rec', 'box'), ('res', 'mask')])
def test_referring_targets(root, task, unit):
    kinds = Counter()
    for rec in _read(root, task):
        objs = _objects(rec)
        expr = rec['conversation'][0]['slots']['expr']
        phrase, group = _single_group(rec)
        assert phrase == expr and group['units'] == [unit] and group['n'] == 1
        assert interpret(expr, objs) == group['targets'], (rec['id'], expr)
        kinds[expr.split()[1]] += 1
    assert len(kinds) >= 8  # varied expression forms


def test_gres_targets_and_empty_rate(root):
    ns = Counter()
    for rec in _read(root, 'gres'):
        objs = _objects(rec)
        phrase, group = _single_group(rec)
        assert group['units'] == ['mask'] and group['n'] == len(group['targets'])
        assert group['targets'] == _ltr(objs, interpret(phrase, objs)), (rec['id'], phrase)
        ns[min(group['n'], 2)] += 1
    assert ns[0] / NUM_IMAGES >= 0.30 and ns[2] / NUM_IMAGES >= 0.1


def test_vqa_answers(root):
    for rec in _read(root, 'vqa'):
        objs = _objects(rec)
        q, a = rec['conversation'][0]['slots']['question'], rec['conversation'][1]['answer']
        if q == 'How many objects are there?':
            n = len(objs)
        elif m := re.fullmatch(r'How many (\w+) objects are there\?', q):
            n = len(_where(objs, colour=m[1]))
        elif m := re.fullmatch(r'How many (\w+) are there\?', q):
            n = len(_where(objs, shape=PLURAL[m[1]]))
        elif m := re.fullmatch(r'Is there a (\w+) (\w+)\?', q):
            assert a == ('Yes.' if _where(objs, colour=m[1], shape=m[2]) else 'No.')
            continue
        elif m := re.fullmatch(r'What colour is the (\w+)\?', q):
            (i,) = _where(objs, shape=m[1])
            assert a == objs[i]['colour'].capitalize() + '.'
            continue
        elif m := re.fullmatch(r'What shape is the (\w+) object\?', q):
            (i,) = _where(objs, colour=m[1])
            assert a == objs[i]['shape'].capitalize() + '.'
            continue
        else:
            raise AssertionError(q)
        assert a == NUMBERS[n].capitalize() + '.', (q, a)


def test_caption_lists_all_objects(root):
    for rec in _read(root, 'caption'):
        objs = _objects(rec)
        text = rec['conversation'][1]['answer']
        found = re.findall(rf'a (small|large) ({"|".join(COLOURS)}) ({"|".join(SHAPES)})', text)
        expected = [
            (objs[i]['size'], objs[i]['colour'], objs[i]['shape'])
            for i in _ltr(objs, range(len(objs)))
        ]
        assert found == expected


def _prompt_hits(vp, inst, h, w):
    from pycocotools import mask as mask_utils

    m = mask_utils.decode(inst['mask']).astype(bool)
    if vp['type'] == 'point':
        x, y = vp['point']
        return m[int(y), int(x)]
    if vp['type'] == 'scribble':
        return len(vp['scribble']) >= 3 and all(m[int(y), int(x)] for x, y in vp['scribble'])
    if vp['type'] == 'mask':
        return vp['mask'] == inst['mask']
    bx1, by1, bx2, by2 = vp['box']
    x1, y1, x2, y2 = inst['bbox']
    inter = max(0, min(x2, bx2) - max(x1, bx1)) * max(0, min(y2, by2) - max(y1, by1))
    union = (x2 - x1) * (y2 - y1) + (bx2 - bx1) * (by2 - by1) - inter
    return 0 <= bx1 < bx2 <= w and 0 <= by1 < by2 <= h and inter / union > 0.4


@pytest.mark.parametrize('task', ['reg', 'ig_box', 'ig_mask', 'ig_keypoint'])
def test_visual_prompt_tasks(root, task):
    types = Counter()
    for rec in _read(root, task):
        objs = _objects(rec)
        (vp,) = rec['visual_prompts']
        i = vp['instance']
        types[vp['type']] += 1
        assert _prompt_hits(vp, rec['instances'][i], rec['image']['height'], rec['image']['width'])
        name = f'{objs[i]["colour"]} {objs[i]["shape"]}'
        if task == 'reg':
            assert rec['conversation'][1]['answer'] == f'a {name}'
        else:
            phrase, group = _single_group(rec)
            assert phrase == f'the {name}' and group['targets'] == [i]
            assert group['units'] == [task.split('_')[1]]
    assert set(types) == {'point', 'box', 'scribble', 'mask'}


@pytest.mark.parametrize('task, unit', [('gcg_box', 'box'), ('gcg_mask', 'mask')])
def test_gcg_phrases_ground_every_object(root, task, unit):
    for rec in _read(root, task):
        objs = _objects(rec)
        answer = rec['conversation'][1]['answer']
        groups = [s for s in answer if isinstance(s, dict)]
        assert sorted(g['groups'][0]['targets'][0] for g in groups) == list(range(len(objs)))
        for g in groups:
            (i,) = g['groups'][0]['targets']
            assert g['groups'][0]['units'] == [unit]
            assert g['phrase'].lower() == f'a {objs[i]["colour"]} {objs[i]["shape"]}'
        if len(objs) == 2:  # the stated relation holds
            rel = answer[1].strip()
            a, b = (objs[g['groups'][0]['targets'][0]] for g in groups)
            assert {
                'to the left of': a['cx'] < b['cx'],
                'to the right of': a['cx'] > b['cx'],
                'above': a['cy'] < b['cy'],
                'below': a['cy'] > b['cy'],
            }[rel]


@pytest.mark.parametrize('task, unit', [('ovd', 'box'), ('ovs', 'mask'), ('keypoint', 'keypoint')])
def test_per_class_groups(root, task, unit):
    for rec in _read(root, task):
        objs = _objects(rec)
        groups = [s for s in rec['conversation'][1]['answer'] if isinstance(s, dict)]
        present = [s for s in SHAPES if _where(objs, shape=s)]
        assert [g['phrase'] for g in groups] == present
        for g in groups:
            (grp,) = g['groups']
            assert grp['units'] == [unit]
            assert grp['targets'] == _ltr(objs, _where(objs, shape=g['phrase']))


def test_depth_records(root):
    for rec in _read(root, 'depth'):
        phrase, group = _single_group(rec)
        assert group == {'units': ['depth'], 'n': 1, 'targets': [None]}
        assert rec['depth']['format'] == 'png16'
        assert osp.isfile(osp.join(root, rec['depth']['path']))


def test_template_wordings_vary(root):
    from mmrefvlm.datasets.template_bank import TemplateBank

    bank = TemplateBank()
    picks = {bank.sample_index('rec', 0, i) for i in range(NUM_IMAGES)}
    assert len(picks) >= 20
    assert np.mean([r['conversation'][0]['template'] == 'rec' for r in _read(root, 'rec')]) == 1
