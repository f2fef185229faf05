# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Refocusing: the one-layer attention rows equal eager attention's weights (SDPA model, left
padding, GQA, teacher forcing and generation), and Eq. 2 on top of them."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from mmrefvlm.models.generation import greedy_generate
from mmrefvlm.models.model_hooks import RefStateContext
from projects.anyref.anyref_seg import LastLayerCapture, RefocusRefiner


@pytest.fixture(scope='module')
def llm():
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # GQA: keys repeated over head groups
        max_position_embeddings=64,
        attn_implementation='sdpa',
    )
    return LlamaForCausalLM(cfg).eval()


def _eager_attentions(llm, **kwargs):
    llm.set_attn_implementation('eager')
    try:
        with torch.no_grad():
            out = llm(**kwargs, output_attentions=True, output_hidden_states=True)
    finally:
        llm.set_attn_implementation('sdpa')
    return out.attentions[-1].mean(1), out.hidden_states[-1]  # (B, L, L), (B, L, D)


def _batch():
    ids = torch.randint(1, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    return ids, mask, (mask.cumsum(-1) - 1).clamp_min(0)


def test_rows_equal_eager_attention(llm):
    ids, mask, pos = _batch()
    capture = LastLayerCapture(llm.model.layers[-1].self_attn)
    try:
        with torch.no_grad():
            llm(input_ids=ids, attention_mask=mask, position_ids=pos)
        record = capture.take()
        rows = torch.tensor([0, 0, 1, 1])
        queries = torch.tensor([3, 11, 5, 11])
        got = capture.attention_rows(*record, rows, queries, mask.bool())
    finally:
        capture.handle.remove()
    want, _ = _eager_attentions(llm, input_ids=ids, attention_mask=mask, position_ids=pos)
    torch.testing.assert_close(got, want[rows, queries], atol=1e-6, rtol=1e-5)
    assert got[2, :4].sum() == 0 and got[0, 4:].sum() == 0  # padding and future keys
    with pytest.raises(RuntimeError, match='no forward'):
        capture.take()


def test_rows_during_generation_equal_teacher_forced_eager(llm):
    ids, mask, pos = _batch()
    capture = LastLayerCapture(llm.model.layers[-1].self_attn)
    try:
        embeds = llm.get_input_embeddings()(ids)
        gen = greedy_generate(llm, embeds, mask, eos_id=0, pad_id=0, max_new_tokens=5)
        record = capture.take()
    finally:
        capture.handle.remove()
    fed = record[0].shape[1] - ids.shape[1]  # generated tokens fed back (no EOS here: all)
    assert fed == gen.tokens.shape[1] == 5
    full = torch.cat([ids, gen.tokens[:, :fed]], 1)
    full_mask = torch.cat([mask, torch.ones_like(gen.tokens[:, :fed])], 1)
    full_pos = (full_mask.cumsum(-1) - 1).clamp_min(0)
    want, _ = _eager_attentions(
        llm, input_ids=full, attention_mask=full_mask, position_ids=full_pos
    )
    rows = torch.tensor([0, 1, 1])
    queries = torch.tensor([13, 12, 15])  # generated positions
    got = capture.attention_rows(*record, rows, queries, full_mask.bool())
    torch.testing.assert_close(got, want[rows, queries], atol=1e-5, rtol=1e-4)
    # generation stopped by EOS never feeds the EOS back: the model's key mask (prompt + every
    # generated token) is then one column longer than the record, and that column is unused
    longer = torch.cat([full_mask, torch.ones_like(full_mask[:, :1])], 1).bool()
    torch.testing.assert_close(capture.attention_rows(*record, rows, queries, longer), got)


def test_refocus_is_eq2(llm):
    ids, mask, pos = _batch()
    refiner = RefocusRefiner(lambda_f=0.1)
    refiner.attach(llm)
    try:
        with torch.no_grad():
            hidden = llm.model(
                input_ids=ids, attention_mask=mask, position_ids=pos
            ).last_hidden_state
        answer = torch.zeros_like(mask, dtype=torch.bool)
        answer[0, 6:10] = True  # answer tokens at 6..9, <obj> at 9
        answer[1, 8:12] = True  # an <obj> as the first answer token (11) is inside its run
        refs = [[9], [8]]
        ctx = RefStateContext(answer_mask=answer, key_mask=mask.bool(), offset=0)
        out = refiner(hidden, refs, ctx)
    finally:
        refiner.capture.handle.remove()
    attn, h = _eager_attentions(llm, input_ids=ids, attention_mask=mask, position_ids=pos)
    valid = mask.bool()  # padded queries differ between kernels; they are never used
    torch.testing.assert_close(h[valid], hidden[valid], atol=1e-5, rtol=1e-4)
    t, window = 8, slice(5, 8)  # emitting position 8; s = 6 - 1 = 5; W = {5, 6, 7}
    weights = attn[0, t, window] / attn[0, t, window].sum()
    want = hidden[0, t] + 0.1 * (weights[:, None] * hidden[0, window]).sum(0)
    torch.testing.assert_close(out[0, t], want, atol=1e-6, rtol=1e-5)
    changed = (out != hidden).any(-1)
    assert changed.nonzero().tolist() == [[0, t]]  # sample 1: empty window, left as it is
    assert refiner.windows(refs, ctx) == [(0, 8, 5)]


def test_gradients_reach_the_window_and_the_attention(llm):
    ids, mask, pos = _batch()
    refiner = RefocusRefiner(lambda_f=0.1, ref_position='ref')
    refiner.attach(llm)
    try:
        llm.zero_grad()
        hidden = llm.model(input_ids=ids, attention_mask=mask, position_ids=pos).last_hidden_state
        answer = torch.zeros_like(mask, dtype=torch.bool)
        answer[0, 5:11] = True
        refs = [[10], []]
        ctx = RefStateContext(answer_mask=answer, key_mask=mask.bool(), offset=0)
        out = refiner(hidden, refs, ctx)
        hidden.retain_grad()
        out[0, 10].sum().backward()
    finally:
        refiner.capture.handle.remove()
    assert hidden.grad[0, 4:10].abs().sum(-1).gt(0).all()  # every h_i of the window
    assert llm.model.layers[-1].self_attn.q_proj.weight.grad.abs().sum() > 0  # through a_i
    assert hidden.grad[0, :4].abs().sum() == 0


def test_lambda_zero_and_no_refs_are_identity(llm):
    ids, mask, pos = _batch()
    refiner = RefocusRefiner(lambda_f=0.0)
    refiner.attach(llm)
    try:
        with torch.no_grad():
            hidden = llm.model(
                input_ids=ids, attention_mask=mask, position_ids=pos
            ).last_hidden_state
        ctx = RefStateContext(mask.bool(), mask.bool(), 0)
        assert refiner(hidden, [[9], []], ctx) is hidden
        with torch.no_grad():
            llm.model(input_ids=ids, attention_mask=mask, position_ids=pos)
        refiner.lambda_f = 0.1
        assert refiner(hidden, [[], []], ctx) is hidden
    finally:
        refiner.capture.handle.remove()
    with pytest.raises(ValueError):
        RefocusRefiner(ref_position='last')
