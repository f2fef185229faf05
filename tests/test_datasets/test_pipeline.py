# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The record -> model-input pipeline: prompt masking, token expansion, square frame, targets."""

import copy

import torch
from mmengine.dataset import Compose

from mmrefvlm.datasets.transforms import (
    BuildUnitTargets,
    FormatConversation,
    LoadRecordDepth,
    LoadRecordImage,
    PackRefVLMInputs,
    PrepareImages,
    RasterizeVisualPrompts,
)
from mmrefvlm.trp import build_answer

TARGETS = dict(
    box=dict(type='BoxTarget'),
    mask=dict(type='MaskTarget', size=20),
    keypoint=dict(type='KeypointTarget', num_keypoints=5),
    depth=dict(type='DepthTarget', size=20),
)


def make_pipeline(predict=False, cot=False, image_tokens=4, vit=16, allow_open_turn=False):
    return Compose(
        [
            LoadRecordImage(),
            LoadRecordDepth(),
            PrepareImages(sizes=dict(vit=vit, pyramid=32)),
            RasterizeVisualPrompts(size=20, point_radius=2, scribble_width=1),
            FormatConversation(
                dict(source='demo'),
                chat_template='plain',
                num_image_tokens=image_tokens,
                num_prompt_tokens=9,
                cot=cot,
                predict=predict,
                allow_open_turn=allow_open_turn,
            ),
            BuildUnitTargets(TARGETS),
            PackRefVLMInputs(),
        ]
    )


def run(scene, record=None, **kw):
    rec = copy.deepcopy(record or scene['record'])
    rec['data_root'] = scene['root']
    rec['sample_idx'] = 0
    return make_pipeline(**kw)(rec)


def test_prompt_masked_answer_supervised(scene, demo_tokenizer):
    out = run(scene, cot=True)
    ids, labels = out['inputs']['input_ids'], out['inputs']['labels']
    sup = labels[labels != -100].tolist()
    answer = scene['record']['conversation'][1]['answer']
    assert sup == demo_tokenizer.encode(build_answer(answer, cot=True)) + [demo_tokenizer.ids.eos]
    # supervised tokens are exactly the trailing answer span of input_ids
    pos = (labels != -100).nonzero().flatten()
    assert torch.equal(ids[pos], labels[pos])
    assert pos.tolist() == list(range(pos[0].item(), pos[0].item() + len(pos)))
    # <image> is expanded to num_image_tokens copies, once
    assert (ids == demo_tokenizer.ids.image).sum() == 4
    assert 'Where are the squares?' in demo_tokenizer.decode(ids.tolist())


def test_predict_mode_leaves_answer_out(scene, demo_tokenizer):
    out = run(scene, predict=True)
    assert (out['inputs']['labels'] == -100).all()
    text = demo_tokenizer.decode(out['inputs']['input_ids'].tolist())
    assert text.endswith('A: ') and '<REF>' not in text
    gt = out['data_samples'].gt_instances
    assert gt.units == ['box', 'box', 'box', 'mask']  # grouped by unit, <REF> order within a unit
    assert gt.labels[:2] == ['two squares', 'two squares']


def test_targets_in_square_frame(scene):
    out = run(scene)
    units = out['data_samples'].gt_units
    s = 40  # square side = max(W, H)
    # box refs in <REF> order: targets 1, 0 (group 0), then 0 (group 1)
    exp = torch.tensor([[20, 10, 36, 26], [4, 6, 14, 16], [4, 6, 14, 16]], dtype=torch.float32) / s
    assert torch.allclose(units.box.bboxes, exp)
    assert units.box.group_ids.tolist() == [0, 0, 1]
    assert units.box.instance_ids.tolist() == [1, 0, 0]
    m = units.mask.masks[0]  # 20x20 frame of the 40x40 square; image rows 0..14
    assert m.dtype == torch.bool and m.shape == (20, 20)
    assert m[3:8, 2:7].all() and m.sum() == 25 and not m[15:].any()
    assert out['data_samples'].metainfo['square_size'] == 40


