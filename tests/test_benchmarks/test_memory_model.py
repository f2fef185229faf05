# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The memory model of ``benchmarks/bench_memory.py`` against real measurements on small cases:
autograd's saved tensors of a small bf16 Llama, and the AdamW state of a real optimizer step."""

import importlib.util
import os.path as osp
import sys

import pytest
import torch
from torch import nn

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load(name, *parts):
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, *parts))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


bench = _load('bench_memory_module', 'benchmarks', 'bench_memory.py')


def test_layer_formula_hand_values():
    # Llama-7B: 24 x 4096 + 8 x 11008 + 4 x 32 + 8 bytes per token per layer.
    assert bench.layer_activation_bytes(4096, 11008, 32) == 186_504
    # LoRA r=128 on 7 projections: + 4h + 2r x 7.
    assert bench.layer_activation_bytes(4096, 11008, 32, lora_r=128) == 186_504 + 16_384 + 1_792


@pytest.mark.parametrize('shape', [(64, 176, 4), (96, 256, 2)])
@pytest.mark.parametrize('kw', [{}, {'lora_r': 4}, {'checkpointing': True}])
def test_layer_formula_matches_saved_tensors(shape, kw):
    hidden, inter, heads = shape
    measured = bench.measured_layer_bytes(hidden, inter, heads, seq=8, **kw)
    if kw.get('checkpointing'):
        expected = 2 * hidden  # only the bf16 layer input survives the forward
    else:
        expected = bench.layer_activation_bytes(hidden, inter, heads, lora_r=kw.get('lora_r'))
    assert measured == expected


def test_whole_stack_matches_saved_tensors():
    """llm_activation_bytes for a 3-layer stack, plus the RoPE cos/sin tables (per position)."""
    from mmrefvlm.models.llms import build_causal_lm

    hidden, inter, heads, layers, batch, seq = 64, 160, 4, 3, 2, 12
    llm = build_causal_lm(
        config=dict(
            model_type='llama',
            hidden_size=hidden,
            intermediate_size=inter,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            vocab_size=50,
            max_position_embeddings=64,
        ),
        torch_dtype='bfloat16',
    ).train()
    embeds = torch.randn(batch, seq, hidden, dtype=torch.bfloat16, requires_grad=True)
    params = {p.untyped_storage().data_ptr() for p in llm.parameters()}
    measured = bench.saved_tensor_bytes(
        lambda: llm.get_decoder()(inputs_embeds=embeds, use_cache=False), params
    )
    rope = 2 * seq * (hidden // heads) * 2  # cos and sin, bf16, shared by the batch
    assert (
        measured
        == bench.llm_activation_bytes(
            hidden, inter, heads, layers, batch * seq, checkpointing=False
        )
        + rope
    )


def test_static_terms_match_a_real_adamw_step():
    """Parameter, gradient and AdamW-state bytes of a mixed bf16/fp32 model with a frozen part,
    counted by count_params and predicted by static_bytes, equal what torch allocates."""
    cp = bench.load_count_params()
    model = nn.ModuleDict(
        dict(
            llm=nn.Linear(32, 48).to(torch.bfloat16),
            head=nn.Linear(48, 8),
            frozen=nn.Linear(8, 8).to(torch.bfloat16),
        )
    )
    model['frozen'].requires_grad_(False)
    rows = [cp.count('total', model)]
    predicted = bench.static_bytes(rows, 'configured')
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    x = torch.randn(4, 32)
    out = model['head'](model['llm'](x.to(torch.bfloat16)).float())
    out.sum().backward()
    opt.step()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(
        p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None
    )
    states = sum(
        v.numel() * v.element_size()
        for s in opt.state.values()
        for k, v in s.items()
        if k in ('exp_avg', 'exp_avg_sq')
    )
    assert predicted == dict(parameters=params, gradients=grads, optimizer=states)
    # fp32 master: 12 bytes per bf16 trainable parameter, 8 per fp32 one.
    n_bf16 = 32 * 48 + 48
    n_fp32 = 48 * 8 + 8
    assert bench.static_bytes(rows, 'fp32-master')['optimizer'] == 12 * n_bf16 + 8 * n_fp32
    assert (
        bench.static_bytes(rows, 'fp32-master', shards=4)['optimizer']
        == (12 * n_bf16 + 8 * n_fp32) // 4
    )
    with pytest.raises(ValueError, match='optimizer policy'):
        bench.static_bytes(rows, 'fp64')


def test_query_function_reproduces_the_published_tables():
    """``predict_memory`` (the query the GPU benchmark uses) gives, for every preset row of
    ``benchmarks/results/memory.json`` (full / LoRA r=128, checkpointing on / off, batches 1-16,
    sequences 1024 and 2048, configured / fp32-master / ZeRO-2 states), the row's activation
    terms and total from its parameter-state bytes, Vicuna-7B's shape and the recorded
    decoder and vision bytes."""
    import json
    from types import SimpleNamespace

    cp = bench.load_count_params()
    results = json.loads(open(osp.join(ROOT, 'benchmarks', 'results', 'memory.json')).read())
    vicuna = SimpleNamespace(
        **dict(cp.VICUNA_7B, vocab_size=cp.VICUNA_7B['vocab_size'] + cp.LLAMA_ADDED_TOKENS)
    )
    dec = results['decoder_bytes_per_sample']
    rows = [r for t in results['tables'].values() for r in t]
    rows += results['long_seq_table'] + results['zero2_table']
    assert len(rows) == 80
    for row in rows:
        lora = int(row['mode'].split('r=')[1]) if row['mode'].startswith('LoRA') else None
        pred = bench.predict_memory(
            vicuna,
            static=row['static'],
            batch=row['batch'],
            seq=row['seq'],
            answer=results['assumptions']['answer_tokens'],
            checkpointing=row['checkpointing'],
            lora_r=lora,
            decoder_per_sample=dec['box'] + dec['mask'],
            vision_per_sample=results['vision_bytes_per_sample'],
        )
        assert pred['activations'] == pytest.approx(row['activations'], rel=1e-12)
        assert pred['total'] == pytest.approx(row['total'], rel=1e-12)
    # the vision term of the paper encoders, by hand: pyramid + CLIP grid in bf16, projector
    # activations of the 576 image tokens
    feats = 192 * 128**2 + 384 * 64**2 + 768 * 32**2 + 1536 * 16**2 + 1024 * 24**2
    assert results['vision_bytes_per_sample'] == 2 * feats + 576 * 2 * (1024 + 2 * 4096)
