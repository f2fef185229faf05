# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""COCO-Interactive (PSALM json) -> ig_box / ig_mask, on tests/data/converters/coco_interactive."""

import json
import os.path as osp

import numpy as np


def _ann_file(fixtures):
    return osp.join(fixtures, 'coco_interactive', 'coco_interactive_val_psalm.json')


def test_coco_interactive(run_converter, fixtures):
    records, skipped, _ = run_converter(
        'coco_interactive',
        _ann_file(fixtures),
        '--data-root',
        fixtures,
        '--image-dir',
        osp.join(fixtures, 'coco', 'val2017'),
    )
    # object 0: 4 prompt types; object 1: its scribble mask is empty; object 2 is a crowd
    assert len(records) == (4 + 3) * 2
    assert skipped == {'crowd annotation': 1, 'empty or malformed scribble prompt': 1}
    with open(_ann_file(fixtures)) as f:
        source = json.load(f)[0]['anns']

    def prompt(a, kind, task='ig_box'):
        rec = records[f'cocoint-val-139-a{a}-{kind}-{task}']
        assert len(rec['visual_prompts']) == 1 and rec['visual_prompts'][0]['instance'] == 0
        return rec['visual_prompts'][0]

    # pixel (x 8, y 9) -> its centre
    assert prompt(0, 'point') == {'type': 'point', 'point': [8.5, 9.5], 'instance': 0}
    assert prompt(1, 'point')['point'] == [21.0, 7.0]  # centre of the 2x2 block x 20..21, y 6..7
    assert prompt(0, 'box')['box'] == [3, 2, 15, 16]
    assert prompt(0, 'mask') == {
        'type': 'mask',
        'mask': source[0]['mask_visual_prompt_mask'],
        'instance': 0,
    }
    line = prompt(0, 'scribble')['scribble']
    expected = [[6.5 + k, 5.5 + k] for k in range(8)]  # the diagonal pixels, in stroke order
    assert line in (expected, expected[::-1])

    box_rec = records['cocoint-val-139-a0-point-ig_box']
    assert box_rec['image'] == {'path': 'coco/val2017/000000000139.jpg', 'width': 30, 'height': 20}
    assert box_rec['instances'] == [{'bbox': [4, 3, 14, 15], 'category': 'dog', 'source_id': 900}]
    assert box_rec['conversation'] == [
        {'role': 'user', 'template': 'ig_box', 'slots': {}},
        {
            'role': 'assistant',
            'answer': [{'phrase': 'dog', 'groups': [{'units': ['box'], 'n': 1, 'targets': [0]}]}],
        },
    ]
    mask_rec = records['cocoint-val-139-a1-box-ig_mask']
    # the target box comes from the object mask (x 18..28, y 2..18), not from the file's bbox
    assert mask_rec['instances'][0]['bbox'] == [18, 2, 28, 18]
    assert mask_rec['instances'][0]['mask'] == source[1]['segmentation']
    assert mask_rec['instances'][0]['category'] == 'person'
    assert mask_rec['conversation'][1]['answer'][0]['groups'][0]['units'] == ['mask']


def test_coco_interactive_scribble_options(run_converter, fixtures):
    records, _, _ = run_converter(
        'coco_interactive',
        _ann_file(fixtures),
        '--data-root',
        fixtures,
        '--tasks',
        'ig_mask',
        '--prompt-types',
        'scribble',
        '--scribble-points',
        '3',
    )
    line = records['cocoint-val-139-a0-scribble-ig_mask']['visual_prompts'][0]['scribble']
    assert line in ([[6.5, 5.5], [10.5, 9.5], [13.5, 12.5]], [[13.5, 12.5], [9.5, 8.5], [6.5, 5.5]])
    records, _, _ = run_converter(
        'coco_interactive',
        _ann_file(fixtures),
        '--data-root',
        fixtures,
        '--tasks',
        'ig_box',
        '--prompt-types',
        'scribble',
        '--scribble-format',
        'mask',
    )
    assert records['cocoint-val-139-a0-scribble-ig_box']['visual_prompts'][0]['type'] == 'mask'


def test_polyline_ordering(converter):
    order = converter('coco_interactive').order_polyline
    # an L-shaped stroke given in scrambled order comes back walked end to end
    pts = np.array([[0, 0], [0, 1], [0, 2], [1, 2], [2, 2]], float) + 0.5
    walked = order(pts[[3, 0, 4, 1, 2]], max_points=10)
    ref = (pts).tolist()
    assert walked in (ref, ref[::-1])
    assert len(order(pts, max_points=2)) == 2


def test_coco_category_table(converter):
    module = converter('coco_interactive')
    assert len(module.COCO_IDS) == len(module.COCO_NAMES) == 80
    names = dict(zip(module.COCO_IDS, module.COCO_NAMES, strict=True))
    assert (names[1], names[18], names[90], names[13]) == (
        'person',
        'dog',
        'toothbrush',
        'stop sign',
    )
