# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``benchmarks/flops.py``: the LLM training-FLOP formula against a hand count and against
``FlopCounterMode`` on a tiny Llama (eager attention, so every attention matmul is counted)."""

import pytest
import torch

from benchmarks.flops import (
    LlamaShape,
    forward_flops,
    llama_linear_params,
    llm_train_flops,
    lora_linear_params,
    step_flops,
)
from mmrefvlm.models.generation import split_llm
from mmrefvlm.models.llms import build_causal_lm
from mmrefvlm.models.refvlm_utils import apply_lora, lm_loss

TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
# h 32, I 64, 2 layers, 4 heads of 8, 2 kv heads (kv width 16), V 50
CFG = dict(
    model_type='llama',
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=50,
    tie_word_embeddings=False,
)
SHAPE = LlamaShape(hidden=32, intermediate=64, layers=2, heads=4, kv_heads=2, vocab=50)


def test_hand_count():
    # per layer: q 32x32, k 32x16, v 32x16, o 32x32, gate/up 32x64, down 64x32
    per_layer = 1024 + 512 + 512 + 1024 + 3 * 2048
    assert llama_linear_params(SHAPE) == 2 * per_layer == 18_432
    # LoRA r=4: r (in + out) per projection: 4 x (64 + 48 + 48 + 64 + 3 x 96)
    assert lora_linear_params(SHAPE, 4, TARGETS) == 2 * 4 * (64 + 48 + 48 + 64 + 3 * 96)
    batch, seq, labelled = 2, 12, 10
    full = llm_train_flops(
        SHAPE, batch=batch, seq=seq, labelled=labelled, base_trainable=True, head_trainable=True
    )
    assert full['linear'] == 6 * 18_432 * 24
    assert full['attention'] == 12 * 2 * 32 * 12**2 * 2  # 12 L h s^2 B
    assert full['lm_head'] == 6 * 32 * 50 * 10
    assert full['model'] == full['linear'] + full['attention'] + full['lm_head']
    assert full['flops_6n'] == full['model'] and full['recompute'] == 0
    ckpt = llm_train_flops(
        SHAPE,
        batch=batch,
        seq=seq,
        labelled=labelled,
        base_trainable=False,
        head_trainable=False,
        lora_r=4,
        lora_targets=TARGETS,
        checkpointing=True,
    )
    assert ckpt['linear'] == 4 * 18_432 * 24  # frozen: forward + input gradient
    assert ckpt['lm_head'] == 4 * 32 * 50 * 10
    assert ckpt['recompute'] == 2 * (18_432 + 4_096) * 24 + 4 * 2 * 32 * 144 * 2
    assert ckpt['flops_6n'] == ckpt['model'] + 2 * 18_432 * 24 + 2 * 32 * 50 * 10
    with pytest.raises(ValueError, match='no Llama projection'):
        lora_linear_params(SHAPE, 4, ['fc1'])


def _counted_step(llm, batch=2, seq=12):
    """FlopCounterMode over decoder forward + LM loss + backward (inputs need grad, as the
    projector's image tokens do in RefVLM)."""
    decoder, head, _ = split_llm(llm)
    embeds = torch.randn(batch, seq, 32, requires_grad=True)
    labels = torch.full((batch, seq), -100)
    labels[:, 7:] = 3

    def step():
        hidden = decoder(inputs_embeds=embeds).last_hidden_state
        lm_loss(hidden, labels, head).backward()

    return forward_flops(step), int((labels[:, 1:] != -100).sum())


@pytest.mark.parametrize('mode', ['full', 'lora', 'lora_new_tokens', 'checkpointing'])
def test_formula_equals_flop_counter(mode):
    torch.manual_seed(0)
    llm = build_causal_lm(config=CFG, attn_implementation='eager')
    lora = mode.startswith('lora')
    if lora:
        llm.requires_grad_(False)
        token_ids = [5, 6] if mode == 'lora_new_tokens' else []
        cfg = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS)
        if not token_ids:
            cfg['trainable_token_indices'] = {}
        llm = apply_lora(llm, cfg, token_ids)
    if mode == 'checkpointing':
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={'use_reentrant': False})
        llm.train()
    measured, labelled = _counted_step(llm)
    expected = llm_train_flops(
        SHAPE,
        batch=2,
        seq=12,
        labelled=labelled,
        base_trainable=not lora,
        # peft's trainable token rows multiply by a merged weight: the full weight gradient
        head_trainable=mode in ('full', 'checkpointing', 'lora_new_tokens'),
        lora_r=4 if lora else None,
        lora_targets=TARGETS,
        checkpointing=mode == 'checkpointing',
    )
    skipped = 0
    if mode == 'checkpointing':
        # non-reentrant checkpointing stops a layer's recomputation after its last tensor saved
        # for backward: the trailing down_proj (2 h I per token per layer) is not recomputed
        skipped = 2 * 2 * 32 * 64 * 24
    assert measured == expected['model'] + expected['recompute'] - skipped


def test_step_flops_adds_modules():
    llm = dict(model=100.0, flops_6n=150.0, recompute=20.0, linear=60.0, attention=40.0)
    out = step_flops(llm, {'vision': (5.0, False), 'decoder: box': (2.0, True)}, batch=4)
    assert out['model'] == 100 + 5 * 4 + 3 * 2 * 4
    assert out['flops_6n'] == 150 + 20 + 24
    assert out['hardware'] == out['model'] + 20
    assert out['breakdown']['vision'] == 20 and out['breakdown']['decoder: box'] == 24
