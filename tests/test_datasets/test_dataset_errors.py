# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Bad inputs give clear errors, or counted skips when configured; never silent defaults."""

import copy
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmrefvlm.datasets import RefVLMDataset
from mmrefvlm.datasets.transforms import SampleLoadError, TargetError

from .conftest import rle, write_jsonl
from .test_pipeline import TARGETS


def pipeline():
    return [
        dict(type='LoadRecordImage'),
        dict(type='LoadRecordDepth'),
        dict(type='PrepareImages', sizes=dict(vit=16)),
        dict(type='RasterizeVisualPrompts', size=16),
        dict(
            type='FormatConversation',
            tokenizer=dict(source='demo'),
            chat_template='plain',
            num_image_tokens=4,
            cot=False,
        ),
        dict(type='BuildUnitTargets', unit_targets=TARGETS),
        dict(type='PackRefVLMInputs'),
    ]


def dataset(scene, records, **kw):
    write_jsonl(osp.join(scene['root'], 'ann.jsonl'), records)
    return RefVLMDataset('ann.jsonl', data_root=scene['root'], pipeline=pipeline(), **kw)


def variant(scene, fn):
    rec = copy.deepcopy(scene['record'])
    fn(rec)
    return rec


def test_good_record_loads(scene):
    out = dataset(scene, [scene['record']])[0]
    assert out['data_samples'].metainfo['record_id'] == 'r0'


@pytest.mark.parametrize(
    'mutate,exc,match',
    [
        (lambda r: r['image'].update(path='missing.png'), SampleLoadError, 'does not exist'),
        (lambda r: r['instances'][1].update(bbox=[36, 10, 20, 26]), TargetError, 'inverted'),
        (lambda r: r['instances'][1].update(bbox=[20, 10, 90, 26]), TargetError, 'outside'),
        (
            lambda r: r['instances'][0].update(mask=rle(np.zeros((30, 40), bool))),
            TargetError,
            'empty',
        ),
        (
            lambda r: r['conversation'][1]['answer'][0]['groups'][0].update(units=['polygon']),
            TargetError,
            "unknown unit 'polygon'",
        ),
        (
            lambda r: r['conversation'][1]['answer'][0]['groups'][0].update(targets=[1]),
            ValueError,
            'n=2 but 1 targets',
        ),
        (
            lambda r: r['conversation'][0].update(content='Look at [VPT].'),
            ValueError,
            '1 \\[VPT\\] placeholders but 0 visual prompts',
        ),
        (lambda r: r['image'].update(width=41), SampleLoadError, 'record says 41x30'),
    ],
)
def test_bad_record_errors(scene, mutate, exc, match):
    ds = dataset(scene, [variant(scene, mutate)])
    with pytest.raises(exc, match=match):
        ds[0]


def test_unknown_task_template(scene):
    rec = variant(scene, lambda r: r.update(task='teleport'))
    rec['conversation'][0] = {'role': 'user', 'template': 'teleport', 'slots': {}}
    with pytest.raises(ValueError, match='teleport'):
        dataset(scene, [rec])[0]


def test_corrupt_image_bytes(scene):
    with open(osp.join(scene['root'], 'bad.png'), 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + b'garbage' * 10)
    ds = dataset(scene, [variant(scene, lambda r: r['image'].update(path='bad.png'))])
    with pytest.raises(SampleLoadError, match='cannot be decoded'):
        ds[0]


def test_tiny_and_huge_images(scene):
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(osp.join(scene['root'], 'one.png'))
    tiny = variant(
        scene,
        lambda r: r.update(
            image={'path': 'one.png', 'width': 1, 'height': 1},
            instances=[{'bbox': [0, 0, 1, 1]}],
            depth=None,
        ),
    )
    tiny['conversation'][1]['answer'] = [
        {'phrase': 'it', 'groups': [{'units': ['box'], 'n': 1, 'targets': [0]}]}
    ]
    out = dataset(scene, [tiny])[0]
    assert out['data_samples'].gt_units.box.bboxes.tolist() == [[0.0, 0.0, 1.0, 1.0]]
    # 10000 x 10000: refused from the header, before decoding 300 MB
    Image.new('1', (10000, 10000)).save(osp.join(scene['root'], 'huge.png'))
    huge = variant(
        scene, lambda r: r.update(image={'path': 'huge.png', 'width': 10000, 'height': 10000})
    )
    with pytest.raises(SampleLoadError, match='max_pixels'):
        dataset(scene, [huge])[0]


def test_non_utf8_line_names_line(scene):
    path = osp.join(scene['root'], 'ann.jsonl')
    with open(path, 'wb') as f:
        f.write(b'{"task": "rec", "conversation": []}\n{"task": "\xff\xfe"}\n')
    with pytest.raises(ValueError, match='ann.jsonl:2'):
        RefVLMDataset('ann.jsonl', data_root=scene['root'], pipeline=pipeline(), lazy_init=False)


def test_skip_bad_samples_counts_and_logs(scene):
    bad = variant(scene, lambda r: r['image'].update(path='missing.png'))
    ds = dataset(scene, [bad, scene['record'], bad], skip_bad_samples=True)
    assert ds[0]['data_samples'].metainfo['record_id'] == 'r0'
    assert ds.num_skipped == 1
    assert ds[2]['data_samples'].metainfo['record_id'] == 'r0'  # wraps around: 2, 0 bad
    assert ds.num_skipped == 3
    all_bad = dataset(scene, [bad], skip_bad_samples=True, max_consecutive_skips=3)
    with pytest.raises(RuntimeError, match='consecutive bad samples'):
        all_bad[0]