def test_keypoint_and_depth_targets(scene):
    rec = copy.deepcopy(scene['record'])
    rec['conversation'][1]['answer'] = [
        {
            'phrase': 'x',
            'groups': [
                {'units': ['keypoint'], 'n': 1, 'targets': [0]},
                {'units': ['depth'], 'n': 1, 'targets': [None]},
            ],
        }
    ]
    units = run(scene, rec)['data_samples'].gt_units
    kp = units.keypoint.keypoints[0]
    assert torch.allclose(kp[0], torch.tensor([9 / 40, 11 / 40, 2.0]))
    assert kp[4].tolist() == [0.0, 0.0, 0.0]  # unlabelled point zeroed
    d = units.depth
    assert d.depth.shape == (1, 20, 20) and torch.allclose(d.depth[0, 0, 0], torch.tensor(3.0))
    assert d.valid[0, :15].all() and not d.valid[0, 15:].any()  # padding rows invalid


def test_visual_prompt_rasterisation(scene, demo_tokenizer):
    rec = copy.deepcopy(scene['record'])
    rec['visual_prompts'] = [
        {'type': 'point', 'point': [9, 11], 'instance': 0},
        {'type': 'box', 'box': [20, 10, 36, 26]},
        {'type': 'scribble', 'scribble': [[22, 12], [34, 24]]},
        {'type': 'mask', 'mask': rec['instances'][0]['mask']},
    ]
    rec['conversation'][0]['content'] = 'What is at [VPT] [VPT] [VPT] [VPT]?'
    out = run(scene, rec)
    pm = out['inputs']['prompt_masks']
    assert pm.shape == (4, 20, 20) and pm.dtype == torch.bool
    assert pm[0, 5, 4] and not pm[0, 0, 0] and pm[0].sum() < 30  # disc around (4.5, 5.5)
    assert pm[1, 5:13, 10:18].all() and pm[1].sum() == 64
    assert pm[2, 6, 11] and pm[2, 11, 16] and not pm[2, 11, 11]
    assert pm[3, 3:8, 2:7].all()
    assert (out['inputs']['input_ids'] == demo_tokenizer.ids.vpt).sum() == 36
    assert out['data_samples'].metainfo['prompt_types'] == ['point', 'box', 'scribble', 'mask']


def test_text_only_record(scene):
    rec = copy.deepcopy(scene['record'])
    rec.update(image=None, instances=[], depth=None)
    rec['conversation'][1]['answer'] = 'Just text.'
    out = run(scene, rec)
    assert out['inputs']['images'] == {}
    assert not out['data_samples'].metainfo['has_image']


def test_image_padded_with_mean_colour(scene):
    out = run(scene)
    vit = out['inputs']['images']['vit']
    assert vit.shape == (3, 16, 16) and vit.dtype == torch.uint8
    assert vit[:, 15, 8].tolist() == [122, 116, 104]  # bottom rows are padding


def test_image_only_once_when_the_first_turn_template_has_it(scene, demo_tokenizer, tmp_path):
    """A first user turn whose template already holds <image> is followed by turns that get no
    second <image> (the pipeline used to keep looking for a turn to put it in)."""
    import json

    (tmp_path / 'img_first.json').write_text(
        json.dumps(
            {
                'task': 'img_first',
                'slots': ['expr'],
                'system': 'Segment.',
                'templates': ['<image>\nSegment <expr>.'],
            }
        )
    )
    rec = copy.deepcopy(scene['record'])
    rec['conversation'] = [
        {'role': 'user', 'template': 'img_first', 'slots': {'expr': 'the square'}},
        rec['conversation'][1],
        {'role': 'user', 'content': 'And now?'},
        {'role': 'assistant', 'answer': 'Gone.'},
    ]
    fmt = FormatConversation(
        dict(source='demo'),
        chat_template='plain',
        num_image_tokens=4,
        cot=False,
        extra_template_dirs=[str(tmp_path)],
    )
    rec.update(data_root=scene['root'], sample_idx=0)
    out = fmt(PrepareImages(sizes=dict(vit=16))(LoadRecordImage()(rec)))
    ids = out['input_ids']
    assert (ids == demo_tokenizer.ids.image).sum() == 4  # one <image>, 4 tokens
    assert 'Q: And now?' in demo_tokenizer.decode(ids.tolist())
