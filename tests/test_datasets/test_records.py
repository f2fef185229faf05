# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""mmrefvlm.datasets.records: every validation rule of docs/data_format.md, the reader, the CLI."""

import copy
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from mmrefvlm.datasets import records as records_mod
from mmrefvlm.datasets.records import (
    RecordError,
    iter_records,
    load_template_sets,
    validate_file,
    validate_record,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _rle(mask):
    enc = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(v) for v in enc['size']], 'counts': enc['counts'].decode()}


def _square(h=30, w=40):
    m = np.zeros((h, w), bool)
    m[4:12, 5:15] = True
    return m


def _group(units, targets):
    return {'units': units, 'n': len(targets), 'targets': targets}


@pytest.fixture
def template_sets(tmp_path):
    folder = tmp_path / 'templates'
    folder.mkdir()
    sets = {
        'ig_mask': ([], ['Segment [VPT].', '<image>\nSegment the object at [VPT].']),
        'rec': (['expr'], ['Find <expr>.', '<image>\nWhere is <expr>?']),
        'bad_vpt': ([], ['[VPT] here', 'nothing here']),
    }
    for name, (slots, templates) in sets.items():
        (folder / f'{name}.json').write_text(
            json.dumps(
                {
                    'task': name if name != 'bad_vpt' else 'reg',
                    'slots': slots,
                    'system': 's',
                    'templates': templates,
                }
            )
        )
    return load_template_sets(str(folder))


@pytest.fixture
def record():
    """A valid record using every field: 4 prompt types, nested phrase, n=0, depth, keypoints."""
    return {
        'id': 'r1',
        'task': 'ig_mask',
        'image': {'path': 'img.png', 'width': 40, 'height': 30},
        'instances': [
            {
                'bbox': [5, 4, 15, 12],
                'mask': _rle(_square()),
                'category': 'square',
                'keypoints': [6, 5, 2, 0, 0, 0],
                'source_id': 3,
            },
            {
                'bbox': [20, 10, 36, 26],
                'mask': [[20, 10, 36, 10, 36, 26, 20, 26]],
                'category': 'square',
            },
        ],
        'depth': {'path': 'd.png', 'scale': 0.001, 'format': 'png16'},
        'visual_prompts': [
            {'type': 'point', 'point': [8, 8], 'instance': 0},
            {'type': 'box', 'box': [19, 9, 37, 27], 'instance': 1},
            {'type': 'scribble', 'scribble': [[1, 1], [5, 5]], 'instance': None},
            {'type': 'mask', 'mask': _rle(_square())},
        ],
        'conversation': [
            {'role': 'system', 'content': 'custom system command'},
            {'role': 'user', 'template': 'ig_mask', 'slots': {}},
            {'role': 'assistant', 'answer': 'a square'},
            {'role': 'user', 'content': 'and [VPT], [VPT], [VPT]?'},
            {
                'role': 'assistant',
                'answer': [
                    {
                        'phrase': [{'phrase': 'a', 'groups': [_group(['box'], [0])]}, ' and b'],
                        'groups': [_group(['mask', 'box'], [0, 1])],
                    },
                    ', ',
                    {'phrase': 'nothing', 'groups': [_group(['mask'], [])]},
                    ', ',
                    {'phrase': 'depth', 'groups': [_group(['depth'], [None])]},
                    ', ',
                    {'phrase': 'pose', 'groups': [_group(['keypoint'], [0])]},
                    '.',
                ],
            },
        ],
        'meta': {'source': 'test'},
    }


def test_valid_record(record, template_sets):
    assert (
        validate_record(
            record,
            template_sets=template_sets,
            line=3,
            known_units=['box', 'mask', 'keypoint', 'depth'],
        )
        == []
    )


ANS = 'conversation[4].answer'


def _set(path, value):
    def mutate(rec):
        obj = rec
        for key in path[:-1]:
            obj = obj[key]
        if value is _DELETE:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value(obj[path[-1]]) if callable(value) else value

    return mutate


