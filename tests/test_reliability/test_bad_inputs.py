# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Bad inputs not covered by tests/test_datasets/test_dataset_errors.py, the model's robust
predict tests or tests/test_utils/test_checkpoint.py (see docs/reliability.md for the full map).

The surrogate, NaN-keypoint and unknown-task cases were core fixes found by these tests."""

from __future__ import annotations

import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope

from mmrefvlm.datasets import RefVLMDataset
from mmrefvlm.datasets.transforms import SampleLoadError, TargetError
from mmrefvlm.utils import load_state_file

from ..test_datasets.conftest import rle, scene  # noqa: F401  (scene: fixture)
from ..test_datasets.test_dataset_errors import dataset, pipeline, variant
from ..test_models.test_refvlm import batch, box_record, build, fake_generation


def _raw_dataset(scene, line: bytes, **kw):
    with open(osp.join(scene['root'], 'raw.jsonl'), 'wb') as f:
        f.write(line + b'\n')
    return RefVLMDataset('raw.jsonl', data_root=scene['root'], pipeline=pipeline(), **kw)


@pytest.fixture(autouse=True)
def _scope():
    init_default_scope('mmrefvlm')


# ----------------------------------------------------------------------------- text encoding
def test_lone_surrogate_is_what_json_gives(scene):
    line = json.dumps(scene['record']).replace('Where are', 'Where \\ud800 are').encode('ascii')
    record = json.loads(line.decode('utf-8'))  # valid UTF-8 bytes, valid JSON ...
    with pytest.raises(UnicodeEncodeError):  # ... but not encodable text
        record['conversation'][0]['content'].encode('utf-8')


@pytest.mark.parametrize('where', ['user', 'answer', 'phrase', 'raw_json_escape'])
def test_lone_surrogate_text_gives_clear_error(scene, where):
    if where == 'raw_json_escape':
        line = json.dumps(scene['record']).replace('Where are', 'Where \\udfff are')
        ds = _raw_dataset(scene, line.encode('ascii'))
    else:

        def mutate(r):
            if where == 'user':
                r['conversation'][0]['content'] = 'Where \ud800 are the squares?'
            elif where == 'answer':
                r['conversation'][1]['answer'][1] = ' and \udfff '
            else:
                r['conversation'][1]['answer'][0]['phrase'] = 'two \ud800 squares'

        ds = dataset(scene, [variant(scene, mutate)])
    with pytest.raises((ValueError, SampleLoadError), match=r'r0.*(surrogate|Unicode|UTF-8)'):
        ds[0]


# ----------------------------------------------------------------------------- geometry
def test_nan_token_in_json_box_is_refused(scene):
    line = json.dumps(scene['record']).replace('[20, 10, 36, 26]', '[NaN, 10, 36, 26]')
    assert 'NaN' in line  # Python's json accepts the NaN token
    with pytest.raises(TargetError, match='not finite'):
        _raw_dataset(scene, line.encode())[0]


@pytest.mark.parametrize('index', [5, -1])
def test_target_index_out_of_range(scene, index):
    ds = dataset(
        scene,
        [
            variant(
                scene,
                lambda r: r['conversation'][1]['answer'][0]['groups'][0].update(targets=[index, 0]),
            )
        ],
    )
    with pytest.raises(TargetError, match=f'target index {index} out of range'):
        ds[0]


def test_non_finite_keypoint_is_refused(scene):
    def mutate(r):
        r['instances'][0]['keypoints'][0] = float('nan')  # keypoint 0 has v = 2
        r['conversation'][1]['answer'][0]['groups'][0].update(units=['keypoint'])

    with pytest.raises(TargetError, match='finite'):
        dataset(scene, [variant(scene, mutate)])[0]


def test_zero_byte_image_and_rle_of_wrong_size(scene):
    open(osp.join(scene['root'], 'empty.png'), 'wb').close()
    ds = dataset(scene, [variant(scene, lambda r: r['image'].update(path='empty.png'))])
    with pytest.raises(SampleLoadError, match='cannot be decoded'):
        ds[0]
    ds = dataset(
        scene,
        [variant(scene, lambda r: r['instances'][0].update(mask=rle(np.ones((10, 10), bool))))],
    )
    with pytest.raises(ValueError, match=r'RLE size \[10, 10\] does not match'):
        ds[0]


# ----------------------------------------------------------------------------- records
def test_utf8_bom_line_names_file_and_line(scene):
    with pytest.raises(ValueError, match=r'raw.jsonl:1: .*BOM'):
        _raw_dataset(scene, b'\xef\xbb\xbf' + json.dumps(scene['record']).encode(), lazy_init=False)


def test_unknown_task_with_explicit_text_is_refused(scene):
    ds = dataset(scene, [variant(scene, lambda r: r.update(task='recc'))])
    with pytest.raises(ValueError, match='recc'):
        ds[0]


# ----------------------------------------------------------------------------- model side
def test_special_token_text_in_user_turn_is_not_routed(scene):
    model = build()
    rec = variant(scene, lambda r: r['conversation'][0].update(content='Where <REF> are <REF>?'))
    rec['conversation'][1] = box_record(scene)['conversation'][1]
    data = batch(scene, model, [rec])
    ref = model.tokenizer.ids.ref
    ids, labels = data['inputs']['input_ids'][0], data['inputs']['labels'][0]
    assert int(((ids == ref) & (labels == -100)).sum()) == 2  # two <REF> in the prompt
    losses = model(**data, mode='loss')  # only the 2 supervised <REF> are routed: no mismatch
    assert 'loss_box_l1' in losses and all(torch.isfinite(v) for v in losses.values())


def test_ref_target_mismatch_in_batch_is_a_clear_error(scene):
    model = build()
    data = batch(scene, model, [box_record(scene)])
    sample = data['data_samples'][0]
    sample.gt_units.box = sample.gt_units.box[:1]  # 2 <REF> in the labels, 1 target
    with pytest.raises(
        ValueError, match='2 <REF> tokens of unit .box. in the labels but 1 targets'
    ):
        model(**data, mode='loss')


@pytest.mark.parametrize(
    'text,finished',
    [
        ('', True),  # immediate EOS
        ('<REF><REF> squares', True),  # <REF> outside any phrase
        ('<Phrase>x</Phrase>(<Unit>polygon</Unit>[0]<REF>).', True),  # unit without a decoder
        ('</Phrase>)(<Unit><Phrase><REF></Unit>', False),  # tag soup, cut off
    ],
)
def test_predict_returns_warnings_not_exceptions(scene, monkeypatch, text, finished):
    model = build().eval()
    tok = model.tokenizer
    ids = tok.encode(text) + ([tok.ids.eos] if finished else [])
    monkeypatch.setattr(
        'mmrefvlm.models.refvlm.greedy_generate',
        lambda *a, **k: fake_generation(model, [ids], [finished]),
    )
    out = model(**batch(scene, model, [box_record(scene)], predict=True), mode='predict')[0]
    n_refs = ids.count(tok.ids.ref)
    assert len(out.pred_instances.get('bboxes', ())) == 0  # nothing routable to the box decoder
    assert (n_refs > 0 or not finished) == bool(out.warnings), out.warnings


# ----------------------------------------------------------------------------- checkpoints
def test_truncated_checkpoint_is_reported_as_corrupt(tmp_path):
    path = str(tmp_path / 'iter_3.pth')
    torch.save({'state_dict': {'w': torch.arange(1000.0)}}, path)
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:  # what a crash in the middle of torch.save leaves behind
        f.write(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match='corrupted'):
        load_state_file(path)
    st = tmp_path / 'w.safetensors'
    st.write_bytes(b'\x08\x00')
    with pytest.raises(Exception, match='header'):
        load_state_file(str(st))
