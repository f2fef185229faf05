# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""GPU memory model of the paper stage-2 config (Vicuna-7B, CLIP-L/336, ConvNeXt-L/512).

Run: ``python benchmarks/bench_memory.py`` (about 1 minute on CPU; writes
``benchmarks/results/memory.json`` and prints the table).

The formulas live in :mod:`benchmarks.memory_model` (``predict_memory`` / ``predict_for_model``
answer one (model, batch, sequence, LoRA rank, checkpointing) query; the paper-scale GPU benchmark
sets them next to the measured peaks). Terms, per GPU, no sharding (ZeRO/FSDP divide the gradient
and optimizer terms by the world size):

* **parameters / gradients / optimizer states** from the real module tree of
  ``configs/refvlm/stage2.py`` built on the meta device (``tools/analysis/count_params.py``), per
  parameter dtype: the LLM and the frozen encoders in bf16, projector and decoders in fp32 (as the
  configs build them). Gradients: one per trainable parameter, in its dtype. AdamW: two states per
  trainable parameter; ``--optimizer-policy configured`` keeps them in the parameter dtype
  (``torch.optim.AdamW`` on the configured bf16 parameters under the AMP optimizer wrapper),
  ``fp32-master`` adds an fp32 master copy and fp32 states for every non-fp32 trainable parameter
  (DeepSpeed/Megatron mixed precision: 16 bytes per bf16 parameter in total).
* **LLM activations**: bytes autograd saves per token per decoder layer, counted the way Korthikanti
  et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", Sec. 4.1) count
  them for GPT, but for the HF Llama layer actually run here (bf16, SDPA/flash attention: no
  s^2 term; RMSNorm upcasts to fp32; SwiGLU MLP of width I):
  ``A = 24 h + 8 I + 4 a + 8`` bytes (see :func:`layer_activation_bytes` for the itemisation), plus
  ``4 h + 2 r`` per adapted projection with LoRA under autocast; with activation checkpointing a
  layer keeps only its bf16 input (``2 h``) and one layer is recomputed at a time. The formula is
  checked against autograd's saved tensors of a small Llama (this script and
  ``tests/test_benchmarks``).
* **LM head + CE**: ``10 V + 2 h`` bytes per labelled token (bf16 logits, fp32 logits, fp32
  log-softmax saved for backward; logits are computed for labelled positions only).
* **decoders**: saved bytes per sample of the paper box + mask decoders, measured on this CPU
  under bf16 autocast with ``--refs`` queries per sample (slope over batch sizes 1, 2, 4).
* **vision**: the frozen encoders run under ``no_grad`` and keep nothing for backward; their
  outputs (ConvNeXt pyramid + CLIP grid, bf16) stay alive for the decoders; the projector saves
  its inputs/hidden for the image tokens.
* **backward working set**: one layer's activations (gradients of the layer being processed).

Also checked: the fraction of bf16 vs fp32 weights that AdamW at the stage-2 learning rate changes
at all (the configured bf16 LLM has no fp32 master copy).

A configuration fits a GPU when the total is at most ``0.95 x capacity - 1 GiB`` (CUDA context
and allocator fragmentation). No GPU was lent to this task: the measured peak memory and step time
of stage 2 with a 7B random-weight LLM are not in the table (``measured_gpu: null`` in the JSON).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import format_table, setup_single_thread, write_results  # noqa: E402
from benchmarks.memory_model import (  # noqa: E402,F401  (re-exported for the tests)
    DTYPE_BYTES,
    GIB,
    LORA_TARGETS,
    activation_terms,
    decoder_bytes_per_sample,
    final_norm_bytes,
    layer_activation_bytes,
    llm_activation_bytes,
    lm_head_bytes,
    load_count_params,
    model_vision_bytes,
    predict_memory,
    saved_tensor_bytes,
    static_bytes,
    usable_gib,
    vision_bytes_per_sample,
)