_DELETE = object()
_ANSWER = ('conversation', 4, 'answer')
CASES = [
    ('no id', _set(('id',), _DELETE), 'id', 'required'),
    ('unknown task', _set(('task',), 'detect'), 'task', 'unknown task'),
    ('zero width', _set(('image', 'width'), 0), 'image.width', 'positive int'),
    ('absolute path', _set(('image', 'path'), '/data/img.png'), 'image.path', 'absolute'),
    (
        'bbox outside',
        _set(('instances', 1, 'bbox'), [20, 10, 41, 26]),
        'instances[1].bbox',
        'outside the image',
    ),
    (
        'bbox inverted',
        _set(('instances', 1, 'bbox'), [36, 10, 20, 26]),
        'instances[1].bbox',
        'inverted',
    ),
    (
        'rle wrong size',
        _set(('instances', 0, 'mask'), _rle(_square(20, 40))),
        'instances[0].mask',
        'does not match the image',
    ),
    (
        'rle empty',
        _set(('instances', 0, 'mask'), _rle(np.zeros((30, 40), bool))),
        'instances[0].mask',
        'empty',
    ),
    (
        'rle uncompressed',
        _set(('instances', 0, 'mask'), {'size': [30, 40], 'counts': [1200]}),
        'instances[0].mask',
        'uncompressed',
    ),
    (
        'rle corrupt',
        _set(('instances', 0, 'mask', 'counts'), lambda c: c[:-2]),
        'instances[0].mask',
        'invalid RLE counts',
    ),
    (
        'polygon 2 points',
        _set(('instances', 1, 'mask'), [[1, 1, 2, 2]]),
        'instances[1].mask',
        'needs at least 3',
    ),
    (
        'polygon off image',
        _set(('instances', 1, 'mask'), [[50, 50, 60, 50, 60, 60]]),
        'instances[1].mask',
        'cover no pixel',
    ),
    (
        'keypoints not 3K',
        _set(('instances', 0, 'keypoints'), [1, 2]),
        'instances[0].keypoints',
        '3K',
    ),
    (
        'keypoint visibility',
        _set(('instances', 0, 'keypoints'), [1, 2, 3]),
        'instances[0].keypoints',
        'visibility',
    ),
    ('instances not a list', _set(('instances',), {}), 'instances', 'must be a list'),
    (
        'targets != n',
        _set((*_ANSWER, 0, 'groups', 0, 'targets'), [0]),
        f'{ANS}[0].groups[0].targets',
        'n=2',
    ),
    (
        'target out of range',
        _set((*_ANSWER, 0, 'groups', 0, 'targets', 1), 5),
        f'{ANS}[0].groups[0].targets[1]',
        'index into instances',
    ),
    (
        'box target without bbox',
        _set(('instances', 1, 'bbox'), _DELETE),
        f'{ANS}[0].groups[0].targets[1]',
        'needs instances[1].bbox',
    ),
    (
        'keypoint target without keypoints',
        _set((*_ANSWER, 6, 'groups', 0, 'targets'), [1]),
        f'{ANS}[6].groups[0].targets[0]',
        'needs instances[1].keypoints',
    ),
    (
        'null target for mask',
        _set((*_ANSWER, 0, 'groups', 0, 'targets', 1), None),
        f'{ANS}[0].groups[0].targets[1]',
        'null target',
    ),
    (
        'instance target for depth',
        _set((*_ANSWER, 4, 'groups', 0, 'targets'), [0]),
        f'{ANS}[4].groups[0].targets[0]',
        'image-level',
    ),
    (
        'depth target without depth',
        _set(('depth',), None),
        f'{ANS}[4].groups[0].targets[0]',
        'needs the record "depth"',
    ),
    ('negative n', _set((*_ANSWER, 2, 'groups', 0, 'n'), -1), f'{ANS}[2].groups[0].n', '>= 0'),
    (
        'no units',
        _set((*_ANSWER, 2, 'groups', 0, 'units'), []),
        f'{ANS}[2].groups[0].units',
        'non-empty',
    ),
    (
        'nested target',
        _set((*_ANSWER, 0, 'phrase', 0, 'groups', 0, 'targets'), [7]),
        f'{ANS}[0].phrase[0].groups[0].targets[0]',
        'index into instances',
    ),
    ('empty phrase', _set((*_ANSWER, 2, 'phrase'), ' '), f'{ANS}[2].phrase', 'non-empty'),
    ('empty nested phrase', _set((*_ANSWER, 2, 'phrase'), []), f'{ANS}[2].phrase', 'non-empty'),
    (
        'template not a name',
        _set(('conversation', 1, 'template'), ['ig_mask']),
        'conversation[1].template',
        'must be a template set name',
    ),
    (
        'no answer',
        _set(('conversation', 2, 'answer'), _DELETE),
        'conversation[2].answer',
        'non-empty list',
    ),
    ('no groups', _set((*_ANSWER, 2, 'groups'), []), f'{ANS}[2].groups', 'non-empty'),
    ('markup in text', _set((*_ANSWER, 1), ' <REF> '), f'{ANS}[1]', "'<REF>'"),
    (
        'too few prompts',
        _set(('visual_prompts',), lambda v: v[:3]),
        'visual_prompts',
        '4 [VPT] in the user turns but 3 visual prompts',
    ),
    (
        'two images',
        _set(('conversation', 3, 'content'), '<image> and [VPT], [VPT], [VPT]?'),
        'conversation',
        'at most once',
    ),
    ('image token without image', _set(('image',), None), 'conversation', 'without an image'),
    (
        'unknown template',
        _set(('conversation', 1, 'template'), 'seg'),
        'conversation[1].template',
        'unknown template set',
    ),
    (
        'missing slot',
        _set(('conversation', 1, 'template'), 'rec'),
        'conversation[1].slots.expr',
        "needs slot 'expr'",
    ),
    (
        'inconsistent template',
        _set(('conversation', 1, 'template'), 'bad_vpt'),
        'conversation[1].template',
        'disagree',
    ),
    (
        'bad slots',
        _set(('conversation', 1, 'slots'), {'expr': 3}),
        'conversation[1].slots',
        'string values',
    ),
    ('roles', _set(('conversation', 2, 'role'), 'user'), 'conversation[2].role', "'assistant'"),
    (
        'ends with user',
        _set(('conversation',), lambda c: c + [{'role': 'user', 'content': 'x'}]),
        'conversation',
        'end with an assistant',
    ),
    (
        'content and template',
        _set(('conversation', 1, 'content'), 'hi'),
        'conversation[1]',
        'either',
    ),
    ('empty conversation', _set(('conversation',), []), 'conversation', 'non-empty'),
    (
        'point outside',
        _set(('visual_prompts', 0, 'point'), [41, 3]),
        'visual_prompts[0].point',
        'outside',
    ),
    (
        'short scribble',
        _set(('visual_prompts', 2, 'scribble'), [[1, 1]]),
        'visual_prompts[2].scribble',
        '>= 2',
    ),
    (
        'prompt instance',
        _set(('visual_prompts', 1, 'instance'), 2),
        'visual_prompts[1].instance',
        'index into instances',
    ),
    ('prompt type', _set(('visual_prompts', 0, 'type'), 'lasso'), 'visual_prompts[0]', 'type'),
    (
        'prompt mask size',
        _set(('visual_prompts', 3, 'mask'), _rle(_square(30, 41))),
        'visual_prompts[3].mask',
        'does not match',
    ),
    ('depth format', _set(('depth', 'format'), 'exr'), 'depth.format', 'png16'),
    ('depth extension', _set(('depth', 'path'), 'd.npy'), 'depth.path', 'needs a .png'),
    ('depth scale', _set(('depth', 'scale'), 0), 'depth.scale', 'positive'),
    ('meta', _set(('meta',), [1]), 'meta', 'object'),
]


