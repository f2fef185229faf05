# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Per-module parameter counts of a config's model, optionally built on the meta device.

Usage::

    python tools/analysis/count_params.py configs/refvlm/stage2.py --meta
    python tools/analysis/count_params.py configs/refvlm/stage2.py --meta --lora
    python tools/analysis/count_params.py configs/refvlm/demo_stage2.py

``--meta`` builds every module under ``torch.device('meta')``: shapes and dtypes only, no memory,
no weights, seconds for a 7B model. When a config reads the LLM / CLIP / ConvNeXt from local folders
that do not exist (the paper configs: ``checkpoints/vicuna-7b-v1.5`` ...), the tool substitutes
architecture dicts with the same shapes: Vicuna-7B as a ``LlamaConfig`` (hidden 4096, MLP 11008,
32 layers, 32 heads, vocabulary 32000 plus the tokens mmrefvlm adds), and the CLIP ViT-L/14-336
and ConvNeXt-L/512 presets of :mod:`mmrefvlm.models.vision.presets`; the tokenizer falls back to
the built-in demo tokenizer, whose ids only matter for LoRA's trainable token rows (their count,
not their values, enters the parameter count).

The printed table also gives closed-form counts (:func:`llama_params`, :func:`clip_vit_params`,
:func:`convnext_params`, :func:`mlp_projector_params`, :func:`lora_params`) next to the measured
ones, and the REF-VLM paper's Table 13 figures where they exist.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os.path as osp
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

#: Vicuna-7B v1.5 (= Llama-2-7B shapes), as ``build_causal_lm(config=...)`` fields.
VICUNA_7B: dict = dict(
    model_type='llama',
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    vocab_size=32000,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)
#: Rows mmrefvlm adds to the Llama tokenizer: the 9 TRP tokens and a pad token (Llama has none).
LLAMA_ADDED_TOKENS = 10
#: LoRA used by ``--lora`` (LLaVA-1.5's LoRA recipe: rank 128, alpha 256, every linear layer).
DEFAULT_LORA: dict = dict(
    r=128,
    lora_alpha=256,
    lora_dropout=0.0,
    target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
)
#: REF-VLM paper, Table 13 (App. C): "Backbone Parameters" and "Total Parameters" (M).
PAPER_TABLE13 = dict(backbone=199e6, total=248e6)


@dataclass
class ModuleCount:
    """Parameter count of one module of the model.

    Attributes:
        name (str): Display name (``'llm'``, ``'decoder: box'`` ...).
        total (int): All parameters.
        trainable (int): Parameters with ``requires_grad``.
        dtypes (dict[str, int]): Parameter count per dtype name.
        trainable_dtypes (dict[str, int]): Trainable parameter count per dtype name.
    """

    name: str
    total: int
    trainable: int
    dtypes: dict[str, int]
    trainable_dtypes: dict[str, int]

    @property
    def frozen(self) -> int:
        """Parameters without ``requires_grad``."""
        return self.total - self.trainable


# ----------------------------------------------------------------------------- closed forms
def llama_params(
    hidden: int,
    intermediate: int,
    layers: int,
    vocab: int,
    *,
    kv_heads_ratio: float = 1.0,
    tied: bool = False,
) -> int:
    """Llama decoder parameters: embeddings, per layer q/k/v/o + SwiGLU MLP + 2 RMSNorms, final
    norm, LM head (no biases anywhere). ``kv_heads_ratio`` = kv heads / heads (GQA)."""
    kv = int(hidden * kv_heads_ratio)
    attn = 2 * hidden * hidden + 2 * hidden * kv
    per_layer = attn + 3 * hidden * intermediate + 2 * hidden
    return vocab * hidden * (1 if tied else 2) + layers * per_layer + hidden


