# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""tools/infer.py: folders and globs, one JSON + PNG per image, bad images named and skipped."""

import json
import os.path as osp

import numpy as np
from PIL import Image

from mmrefvlm.testing.tool_helpers import load_tool, script_generation

from .conftest import DEMO_CONFIG, SCRIPTED


def test_infer_tool_writes_results_and_reports_bad_images(
    tiny_inferencer, tiny_checkpoint, image_files, tmp_path, monkeypatch, capsys
):
    script_generation(monkeypatch, SCRIPTED)
    folder = osp.dirname(image_files[0])
    missing = str(tmp_path / 'missing.png')
    out = str(tmp_path / 'out')
    argv = [DEMO_CONFIG, tiny_checkpoint, '--image', folder, missing, str(tmp_path / '*.jpg')]
    # a.png is 56 wide, b.png 48: the point is inside a.png only
    argv += ['--question', 'What is at <region>?', '--point', '52', '10', '--batch-size', '2']
    argv += ['--max-new-tokens', '64', '--device', 'cpu', '--out-dir', out]
    assert load_tool('infer').main(argv) == 1
    err = capsys.readouterr().err
    assert f"error: {missing}: image file '{missing}' does not exist" in err
    assert 'b.png: visual prompt 0: point [52.0, 10.0] is outside the image (48x64)' in err
    assert '*.jpg: no image matches' in err  # a glob that matched nothing
    assert 'infer' in err and '3/3' in err  # the progress bar reached the end
    with open(osp.join(out, 'a.json'), encoding='utf-8') as f:
        saved = json.load(f)
    assert not osp.exists(osp.join(out, 'b.json'))
    # the same answer as the Python API on the same inputs
    api = tiny_inferencer(
        image_files[0], 'What is at <region>?', [{'type': 'point', 'point': [52, 10]}]
    )[0]
    assert saved['text'] == api['text'] == SCRIPTED
    assert saved['task'] == 'ig_box' and saved['question'] == 'What is at [VPT]?'
    assert [i['bbox'] for i in saved['instances'] if 'bbox' in i] == [
        i['bbox'] for i in api['instances'] if 'bbox' in i
    ]
    overlay = np.asarray(Image.open(osp.join(out, 'a.png')))
    assert overlay.ndim == 3 and overlay.shape[2] == 3 and overlay.shape[0] > 40


def test_infer_tool_mask_prompt_and_inputs(tmp_path):
    infer = load_tool('infer')
    mask = np.zeros((40, 56), np.uint8)
    mask[5:10, 6:20] = 255
    Image.fromarray(mask).save(tmp_path / 'm.png')
    (tmp_path / 'x.jpg').write_bytes(b'')
    (tmp_path / 'notes.txt').write_text('not an image')
    args = infer.parse_args(
        [
            'c.py',
            'k.pth',
            '--image',
            str(tmp_path),
            '--question',
            'q',
            '--mask',
            str(tmp_path / 'm.png'),
            '--out-dir',
            'o',
        ]
    )
    prompt = infer.visual_prompt(args)
    assert prompt['type'] == 'mask' and prompt['mask'].dtype == bool
    assert prompt['mask'].sum() == 5 * 14
    images, unmatched = infer.expand_images([str(tmp_path), str(tmp_path / 'nothing*.png')])
    assert images == [str(tmp_path / 'm.png'), str(tmp_path / 'x.jpg')] and len(unmatched) == 1