# ----------------------------------------------------------------------------- measurement
def measured_layer_bytes(
    hidden: int,
    intermediate: int,
    heads: int,
    *,
    seq: int = 16,
    lora_r: int | None = None,
    checkpointing: bool = False,
) -> float:
    """Per-token, per-layer saved bytes of a random bf16 HF Llama under CPU bf16 autocast.

    ``[M(2 layers, b=2) - M(2, 1) - M(1, 2) + M(1, 1)] / seq``: the batch difference removes
    per-position constants (RoPE tables) and autocast weight copies, the layer difference the final
    norm, leaving one layer's per-token bytes.
    """
    from mmrefvlm.models.llms import build_causal_lm
    from mmrefvlm.models.refvlm_utils import apply_lora

    def run(layers: int, batch: int) -> int:
        cfg = dict(
            model_type='llama',
            hidden_size=hidden,
            intermediate_size=intermediate,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            vocab_size=64,
            max_position_embeddings=4 * seq,
            tie_word_embeddings=False,
        )
        llm = build_causal_lm(config=cfg, torch_dtype='bfloat16')
        if lora_r:
            llm = apply_lora(
                llm,
                dict(
                    r=lora_r,
                    lora_alpha=2 * lora_r,
                    lora_dropout=0.0,
                    target_modules=[
                        'q_proj',
                        'k_proj',
                        'v_proj',
                        'o_proj',
                        'gate_proj',
                        'up_proj',
                        'down_proj',
                    ],
                ),
                [1],
            )
        if checkpointing:
            llm.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={'use_reentrant': False}
            )
        llm.train()
        base = llm.get_base_model() if hasattr(llm, 'get_base_model') else llm
        embeds = torch.randn(batch, seq, hidden, dtype=torch.bfloat16, requires_grad=True)
        mask = torch.ones(batch, seq, dtype=torch.long)
        params = {p.untyped_storage().data_ptr() for p in llm.parameters()}

        def fwd() -> None:
            with torch.autocast('cpu', dtype=torch.bfloat16):
                base.get_decoder()(inputs_embeds=embeds, attention_mask=mask, use_cache=False)

        return saved_tensor_bytes(fwd, params)

    return (run(2, 2) - run(2, 1) - run(1, 2) + run(1, 1)) / seq


def measure_decoder_bytes(refs: int, batches=(1, 2, 4)) -> dict[str, float]:
    """Saved bytes per sample of the paper box and mask decoders (forward, bf16 autocast, CPU).

    Inputs: ConvNeXt-L/512 pyramid and CLIP-L/336 grid in bf16 (frozen encoders), ``refs`` routed
    queries per sample (Vicuna width). Least-squares slope over ``batches``.
    """
    from mmengine.registry import init_default_scope

    from mmrefvlm.models.unit_decoders.box import PAPER_BOX_DECODER
    from mmrefvlm.models.unit_decoders.mask import PAPER_MASK_DECODER
    from mmrefvlm.registry import MODELS
    from mmrefvlm.structures import VisualContext

    init_default_scope('mmrefvlm')
    decoders = {
        name: MODELS.build(dict(cfg)).train()
        for name, cfg in (('box', PAPER_BOX_DECODER), ('mask', PAPER_MASK_DECODER))
    }

    def make_visual(b: int) -> VisualContext:
        pyramid = tuple(
            torch.randn(b, c, s, s, dtype=torch.bfloat16)
            for c, s in zip((192, 384, 768, 1536), (128, 64, 32, 16), strict=True)
        )
        return VisualContext(
            pyramid=pyramid,
            valid_hw=torch.ones(b, 2),
            clip=torch.randn(b, 1024, 24, 24, dtype=torch.bfloat16),
        )

    return decoder_bytes_per_sample(
        decoders, make_visual, in_channels=4096, refs=refs, batches=batches
    )


# ----------------------------------------------------------------------------- the table
def build_table(
    models: dict,
    args,
    decoder_per_sample: float,
    vision_per_sample: float,
    policy: str,
    seq: int,
    shards: int = 1,
) -> list[dict]:
    """One row per (mode, checkpointing, batch)."""
    rows = []
    for mode, (counts, llm_cfg, lora_r) in models.items():
        static = static_bytes(counts, policy, shards)
        for ckpt in (False, True):
            for batch in args.batches:
                pred = predict_memory(
                    llm_cfg,
                    static=static,
                    batch=batch,
                    seq=seq,
                    answer=args.answer_tokens,
                    checkpointing=ckpt,
                    lora_r=lora_r,
                    decoder_per_sample=decoder_per_sample,
                    vision_per_sample=vision_per_sample,
                )
                total = pred['total']
                rows.append(
                    dict(
                        mode=mode,
                        checkpointing=ckpt,
                        batch=batch,
                        seq=seq,
                        policy=policy,
                        static=static,
                        activations=pred['activations'],
                        total=total,
                        fits={g: total / GIB <= usable_gib(g) for g in args.gpus},
                    )
                )
    return rows