@pytest.mark.parametrize('name,mutate,field,message', CASES, ids=[c[0] for c in CASES])
def test_each_rule_names_record_and_field(record, template_sets, name, mutate, field, message):
    bad = copy.deepcopy(record)
    mutate(bad)
    errors = validate_record(bad, line=12, template_sets=template_sets)
    hits = [e for e in errors if e.field == field and message in e.message]
    assert hits, f'{name}: expected {field!r} ~ {message!r}, got {[str(e) for e in errors]}'
    assert all(e.line == 12 and e.record_id == bad.get('id') for e in errors)


def test_known_units_and_template_options(record, template_sets, tmp_path, monkeypatch):
    errors = validate_record(record, template_sets=template_sets, known_units=['box', 'mask'])
    assert sorted(e.field for e in errors) == [
        f'{ANS}[4].groups[0].units',
        f'{ANS}[6].groups[0].units',
    ]
    # an empty mapping turns template checks off (references are then not checked)
    rec = copy.deepcopy(record)
    rec['conversation'][1]['template'] = 'nope'
    rec['visual_prompts'] = rec['visual_prompts'][:3]
    assert validate_record(rec, template_sets={}) == []
    # the default reads the template folder at call time
    (tmp_path / 'only.json').write_text(
        json.dumps({'task': 'rec', 'slots': [], 'system': '', 'templates': ['x']})
    )
    monkeypatch.setattr(records_mod, 'TEMPLATE_DIR', str(tmp_path))
    errors = validate_record(rec)
    assert any("known: ['only']" in e.message for e in errors)


