# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import pytest
import torch

from mmrefvlm.tokenization import build_tokenizer
from mmrefvlm.tokenization.assets import AssetNotInstalledError
from mmrefvlm.trp import build_answer, normalize_answer, parse_answer, parse_token_ids

ANSWER = [
    'In the image ',
    {'phrase': 'two capybaras', 'groups': [{'units': ['box'], 'n': 2}]},
    ' sit near ',
    {
        'phrase': [
            {'phrase': 'a dog', 'groups': [{'units': ['mask'], 'n': 1}]},
            ' in ',
            {'phrase': 'the park'},
        ],
        'groups': [{'units': ['box', 'mask'], 'n': 1}, {'units': ['depth'], 'n': 0}],
    },
    '; no ',
    {'phrase': 'blue star', 'groups': [{'units': ['mask'], 'n': 0}]},
    ' (日本, ünï).',
]


def summary(res):
    return [(r.units, r.triplet, r.group, r.k, r.phrase) for r in res.refs]


@pytest.mark.parametrize('cot', [False, True])
def test_token_positions_match_ref_tokens(demo_tokenizer, cot):
    tok = demo_tokenizer
    text = build_answer(ANSWER, cot=cot)
    ids = tok.encode(text)
    res = parse_token_ids(ids, tok)
    ref_positions = [i for i, t in enumerate(ids) if t == tok.ids.ref]
    assert [r.position for r in res.refs] == ref_positions
    assert res.answer == normalize_answer(ANSWER)
    assert res.warnings == []
    text_res = parse_answer(text)
    assert summary(res) == summary(text_res) and res.cot == text_res.cot


def test_labels_tensor_with_ignore_index_eos_and_pad(demo_tokenizer):
    tok = demo_tokenizer
    ids = tok.encode(build_answer(ANSWER))
    # prompt masked with -100, answer, EOS, then junk that must be ignored and right padding.
    tail = tok.encode('<Phrase>x</Phrase>(<Unit>box</Unit>[0]<REF>)') + [tok.ids.pad] * 5
    labels = torch.tensor([-100] * 7 + ids + [tok.ids.eos] + tail)
    res = parse_token_ids(labels, tok)
    assert res.answer == normalize_answer(ANSWER)
    assert [r.position for r in res.refs] == [7 + i for i, t in enumerate(ids) if t == tok.ids.ref]
    assert all(labels[r.position] == tok.ids.ref for r in res.refs)


def test_pad_bos_inside_and_image_token(demo_tokenizer):
    tok = demo_tokenizer
    ids = tok.encode('<Phrase>two dogs</Phrase>(<Unit>box</Unit>[0]<REF>)')
    noisy = [tok.ids.bos] + ids[:3] + [tok.ids.pad] + ids[3:6] + [tok.ids.image] + ids[6:]
    res = parse_token_ids(noisy, tok)
    assert res.answer == [{'phrase': 'two dogs', 'groups': [{'units': ['box'], 'n': 1}]}]
    assert noisy[res.refs[0].position] == tok.ids.ref
    assert res.warning_codes == ['unexpected_token']


def test_multi_turn_labels_stop_at_eos_false(demo_tokenizer):
    tok = demo_tokenizer
    turn1 = [{'phrase': 'a cat', 'groups': [{'units': ['box'], 'n': 1}]}, '.']
    turn2 = ['Also ', {'phrase': 'two dogs', 'groups': [{'units': ['mask'], 'n': 2}]}]
    ids1, ids2 = tok.encode(build_answer(turn1, cot=True)), tok.encode(build_answer(turn2))
    labels = [-100] * 4 + ids1 + [tok.ids.eos] + [-100] * 6 + ids2 + [tok.ids.eos, tok.ids.pad]
    res = parse_token_ids(labels, tok, stop_at_eos=False)
    assert [(r.units, r.triplet, r.k) for r in res.refs] == [
        (('box',), 0, 0),
        (('mask',), 1, 0),
        (('mask',), 1, 1),
    ]
    assert all(labels[r.position] == tok.ids.ref for r in res.refs)
    assert res.answer == normalize_answer(turn1 + turn2)
    assert res.cot.decode and len(res.cot.entries) == 1 and res.warnings == []
    # Default: the first EOS ends the answer.
    assert len(parse_token_ids(labels, tok).refs) == 1


def test_truncated_generation_and_unknown_units(demo_tokenizer):
    tok = demo_tokenizer
    ids = tok.encode(build_answer(ANSWER))
    cut = ids[: ids.index(tok.ids.unit_start, 20) + 2]  # cut inside the 2nd triplet's unit
    res = parse_token_ids(cut, tok, known_units={'box'})
    assert 'truncated' in res.warning_codes
    assert [r.units for r in res.refs] == [('box',), ('box',)]
    res = parse_token_ids(ids, tok, known_units={'box'})
    assert [r.units for r in res.refs] == [('box',), ('box',), (), ('box',)]
    assert res.warning_codes.count('unknown_unit') == 4  # mask, mask, depth, mask


def test_bad_inputs(demo_tokenizer):
    with pytest.raises(ValueError, match='1-D'):
        parse_token_ids(torch.zeros(2, 3, dtype=torch.long), demo_tokenizer)
    with pytest.raises(TypeError):
        parse_token_ids(torch.zeros(3), demo_tokenizer)
    with pytest.raises(TypeError, match='RefTokenizer'):
        parse_token_ids([1, 2], demo_tokenizer.hf)
    assert parse_token_ids([], demo_tokenizer).answer == []
    assert parse_token_ids((5, 6), demo_tokenizer).answer == [demo_tokenizer.decode([5, 6])]


def test_out_of_vocab_ids_never_raise(demo_tokenizer):
    tok = demo_tokenizer
    ids = tok.encode('a <Phrase>b</Phrase>(<Unit>box</Unit>[0]<REF>)')
    noisy = ids[:1] + [len(tok) + 5, 2**40] + ids[1:]
    res = parse_token_ids(noisy, tok)
    assert res.answer == parse_token_ids(ids, tok).answer
    assert noisy[res.refs[0].position] == tok.ids.ref


class _SlowTokenizer:
    """A RefTokenizer stand-in whose ``hf`` has no Rust backend (the generic decode path)."""

    def __init__(self, tok):
        self.ids, self.hf, self._tok = tok.ids, object(), tok

    def __len__(self):
        return len(self._tok)

    def decode(self, ids):
        return self._tok.decode(ids)


def test_generic_decode_path_gives_same_result(demo_tokenizer):
    ids = demo_tokenizer.encode(build_answer(ANSWER, cot=True))
    fast = parse_token_ids(ids, demo_tokenizer)
    slow = parse_token_ids(ids, _SlowTokenizer(demo_tokenizer))
    assert slow.answer == fast.answer and slow.refs == fast.refs and slow.cot == fast.cot


def test_real_byte_level_tokenizer_smollm2():
    try:
        tok = build_tokenizer('smollm2')
    except AssetNotInstalledError as err:
        pytest.skip(str(err))
    ids = tok.encode(build_answer(ANSWER, cot=True)) + [tok.ids.eos]
    res = parse_token_ids(ids, tok)
    assert res.answer == normalize_answer(ANSWER) and res.warnings == []
    assert [r.position for r in res.refs] == [i for i, t in enumerate(ids) if t == tok.ids.ref]
