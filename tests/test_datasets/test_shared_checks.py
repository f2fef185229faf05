# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The validator and the data pipeline agree: one check function per field (issue 17, classes 3-5).

Each bad record below must be (1) reported by ``validate_record`` and (2) refused by the
pipeline with a ``SampleLoadError`` / ``TargetError`` that names the record id, so that (3)
``skip_bad_samples`` skips it. Before, each was one of: passed by the validator and then a bare
error in training (long-varint RLE, corrupt RLE or polygon), an error without the record id that
could not be skipped (``content: null``, NaN prompt -> ``cv2.error``), or silently accepted by
the pipeline (uncompressed RLE, a string coordinate, far-off keypoints and prompts, ``</s>`` in
an answer, a conversation ending with a user turn).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from mmrefvlm.datasets.records import validate_record
from mmrefvlm.datasets.refvlm_dataset import DATA_ERRORS
from mmrefvlm.datasets.transforms import FormatConversation, TargetError

from .test_dataset_errors import dataset
from .test_rle_fuzz import _varint

NAN = float('nan')


def _long_varint_mask() -> dict:
    """A valid 30x40 mask (30 pixels) whose 4th count, the delta -20, is written with 7
    characters: read exactly it is 0; pycocotools' 32-bit reader makes it 16."""
    runs = [0, 25, 5, 5, 30 * 40 - 35]
    counts = (
        _varint(runs[0], 1)
        + _varint(runs[1], 1)
        + _varint(runs[2], 1)
        + _varint(runs[3] - runs[1], 7)
        + _varint(runs[4] - runs[2], 1)
    )
    return {'size': [30, 40], 'counts': counts}


def _answer(r):
    return r['conversation'][1]['answer']


def _prompt(prompt):
    def mutate(r):
        r['conversation'][0]['content'] = 'Look at [VPT].'
        r['visual_prompts'] = [prompt]

    return mutate


def _keypoint_far(r):
    r['instances'][0]['keypoints'][0] = 1.6e7  # keypoint 0 has v = 2
    _answer(r)[0]['groups'][0]['units'] = ['keypoint']


CASES = {
    'absolute image path': lambda r, root: r['image'].update(path=f'{root}/img.png'),
    'uncompressed RLE': lambda r, root: r['instances'][0].update(
        mask={'size': [30, 40], 'counts': [200, 100, 900]}  # non-empty: loaded before
    ),
    'long-varint RLE': lambda r, root: r['instances'][0].update(mask=_long_varint_mask()),
    'corrupt RLE': lambda r, root: r['instances'][0]['mask'].update(
        counts=r['instances'][0]['mask']['counts'][:-2]
    ),
    'polygon with an odd count': lambda r, root: r['instances'][0].update(
        mask=[[4, 6, 14, 6, 14, 16, 4]]
    ),
    'polygon vertex far off': lambda r, root: r['instances'][0].update(
        mask=[[4, 6, 1e6, 6, 1e6, 1e6]]
    ),
    'box coordinate as string': lambda r, root: r['instances'][1].update(bbox=['20', 10, 36, 26]),
    'content null': lambda r, root: r['conversation'][0].update(content=None),
    'ends with a user turn': lambda r, root: r['conversation'].append(
        {'role': 'user', 'content': 'and now?'}
    ),
    'starts with the assistant': lambda r, root: r['conversation'].reverse(),
    'EOS in a phrase': lambda r, root: _answer(r)[0].update(phrase='two </s> squares'),
    'EOS in answer text': lambda r, root: _answer(r).__setitem__(1, ' and </s> '),
    'EOS in user text': lambda r, root: r['conversation'][0].update(content='Where </s> are?'),
    'labelled keypoint far outside': lambda r, root: _keypoint_far(r),
    'NaN point prompt': lambda r, root: _prompt({'type': 'point', 'point': [NAN, 5]})(r),
    'far-off point prompt': lambda r, root: _prompt({'type': 'point', 'point': [1e9, 5]})(r),
    'box prompt outside': lambda r, root: _prompt({'type': 'box', 'box': [50, 40, 60, 50]})(r),
    'far-off scribble': lambda r, root: _prompt(
        {'type': 'scribble', 'scribble': [[1, 1], [1e9, 1e9]]}
    )(r),
    'target index as string': lambda r, root: _answer(r)[0]['groups'][0].update(targets=['1', 0]),
    'instance not an object': lambda r, root: r['instances'].__setitem__(1, 'a square'),
    'units as a string': lambda r, root: _answer(r)[0]['groups'][0].update(units='box'),
    'depth scale 0': lambda r, root: r['depth'].update(scale=0),
    'depth without format': lambda r, root: r['depth'].pop('format'),
}


