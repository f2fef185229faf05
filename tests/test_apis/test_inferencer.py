# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""RefVLMInferencer on the tiny demo config: results, batching, visual prompts, history, bad
inputs, files and checkpoints."""

import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mmrefvlm.apis import InferenceInputError, RefVLMInferencer
from mmrefvlm.apis.inferencer import find_test_pipeline
from mmrefvlm.datasets.geometry import decode_mask
from mmrefvlm.testing.tool_helpers import script_generation

from .conftest import DEMO_CONFIG, ROOT, SCRIPTED, make_image


def test_scripted_answer_becomes_result(tiny_inferencer, monkeypatch, image_files):
    calls = script_generation(monkeypatch, SCRIPTED)
    result = tiny_inferencer(image_files[0], 'Where is the red circle?')[0]
    assert calls == [1]
    assert result['text'] == SCRIPTED
    assert result['answer'] == 'the red circle is left of the blue square.'
    assert (result['task'], result['question']) == ('rec', 'Where is the red circle?')
    assert result['warnings'] == []
    found = sorted((i['phrase'], i['unit']) for i in result['instances'])
    assert found == [
        ('the blue square', 'box'),
        ('the red circle', 'box'),
        ('the red circle', 'mask'),
    ]
    by_key = {(i['phrase'], i['unit']): i for i in result['instances']}
    box, mask = by_key['the red circle', 'box'], by_key['the red circle', 'mask']
    assert box['group'] == mask['group'] != by_key['the blue square', 'box']['group']
    # each entry carries only what its unit decodes, in original pixels (the image is 40x56)
    x1, y1, x2, y2 = box['bbox']
    assert 0 <= x1 <= x2 <= 56 and 0 <= y1 <= y2 <= 40
    assert 'mask' not in box and 'bbox' not in mask
    assert mask['mask']['size'] == [40, 56]
    assert decode_mask(mask['mask'], 40, 56).shape == (40, 56)


def test_batch_generates_once_and_matches_single_images(tiny_inferencer, monkeypatch, image_files):
    from mmrefvlm.models import refvlm as refvlm_module

    real, calls = refvlm_module.greedy_generate, []

    def spy(llm, embeds, *args, **kwargs):
        calls.append(tuple(embeds.shape[:2]))
        return real(llm, embeds, *args, **kwargs)

    monkeypatch.setattr(refvlm_module, 'greedy_generate', spy)
    # different question lengths: the batch is really left-padded
    questions = ['Where is the red circle?', 'Find the small blue square in the image, please.']
    single = [tiny_inferencer(p, q)[0] for p, q in zip(image_files, questions, strict=True)]
    batch = tiny_inferencer(image_files, questions, batch_size=2)
    assert [c[0] for c in calls] == [1, 1, 2]
    assert calls[0][1] != calls[1][1]  # prompt lengths differ
    assert [r['text'] for r in batch] == [r['text'] for r in single]
    assert [r['image'] for r in batch] == image_files


def test_visual_prompts_go_where_the_question_says(tiny_inferencer, image_files):
    prep = tiny_inferencer.preprocess(
        image_files[0], 'What is <region>?', [{'type': 'box', 'box': (4, 6, 20, 30)}]
    )
    assert prep.question == 'What is [VPT]?'
    assert prep.data['data_samples'].metainfo['task'] == 'ig_box'
    masks = prep.data['inputs']['prompt_masks']
    assert masks.shape == (1, 64, 64)  # rasterised in the 56x56 square frame, resized to 64
    s = 64 / 56
    assert masks[0, int(18 * s), int(12 * s)] and not masks[0, int(35 * s), int(40 * s)]
    vpt = tiny_inferencer.model.tokenizer.ids.vpt
    assert int((prep.data['inputs']['input_ids'] == vpt).sum()) == 9  # 3x3 aggregation tokens
    point = {'type': 'point', 'point': np.array([10.0, 12.0])}
    assert tiny_inferencer.preprocess(image_files[0], 'What is this?', [point]).question == (
        'What is this? [VPT]'
    )
    with pytest.raises(InferenceInputError, match=r'a\.png: the question marks 2 <region> but 1'):
        tiny_inferencer.preprocess(image_files[0], 'Is <region> left of <region>?', [point])


def test_history_is_rendered_before_the_question(tiny_inferencer, monkeypatch, image_files):
    script_generation(monkeypatch, SCRIPTED)
    first = tiny_inferencer(image_files[0], 'Where is the red circle?')[0]
    history = [
        {'role': 'user', 'content': 'Where is the red circle?'},
        {'role': 'assistant', 'text': first['text']},
    ]
    prep = tiny_inferencer.preprocess(image_files[0], 'And the blue square?', history=history)
    tok = tiny_inferencer.model.tokenizer
    ids = prep.data['inputs']['input_ids'].tolist()
    answer_ids = tok.encode(first['text'])
    assert any(ids[i : i + len(answer_ids)] == answer_ids for i in range(len(ids)))
    assert tok.decode(ids).rstrip().endswith('And the blue square?\nA:')
    # the earlier answer's targets are not this turn's ground truth
    assert len(prep.data['data_samples'].gt_instances) == 0
    bad = [{'role': 'assistant', 'text': '<Phrase>it</Phrase>(<Unit>normal</Unit>[0]<REF>)'}]
    with pytest.raises(InferenceInputError, match=r"a\.png: history turn 0: unknown unit 'normal'"):
        tiny_inferencer.preprocess(image_files[0], 'Where?', history=bad)


def test_bad_inputs_name_the_image_and_the_others_still_run(tiny_inferencer, tmp_path, image_files):
    missing = str(tmp_path / 'missing.png')
    corrupt = tmp_path / 'corrupt.png'
    corrupt.write_bytes(b'this is not a png')
    images = [missing, str(corrupt), image_files[0], image_files[1]]
    prompts = [[], [], [{'type': 'box', 'box': [0, 0, 50, 50]}], []]  # a.png is 40 rows high
    with pytest.raises(InferenceInputError) as info:
        tiny_inferencer(images, 'Where is it?', visual_prompts=prompts)
    assert all(name in str(info.value) for name in images[:3])
    results = tiny_inferencer(images, 'Where is it?', visual_prompts=prompts, on_error='skip')
    expected = ['does not exist', 'cannot be decoded', 'outside the image']
    for name, result, reason in zip(images, results, expected, strict=False):
        assert result['error'].startswith(name) and reason in result['error']
    assert 'error' not in results[3] and results[3]['image'] == image_files[1]
    for prompt, reason in (
        ({'type': 'polygon', 'polygon': [1, 2]}, "unknown type 'polygon'"),
        ({'type': 'point', 'point': [1]}, 'point must be'),
        ({'type': 'mask', 'mask': np.ones((5, 5), bool)}, 'does not match the image'),
    ):
        with pytest.raises(InferenceInputError, match=f'b.png: visual prompt 0: .*{reason}'):
            tiny_inferencer.preprocess(image_files[1], 'What is it?', [prompt])
    with pytest.raises(InferenceInputError, match="b.png: .*unknown task 'nope'"):
        tiny_inferencer.preprocess(image_files[1], 'What is it?', task='nope')
    with pytest.raises(InferenceInputError, match='image_0: an image array must be uint8'):
        tiny_inferencer.preprocess(np.zeros((8, 8, 3), np.float32), 'What is it?')


def test_out_dir_gets_json_png_and_depth_files(tiny_inferencer, monkeypatch, tmp_path):
    script_generation(
        monkeypatch,
        '<Phrase>the scene</Phrase>(<Unit>depth</Unit>[0]<REF>) and '
        '<Phrase>the red circle</Phrase>(<Unit>keypoint</Unit>[0]<REF>).',
    )
    img = make_image(40, 56)
    out = str(tmp_path / 'out')
    result = tiny_inferencer(img, 'Estimate the depth.', task='depth', out_dir=out)[0]
    depth = next(i for i in result['instances'] if i['unit'] == 'depth')['depth']
    assert depth.shape == (40, 56) and depth.dtype == np.float32 and (depth > 0).all()
    with open(osp.join(out, 'image_0.json'), encoding='utf-8') as f:
        saved = json.load(f)
    assert saved['text'] == result['text'] and saved['task'] == 'depth'
    entry = next(i for i in saved['instances'] if i['unit'] == 'depth')
    assert entry['depth'] == {'path': 'image_0_depth0.png', 'scale': 0.001, 'format': 'png16'}
    png16 = np.asarray(Image.open(osp.join(out, entry['depth']['path'])))
    assert png16.dtype == np.uint16
    np.testing.assert_allclose(png16 * 0.001, depth, atol=6e-4)
    kpt = next(i for i in saved['instances'] if i['unit'] == 'keypoint')
    assert len(kpt['keypoints']) == 5 and all(len(p) == 3 for p in kpt['keypoints'])
    assert len(kpt['bbox']) == 4
    overlay = np.asarray(Image.open(osp.join(out, 'image_0.png')))
    # the 40x56 image is upscaled for readable labels, a depth panel sits beside it, text below
    assert overlay.shape[0] > 40 * 5 and overlay.shape[1] == 56 * 5 * 2


def test_checkpoint_loads_weights_only_and_strictly(tiny_inferencer, tiny_checkpoint, tmp_path):
    from mmrefvlm.utils.checkpoint import UnsafeCheckpointError

    torch.manual_seed(123)  # other random weights, replaced by the checkpoint's
    other = RefVLMInferencer(DEMO_CONFIG, tiny_checkpoint, device='cpu', max_new_tokens=64)
    ref = tiny_inferencer.model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in other.model.state_dict().items())
    img = make_image(40, 56)
    assert other(img, 'Where is it?')[0]['text'] == tiny_inferencer(img, 'Where is it?')[0]['text']
    wrong = str(tmp_path / 'wrong.pth')
    torch.save({'state_dict': {'weight': torch.zeros(2, 2), 'extra': torch.zeros(1)}}, wrong)
    with pytest.raises(ValueError, match=r'does not fit the config: 1 missing .* 1 unexpected'):
        RefVLMInferencer._load_checkpoint(torch.nn.Linear(2, 2, bias=True), wrong)
    unsafe = str(tmp_path / 'unsafe.pth')
    torch.save({'state_dict': {}, 'cfg': Config({})}, unsafe)
    with pytest.raises(UnsafeCheckpointError):
        RefVLMInferencer._load_checkpoint(torch.nn.Linear(2, 2), unsafe)


@pytest.mark.parametrize(
    'config',
    ['configs/refvlm/demo_stage2.py', 'configs/refvlm/stage2.py', 'configs/refvlm/stage3_sam.py'],
)
def test_find_test_pipeline_in_every_layout(config):
    pipeline = find_test_pipeline(Config.fromfile(osp.join(ROOT, config)))
    formats = [
        t for t in pipeline if getattr(t['type'], '__name__', t['type']) == 'FormatConversation'
    ]
    assert len(formats) == 1 and formats[0]['predict'] is True


def test_find_test_pipeline_fallbacks():
    flat = Config(dict(test_pipeline=[dict(type='A')]))
    assert find_test_pipeline(flat) == [dict(type='A')]
    wrapped = Config(
        dict(test_dataloader=dict(dataset=dict(dataset=dict(pipeline=[dict(type='B')]))))
    )
    assert find_test_pipeline(wrapped) == [dict(type='B')]
    with pytest.raises(ValueError, match='has no test pipeline'):
        find_test_pipeline(Config(dict(model=dict())))


def test_arrays_and_pil_images_over_max_pixels_are_refused_like_files():
    from mmrefvlm.apis.inference_inputs import load_image

    arr = np.zeros((30, 40, 3), dtype=np.uint8)
    assert load_image(arr, 'a', max_pixels=1200).shape == (30, 40, 3)  # at the limit
    for image in (np.zeros((31, 40, 3), dtype=np.uint8), Image.new('RGB', (40, 31))):
        with pytest.raises(InferenceInputError, match=r'a: image of 40x31 pixels is over'):
            load_image(image, 'a', max_pixels=1200)