def test_template_set_schema(tmp_path):
    (tmp_path / 'broken.json').write_text(json.dumps({'task': 'x', 'templates': 'not a list'}))
    with pytest.raises(ValueError, match='broken.json'):
        load_template_sets(str(tmp_path))
    assert load_template_sets(str(tmp_path / 'missing')) == {}


def test_not_an_object():
    assert validate_record([1, 2], line=4) == [
        RecordError(None, 4, '', 'a record must be a JSON object, got list')
    ]


def test_data_root_checks(record, template_sets, tmp_path):
    errors = validate_record(record, data_root=str(tmp_path), template_sets=template_sets)
    assert sorted(e.field for e in errors) == ['depth.path', 'image.path']
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / 'img.png')
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / 'd.png')  # 8-bit
    errors = validate_record(record, data_root=str(tmp_path), template_sets=template_sets)
    assert [(e.field, 'not a 16-bit PNG' in e.message) for e in errors] == [('depth.path', True)]
    Image.fromarray(np.zeros((30, 40), np.uint16)).save(tmp_path / 'd.png')
    assert validate_record(record, data_root=str(tmp_path), template_sets=template_sets) == []
    np.save(tmp_path / 'd.npy', np.zeros((30, 41), np.float32))
    record['depth'].update(path='d.npy', format='npy')
    errors = validate_record(record, data_root=str(tmp_path), template_sets=template_sets)
    assert [e.message for e in errors] == ['depth map is 41x30, the image is 40x30']


def test_iter_records_reports_bad_lines(tmp_path):
    path = tmp_path / 'r.jsonl'
    path.write_bytes(b'\xef\xbb\xbf{"id": "a"}\n\n{bad json\n\xff\xfe\n[1, 2]\n{"id": "b"}\n')
    items = list(iter_records(str(path)))
    assert [(i.line, i.record) for i in items if i.record] == [(1, {'id': 'a'}), (6, {'id': 'b'})]
    errors = {i.line: i.error.message for i in items if i.error}
    assert sorted(errors) == [3, 4, 5]
    assert errors[3].startswith('invalid JSON') and errors[4].startswith('not UTF-8')
    assert 'JSON object' in errors[5]


def _write(path, rows):
    path.write_text(''.join((r if isinstance(r, str) else json.dumps(r)) + '\n' for r in rows))
    return str(path)


def test_validate_file_duplicates_and_max_errors(record, template_sets, tmp_path):
    bad = copy.deepcopy(record)
    bad['id'], bad['image']['width'] = 'r2', -1
    path = _write(tmp_path / 'f.jsonl', [record, record, bad, '{oops'])
    report = validate_file(path, template_sets=template_sets)
    assert (report.num_records, report.num_invalid) == (4, 3)
    assert [(e.line, e.field) for e in report.errors][:2] == [(2, 'id'), (3, 'image.width')]
    assert 'first on line 1' in report.errors[0].message
    assert report.errors[-1].line == 4 and report.errors[-1].field == ''
    short = validate_file(path, template_sets=template_sets, max_errors=1)
    assert len(short.errors) == 1 and short.num_errors == report.num_errors == 3


def _cli():
    spec = importlib.util.spec_from_file_location(
        '_validate_records_cli', osp.join(REPO, 'tools', 'misc', 'validate_records.py')
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli(record, tmp_path, capsys):
    folder = tmp_path / 'templates'
    folder.mkdir()
    (folder / 'ig_mask.json').write_text(
        json.dumps({'task': 'ig_mask', 'slots': [], 'system': '', 'templates': ['Segment [VPT].']})
    )
    good = _write(tmp_path / 'good.jsonl', [record])
    bad = _write(tmp_path / 'bad.jsonl', [record, '{oops', {'id': 'x', 'task': 'rec'}])
    cli = _cli()
    assert cli.main([good, '--template-dir', str(folder)]) == 0
    assert capsys.readouterr().out.strip() == f'{good}: 1 records, 0 invalid, 0 errors'
    assert cli.main([good, bad, '--template-dir', str(folder), '--max-errors', '2']) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f'{good}: 1 records, 0 invalid, 0 errors'
    assert out[1].startswith(f'{bad}:2 id=? field=<record>: invalid JSON')
    assert out[2] == f'{bad}:3 id=x field=conversation: required non-empty list of turns'
    assert out[3] == f'{bad}: 3 records, 2 invalid, 2 errors'
    assert out[4] == 'total: 4 records, 2 invalid, 2 errors'
    assert cli.main([bad, '--template-dir', str(folder), '--max-errors', '0']) == 1
    assert '(2 more errors not shown' in capsys.readouterr().out