def max_batches(rows: list[dict], gpus) -> dict:
    """Largest batch that fits, per (mode, checkpointing) and GPU size (0: none)."""
    out = {}
    for r in rows:
        key = f'{r["mode"]}, AC {"on" if r["checkpointing"] else "off"}'
        slot = out.setdefault(key, {g: 0 for g in gpus})
        for g in gpus:
            if r['fits'][g]:
                slot[g] = max(slot[g], r['batch'])
    return out


def check_formula(hidden: int = 128, inter: int = 352, heads: int = 4, r: int = 8) -> dict:
    """Formula vs autograd's saved tensors on a small bf16 Llama (per token per layer)."""
    cases = dict(full=dict(), lora=dict(lora_r=r), checkpointing=dict(checkpointing=True))
    out = {}
    for name, kw in cases.items():
        measured = measured_layer_bytes(hidden, inter, heads, **kw)
        formula = (
            2 * hidden
            if kw.get('checkpointing')
            else layer_activation_bytes(hidden, inter, heads, lora_r=kw.get('lora_r'))
        )
        out[name] = dict(measured=measured, formula=formula)
    return out


def bf16_update_check(lr: float = 2e-6, steps: int = 10, n: int = 10_000) -> dict[str, float]:
    """Fraction of weights ~ N(0, 0.02) that AdamW at ``lr`` changes in ``steps`` steps, for bf16
    and fp32 parameters (the configured bf16 LLM has no fp32 master copy)."""
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(n, generator=gen) * 0.02
    out = {}
    for dtype in (torch.bfloat16, torch.float32):
        w = start.to(dtype).clone().requires_grad_()
        opt = torch.optim.AdamW([w], lr=lr, weight_decay=0.0)
        for _ in range(steps):
            w.grad = torch.randn(n, generator=gen).to(dtype)
            opt.step()
        out[str(dtype).replace('torch.', '')] = float(
            (w.detach() != start.to(dtype)).float().mean()
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=str(ROOT / 'configs' / 'refvlm' / 'stage2.py'))
    parser.add_argument(
        '--seq-len',
        type=int,
        default=1024,
        help='padded tokens per sample (576 image tokens + text)',
    )
    parser.add_argument(
        '--long-seq-len',
        type=int,
        default=2048,
        help='second sequence length for the max-batch summary (the cutoff)',
    )
    parser.add_argument('--answer-tokens', type=int, default=256, help='labelled tokens/sample')
    parser.add_argument('--refs', type=int, default=4, help='<REF> queries per sample per decoder')
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 2, 4, 8, 16])
    parser.add_argument('--gpus', type=int, nargs='+', default=[24, 40, 80])
    parser.add_argument(
        '--zero-shards',
        type=int,
        default=8,
        help='GPUs the ZeRO-2 summary partitions gradients/optimizer over',
    )
    args = parser.parse_args()
    setup_single_thread()
    start = time.perf_counter()
    cp = load_count_params()
    models, param_check = {}, {}
    for mode, lora in (('full', None), (f'LoRA r={cp.DEFAULT_LORA["r"]}', cp.DEFAULT_LORA)):
        model, _ = cp.build_model(args.config, meta=True, lora=lora)
        counts = cp.count_modules(model)
        closed = cp.closed_forms(model, lora)
        param_check[mode] = {
            r.name: dict(meta=r.total, closed_form=closed.get(r.name))
            for r in counts
            if r.name in closed
        }
        base = model.llm.get_base_model() if hasattr(model.llm, 'get_base_model') else model.llm
        models[mode] = (counts, base.config, lora['r'] if lora else None)
    vision = model_vision_bytes(model)
    formula = check_formula()
    bf16_check = bf16_update_check()
    decoders = measure_decoder_bytes(args.refs)
    per_sample_dec = decoders['box'] + decoders['mask']
    tables = {
        policy: build_table(models, args, per_sample_dec, vision, policy, args.seq_len)
        for policy in ('configured', 'fp32-master')
    }
    long_rows = build_table(models, args, per_sample_dec, vision, 'configured', args.long_seq_len)
    zero_rows = build_table(
        models, args, per_sample_dec, vision, 'fp32-master', args.seq_len, shards=args.zero_shards
    )
    summary = dict(
        configured=max_batches(tables['configured'], args.gpus),
        fp32_master=max_batches(tables['fp32-master'], args.gpus),
        configured_long_seq=max_batches(long_rows, args.gpus),
        fp32_master_zero2=max_batches(zero_rows, args.gpus),
    )
    print_report(tables['configured'], summary, formula, param_check, decoders, args)
    path = write_results(
        'memory',
        dict(
            command='python benchmarks/bench_memory.py',
            config=args.config,
            assumptions=dict(
                seq_len=args.seq_len,
                long_seq_len=args.long_seq_len,
                answer_tokens=args.answer_tokens,
                refs_per_sample=args.refs,
                usable='0.95 x capacity - 1 GiB',
                lora=cp.DEFAULT_LORA,
                zero_shards=args.zero_shards,
            ),
            parameter_check=param_check,
            activation_formula_check=formula,
            bf16_adamw_update_check=dict(lr=2e-6, steps=10, fraction_changed=bf16_check),
            decoder_bytes_per_sample=decoders,
            vision_bytes_per_sample=vision,
            tables=tables,
            long_seq_table=long_rows,
            zero2_table=zero_rows,
            max_batch=summary,
            measured_gpu=None,
            measured_gpu_note='no GPU was lent to this task',
            seconds=time.perf_counter() - start,
        ),
    )
    print(
        'AdamW at lr 2e-6, 10 steps, fraction of weights changed: '
        + ', '.join(f'{k} {v:.3f}' for k, v in bf16_check.items())
    )
    print(f'wrote {path}')