def _bad(scene, name):
    rec = copy.deepcopy(scene['record'])
    CASES[name](rec, scene['root'])
    return rec


@pytest.mark.parametrize('name', sorted(CASES))
def test_validator_and_pipeline_both_refuse_naming_the_record(scene, name):
    rec = _bad(scene, name)
    errors = validate_record(rec, data_root=scene['root'], template_sets={})
    assert errors, f'{name}: the validator passed it'
    with pytest.raises(DATA_ERRORS) as info:  # SampleLoadError / TargetError: skippable
        dataset(scene, [rec])[0]
    assert str(info.value).startswith('record r0: '), str(info.value)


@pytest.mark.parametrize(
    'name', ['long-varint RLE', 'content null', 'NaN point prompt', 'EOS in a phrase']
)
def test_skip_mode_skips_them(scene, name):
    good = copy.deepcopy(scene['record'])
    good['id'] = 'good'
    ds = dataset(scene, [_bad(scene, name), good], skip_bad_samples=True)
    assert ds[0]['data_samples'].metainfo['record_id'] == 'good'
    assert ds.num_skipped == 1


def test_messages_name_the_field(scene):
    cases = {
        'long-varint RLE': 'mask target: invalid RLE counts: count 3 at character 4 is a '
        '7-character varint',
        'box coordinate as string': 'box target: bbox must be',
        'content null': 'conversation[0].content: must be a string',
        'ends with a user turn': 'conversation: must end with an assistant turn',
        'EOS in a phrase': 'conversation[1].answer[0].phrase: answer text contains the '
        "special-token string '</s>'",
        'far-off scribble': 'visual_prompts[0].scribble: scribble point',
        'labelled keypoint far outside': 'keypoint target: labelled keypoint 0',
    }
    for name, expected in cases.items():
        with pytest.raises(DATA_ERRORS) as info:
            dataset(scene, [_bad(scene, name)])[0]
        assert str(info.value).startswith(f'record r0: {expected}'), (name, str(info.value))


def test_open_turn_only_in_predict_mode_with_the_flag(scene):
    rec = _bad(scene, 'ends with a user turn')
    assert validate_record(rec, template_sets={}, allow_open_turn=True) == []
    common = dict(tokenizer=dict(source='demo'), chat_template='plain', num_image_tokens=4)
    with pytest.raises(ValueError, match='allow_open_turn=True needs predict=True'):
        FormatConversation(**common, allow_open_turn=True)
    results = dict(copy.deepcopy(rec), img=np.zeros((30, 40, 3), np.uint8), sample_idx=0)
    # predict mode without the flag: refused (before, the answer before the last user turn was
    # rendered into the prompt and taken as the ground truth of the question after it)
    with pytest.raises(TargetError, match='record r0: conversation: must end with an assistant'):
        FormatConversation(**common, predict=True)(copy.deepcopy(results))
    out = FormatConversation(**common, predict=True, allow_open_turn=True)(results)
    text = FormatConversation(**common).tokenizer.decode(out['input_ids'].tolist())
    assert text.endswith('Q: and now?\nA: ')  # the model answers the open question
    assert out['gt_answer'] is None and out['ref_targets'] == []
