# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Inference overlays: phrases, instances and answer text share one colour per phrase."""

import numpy as np

from mmrefvlm.datasets.geometry import encode_mask
from mmrefvlm.visualization import answer_segments, color_hex, draw_answer, phrase_colors
from mmrefvlm.visualization.draw import PALETTE

TEXT = (
    '<Phrase>the <Phrase>red</Phrase>(<Unit>mask</Unit>[0]<REF>) cup</Phrase>'
    '(<Unit>box</Unit>[0]<REF>) is near <Phrase>a box</Phrase>(<Unit>box</Unit>[0]<REF>).'
)


def test_segments_follow_nested_phrases():
    segs = answer_segments(TEXT)
    assert ''.join(t for t, _ in segs) == 'the red cup is near a box.'
    assert segs == [
        ('the ', 'the red cup'),
        ('red', 'red'),
        (' cup', 'the red cup'),
        (' is near ', None),
        ('a box', 'a box'),
        ('.', None),
    ]
    colors = phrase_colors(segs, extra=['not in the text'])
    assert list(colors) == ['the red cup', 'red', 'a box', 'not in the text']
    assert colors['the red cup'] == PALETTE[0] and colors['a box'] == PALETTE[2]
    assert color_hex(PALETTE[0]) == '#e6194b'


def test_draw_answer_colours_instances_like_their_phrase():
    img = np.full((100, 120, 3), 128, np.uint8)
    mask = np.zeros((100, 120), bool)
    mask[60:90, 10:40] = True
    result = {
        'text': TEXT,
        'instances': [
            {'phrase': 'the red cup', 'unit': 'box', 'group': 1, 'bbox': [20, 10, 80, 50]},
            {'phrase': 'red', 'unit': 'mask', 'group': 0, 'mask': encode_mask(mask)},
            {'phrase': 'a box', 'unit': 'box', 'group': 2, 'bbox': [90, 60, 115, 95]},
        ],
    }
    out = draw_answer(img, result, min_side=100)  # no upscaling
    assert out.shape[1] == 120 and out.shape[0] > 100  # image, then the answer strip
    assert tuple(out[30, 20]) == PALETTE[0]  # left edge of the first box
    assert tuple(out[80, 110]) != PALETTE[2] and tuple(out[80, 90]) == PALETTE[2]
    tint = (np.array([128, 128, 128]) * 0.5 + np.array(PALETTE[1]) * 0.5).astype(np.uint8)
    assert tuple(out[75, 25]) == tuple(tint)  # the mask, half-tinted in its phrase's colour
    strip = out[100:].reshape(-1, 3)
    for color in (PALETTE[0], PALETTE[1], PALETTE[2]):  # each phrase written in its colour
        assert (np.abs(strip.astype(int) - color).sum(1) < 60).any()


def test_draw_answer_puts_depth_beside_the_image():
    img = np.zeros((20, 30, 3), np.uint8)
    depth = np.linspace(1, 5, 600, dtype=np.float32).reshape(20, 30)
    result = {
        'text': '<Phrase>the scene</Phrase>(<Unit>depth</Unit>[0]<REF>).',
        'instances': [{'phrase': 'the scene', 'unit': 'depth', 'group': 0, 'depth': depth}],
    }
    out = draw_answer(img, result, min_side=30)
    assert out.shape[1] == 60  # image panel + depth panel, each 30 wide
    right = out[18:38, 30:]  # below the title bar
    assert right.std() > 20  # a colour map, not the black image
