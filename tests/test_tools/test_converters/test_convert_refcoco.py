# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""RefCOCO (refs pickle) -> rec/res, gRefCOCO -> gres, and the restricted unpickler."""

import os
import os.path as osp
import pickle

import pytest


def _refs(fixtures, *parts):
    return osp.join(fixtures, *parts)


def test_refcoco_rec_res(run_converter, fixtures):
    records, skipped, _ = run_converter(
        'refcoco',
        _refs(fixtures, 'refcoco', 'refs(unc).p'),
        _refs(fixtures, 'refcoco', 'instances.json'),
        '--split',
        'val',
        '--data-root',
        fixtures,
        '--image-dir',
        osp.join(fixtures, 'coco', 'train2014'),
    )
    assert sorted(records) == sorted(
        [
            'refcoco-val-7-s0-rec',
            'refcoco-val-7-s0-res',
            'refcoco-val-7-s1-rec',
            'refcoco-val-7-s1-res',
            'refcoco-val-9-s3-rec',
        ]
    )
    # ref 9's annotation is a 2-point polygon: its rec record exists, its res record cannot
    assert skipped == {'empty sentence': 1, 'res: annotation without a usable mask': 1}
    res = records['refcoco-val-7-s0-res']
    assert res['image'] == {
        'path': 'coco/train2014/COCO_train2014_000000581857.jpg',
        'width': 48,
        'height': 36,
    }
    assert res['instances'] == [
        {
            'bbox': [4.5, 6.0, 16.5, 26.0],
            'category': 'person',
            'source_id': 1001,
            'mask': [[4.5, 6, 16.5, 6, 16.5, 26, 4.5, 26]],
        }
    ]
    assert res['conversation'] == [
        {'role': 'user', 'template': 'res', 'slots': {'expr': 'the woman in the red coat'}},
        {
            'role': 'assistant',
            'answer': [
                {
                    'phrase': 'the woman in the red coat',
                    'groups': [{'units': ['mask'], 'n': 1, 'targets': [0]}],
                },
                '.',
            ],
        },
    ]
    assert res['meta'] == {
        'source': 'refcoco',
        'split': 'val',
        'ref_id': 7,
        'sent_id': 0,
        'ann_id': 1001,
        'image_id': 581857,
    }
    rec = records['refcoco-val-7-s1-rec']
    assert rec['conversation'][0]['slots'] == {'expr': 'left person'}  # whitespace collapsed
    assert 'mask' not in rec['instances'][0]
    assert rec['conversation'][1]['answer'][0]['groups'] == [
        {'units': ['box'], 'n': 1, 'targets': [0]}
    ]


def test_refcoco_split_filter(run_converter, fixtures):
    records, _, _ = run_converter(
        'refcoco',
        _refs(fixtures, 'refcoco', 'refs(unc).p'),
        _refs(fixtures, 'refcoco', 'instances.json'),
        '--split',
        'train',
        '--tasks',
        'rec',
        '--dataset-name',
        'refcoco+',
        '--data-root',
        fixtures,
    )
    assert list(records) == ['refcoco+-train-8-s2-rec']
    assert records['refcoco+-train-8-s2-rec']['instances'][0]['bbox'] == [30, 10, 40, 20]


class _Exploit:
    def __reduce__(self):
        return (os.system, ('touch pwned_by_pickle',))


@pytest.mark.parametrize(
    'payload',
    [
        pickle.dumps([{'ref_id': 1, 'x': _Exploit()}], protocol=2),
        pickle.dumps(_Exploit(), protocol=0),
        b"cbuiltins\neval\n(S'1+1'\ntR.",
        b"c__builtin__\ngetattr\n(c__builtin__\ndict\nS'keys'\ntR.",
    ],
)
def test_refs_pickle_refuses_code(converter, tmp_path, monkeypatch, payload):
    path = tmp_path / 'refs(unc).p'
    path.write_bytes(payload)
    monkeypatch.chdir(tmp_path)  # where the exploit would write
    with pytest.raises(pickle.UnpicklingError, match='refusing to load'):
        converter('refcoco').load_refs_pickle(str(path))
    assert not (tmp_path / 'pwned_by_pickle').exists()


def test_refs_pickle_reads_python2_protocols(converter, tmp_path):
    # protocol 0 as written by Python 2: STRING opcodes (S'...') and a LONG (L...L)
    py2 = (
        b"(lp0\n(dp1\nS'sent'\np2\nS'a man'\np3\nsS'ref_id'\np4\nL12L\nsS'box'\np5\n"
        b'(F1.5\nI2\ntp6\nsa.'
    )
    path = tmp_path / 'refs.p'
    path.write_bytes(py2)
    assert converter('refcoco').load_refs_pickle(str(path)) == [
        {'sent': 'a man', 'ref_id': 12, 'box': (1.5, 2)}
    ]
    # protocol 2 with a set (builtins.set via REDUCE) is plain data too
    path.write_bytes(pickle.dumps([{'ids': {1, 2}}], protocol=2))
    assert converter('refcoco').load_refs_pickle(str(path)) == [{'ids': {1, 2}}]
    path.write_bytes(pickle.dumps({'not': 'a list'}, protocol=2))
    with pytest.raises(ValueError, match='list of ref dicts'):
        converter('refcoco').load_refs_pickle(str(path))


def test_grefcoco(run_converter, fixtures):
    records, skipped, _ = run_converter(
        'grefcoco',
        _refs(fixtures, 'grefcoco', 'grefs(unc).json'),
        _refs(fixtures, 'grefcoco', 'instances.json'),
        '--split',
        'val',
        '--data-root',
        fixtures,
    )
    assert sorted(records) == [
        'grefcoco-val-0-s10',
        'grefcoco-val-1-s11',
        'grefcoco-val-1-s12',
        'grefcoco-val-2-s13',
    ]
    assert skipped == {
        'crowd target annotation (dropped)': 1,
        'ref whose targets are all unusable': 1,
    }

    def group(rid):
        answer = records[rid]['conversation'][1]['answer']
        assert answer[1] == '.'
        return answer[0]['groups'][0]

    # several ann_ids -> n targets; [-1] / no_target -> n = 0; a plain int ann_id -> 1 target
    assert group('grefcoco-val-0-s10') == {'units': ['mask'], 'n': 2, 'targets': [0, 1]}
    assert [i['source_id'] for i in records['grefcoco-val-0-s10']['instances']] == [1001, 1002]
    assert group('grefcoco-val-1-s11') == {'units': ['mask'], 'n': 0, 'targets': []}
    assert records['grefcoco-val-1-s12']['instances'] == []
    assert records['grefcoco-val-1-s12']['meta']['no_target'] is True
    assert group('grefcoco-val-2-s13') == {'units': ['mask'], 'n': 1, 'targets': [0]}
    assert records['grefcoco-val-2-s13']['conversation'][0] == {
        'role': 'user',
        'template': 'gres',
        'slots': {'expr': 'the dog'},
    }
