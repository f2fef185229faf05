# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The 7B LLM alone on one GPU: the floor under the paper-scale RefVLM step and generation.

Run (CUDA only): ``python benchmarks/bench_llm_only_gpu.py [lora|gen|all]``; prints one JSON line.

Vicuna-7B's shape (Llama-2-7B: 32 layers, width 4096, MLP 11008, vocabulary 32000) built on the
meta device and materialised on the GPU in bf16 with N(0, 0.02) weights (no download). Then:

* ``lora``: peft LoRA r = 128 (alpha 256) on q, k, v, o, gate, up, down; activation checkpointing
  (non-reentrant); AdamW on the adapters; batches of 1, 4, 8, 16 random sequences of 1024 tokens,
  the loss over every position. One warm-up step, the median of 3 timed steps
  (``torch.cuda.synchronize`` around each), ``max_memory_allocated`` over the timed steps.
  MFU uses the 6 N + attention convention (``6 N + 12 L h s`` FLOPs per token, the attention term
  without a causal discount) against 989 and 790 TFLOP/s.
* ``gen``: HF ``generate`` (greedy, KV cache) from random 600-token prompts, 32 new tokens, at
  B = 1, 8, 32; new tokens per second.

This is the HF model alone (no vision encoders, decoders, router or data pipeline):
``bench_train_step.py --config ... --device cuda`` and ``bench_inference.py --config ...`` measure
the whole RefVLM.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAYERS, HIDDEN, MLP, VOCAB, SEQ = 32, 4096, 11008, 32000, 1024


def build_llm():
    """The 7B-shaped Llama in bf16 on CUDA, random weights (seconds: no host copy)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=MLP,
        num_hidden_layers=LAYERS,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
    )
    cfg._attn_implementation = 'sdpa'
    from accelerate import init_empty_weights

    from benchmarks.paper_model import init_random_, materialize_

    with init_empty_weights(include_buffers=False):  # parameters on meta, RoPE buffers real
        model = LlamaForCausalLM._from_config(cfg, dtype=torch.bfloat16)
    materialize_(model, torch.device('cuda'))
    init_random_(model)
    return model


def train_step_times(model, params, bs: int, steps: int = 3) -> dict:
    """Median step time and peak memory of forward + backward + AdamW at batch ``bs``."""
    opt = torch.optim.AdamW(params, lr=1e-5)
    ids = torch.randint(0, VOCAB, (bs, SEQ), device='cuda')
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 1):
        torch.cuda.synchronize()
        t = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t)
    step = sorted(times)[len(times) // 2]
    return dict(
        bs=bs, seq=SEQ, step_s=step, tok_s=bs * SEQ / step,
        peak_gib=torch.cuda.max_memory_allocated() / 2**30,
    )  # fmt: skip


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else 'all'
    t0 = time.time()
    model = build_llm()
    torch.cuda.synchronize()
    n = sum(p.numel() for p in model.parameters())
    out: dict = dict(build_s=time.time() - t0, params=n, gpu=torch.cuda.get_device_name(0))
    if mode in ('all', 'lora'):
        from peft import LoraConfig, get_peft_model

        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={'use_reentrant': False})
        model.enable_input_require_grads()
        targets = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
        lm = get_peft_model(model, LoraConfig(r=128, lora_alpha=256, target_modules=targets))
        params = [p for p in lm.parameters() if p.requires_grad]
        flops_per_token = 6 * n + 12 * LAYERS * HIDDEN * SEQ
        out['lora_r128_checkpointing'] = rows = []
        for bs in (1, 4, 8, 16):
            try:
                r = train_step_times(lm, params, bs)
            except torch.OutOfMemoryError as err:
                rows.append(dict(bs=bs, oom=str(err)[:200]))
                break
            r['mfu_989'] = flops_per_token * r['tok_s'] / 989e12
            r['mfu_790'] = flops_per_token * r['tok_s'] / 790e12
            rows.append(r)
        model = lm.unload()
        del params
        torch.cuda.empty_cache()
    if mode in ('all', 'gen'):
        model.eval()
        out['generate'] = rows = []
        for bs in (1, 8, 32):
            ids = torch.randint(0, VOCAB, (bs, 600), device='cuda')
            with torch.no_grad():
                model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
                torch.cuda.synchronize()
                t = time.perf_counter()
                model.generate(ids, max_new_tokens=32, min_new_tokens=32, do_sample=False)
                torch.cuda.synchronize()
            dt = time.perf_counter() - t
            rows.append(dict(bs=bs, new_tokens_per_s=bs * 32 / dt, seconds=dt))
    print(json.dumps(out))  # noqa: T201 (benchmark output)


if __name__ == '__main__':
    main()
