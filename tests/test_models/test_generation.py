# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Greedy generation: static and dynamic KV caches agree, left padding does not change a sample."""

import pytest
import torch

from mmrefvlm.models.generation import greedy_generate
from mmrefvlm.models.llms import build_causal_lm

HIDDEN = 32


@pytest.fixture(scope='module')
def llm():
    torch.manual_seed(0)
    cfg = dict(
        model_type='llama',
        vocab_size=64,
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return build_causal_lm(config=cfg).eval()


def left_padded(lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    embeds = torch.randn(len(lengths), width, HIDDEN, generator=gen)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, width - n :] = 1
    return embeds, mask


def run(llm, embeds, mask, cache, eos_id=63, max_new_tokens=12):
    return greedy_generate(
        llm, embeds, mask, eos_id=eos_id, pad_id=0, max_new_tokens=max_new_tokens, cache=cache
    )


def test_static_cache_matches_dynamic(llm):
    embeds, mask = left_padded([9, 5, 7])
    # Make one sample stop early: its third generated token becomes EOS.
    eos = int(run(llm, embeds, mask, 'dynamic').tokens[1, 2])
    dyn = run(llm, embeds, mask, 'dynamic', eos_id=eos)
    sta = run(llm, embeds, mask, 'static', eos_id=eos)
    assert bool(dyn.finished.any()), 'the test needs a sample that stops'
    assert torch.equal(sta.tokens, dyn.tokens)
    assert torch.equal(sta.lengths, dyn.lengths)
    assert torch.equal(sta.finished, dyn.finished)
    torch.testing.assert_close(sta.states, dyn.states, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(sta.emit_states, dyn.emit_states, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('cache', ['static', 'dynamic'])
def test_left_padding_does_not_change_a_sample(llm, cache):
    embeds, mask = left_padded([4, 10], seed=1)
    both = run(llm, embeds, mask, cache)
    alone = run(llm, embeds[:1, -4:], mask[:1, -4:], cache)
    assert torch.equal(both.tokens[0], alone.tokens[0])
    torch.testing.assert_close(both.states[0], alone.states[0], atol=1e-5, rtol=1e-4)


def test_bad_arguments(llm):
    embeds, mask = left_padded([3])
    with pytest.raises(ValueError, match='cache must be'):
        run(llm, embeds, mask, 'paged')
    with pytest.raises(ValueError, match='max_new_tokens'):
        run(llm, embeds, mask, 'static', max_new_tokens=0)
