# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""SpecialTokenRefParser (answers whose special tokens are the references) and the RefVLM /
FormatConversation hooks that let a config use another answer language than TRP."""

import pytest
import torch

from mmrefvlm.datasets import FormatConversation
from mmrefvlm.models import LatentEmbeddingRouter, SpecialTokenRefParser
from mmrefvlm.models.routers import find_refs
from mmrefvlm.registry import TASK_UTILS
from mmrefvlm.tokenization import build_tokenizer

GSVA_PATTERN = r'(?:^|,)\s*(?:Sure,\s*)?(?P<phrase>[^,:]*?)\s*:\s*$'


@pytest.fixture(scope='module')
def tok():
    return build_tokenizer('demo', extra_tokens=('[SEG]', '[REJ]'))


def _encode(tok, answers, prefix='Q: segment A: '):
    prompt = tok.encode(prefix)
    ids, labels = list(prompt), [-100] * len(prompt)
    for text in answers:
        ans = tok.encode(text) + [tok.ids.eos]
        ids += ans + tok.encode(' Q: more A: ')
        labels += ans + [-100] * len(tok.encode(' Q: more A: '))
    return torch.tensor(ids), torch.tensor(labels)


def test_slots_refs_and_rejections(tok):
    parser = SpecialTokenRefParser({'[SEG]': 'mask'}, {'[REJ]': 'mask'}, GSVA_PATTERN)
    ids, labels = _encode(tok, ['Sure, the red circle:[SEG], no cat:[REJ], all squares:[SEG].'])
    refs, warns, (res,) = parser(ids, tok, known_units={'mask'}, span_mask=labels != -100)
    assert not warns
    assert [ids[p].item() for p, *_ in refs] == [tok.ids['[SEG]']] * 2
    assert [r[3] for r in refs] == ['the red circle', 'all squares']
    assert [r[2] for r in refs] == [(0, 0, 0), (0, 2, 0)]  # one key per slot: never matched
    groups = [(s['phrase'], s['groups']) for s in res.answer if isinstance(s, dict)]
    assert groups == [
        ('the red circle', [{'units': ['mask'], 'n': 1}]),
        ('no cat', [{'units': ['mask'], 'n': 0}]),
        ('all squares', [{'units': ['mask'], 'n': 1}]),
    ]


def test_answers_split_at_eos_and_positions_index_the_sequence(tok):
    parser = SpecialTokenRefParser({'[SEG]': ('mask', 'box')})
    ids, labels = _encode(tok, ['Sure, it is [SEG].', 'It is [SEG] and [SEG].'])
    refs, _, results = parser(ids, tok, known_units={'mask', 'box'}, span_mask=labels != -100)
    assert len(results) == 2 and [len(r.refs) for r in results] == [1, 2]
    assert all(ids[p] == tok.ids['[SEG]'] for p, *_ in refs)
    assert [r[1] for r in refs] == [('mask', 'box')] * 3
    assert [r[2][0] for r in refs] == [0, 1, 1]
    assert refs[0][3] == 'Sure, it is'  # no pattern: the whole slot text


def test_never_raises_on_model_output(tok):
    parser = SpecialTokenRefParser({'[SEG]': 'mask'}, {'[REJ]': 'mask'}, GSVA_PATTERN)
    junk = torch.tensor(tok.encode('[REJ][SEG]<image> x <REF>[SEG]') + tok.encode('tail'))
    refs, warns, (res,) = parser(junk, tok, known_units={'box'})  # no mask decoder
    assert refs == []  # mask is not a known unit: kept in the answer, not routed
    assert any(w.startswith('unexpected_token') for w in warns)
    assert any(w.startswith('unknown_unit') for w in warns)
    assert [s['groups'][0]['n'] for s in res.answer if isinstance(s, dict)] == [0, 1, 1]


def test_emitting_position_reaches_the_router(tok):
    parser = SpecialTokenRefParser({'[SEG]': 'mask'})
    ids, labels = _encode(tok, ['Sure, it is [SEG].'])
    refs, _, _ = parser(ids, tok, known_units={'mask'}, span_mask=labels != -100)
    hidden = torch.randn(1, len(ids), 6)
    seg_pos = refs[0][0]
    for mode, pos in (('emitting', seg_pos - 1), ('ref', seg_pos)):
        q = LatentEmbeddingRouter(ref_position=mode)(hidden, [refs], dict(mask=4)).queries['mask']
        assert torch.equal(q.embeds[0, 0], hidden[0, pos])


def test_bad_configs_fail_at_build(tok):
    with pytest.raises(ValueError, match='at least one'):
        SpecialTokenRefParser({})
    with pytest.raises(ValueError, match='both'):
        SpecialTokenRefParser({'[SEG]': 'mask'}, {'[SEG]': 'mask'})
    with pytest.raises(ValueError, match='phrase'):
        SpecialTokenRefParser({'[SEG]': 'mask'}, phrase_pattern='(x)')
    with pytest.raises(ValueError, match='unit'):
        SpecialTokenRefParser({'[SEG]': ()})
    demo = build_tokenizer('demo')
    with pytest.raises(ValueError, match='extra_tokens'):
        SpecialTokenRefParser({'[SEG]': 'mask'})(torch.tensor([1, 2]), demo, known_units={'mask'})
    assert TASK_UTILS.get('SpecialTokenRefParser') is SpecialTokenRefParser


def test_format_conversation_answer_format_hook(tok):
    record = dict(
        id='r',
        task='res',
        img=None,
        conversation=[
            dict(role='user', content='Segment the dot.'),
            dict(
                role='assistant',
                answer=[
                    {'phrase': 'the dot', 'groups': [{'units': ['mask'], 'n': 1, 'targets': [0]}]}
                ],
            ),
        ],
    )
    calls = []

    def fmt(answer, cot=False):
        calls.append(cot)
        return 'Sure, it is [SEG].'

    kw = dict(tokenizer=tok, chat_template='plain', num_image_tokens=4, cot=True)
    out = FormatConversation(answer_format=fmt, **kw)(dict(record))
    answer_ids = out['input_ids'][out['labels'] != -100].tolist()
    assert answer_ids == tok.encode('Sure, it is [SEG].') + [tok.ids.eos]
    assert out['gt_text'] == 'Sure, it is [SEG].' and calls == [True, True]
    assert [r.target for r in out['ref_targets']] == [0]
    trp = FormatConversation(**kw)(dict(record))
    refs, _, _ = find_refs(
        trp['input_ids'], tok, known_units={'mask'}, span_mask=trp['labels'] != -100
    )
    assert len(refs) == 1 and '<Phrase>' in trp['gt_text']  # default: TRP
    assert out['label_refs'] == []  # TRP's find_refs finds no <REF> in LISA's answer
    parser = SpecialTokenRefParser({'[SEG]': 'mask'})
    lisa = FormatConversation(answer_format=fmt, ref_parser=parser, **kw)(dict(record))
    ((pos, units, _, _, _),) = lisa['label_refs']
    assert lisa['input_ids'][pos] == tok.ids['[SEG]'] and units == ('mask',)
    with pytest.raises(TypeError, match='callable'):
        FormatConversation(answer_format=3, **kw)
    with pytest.raises(TypeError, match='callable'):
        FormatConversation(ref_parser='find_refs', **kw)


def test_refvlm_ref_parser_hook():
    from .test_refvlm import build

    calls = []

    def parser(ids, tokenizer, *, known_units, span_mask=None):
        calls.append(known_units)
        return [], [], []

    model = build(ref_parser=parser)
    assert model.ref_parser is parser
    assert build(ref_parser=None).ref_parser is find_refs
    built = build(ref_parser=dict(type='SpecialTokenRefParser', ref_tokens={'<REF>': 'box'}))
    assert isinstance(built.ref_parser, SpecialTokenRefParser)
    with pytest.raises(TypeError, match='callable'):
        build(ref_parser=3)
    ids = torch.tensor([[5, 6, 7]])
    inputs = dict(
        input_ids=ids,
        labels=ids,
        attention_mask=torch.ones_like(ids),
        has_image=torch.tensor([False]),
        prompt_batch_idx=torch.zeros(0, dtype=torch.long),
    )
    # labels without the pipeline's label_refs are parsed with the model's ref_parser
    routing = model._route_labels(inputs, torch.zeros(1, 3, 32))
    assert calls == [{'box'}] and routing.queries == {}