def print_report(rows, summary, formula, param_check, decoders, args) -> None:
    """Print the checks and the main table (GiB)."""
    for mode, checks in param_check.items():
        for name, c in checks.items():
            ok = 'equal' if c['meta'] == c['closed_form'] else 'DIFFERS'
            print(f'[{mode}] {name}: meta {c["meta"]:,} vs closed form {c["closed_form"]:,} ({ok})')
    for name, c in formula.items():
        print(
            f'activation bytes/token/layer [{name}]: measured {c["measured"]:.0f}, '
            f'formula {c["formula"]}'
        )
    print(
        f'decoders, saved MiB per sample ({args.refs} refs): box {decoders["box"] / 2**20:.0f}, '
        f'mask {decoders["mask"] / 2**20:.0f}'
    )
    g = lambda v: f'{v / GIB:.1f}'  # noqa: E731
    table = []
    for r in rows:
        s, a = r['static'], r['activations']
        table.append(
            [
                r['mode'],
                'on' if r['checkpointing'] else 'off',
                r['batch'],
                g(s['parameters']),
                g(s['gradients']),
                g(s['optimizer']),
                g(a['llm']),
                g(a['decoders']),
                g(a['lm_head'] + a['vision'] + a['backward_working_set']),
                g(r['total']),
            ]
            + ['yes' if r['fits'][x] else '-' for x in args.gpus]
        )
    print(
        format_table(
            [
                'LLM',
                'AC',
                'batch',
                'params',
                'grads',
                'AdamW',
                'act LLM',
                'act dec',
                'act other',
                'total GiB',
            ]
            + [f'{x} GB' for x in args.gpus],
            table,
        )
    )
    for name, per in summary.items():
        print(
            f'max batch ({name}): '
            + '; '.join(
                f'{k}: ' + ', '.join(f'{g_}GB={v}' for g_, v in m.items()) for k, m in per.items()
            )
        )


if __name__ == '__main__':
    main()
