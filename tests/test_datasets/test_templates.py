# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Template files and :class:`TemplateBank`."""

import json
import os.path as osp
import re

import numpy as np
import pytest

from mmrefvlm.datasets.records import TASKS
from mmrefvlm.datasets.template_bank import DEFAULT_TEMPLATE_DIR, TemplateBank, parse_template_set

VPT_TASKS = {'reg', 'ig_box', 'ig_mask', 'ig_keypoint'}
EXPECTED_SLOTS = {'vqa': ['question'], 'rec': ['expr'], 'res': ['expr'], 'gres': ['expr']}


@pytest.fixture(scope='module')
def bank():
    return TemplateBank()


def _load(task):
    with open(osp.join(DEFAULT_TEMPLATE_DIR, f'{task}.json'), encoding='utf-8') as f:
        return json.load(f)


@pytest.mark.parametrize('task', TASKS)
def test_template_file(task):
    """Independent re-check of each file with plain string counting (not the bank's regex)."""
    data = _load(task)
    assert data['task'] == task
    assert data['slots'] == EXPECTED_SLOTS.get(task, [])
    assert len(data['templates']) >= 25
    assert len(set(data['templates'])) == len(data['templates'])
    for text in data['templates']:
        for slot in data['slots']:
            assert text.count(f'<{slot}>') == 1, text
        assert text.count('[VPT]') == (1 if task in VPT_TASKS else 0), text
        assert text.count('<image>') <= 1, text
        # Only <image> and declared slots may appear as tags; no TRP tokens in prompts.
        allowed = {'<image>'} | {f'<{s}>' for s in data['slots']}
        others = set(re.findall(r'<[^<>]*>', text)) - allowed
        assert not others, text
    assert data['system'].startswith('Task: ')
    assert '<' not in data['system'] and '[VPT]' not in data['system']


def test_bank_loads_all_and_systems_distinct(bank):
    assert bank.names == sorted(TASKS)
    systems = [bank.system(t) for t in TASKS]
    assert len(set(systems)) == len(TASKS)
    for t in TASKS:
        assert bank.num_vpt(t) == (1 if t in VPT_TASKS else 0)


def test_render_fills_slots(bank):
    out = bank.render('rec', {'expr': 'the red circle'}, index=0)
    template = _load('rec')['templates'][0]
    assert out == template.replace('<expr>', 'the red circle')
    # A slot value that looks like a tag is inserted verbatim, not substituted again.
    out = bank.render('vqa', {'question': 'Is <question> here?'}, index=0)
    assert out == _load('vqa')['templates'][0].replace('<question>', 'Is <question> here?')
    # Extra slot keys are ignored.
    assert bank.render('caption', {'expr': 'x'}, index=3) == _load('caption')['templates'][3]


def test_render_errors(bank):
    with pytest.raises(ValueError, match='unknown template set'):
        bank.render('nope', {})
    with pytest.raises(ValueError, match='needs slots'):
        bank.render('rec', {'question': 'q'})
    with pytest.raises(ValueError, match='out of range'):
        bank.render('rec', {'expr': 'a'}, index=10_000)
    with pytest.raises(TypeError):
        bank.render('rec', {'expr': 3}, index=0)
    with pytest.raises(ValueError, match='seed'):
        bank.sample_index('rec', -1, 0)


def test_sample_index_deterministic_and_varied(bank):
    n = len(bank.get('rec'))
    idx = [bank.sample_index('rec', 0, i) for i in range(400)]
    # Same inputs -> same index, independent of call order.
    assert idx == [bank.sample_index('rec', 0, i) for i in range(400)]
    assert [bank.sample_index('rec', 0, i) for i in reversed(range(400))] == idx[::-1]
    # Matches the documented definition.
    assert idx[7] == int(np.random.default_rng([0, 7]).integers(n))
    # Varied: every template used, no template takes more than 3x its fair share.
    counts = np.bincount(idx, minlength=n)
    assert (counts > 0).all() and counts.max() < 3 * 400 / n
    # A different seed gives a different assignment.
    assert idx != [bank.sample_index('rec', 1, i) for i in range(400)]


def test_render_with_rng(bank):
    a = [bank.render('depth', None, np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1]
    outs = {bank.render('depth', None, np.random.default_rng(s)) for s in range(50)}
    assert len(outs) > 10


@pytest.mark.parametrize(
    'bad, msg',
    [
        (dict(task='rec', slots=['expr'], system='S.', templates=['Find it.']), 'exactly once'),
        (
            dict(task='rec', slots=['expr'], system='S.', templates=['<expr> <expr>']),
            'exactly once',
        ),
        (dict(task='rec', slots=['expr'], system='S.', templates=['<expr> <foo>']), 'undeclared'),
        (
            dict(task='rec', slots=['expr'], system='S.', templates=['<image><image><expr>']),
            'image',
        ),
        (dict(task='reg', slots=[], system='S.', templates=['What is this?']), 'VPT'),
        (dict(task='rec', slots=['expr'], system='S.', templates=['[VPT] <expr>']), 'VPT'),
        (dict(task='rec', slots=['expr'], system='<expr>', templates=['<expr>']), 'system'),
        (dict(task='rec', slots=['expr'], templates=['<expr>']), 'missing keys'),
        (dict(task='rec', slots=['expr', 'expr'], system='S.', templates=['<expr>']), 'slots'),
        (dict(task='rec', slots=['expr'], system='S.', templates=[]), 'non-empty'),
    ],
)
def test_parse_rejects(bad, msg):
    with pytest.raises(ValueError, match=msg):
        parse_template_set(bad, name=bad['task'])


def test_parse_name_mismatch_and_custom_dir(tmp_path):
    good = dict(
        task='normal', slots=[], system='Task: normals.', templates=['[VPT] normals?'], num_vpt=1
    )
    (tmp_path / 'normal.json').write_text(json.dumps(good))
    bank = TemplateBank(str(tmp_path))
    assert bank.names == ['normal'] and bank.num_vpt('normal') == 1
    merged = TemplateBank(extra_dirs=[str(tmp_path)])
    assert 'normal' in merged and 'rec' in merged
    (tmp_path / 'other.json').write_text(json.dumps(good))
    with pytest.raises(ValueError, match='file name'):
        TemplateBank(str(tmp_path))
    with pytest.raises(ValueError, match='does not exist'):
        TemplateBank(str(tmp_path / 'missing'))
