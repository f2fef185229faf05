# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""GPU memory model of the paper stage-2 config (Vicuna-7B, CLIP-L/336, ConvNeXt-L/512).

Run: ``python benchmarks/bench_memory.py`` (about 1 minute on CPU; writes
``benchmarks/results/memory.json`` and prints the table).

Terms, per GPU, no sharding (ZeRO/FSDP divide the gradient and optimizer terms by the world size):

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
import importlib.util
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import format_table, setup_single_thread, write_results  # noqa: E402

GIB = 2**30
DTYPE_BYTES = {'float32': 4, 'bfloat16': 2, 'float16': 2}
LORA_TARGETS = 7  # q, k, v, o, gate, up, down


def load_count_params():
    """``tools/analysis/count_params.py`` as a module (tools/ is not a package)."""
    path = ROOT / 'tools' / 'analysis' / 'count_params.py'
    spec = importlib.util.spec_from_file_location('count_params_tool', path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------- formulas
def layer_activation_bytes(
    hidden: int,
    intermediate: int,
    heads: int,
    *,
    lora_r: int | None = None,
    lora_modules: int = LORA_TARGETS,
) -> int:
    """Bytes saved for backward per token by one HF Llama decoder layer (bf16, SDPA attention).

    Attention half: RMSNorm (fp32 input copy 4h, rsqrt 4, bf16 normalised 2h, scaled output 2h,
    shared by q/k/v) + rotated q, k and v for attention (6h) + attention output (2h, also the
    o_proj input) + log-sum-exp (fp32, 4 per head) = 16h + 4a + 4. MLP half: RMSNorm 8h + 4,
    gate output (SiLU input), SiLU output, up output, down_proj input (2I each) = 8h + 8I + 4.
    With LoRA under bf16 autocast each adapted projection also saves its r-wide intermediate (2r),
    and the attention block keeps two more bf16 copies of its inputs (4h) because q/k/v and o_proj
    no longer share the saved input tensor.
    """
    total = 24 * hidden + 8 * intermediate + 4 * heads + 8
    if lora_r:
        total += 4 * hidden + 2 * lora_r * lora_modules
    return total


def final_norm_bytes(hidden: int) -> int:
    """The final RMSNorm (fp32 copy, rsqrt, bf16 output), per token."""
    return 6 * hidden + 4


def llm_activation_bytes(
    hidden: int,
    intermediate: int,
    heads: int,
    layers: int,
    tokens: int,
    *,
    checkpointing: bool,
    lora_r: int | None = None,
) -> int:
    """Saved activations of the decoder stack for ``tokens`` = batch x sequence tokens.

    Without checkpointing every layer keeps :func:`layer_activation_bytes`; with (non-reentrant,
    per layer, as HF ``gradient_checkpointing_enable``) a layer keeps its bf16 input and the layer
    being recomputed holds its full set.
    """
    full = layer_activation_bytes(hidden, intermediate, heads, lora_r=lora_r)
    per_layer = layers * (2 * hidden) + full if checkpointing else layers * full
    return tokens * (per_layer + final_norm_bytes(hidden))


def lm_head_bytes(hidden: int, vocab: int, labelled_tokens: int) -> int:
    """LM head + cross-entropy on the labelled tokens only (``refvlm_utils.lm_loss``)."""
    return labelled_tokens * (10 * vocab + 2 * hidden)


def vision_bytes_per_sample(
    pyramid_shapes: list[tuple[int, int, int]],
    clip_shape: tuple,
    projector_in: int,
    projector_out: int,
) -> int:
    """Encoder outputs kept for the decoders (bf16) + projector activations of the image tokens."""
    feats = sum(c * h * w for c, h, w in pyramid_shapes)
    feats += clip_shape[0] * clip_shape[1] * clip_shape[2]
    tokens = clip_shape[1] * clip_shape[2]
    return 2 * feats + tokens * 2 * (projector_in + 2 * projector_out)


def static_bytes(rows, policy: str, shards: int = 1) -> dict[str, int]:
    """Parameters, gradients and AdamW states (bytes) from ``count_params`` rows (whole model).

    ``shards`` > 1 models ZeRO-2 (``configs/refvlm/stage2_deepspeed.py``): gradients and optimizer
    states are partitioned over that many GPUs, parameters are replicated.
    """
    total = next(r for r in rows if r.name == 'total')
    params = sum(DTYPE_BYTES[d] * n for d, n in total.dtypes.items())
    grads = sum(DTYPE_BYTES[d] * n for d, n in total.trainable_dtypes.items())
    if policy == 'configured':
        optim = sum(2 * DTYPE_BYTES[d] * n for d, n in total.trainable_dtypes.items())
    elif policy == 'fp32-master':
        optim = sum((8 if d == 'float32' else 12) * n for d, n in total.trainable_dtypes.items())
    else:
        raise ValueError(f"optimizer policy must be 'configured' or 'fp32-master', got {policy!r}")
    return dict(parameters=params, gradients=grads // shards, optimizer=optim // shards)


# ----------------------------------------------------------------------------- measurement
def saved_tensor_bytes(fn, exclude: set[int]) -> int:
    """Bytes of distinct storages autograd saves while ``fn`` runs (storages in ``exclude``, e.g.
    parameters, are skipped)."""
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in exclude:
            seen[(st.data_ptr(), st.nbytes())] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


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
    from mmrefvlm.structures import UnitQueries, VisualContext

    init_default_scope('mmrefvlm')
    out = {}
    for name, cfg in (('box', PAPER_BOX_DECODER), ('mask', PAPER_MASK_DECODER)):
        dec = MODELS.build(dict(cfg)).train()
        params = {p.untyped_storage().data_ptr() for p in dec.parameters()}
        sizes = []
        for b in batches:
            pyramid = tuple(
                torch.randn(b, c, s, s, dtype=torch.bfloat16)
                for c, s in zip((192, 384, 768, 1536), (128, 64, 32, 16), strict=True)
            )
            vis = VisualContext(
                pyramid=pyramid,
                valid_hw=torch.ones(b, 2),
                clip=torch.randn(b, 1024, 24, 24, dtype=torch.bfloat16),
            )
            queries = UnitQueries(
                embeds=torch.randn(b, refs, 4096, dtype=torch.bfloat16, requires_grad=True),
                mask=torch.ones(b, refs, dtype=torch.bool),
                group_ids=torch.zeros(b, refs, dtype=torch.long),
            )

            def fwd() -> None:
                with torch.autocast('cpu', dtype=torch.bfloat16):
                    dec(queries, vis)  # noqa: B023

            sizes.append(saved_tensor_bytes(fwd, params))
        n = len(batches)
        mb, ms = sum(batches) / n, sum(sizes) / n
        slope = sum((b - mb) * (s - ms) for b, s in zip(batches, sizes, strict=True)) / sum(
            (b - mb) ** 2 for b in batches
        )
        out[name] = slope
        out[f'{name}_raw'] = dict(zip(map(str, batches), sizes, strict=True))
    return out


# ----------------------------------------------------------------------------- the table
def usable_gib(capacity_gib: float) -> float:
    """Memory a training step may use on a GPU of ``capacity_gib`` (context + fragmentation)."""
    return 0.95 * capacity_gib - 1.0


def activation_terms(
    llm_cfg,
    *,
    batch: int,
    seq: int,
    answer: int,
    checkpointing: bool,
    lora_r: int | None,
    decoder_per_sample: float,
    vision_per_sample: float,
) -> dict[str, float]:
    """Activation terms (bytes) of one micro-batch."""
    h, inter = llm_cfg.hidden_size, llm_cfg.intermediate_size
    a, n_layers, vocab = llm_cfg.num_attention_heads, llm_cfg.num_hidden_layers, llm_cfg.vocab_size
    tokens = batch * seq
    return dict(
        llm=llm_activation_bytes(
            h, inter, a, n_layers, tokens, checkpointing=checkpointing, lora_r=lora_r
        ),
        lm_head=lm_head_bytes(h, vocab, batch * answer),
        decoders=batch * decoder_per_sample,
        vision=batch * vision_per_sample,
        backward_working_set=tokens * layer_activation_bytes(h, inter, a, lora_r=lora_r),
    )


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
                act = activation_terms(
                    llm_cfg,
                    batch=batch,
                    seq=seq,
                    answer=args.answer_tokens,
                    checkpointing=ckpt,
                    lora_r=lora_r,
                    decoder_per_sample=decoder_per_sample,
                    vision_per_sample=vision_per_sample,
                )
                total = sum(static.values()) + sum(act.values())
                rows.append(
                    dict(
                        mode=mode,
                        checkpointing=ckpt,
                        batch=batch,
                        seq=seq,
                        policy=policy,
                        static=static,
                        activations=act,
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
    vcfg = model.vision_encoder.model.config
    grid = vcfg.image_size // vcfg.patch_size
    pyr = model.pyramid_encoder
    side = pyr.image_size
    pyramid_shapes = [
        (c, side // s, side // s) for c, s in zip(pyr.out_channels, pyr.strides, strict=True)
    ]
    vision = vision_bytes_per_sample(
        pyramid_shapes, (vcfg.hidden_size, grid, grid), vcfg.hidden_size, base.config.hidden_size
    )
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
