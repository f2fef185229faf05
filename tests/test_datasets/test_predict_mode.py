# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Predict mode with ``allow_open_turn=True`` (the inferencer's setting) takes a conversation that
ends with the question (no dummy assistant turn); training mode, and predict mode without the
flag (validation / test records need their answer), do not. A decoded image in the record is used
as is."""

import copy

import numpy as np
import pytest

from mmrefvlm.datasets.transforms import LoadRecordImage, SampleLoadError

from .test_pipeline import run


def open_question(scene, with_history=False):
    record = copy.deepcopy(scene['record'])
    question = {'role': 'user', 'content': 'Where is the blue square?'}
    record['conversation'] = (record['conversation'] if with_history else []) + [question]
    return record


def test_predict_mode_answers_an_open_question(scene, demo_tokenizer):
    out = run(scene, open_question(scene), predict=True, allow_open_turn=True)
    ids, labels = out['inputs']['input_ids'], out['inputs']['labels']
    assert (labels == -100).all()
    # the prompt ends with the question and the assistant prefix: the model writes the answer
    assert demo_tokenizer.decode(ids.tolist()).endswith('\nWhere is the blue square?\nA: ')
    sample = out['data_samples']
    assert 'gt_answer' not in sample and 'gt_text' not in sample
    assert len(sample.gt_instances) == 0 and not list(sample.gt_units.keys())


def test_predict_mode_history_targets_are_not_ground_truth(scene, demo_tokenizer):
    out = run(scene, open_question(scene, with_history=True), predict=True, allow_open_turn=True)
    text = demo_tokenizer.decode(out['inputs']['input_ids'].tolist())
    # the earlier answer is rendered as context, before the new question
    assert text.index('<Phrase>two squares</Phrase>') < text.index('Where is the blue square?')
    assert len(out['data_samples'].gt_instances) == 0  # its targets belong to the earlier turn


def test_training_mode_still_needs_an_answer(scene):
    with pytest.raises(ValueError, match='must end with an assistant turn'):
        run(scene, open_question(scene), predict=False)
    # predict mode without the flag too: a validation record that lost its answer is an error
    with pytest.raises(ValueError, match='record r0: conversation: must end with an assistant'):
        run(scene, open_question(scene), predict=True)


def test_closed_conversation_keeps_its_ground_truth_in_predict_mode(scene):
    out = run(scene, predict=True)
    assert out['data_samples'].gt_text.startswith('<Phrase>two squares</Phrase>')
    assert len(out['data_samples'].gt_instances) == 4  # 2 boxes + (mask, box) of the red one


def test_load_record_image_uses_a_decoded_image():
    img = np.full((5, 7, 3), 9, np.uint8)
    out = LoadRecordImage().transform({'id': 'x', 'image': {'path': 'p.png'}, 'img': img})
    assert out['ori_shape'] == (5, 7) and out['img_path'] == 'p.png' and out['img'] is img
    with pytest.raises(SampleLoadError, match=r'record x: a decoded image must be .* float64'):
        LoadRecordImage().transform({'id': 'x', 'image': None, 'img': np.zeros((5, 7, 3))})
