# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The GPU memory model of a RefVLM training step, as functions that can be queried.

The terms and their checks are described in ``benchmarks/bench_memory.py`` (which prints the
table for the paper stage-2 config) and ``docs/benchmarks.md`` §6. Query entry points:

* :func:`predict_memory`: static bytes (from :func:`static_bytes`) + the activation terms of
  one micro-batch for an LLM shape, batch, sequence length, LoRA rank and checkpointing;
* :func:`predict_for_model`: the same for a built ``RefVLM`` (parameters counted from the
  module tree, LLM shape, LoRA rank and encoder feature sizes read from the model), used by the
  paper-scale GPU benchmark (``benchmarks/paper_scale.py``) to set the prediction next to the
  measured peak.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

GIB = 2**30
DTYPE_BYTES = {'float32': 4, 'bfloat16': 2, 'float16': 2}
LORA_TARGETS = 7  # q, k, v, o, gate, up, down


def load_count_params():
    """``tools/analysis/count_params.py`` as a module (tools/ is not a package; loaded once)."""
    if 'count_params_tool' in sys.modules:
        return sys.modules['count_params_tool']
    path = ROOT / 'tools' / 'analysis' / 'count_params.py'
    spec = importlib.util.spec_from_file_location('count_params_tool', path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


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


def decoder_bytes_per_sample(
    decoders: dict,
    make_visual,
    *,
    in_channels: int,
    refs: int,
    batches=(1, 2, 4),
    device: str | torch.device = 'cpu',
) -> dict[str, float]:
    """Saved bytes per sample of each decoder's forward (bf16 autocast on ``device``).

    Args:
        decoders (dict[str, nn.Module]): Unit name -> decoder (in the mode it trains in).
        make_visual (Callable[[int], VisualContext]): Features of a batch of the given size, as
            the frozen encoders hand them to the decoders.
        in_channels (int): Width of the ``<REF>`` states (the LLM width).
        refs (int): Routed queries per sample.
        batches (Sequence[int]): Batch sizes of the least-squares slope (the intercept, i.e.
            per-call constants, is left out).
        device (str | torch.device): Where to run.

    Returns:
        dict: ``{unit: bytes per sample, f'{unit}_raw': {batch: bytes}}``.
    """
    from mmrefvlm.structures import UnitQueries

    device = torch.device(device)
    out: dict = {}
    for name, dec in decoders.items():
        params = {p.untyped_storage().data_ptr() for p in dec.parameters()}
        sizes = []
        for b in batches:
            vis = make_visual(b)
            queries = UnitQueries(
                embeds=torch.randn(
                    b, refs, in_channels, dtype=torch.bfloat16, device=device, requires_grad=True
                ),
                mask=torch.ones(b, refs, dtype=torch.bool, device=device),
                group_ids=torch.zeros(b, refs, dtype=torch.long, device=device),
            )

            def fwd() -> None:
                with torch.autocast(device.type, dtype=torch.bfloat16):
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


def predict_memory(
    llm_cfg,
    *,
    static: dict[str, int],
    batch: int,
    seq: int,
    answer: int,
    checkpointing: bool,
    lora_r: int | None,
    decoder_per_sample: float,
    vision_per_sample: float,
) -> dict:
    """Predicted bytes of one training step.

    Args:
        llm_cfg: The LLM's transformers config (``hidden_size``, ``intermediate_size``,
            ``num_attention_heads``, ``num_hidden_layers``, ``vocab_size``).
        static (dict[str, int]): ``parameters`` / ``gradients`` / ``optimizer`` bytes
            (:func:`static_bytes`).
        batch (int): Samples per micro-batch.
        seq (int): Padded tokens per sample.
        answer (int): Labelled tokens per sample (LM head).
        checkpointing (bool): Activation checkpointing in the LLM.
        lora_r (int, optional): LoRA rank (None: no adapters).
        decoder_per_sample (float): Saved decoder bytes per sample.
        vision_per_sample (float): :func:`vision_bytes_per_sample`.

    Returns:
        dict: ``static``, ``activations`` (:func:`activation_terms`) and ``total`` bytes.
    """
    act = activation_terms(
        llm_cfg,
        batch=batch,
        seq=seq,
        answer=answer,
        checkpointing=checkpointing,
        lora_r=lora_r,
        decoder_per_sample=decoder_per_sample,
        vision_per_sample=vision_per_sample,
    )
    return dict(
        static=dict(static), activations=act, total=sum(static.values()) + sum(act.values())
    )


def unwrap_llm(model):
    """The HF model under a peft wrapper (the model itself when there is none)."""
    llm = model.llm
    return llm.get_base_model() if hasattr(llm, 'get_base_model') else llm


def lora_rank(model) -> int | None:
    """LoRA rank of the model's LLM adapters (None without peft LoRA)."""
    cfg = getattr(model.llm, 'peft_config', {}).get('default')
    return getattr(cfg, 'r', None)


def model_vision_bytes(model) -> int:
    """:func:`vision_bytes_per_sample` of a built RefVLM (its encoders' output shapes)."""
    vcfg = model.vision_encoder.model.config
    grid = vcfg.image_size // vcfg.patch_size
    hidden = unwrap_llm(model).config.hidden_size
    pyr = model.pyramid_encoder
    shapes = []
    if pyr is not None:
        side = pyr.image_size
        shapes = [
            (c, side // s, side // s) for c, s in zip(pyr.out_channels, pyr.strides, strict=True)
        ]
    return vision_bytes_per_sample(shapes, (vcfg.hidden_size, grid, grid), vcfg.hidden_size, hidden)


def predict_for_model(
    model,
    *,
    batch: int,
    seq: int,
    answer: int,
    checkpointing: bool,
    decoder_per_sample: float,
    policy: str = 'configured',
    shards: int = 1,
) -> dict:
    """:func:`predict_memory` for a built RefVLM (meta or materialised): parameter bytes counted
    from the module tree (``tools/analysis/count_params.py``), LLM shape and LoRA rank read from
    the model. See :func:`predict_memory` for the arguments and the result."""
    cp = load_count_params()
    return predict_memory(
        unwrap_llm(model).config,
        static=static_bytes([cp.count('total', model)], policy, shards),
        batch=batch,
        seq=seq,
        answer=answer,
        checkpointing=checkpointing,
        lora_r=lora_rank(model),
        decoder_per_sample=decoder_per_sample,
        vision_per_sample=model_vision_bytes(model),
    )


def model_decoder_bytes(model, *, refs: int, device: torch.device) -> float:
    """Saved decoder bytes per sample (memory-model input), measured on this model and device."""
    from mmrefvlm.structures import VisualContext

    pyr = model.pyramid_encoder
    enc = model.vision_encoder
    dtype = enc.dtype

    def make_visual(b: int) -> VisualContext:
        grid = enc.grid_size
        clip = torch.randn(b, enc.out_channels, grid, grid, device=device, dtype=dtype)
        pyramid: tuple = (clip,)
        if pyr is not None:
            side = pyr.image_size
            pyramid = tuple(
                torch.randn(b, c, side // s, side // s, device=device, dtype=pyr.dtype)
                for c, s in zip(pyr.out_channels, pyr.strides, strict=True)
            )
        return VisualContext(pyramid=pyramid, clip=clip, valid_hw=torch.ones(b, 2, device=device))

    hidden = unwrap_llm(model).config.hidden_size
    per = decoder_bytes_per_sample(
        dict(model.unit_decoders), make_visual, in_channels=hidden, refs=refs, device=device
    )
    return float(sum(v for k, v in per.items() if not k.endswith('_raw')))
