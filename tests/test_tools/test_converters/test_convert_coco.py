# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""COCO instances -> ovd/ovs/rec and COCO keypoints -> keypoint, on tests/data/converters/coco."""

import json
import os.path as osp


def _group(phrase, unit, targets):
    return {'phrase': phrase, 'groups': [{'units': [unit], 'n': len(targets), 'targets': targets}]}


def test_coco_instances(run_converter, fixtures):
    ann = osp.join(fixtures, 'coco', 'instances_val2017.json')
    records, skipped, _ = run_converter(
        'coco_instances',
        ann,
        '--tasks',
        'ovd',
        'ovs',
        'rec',
        '--image-dir',
        osp.join(fixtures, 'coco', 'val2017'),
        '--data-root',
        fixtures,
    )
    assert sorted(records) == sorted(
        [
            'coco-val2017-1-ovd',
            'coco-val2017-1-ovs',
            'coco-val2017-2-ovd',
            'coco-val2017-2-ovs',
            'coco-val2017-1-c18-rec',
            'coco-val2017-2-c3-rec',
            'coco-val2017-2-c18-rec',
        ]
    )
    assert skipped == {
        'crowd annotation': 1,
        'annotation with an empty or out-of-image bbox': 1,
        'image without usable annotations': 1,
        'rec: category with several instances (ambiguous name)': 1,
    }

    # image 1: two persons (category 1) before the dog (18); crowd person 103 is skipped
    ovd = records['coco-val2017-1-ovd']
    assert ovd['image'] == {'path': 'coco/val2017/000000000001.jpg', 'width': 40, 'height': 30}
    assert [i['bbox'] for i in ovd['instances']] == [
        [2, 2, 12, 20],
        [20, 5, 28, 15],
        [25, 18, 35, 28],
    ]
    assert [i['source_id'] for i in ovd['instances']] == [101, 102, 104]
    assert all('mask' not in i for i in ovd['instances'])
    assert ovd['conversation'] == [
        {'role': 'user', 'template': 'ovd', 'slots': {}},
        {
            'role': 'assistant',
            'answer': [_group('person', 'box', [0, 1]), ', ', _group('dog', 'box', [2]), '.'],
        },
    ]
    ovs = records['coco-val2017-1-ovs']
    with open(ann) as f:
        source = {a['id']: a for a in json.load(f)['annotations']}
    assert [i['mask'] for i in ovs['instances']] == [
        source[k]['segmentation'] for k in (101, 102, 104)
    ]
    assert ovs['conversation'][1]['answer'][0] == _group('person', 'mask', [0, 1])

    # image 2: the car box (x2 = 32.5) is clipped to the 32 px width; the dog's 2-point polygon is
    # unusable, so the dog is in ovd (box) but not in ovs (mask); the zero-width person is skipped
    ovd2 = records['coco-val2017-2-ovd']
    assert [i['bbox'] for i in ovd2['instances']] == [[20, 20, 32, 25], [1, 1, 6, 6]]
    assert ovd2['conversation'][1]['answer'] == [
        _group('car', 'box', [0]),
        ', ',
        _group('dog', 'box', [1]),
        '.',
    ]
    ovs2 = records['coco-val2017-2-ovs']
    assert [i['category'] for i in ovs2['instances']] == ['car']
    assert ovs2['conversation'][1]['answer'] == [_group('car', 'mask', [0]), '.']

    rec = records['coco-val2017-1-c18-rec']
    assert rec['instances'] == [{'bbox': [25, 18, 35, 28], 'category': 'dog', 'source_id': 104}]
    assert rec['conversation'][0] == {'role': 'user', 'template': 'rec', 'slots': {'expr': 'dog'}}
    assert rec['conversation'][1]['answer'] == [_group('dog', 'box', [0]), '.']


def test_coco_keypoints(run_converter, fixtures):
    ann = osp.join(fixtures, 'coco', 'person_keypoints_val2017.json')
    records, skipped, _ = run_converter(
        'coco_keypoints',
        ann,
        '--data-root',
        fixtures,
        '--image-dir',
        osp.join(fixtures, 'coco', 'val2017'),
    )
    assert list(records) == ['coco-kpt-val2017-1']
    assert skipped == {
        'crowd annotation': 1,
        'object without labelled keypoints': 2,
        'image without labelled objects': 1,
    }
    rec = records['coco-kpt-val2017-1']
    with open(ann) as f:
        source = {a['id']: a for a in json.load(f)['annotations']}
    assert [i['source_id'] for i in rec['instances']] == [11, 14]
    for inst in rec['instances']:
        assert inst['keypoints'] == source[inst['source_id']]['keypoints']
        assert len(inst['keypoints']) == 3 * 17
        assert 'mask' not in inst
    assert rec['instances'][1]['bbox'] == [20, 5, 28, 15]
    assert rec['conversation'][1]['answer'] == [_group('person', 'keypoint', [0, 1]), '.']
