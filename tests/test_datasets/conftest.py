# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import json
import os.path as osp

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from PIL import Image
from pycocotools import mask as mask_utils


@pytest.fixture(autouse=True)
def _scope():
    init_default_scope('mmrefvlm')


def rle(mask: np.ndarray) -> dict:
    enc = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': list(enc['size']), 'counts': enc['counts'].decode()}


@pytest.fixture
def scene(tmp_path):
    """A 40x30 (W x H) image with a red square at x 4..14, y 6..16 and a blue one at x 20..36."""
    img = np.zeros((30, 40, 3), np.uint8)
    img[6:16, 4:14] = (255, 0, 0)
    img[10:26, 20:36] = (0, 0, 255)
    Image.fromarray(img).save(tmp_path / 'img.png')
    m0 = np.zeros((30, 40), bool)
    m0[6:16, 4:14] = True
    m1 = np.zeros((30, 40), bool)
    m1[10:26, 20:36] = True
    depth = np.full((30, 40), 3000, np.uint16)
    Image.fromarray(depth).save(tmp_path / 'depth.png')
    record = {
        'id': 'r0',
        'task': 'rec',
        'image': {'path': 'img.png', 'width': 40, 'height': 30},
        'instances': [
            {
                'bbox': [4, 6, 14, 16],
                'mask': rle(m0),
                'category': 'square',
                'keypoints': [9, 11, 2, 9, 6, 2, 14, 11, 2, 9, 16, 2, 4, 11, 0],
            },
            {
                'bbox': [20, 10, 36, 26],
                'mask': rle(m1),
                'category': 'square',
                'keypoints': [28, 18, 2, 28, 10, 2, 36, 18, 2, 28, 26, 2, 20, 18, 2],
            },
        ],
        'depth': {'path': 'depth.png', 'scale': 0.001, 'format': 'png16'},
        'visual_prompts': [],
        'conversation': [
            {'role': 'user', 'content': 'Where are the squares?'},
            {
                'role': 'assistant',
                'answer': [
                    {
                        'phrase': 'two squares',
                        'groups': [{'units': ['box'], 'n': 2, 'targets': [1, 0]}],
                    },
                    ' and ',
                    {
                        'phrase': 'the red one',
                        'groups': [{'units': ['mask', 'box'], 'n': 1, 'targets': [0]}],
                    },
                    '.',
                ],
            },
        ],
    }
    return dict(root=str(tmp_path), record=record, masks=(m0, m1))


def write_jsonl(path, records):
    with open(path, 'w', encoding='utf-8') as f:
        for r in records:
            f.write(json.dumps(r) + '\n')
    return osp.basename(path)
