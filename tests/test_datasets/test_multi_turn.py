# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Multi-turn conversations: what is supervised, and how groups are numbered across the answers.

The pipeline tests use one-turn records; a template or masking mistake that only shows from the
second answer on (a later user turn supervised, an answer left out, group ids restarting at 0 in
every answer) passed them.
"""

import numpy as np
import pytest
import torch

from mmrefvlm.datasets.transforms import FormatConversation
from mmrefvlm.trp import build_answer


@pytest.mark.parametrize('template', ['vicuna', 'chatml', 'plain'])
def test_multi_turn_labels_supervise_each_answer_and_its_eos_only(demo_tokenizer, template):
    turns = (
        [{'phrase': 'two squares', 'groups': [{'units': ['box'], 'n': 2, 'targets': [0, 1]}]}],
        'Only text.',
        [{'phrase': 'it', 'groups': [{'units': ['box', 'mask'], 'n': 1, 'targets': [0]}]}, '!'],
    )
    conv = []
    for i, answer in enumerate(turns):
        conv += [
            {'role': 'user', 'content': f'question {i}'},
            {'role': 'assistant', 'answer': answer},
        ]
    fmt = FormatConversation(demo_tokenizer, chat_template=template, num_image_tokens=4)
    out = fmt(dict(id='r', task='rec', img=None, sample_idx=0, conversation=conv))
    ids, labels = out['input_ids'], out['labels']
    sup = (labels != -100).nonzero().flatten().tolist()
    assert torch.equal(labels[sup], ids[sup])
    # contiguous supervised runs, one per answer, each the rendered answer (VD-CoT on) + EOS
    runs = np.split(np.array(sup), np.flatnonzero(np.diff(sup) > 1) + 1)
    assert len(runs) == len(turns)
    for run_, answer in zip(runs, turns, strict=True):
        expected = demo_tokenizer.encode(build_answer(answer, cot=True)) + [demo_tokenizer.ids.eos]
        assert ids[run_.tolist()].tolist() == expected
    # every user turn (the later ones too) stays in the prompt
    text = demo_tokenizer.decode(ids[labels == -100].tolist())
    assert all(f'question {i}' in text for i in range(len(turns)))
    # the ref targets of all supervised answers, groups numbered across the turns
    assert [(r.units, r.target, r.group_id) for r in out['ref_targets']] == [
        (('box',), 0, 0),
        (('box',), 1, 0),
        (('box', 'mask'), 0, 1),
    ]
