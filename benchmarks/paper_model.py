# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""A config's RefVLM with random weights: built on the meta device, materialised on a device.

Used by the paper-scale benchmarks (``bench_train_step.py --config``, ``bench_inference.py
--config``). Nothing is downloaded: checkpoint folders that do not exist are replaced by
same-shape architecture configs (``tools/analysis/count_params.py``: Vicuna-7B as a
``LlamaConfig``, CLIP ViT-L/14-336 and ConvNeXt-L/512 presets; the demo tokenizer, whose ids
only need to fit the 32,010-row embedding).

Random init (``--random-init``) in three steps, so that start-up takes seconds for 7B:

1. build under ``accelerate.init_empty_weights(include_buffers=False)``: every parameter is on the
   meta device (no memory, no init), buffers are real (RoPE frequencies, CLIP position ids, the
   preprocessor's mean/std), which ``nn.Module.to_empty`` would wipe;
2. :func:`materialize_`: each meta parameter becomes an uninitialised tensor on the device (same
   dtype, ``requires_grad`` kept, shared parameters kept shared); buffers computed from meta
   parameters (peft's copy of the new-token rows) become zeros there;
3. :func:`init_random_`: a seeded generator on the device fills matrices with N(0, 0.02) (LoRA
   ``B`` with zeros, as peft does), vectors named ``*bias*`` with 0 and other vectors (norm
   weights, layer scales, class embedding) with 1.

``--tiny`` shrinks every module (2-layer LLM of width 64, 56 px CLIP, 64 px ConvNeXt, 1-layer
decoders of width 32, 32 px mask targets) for CPU tests of the same code path.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
from torch import nn

from benchmarks.memory_model import load_count_params

TINY_LLM = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    vocab_size=512,
)
TINY_CLIP = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=56,
    patch_size=14,
)
TINY_CONVNEXT = dict(depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], image_size=64)
TINY_DECODER = dict(d_model=32, num_layers=1, num_heads=4, ffn_dim=64, fpn_dim=32, mask_dim=32)
TINY_MASK_SIZE = 32


def shrink_(model_cfg: dict) -> None:
    """Replace every module's shape by a tiny one, in place (see the module docstring)."""
    from mmrefvlm.models.vision.presets import CLIP_CONVNEXT_L_512, CLIP_VIT_L14_336

    cp = load_count_params()
    llm = model_cfg['llm']
    model_cfg['llm'] = dict(
        config=dict(cp.VICUNA_7B, **TINY_LLM),
        torch_dtype=llm.get('torch_dtype', 'float32'),
        attn_implementation=llm.get('attn_implementation', 'sdpa'),
    )
    for key, preset, tiny in (
        ('vision_encoder', CLIP_VIT_L14_336, TINY_CLIP),
        ('pyramid_encoder', CLIP_CONVNEXT_L_512, TINY_CONVNEXT),
    ):
        if model_cfg.get(key) is not None:
            enc = dict(model_cfg[key])
            enc.pop('name_or_path', None)
            enc['config'] = dict(preset, **tiny)
            model_cfg[key] = enc
    for unit, dec in model_cfg.get('unit_decoders', {}).items():
        dec = dict(dec)
        for key in ('in_channels', 'pyramid_channels', 'clip_channels'):
            dec.pop(key, None)  # RefVLM fills them from the tiny LLM and encoders
        dec.update({k: v for k, v in TINY_DECODER.items() if k in dec})
        for block in ('decoder', 'head'):  # the composed spelling (memory=, decoder=, head=)
            if isinstance(dec.get(block), dict):
                sub = dec[block]
                dec[block] = dict(sub, **{k: v for k, v in TINY_DECODER.items() if k in sub})
        if dec.get('memory_size') is not None:
            dec['memory_size'] = 16
        if isinstance(dec.get('memory'), dict) and dec['memory'].get('size') is not None:
            dec['memory'] = dict(dec['memory'], size=16)
        model_cfg['unit_decoders'][unit] = dec


