# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""COCO Captions -> caption, LLaVA instruction data -> vqa, COCO-Interactive -> reg."""

import os.path as osp


def test_coco_captions(run_converter, fixtures):
    records, skipped, _ = run_converter(
        'coco_captions',
        osp.join(fixtures, 'coco', 'captions_val2017.json'),
        '--data-root',
        fixtures,
        '--image-dir',
        osp.join(fixtures, 'coco', 'val2017'),
    )
    assert sorted(records) == [
        'coco-cap-val2017-139-1',
        'coco-cap-val2017-139-2',
        'coco-cap-val2017-285-3',
    ]
    assert skipped == {'empty caption': 1, 'caption of an image missing from "images"': 1}
    rec = records['coco-cap-val2017-285-3']
    assert rec['task'] == 'caption' and rec['instances'] == []
    assert rec['image'] == {'path': 'coco/val2017/000000000285.jpg', 'width': 40, 'height': 30}
    assert rec['conversation'] == [
        {'role': 'user', 'template': 'caption', 'slots': {}},
        {'role': 'assistant', 'answer': 'A large bear standing in the grass.'},
    ]
    assert records['coco-cap-val2017-139-1']['conversation'][1]['answer'] == (
        'A dog sits next to a red chair.'
    )


def test_llava_instruct(run_converter, fixtures):
    root = osp.join(fixtures, 'llava')
    records, skipped, _ = run_converter(
        'llava_instruct',
        osp.join(root, 'llava_v1_5_mix665k.json'),
        '--data-root',
        fixtures,
        '--image-dir',
        root,
    )
    assert sorted(records) == ['llava-000000033471', 'llava-sharegpt-1']
    assert skipped == {'image file missing': 1, 'conversation not alternating human/gpt': 1}
    rec = records['llava-000000033471']
    assert rec['task'] == 'vqa'
    assert rec['image'] == {
        'path': 'llava/coco/train2017/000000033471.jpg',
        'width': 16,
        'height': 12,
    }
    assert [t['role'] for t in rec['conversation']] == ['user', 'assistant'] * 2
    assert rec['conversation'][0] == {
        'role': 'user',
        'content': '<image>\nWhat are the colors of the bus in the image?',
    }
    assert rec['conversation'][3] == {
        'role': 'assistant',
        'answer': 'The back of the bus features an advertisement.',
    }
    text_only = records['llava-sharegpt-1']
    assert text_only['image'] is None
    assert text_only['conversation'][0]['content'] == 'Write a haiku about autumn.'


def test_coco_interactive_reg(run_converter, fixtures):
    records, _, _ = run_converter(
        'coco_interactive',
        osp.join(fixtures, 'coco_interactive', 'coco_interactive_val_psalm.json'),
        '--tasks',
        'reg',
        '--prompt-types',
        'box',
        '--data-root',
        fixtures,
    )
    rec = records['cocoint-val-139-a0-box-reg']
    assert rec['task'] == 'reg' and rec['conversation'][1] == {'role': 'assistant', 'answer': 'dog'}
    assert rec['visual_prompts'][0]['type'] == 'box' and 'mask' not in rec['instances'][0]
