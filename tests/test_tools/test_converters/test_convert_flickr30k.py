# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Flickr30k Entities -> gcg_box, on tests/data/converters/flickr30k."""

import os.path as osp
import re


def _text(segments):
    return ''.join(s if isinstance(s, str) else _text([s['phrase']]) for s in segments)


def test_flickr30k_entities(run_converter, fixtures):
    root = osp.join(fixtures, 'flickr30k')
    records, skipped, _ = run_converter(
        'flickr30k_entities',
        root,
        '--split-file',
        osp.join(root, 'test.txt'),
        '--image-dir',
        osp.join(root, 'images'),
        '--data-root',
        fixtures,
    )
    assert sorted(records) == ['flickr30k-test-1000-s0', 'flickr30k-test-1000-s1']
    # 1002 has no files; "A gym with a dot" only has a scene phrase and a zero-size box;
    # image 1001's only entity has no box
    assert skipped == {
        'image without Annotations/ or Sentences/ file': 1,
        'sentence without a boxed phrase': 2,
        'degenerate box': 1,
    }

    s0 = records['flickr30k-test-1000-s0']
    assert s0['image'] == {'path': 'flickr30k/images/1000.jpg', 'width': 50, 'height': 40}
    # XML boxes are 1-based inclusive: <xmin>3</xmin>..<xmax>20</xmax> covers x in [2, 20)
    assert [i['bbox'] for i in s0['instances']] == [
        [2, 3, 20, 30],
        [24, 4, 40, 30],
        [9, 29, 48, 40],
    ]
    assert s0['conversation'][1]['answer'] == [
        {'phrase': 'Two children', 'groups': [{'units': ['box'], 'n': 2, 'targets': [0, 1]}]},
        ' play on ',
        {'phrase': 'a blue mat', 'groups': [{'units': ['box'], 'n': 1, 'targets': [2]}]},
        ' in a gym .',
    ]  # the scene entity has no box: plain text
    assert s0['conversation'][0] == {'role': 'user', 'template': 'gcg_box', 'slots': {}}

    # a box named by two entities (19 and 22) is one instance; "notvisual" stays text
    s1 = records['flickr30k-test-1000-s1']
    answer = s1['conversation'][1]['answer']
    assert answer[0] == 'Someone watches '
    assert answer[1]['groups'][0]['targets'] == [0, 1]
    assert answer[2] == ' '
    assert answer[3] == {
        'phrase': 'their mat',
        'groups': [{'units': ['box'], 'n': 1, 'targets': [2]}],
    }
    assert s1['instances'][2] == {
        'bbox': [9, 29, 48, 40],
        'category': 'bodyparts',
        'source_id': '22/2',
    }
    assert s1['meta']['entity_ids'] == ['18', '22']

    # the caption text is the source sentence with the markup removed
    with open(osp.join(root, 'Sentences', '1000.txt')) as f:
        lines = f.read().splitlines()
    for k in (0, 1):
        plain = re.sub(r'\[/EN#\d+(?:/[^\s\]]+)+ ([^\]]*)\]', r'\1', lines[k])
        assert _text(records[f'flickr30k-test-1000-s{k}']['conversation'][1]['answer']) == plain


def test_flickr30k_sentence_parser(converter):
    parse = converter('flickr30k_entities').parse_sentence
    assert parse('[/EN#7/people/other A  man] runs [/EN#9/scene home]') == [
        ('7', ['people', 'other'], ['A', 'man']),
        'runs',
        ('9', ['scene'], ['home']),
    ]
    assert parse('[/EN#3/other broken phrase') == ['broken', 'phrase']