def load_model_cfg(
    config: str,
    *,
    cfg_options: dict | None = None,
    tiny: bool = False,
    random_init: bool = True,
    gradient_checkpointing: bool | None = None,
    llm_dtype: str | None = None,
) -> tuple[Any, dict, list[str]]:
    """Read ``config`` and return ``(cfg, model_cfg, changes)``.

    ``model_cfg`` is a plain dict with missing checkpoint folders substituted (``random_init``),
    the tiny shapes (``tiny``), and the checkpointing / LLM dtype overrides applied; ``changes``
    lists what was changed, for the results file.
    """
    from mmengine.registry import init_default_scope

    from mmrefvlm.apis import load_config

    cfg = load_config(config, cfg_options=cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmrefvlm'))
    cp = load_count_params()
    model_cfg = cp._plain(cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else cfg.model)
    subs = cp._plain(cfg.get('meta_substitutes') or {})
    changes = (
        cp.substitute_missing_checkpoints(model_cfg, verbose=False, substitutes=subs)
        if random_init
        else []
    )
    if tiny:
        shrink_(model_cfg)
        changes.append('--tiny: every module shrunk (benchmarks/paper_model.py)')
    if gradient_checkpointing is not None:
        model_cfg['gradient_checkpointing'] = gradient_checkpointing
        changes.append(f'gradient_checkpointing={gradient_checkpointing}')
    if llm_dtype is not None:
        model_cfg['llm']['torch_dtype'] = llm_dtype
        changes.append(f'llm torch_dtype={llm_dtype}')
    return cfg, model_cfg, changes


def materialize_(model: nn.Module, device: torch.device) -> None:
    """Meta parameters -> uninitialised tensors on ``device``; meta buffers -> zeros; then
    ``model.to(device)`` moves the real buffers (see the module docstring, step 2)."""
    made: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is None or not p.is_meta:
                continue
            if id(p) not in made:
                made[id(p)] = nn.Parameter(
                    torch.empty_like(p, device=device), requires_grad=p.requires_grad
                )
            module._parameters[name] = made[id(p)]
        for name, b in list(module._buffers.items()):
            if b is not None and b.is_meta:
                module._buffers[name] = torch.zeros_like(b, device=device)
    model.to(device)


@torch.no_grad()
def init_random_(model: nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Deterministic random weights, generated on the parameters' device (step 3)."""
    gens: dict[torch.device, torch.Generator] = {}
    for name, p in model.named_parameters():
        gen = gens.setdefault(p.device, torch.Generator(device=p.device).manual_seed(seed))
        if p.dim() >= 2:
            if 'lora_B' in name:
                p.zero_()
            else:
                p.normal_(0.0, std, generator=gen)
        elif 'bias' in name.rsplit('.', 1)[-1]:
            p.zero_()
        else:
            p.fill_(1.0)


def build_model(
    model_cfg: dict, device: torch.device, *, random_init: bool = True, seed: int = 0
) -> tuple[nn.Module, dict[str, float]]:
    """Build ``model_cfg`` on ``device`` in training mode.

    Returns:
        tuple: The ``RefVLM`` and the seconds of each start-up stage (``build``, ``materialize``,
        ``init``).
    """
    from mmrefvlm.registry import MODELS

    times: dict[str, float] = {}
    start = time.perf_counter()
    if random_init:
        from accelerate import init_empty_weights

        with init_empty_weights(include_buffers=False):
            model = MODELS.build(model_cfg)
        times['build'] = time.perf_counter() - start
        materialize_(model, device)
        _sync(device)
        times['materialize'] = time.perf_counter() - start - times['build']
        init_random_(model, seed)
        _sync(device)
        times['init'] = time.perf_counter() - start - times['build'] - times['materialize']
    else:  # real weights from the config's local folders
        model = MODELS.build(model_cfg).to(device)
        times['build'] = time.perf_counter() - start
    model.train()
    return model, times


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def describe(model: nn.Module) -> dict[str, Any]:
    """Parameter counts (total / trainable, per dtype) for the results file."""
    row = load_count_params().count('total', model)
    return dict(
        parameters=row.total,
        trainable=row.trainable,
        dtypes=row.dtypes,
        trainable_dtypes=row.trainable_dtypes,
    )


def make_optim_wrapper(cfg, model, device: torch.device):
    """The config's optimizer wrapper with ``accumulative_counts=1``; on a CPU the non-AMP
    variant (returns ``(wrapper, step_context)``, the context being CPU bf16 autocast there)."""
    from mmengine.optim import build_optim_wrapper

    from mmrefvlm.engine import NaNGuardOptimWrapper

    ow_cfg = (
        cfg.optim_wrapper.to_dict()
        if hasattr(cfg.optim_wrapper, 'to_dict')
        else dict(cfg.optim_wrapper)
    )
    ow_cfg['accumulative_counts'] = 1
    kind = ow_cfg['type'] if isinstance(ow_cfg['type'], str) else ow_cfg['type'].__name__
    amp_on_cpu = 'Amp' in kind and device.type != 'cuda'
    if amp_on_cpu:  # MMEngine's AmpOptimWrapper needs CUDA: same wrapper, CPU bf16 autocast
        for key in ('dtype', 'loss_scale'):
            ow_cfg.pop(key, None)
        ow_cfg['type'] = NaNGuardOptimWrapper

    def ctx() -> contextlib.AbstractContextManager:
        if amp_on_cpu:
            return torch.autocast('cpu', dtype=torch.bfloat16)
        return contextlib.nullcontext()

    return build_optim_wrapper(model, ow_cfg), ctx
