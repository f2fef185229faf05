# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import pytest

from mmrefvlm.tokenization import TRP_SPECIAL_TOKENS, add_special_tokens, build_tokenizer
from mmrefvlm.tokenization.assets import AssetNotInstalledError
from mmrefvlm.tokenization.demo_tokenizer import build_demo_hf_tokenizer

TRP = '<Phrase>two red circles</Phrase>(<Unit>box</Unit>[0]<REF>[1]<REF>) on the left.'


def test_demo_tokenizer_deterministic_and_exact():
    a, b = build_demo_hf_tokenizer(), build_demo_hf_tokenizer()
    assert a.get_vocab() == b.get_vocab()
    tok = build_tokenizer('demo')
    for text in (
        TRP,
        'ünïcödé 日本 text the model never saw',
        '<Task>\nUnit decode (False).\n</Task>\n',
    ):
        assert tok.decode(tok.encode(text)) == text


def test_trp_tokens_are_single_ids(demo_tokenizer):
    ids = demo_tokenizer.encode(TRP)
    for t in TRP_SPECIAL_TOKENS:
        assert demo_tokenizer.encode(t) == [demo_tokenizer.ids[t]]
    assert ids.count(demo_tokenizer.ids.ref) == 2
    assert demo_tokenizer.ids.ref == demo_tokenizer.ids['<REF>']
    assert len({demo_tokenizer.ids[t] for t in TRP_SPECIAL_TOKENS}) == len(TRP_SPECIAL_TOKENS)
    assert demo_tokenizer.ids.pad not in {demo_tokenizer.ids[t] for t in TRP_SPECIAL_TOKENS}


def test_tokens_added_once_and_ids_stable():
    hf = build_demo_hf_tokenizer()
    first = add_special_tokens(hf, ['[SEG]'])
    n = len(hf)
    second = add_special_tokens(hf, ['[SEG]'])
    assert len(hf) == n
    assert dict(first) == dict(second)
    # Same config -> same object: data, model and metrics share one tokenizer.
    assert build_tokenizer('demo', extra_tokens=('[SEG]',)) is build_tokenizer('demo', ['[SEG]'])
    assert build_tokenizer('demo').ids['<REF>'] == build_tokenizer('demo', ['[SEG]']).ids['<REF>']


def test_extra_tokens_and_bad_input():
    tok = build_tokenizer('demo', extra_tokens=['[SEG]', '[REJ]'])
    assert tok.encode('a [SEG] b')[1:2] == [tok.ids['[SEG]']] or tok.ids['[SEG]'] in tok.encode(
        'a [SEG] b'
    )
    assert tok.ids.extra == ('[SEG]', '[REJ]')
    with pytest.raises(ValueError, match='whitespace'):
        build_tokenizer('demo', extra_tokens=['bad token'])
    with pytest.raises(ValueError):
        build_tokenizer('')


def test_local_path_tokenizer(tmp_path):
    hf = build_demo_hf_tokenizer()
    hf.save_pretrained(tmp_path)
    tok = build_tokenizer(str(tmp_path))
    assert tok.decode(tok.encode(TRP)) == TRP
    assert set(TRP_SPECIAL_TOKENS) <= set(tok.ids)


def test_smollm2_real_tokenizer():
    try:
        tok = build_tokenizer('smollm2')
    except AssetNotInstalledError as err:
        pytest.skip(str(err))
    assert len(tok) == 49152 + len(TRP_SPECIAL_TOKENS)
    assert tok.ids['<image>'] == 49152  # appended after the real vocabulary, in TRP order
    assert tok.decode(tok.encode(TRP)) == TRP
    assert tok.encode('<REF>') == [tok.ids.ref]
    assert tok.hf.decode(tok.hf('The capital of France')['input_ids']) == 'The capital of France'