def clip_vit_params(
    hidden_size: int,
    intermediate_size: int,
    num_hidden_layers: int,
    image_size: int,
    patch_size: int,
    num_channels: int = 3,
    **_: Any,
) -> int:
    """HF ``CLIPVisionModel``: patch conv (no bias), class + position embeddings, pre-LN, layers
    (q/k/v/o with biases, 2 LayerNorms, fc1/fc2 with biases), post-LN (kept, frozen)."""
    h, i = hidden_size, intermediate_size
    tokens = (image_size // patch_size) ** 2 + 1
    embed = num_channels * patch_size**2 * h + h + tokens * h
    per_layer = 4 * (h * h + h) + 2 * 2 * h + (h * i + i) + (i * h + h)
    return embed + 2 * h + num_hidden_layers * per_layer + 2 * h


def convnext_params(
    depths: list[int], hidden_sizes: list[int], patch_size: int = 4, num_channels: int = 3, **_: Any
) -> int:
    """HF ``ConvNextModel``: stem (conv + LN), per stage a downsampler (LN + 2x2 conv, not in
    stage 0) and blocks (7x7 depthwise conv, LN, 4x MLP, layer scale), final LayerNorm."""
    c0 = hidden_sizes[0]
    total = num_channels * patch_size**2 * c0 + c0 + 2 * c0
    prev = c0
    for stage, (depth, c) in enumerate(zip(depths, hidden_sizes, strict=True)):
        if stage > 0:
            total += 2 * prev + 4 * prev * c + c
        total += depth * (49 * c + c + 2 * c + (4 * c * c + 4 * c) + (4 * c * c + c) + c)
        prev = c
    return total + 2 * hidden_sizes[-1]


def mlp_projector_params(in_channels: int, out_channels: int, depth: int = 2) -> int:
    """``MLPProjector``: Linear(in, out), then (depth - 1) x Linear(out, out), with biases."""
    hidden = (depth - 1) * (out_channels**2 + out_channels)
    return in_channels * out_channels + out_channels + hidden


def lora_params(
    hidden: int,
    intermediate: int,
    layers: int,
    r: int,
    target_modules: list[str],
    num_new_tokens: int = 0,
    kv_heads_ratio: float = 1.0,
    **_: Any,
) -> int:
    """peft LoRA on a Llama: ``r * (in + out)`` per adapted linear per layer, plus the trainable
    rows of the new tokens in the input embedding and the (untied) LM head."""
    kv = int(hidden * kv_heads_ratio)
    shapes = dict(
        q_proj=(hidden, hidden),
        k_proj=(hidden, kv),
        v_proj=(hidden, kv),
        o_proj=(hidden, hidden),
        gate_proj=(hidden, intermediate),
        up_proj=(hidden, intermediate),
        down_proj=(intermediate, hidden),
    )
    unknown = set(target_modules) - set(shapes)
    if unknown:
        raise ValueError(f'no closed form for LoRA targets {sorted(unknown)}')
    per_layer = sum(r * sum(shapes[m]) for m in target_modules)
    return layers * per_layer + 2 * num_new_tokens * hidden


# ----------------------------------------------------------------------------- building
def _missing_folder(cfg: Mapping) -> bool:
    path = cfg.get('name_or_path')
    return isinstance(path, str) and path not in ('smollm2',) and not osp.isdir(path)


def substitute_missing_checkpoints(
    model_cfg: dict, *, verbose: bool = True, substitutes: Mapping | None = None
) -> list[str]:
    """Replace LLM / encoder folders that do not exist by same-shape architecture configs.

    Mutates ``model_cfg`` (a plain dict) and returns what was substituted. The LLM becomes
    :data:`VICUNA_7B` (vocabulary + :data:`LLAMA_ADDED_TOKENS`, keeping the config's dtype and
    attention); the CLIP ViT and ConvNeXt get their paper presets; a decoder checkpoint file that
    does not exist (SAM weights of a plugin decoder, or of a module the model itself takes, such as
    SAM4MLLM's ``sam``) is dropped; a tokenizer read from a missing
    folder becomes the demo tokenizer (with the config's extra tokens).

    ``substitutes`` (a config's ``meta_substitutes``) overrides those defaults for a model of
    other shapes: ``llm`` a ``build_causal_lm`` config dict (with ``model_type``, taken as it is),
    ``vision_encoder`` / ``pyramid_encoder`` the encoder's config fields.
    """
    from mmrefvlm.models.vision.presets import CLIP_CONVNEXT_L_512, CLIP_VIT_L14_336

    subs = dict(substitutes or {})
    unknown = set(subs) - {'llm', 'vision_encoder', 'pyramid_encoder'}
    if unknown:
        raise ValueError(f'meta_substitutes: no substitution for {sorted(unknown)}')
    done = []
    llm = dict(model_cfg['llm'])
    if _missing_folder(llm):
        if 'llm' in subs:
            config = dict(subs['llm'])
            what = f"the config's meta_substitutes ({config.get('model_type')})"
        else:
            config = dict(VICUNA_7B, vocab_size=VICUNA_7B['vocab_size'] + LLAMA_ADDED_TOKENS)
            what = f'Vicuna-7B LlamaConfig (vocab 32000 + {LLAMA_ADDED_TOKENS})'
        model_cfg['llm'] = dict(
            config=config,
            torch_dtype=llm.get('torch_dtype', 'float32'),
            attn_implementation=llm.get('attn_implementation', 'sdpa'),
        )
        done.append(f'llm: {llm["name_or_path"]} -> {what}')
    for key, preset, what in (
        ('vision_encoder', CLIP_VIT_L14_336, 'CLIP ViT-L/14-336 preset'),
        ('pyramid_encoder', CLIP_CONVNEXT_L_512, 'ConvNeXt-L/512 preset'),
    ):
        enc = model_cfg.get(key)
        if isinstance(enc, Mapping) and _missing_folder(enc):
            enc = dict(enc)
            if key in subs:
                preset, what = subs[key], "the config's meta_substitutes"
            done.append(f'{key}: {enc.pop("name_or_path")} -> {what}')
            enc['config'] = dict(preset)
            model_cfg[key] = enc
    for unit, dec in dict(model_cfg.get('unit_decoders') or {}).items():
        ckpt = dec.get('checkpoint') if isinstance(dec, Mapping) else None
        if isinstance(ckpt, str) and not osp.isfile(ckpt):  # plugin weights (SAM...): shapes only
            model_cfg['unit_decoders'][unit] = dict(dec, checkpoint=None)
            done.append(f'unit_decoders.{unit}.checkpoint: {ckpt} -> random weights')
    for key, sub in list(model_cfg.items()):  # a model's own plugin module (SAM4MLLM's `sam`)
        ckpt = sub.get('checkpoint') if isinstance(sub, Mapping) else None
        if isinstance(ckpt, str) and not osp.isfile(ckpt):
            model_cfg[key] = dict(sub, checkpoint=None)
            done.append(f'{key}.checkpoint: {ckpt} -> random weights')
    tok = model_cfg.get('tokenizer')
    if (
        isinstance(tok, Mapping)
        and isinstance(tok.get('source'), str)
        and tok['source'] not in ('demo', 'smollm2')
        and not osp.isdir(tok['source'])
    ):
        done.append(f'tokenizer: {tok["source"]} -> demo tokenizer (LLM vocabulary set above)')
        # keep the config's extra tokens ([SEG], [REJ]...): models check that they exist
        model_cfg['tokenizer'] = dict(source='demo', extra_tokens=list(tok.get('extra_tokens', ())))
    if verbose:
        from mmengine.logging import print_log

        for line in done:
            print_log(f'substituted {line}', logger='current')
    return done


def _plain(obj: Any) -> Any:
    """ConfigDict / lists of them -> plain dicts and lists (types and callables untouched)."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def build_model(
    config: str,
    *,
    meta: bool = True,
    lora: Mapping | None = None,
    gradient_checkpointing: bool | None = None,
):
    """Build ``config``'s model (on the meta device by default), substituting missing folders
    (with the config's ``meta_substitutes`` where it has them).

    Args:
        config (str): Config file path.
        meta (bool): Build under ``torch.device('meta')`` (no memory, no weights).
        lora (Mapping, optional): ``peft.LoraConfig`` kwargs to set ``model.lora``.
        gradient_checkpointing (bool, optional): Override the config's flag.

    Returns:
        tuple[RefVLM, list[str]]: The model and the substitutions made.
    """
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmrefvlm.registry import MODELS

    if not osp.isfile(config):
        raise FileNotFoundError(f'config file {config!r} does not exist')
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmrefvlm'))
    model_cfg = _plain(cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else cfg.model)
    done = substitute_missing_checkpoints(
        model_cfg, substitutes=_plain(cfg.get('meta_substitutes') or {})
    )
    if lora is not None:
        model_cfg['lora'] = dict(lora)
    if gradient_checkpointing is not None:
        model_cfg['gradient_checkpointing'] = gradient_checkpointing
    ctx = torch.device('meta') if meta else contextlib.nullcontext()
    with ctx:
        model = MODELS.build(model_cfg)
    return model, done


# ----------------------------------------------------------------------------- counting
def count(name: str, module) -> ModuleCount:
    """Count ``module``'s parameters (each tensor once, even when shared)."""
    seen, dtypes, tdtypes = set(), {}, {}
    total = trainable = 0
    for p in module.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n, dt = p.numel(), str(p.dtype).replace('torch.', '')
        total += n
        dtypes[dt] = dtypes.get(dt, 0) + n
        if p.requires_grad:
            trainable += n
            tdtypes[dt] = tdtypes.get(dt, 0) + n
    return ModuleCount(name, total, trainable, dtypes, tdtypes)


def count_modules(model, *, decoder_parts: bool = False) -> list[ModuleCount]:
    """Per-module counts of a ``RefVLM``: LLM, encoders, projector, prompt encoder, router, each
    input encoder, each decoder (and its direct children with ``decoder_parts``), any other child
    module with parameters (by attribute name), then the whole model."""
    rows = [count('llm', model.llm), count('vision_encoder (CLIP-ViT)', model.vision_encoder)]
    if model.pyramid_encoder is not None:
        rows.append(count('pyramid_encoder (ConvNeXt)', model.pyramid_encoder))
    rows += [
        count('projector', model.projector),
        count('prompt_encoder', model.prompt_encoder),
        count('router', model.router),
    ]
    for token, enc in getattr(model, 'input_encoders', {}).items():
        rows.append(count(f'input encoder: {token}', enc))
    for unit, dec in model.unit_decoders.items():
        rows.append(count(f'decoder: {unit}', dec))
        if decoder_parts:
            rows += [
                count(f'  {unit}.{n}', c)
                for n, c in dec.named_children()
                if any(True for _ in c.parameters())
            ]
    listed = {
        'llm',
        'vision_encoder',
        'pyramid_encoder',
        'projector',
        'prompt_encoder',
        'router',
        'input_encoders',
        'unit_decoders',
    }
    for name, child in model.named_children():  # a subclass's own modules (SAM4MLLM's `sam`)
        if name not in listed and any(True for _ in child.parameters()):
            rows.append(count(name, child))
    rows.append(count('total', model))
    return rows


def closed_forms(model, lora: Mapping | None = None) -> dict[str, int]:
    """Closed-form counts for the modules that have one (keys as in :func:`count_modules`)."""
    base = model.llm.get_base_model() if hasattr(model.llm, 'get_base_model') else model.llm
    c = base.config
    out = {}
    if getattr(c, 'model_type', None) == 'llama':
        ratio = c.num_key_value_heads / c.num_attention_heads
        llm = llama_params(
            c.hidden_size,
            c.intermediate_size,
            c.num_hidden_layers,
            c.vocab_size,
            kv_heads_ratio=ratio,
            tied=c.tie_word_embeddings,
        )
        if lora is not None:
            new = len(set(model.tokenizer.ids.values()))
            llm += lora_params(
                c.hidden_size,
                c.intermediate_size,
                c.num_hidden_layers,
                num_new_tokens=new,
                kv_heads_ratio=ratio,
                **lora,
            )
        out['llm'] = llm
    vc = model.vision_encoder.model.config
    out['vision_encoder (CLIP-ViT)'] = clip_vit_params(**vc.to_dict())
    if model.pyramid_encoder is not None:
        pc = model.pyramid_encoder.model.config
        out['pyramid_encoder (ConvNeXt)'] = convnext_params(
            pc.depths, pc.hidden_sizes, pc.patch_size, pc.num_channels
        )
    proj = model.projector
    if type(proj).__name__ == 'MLPProjector':
        depth = sum(1 for m in proj.layers if type(m).__name__ == 'Linear')
        out['projector'] = mlp_projector_params(proj.in_channels, proj.out_channels, depth)
    return out


def fmt(n: float) -> str:
    """Parameters as millions / billions with 2-3 significant decimals."""
    return f'{n / 1e9:.3f} B' if n >= 1e9 else f'{n / 1e6:.2f} M'


def report(rows: list[ModuleCount], closed: Mapping[str, int]) -> str:
    """Markdown table of ``rows`` with the closed-form column."""
    lines = [
        '| module | parameters | exact | trainable | frozen | dtype | closed form |',
        '|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        cf = closed.get(r.name)
        check = '' if cf is None else (f'{fmt(cf)} ({"equal" if cf == r.total else "DIFFERS"})')
        dts = ', '.join(sorted(r.dtypes)) or '-'
        lines.append(
            f'| {r.name} | {fmt(r.total)} | {r.total:,} | {fmt(r.trainable)} | '
            f'{fmt(r.frozen)} | {dts} | {check} |'
        )
    return '\n'.join(lines)


def paper_comparison(rows: list[ModuleCount]) -> str:
    """Lines comparing with REF-VLM Table 13 (ConvNeXt-L backbone 199M, total 248M)."""
    by = {r.name: r.total for r in rows}
    pyramid = by.get('pyramid_encoder (ConvNeXt)')
    if pyramid is None:
        return ''
    decoders = sum(r.total for r in rows if r.name.startswith('decoder: '))
    proj = by.get('projector', 0)
    lines = [
        f'Paper Table 13: backbone {fmt(PAPER_TABLE13["backbone"])}, total '
        f'{fmt(PAPER_TABLE13["total"])} (total - backbone = '
        f'{fmt(PAPER_TABLE13["total"] - PAPER_TABLE13["backbone"])}).',
        f'Here: ConvNeXt {fmt(pyramid)}; decoders {fmt(decoders)}; projector {fmt(proj)}; '
        f'ConvNeXt + projector + decoders = {fmt(pyramid + proj + decoders)}.',
    ]
    return '\n'.join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description='Per-module parameter counts of a config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--meta', action='store_true', help='build on the meta device')
    parser.add_argument(
        '--lora', action='store_true', help=f'apply LoRA ({DEFAULT_LORA["r"]=}, all linear layers)'
    )
    parser.add_argument('--parts', action='store_true', help='also list decoder sub-modules')
    parser.add_argument('--json', help='also write the counts to this JSON file')
    args = parser.parse_args(argv)
    lora = DEFAULT_LORA if args.lora else None
    model, done = build_model(args.config, meta=args.meta, lora=lora)
    rows = count_modules(model, decoder_parts=args.parts)
    closed = closed_forms(model, lora)
    out = [f'config: {args.config}' + (' (meta device)' if args.meta else '')]
    out += [f'substituted {d}' for d in done]
    out += [report(rows, closed), paper_comparison(rows)]
    sys.stdout.write('\n'.join(o for o in out if o) + '\n')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(
                dict(
                    config=args.config,
                    meta=args.meta,
                    lora=lora,
                    substituted=done,
                    modules=[asdict(r) for r in rows],
                    closed_forms=closed,
                ),
                f,
                indent=2,
            )


if __name__ == '__main__':
    main()
